# Shared by every filter of this pack.
# The id in a LongJump lookup (`{"#text": id, "@displayValue": …}`), or null when empty.
def lj_id: (if type == "object" then .["#text"] else . end) | if . == "" then null else . end;
# V1 Company from a LongJump tenant: active = 1, msp = 1 → Partner.
def v1_company:
  { companyId: .id,
    companyName: .company,
    isEnabled: ((.active // "") | tostring == "1"),
    type: (if (.msp // "" | tostring) == "1" then "Partner" else "Customer" end),
    parentCompanyId: (.partner | lj_id) };
# One page of V1 companies from a LongJump search answer.
def v1_page: { items: [.tenant[]? | v1_company], total: (.totalRecordCount // "0" | tonumber) };
# LongJump sort parameters from V1 `orderBy` (name order; none keeps LongJump's).
def lj_sort_order: (.query.orderBy // "" | ascii_downcase) as $o
  | if $o == "desc" or $o == "descending" then "desc" elif $o == "" then null else "asc" end;

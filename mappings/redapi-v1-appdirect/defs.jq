# Shared by every filter of this pack.
# V1 Company from an AppDirect company and the id of its reseller (null for a root company).
def v1_company($parent):
  { companyId: .id,
    companyName: .name,
    isEnabled: (.enabled // false),
    type: (if .reseller then "Partner" else "Customer" end),
    parentCompanyId: $parent };
# V1 User from an AppDirect membership.
def v1_user:
  { userId: .user.id,
    name: ([.user.firstName, .user.lastName] | map(select(. != null and . != "")) | join(" ")),
    email: .user.email,
    dateCreated: (if .user.createdOn == null then null else (.user.createdOn / 1000 | floor | todate) end),
    role: (.roles[0] // null),
    companyId: .company.id,
    companyName: .company.name,
    enabled: (.enabled // false),
    verified: (.user.activated // false),
    sso: null };
# Filter associations on the customer's name, order them, and cut out the requested page.
def v1_customer_page($assocs; $search; $order; $page):
  ($search // "" | ascii_downcase) as $s
  | ($order // "" | ascii_downcase) as $o
  | [$assocs[] | select($s == "" or ((.customerCompany.name // "") | ascii_downcase | contains($s)))]
  | (if $o == "" then . else sort_by(.customerCompany.name // "" | ascii_downcase) end)
  | (if $o == "desc" or $o == "descending" then reverse else . end)
  | { total: length, items: .[$page.offset : $page.offset + $page.size] };
# The customers of a page, as V1 companies under the reseller their association names.
def v1_customers:
  . as $c
  | { items: [range(0; $c.steps.customers | length) as $i
              | $c.steps.customers[$i] | v1_company($c.steps.page.items[$i].resellerCompany.id)],
      total: $c.steps.page.total };

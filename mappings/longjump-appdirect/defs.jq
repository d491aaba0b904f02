# Shared by every filter of this pack.
# Epoch milliseconds as an ISO-8601 UTC date (LongJump's date format), null stays null.
def lj_date: if . == null then null else (. / 1000 | floor | todate) end;
# A LongJump lookup to the tenant `$id` named `$name`; an empty lookup when there is none.
def lj_lookup($id; $name; $base):
  if $id == null then {"@type": "", "@uri": "", "@displayValue": ""}
  else {"@type": "", "@uri": ($base + "/networking/rest/tenant/" + $id), "@displayValue": ($name // ""), "#text": $id} end;
# A LongJump tenant from an AppDirect company, its reseller association (or null) and this
# gateway's base URL (for the partner lookup's uri). Booleans are written 0/1 by the dialect.
def lj_tenant($assoc; $base):
  { id: .id,
    name: .externalId,
    company: .name,
    partner: lj_lookup($assoc.resellerCompany.id; $assoc.resellerCompany.name; $base),
    msp: (.reseller // false),
    active: (.enabled // false),
    email: .emailAddress,
    phone: .phoneNumber,
    country: .address.country,
    city: .address.city,
    street: .address.street1,
    state: .address.state,
    zip: .address.zip,
    start_date: (.createdOn | lj_date),
    date_modified: (.createdOn | lj_date) };
# LongJump's boolean text ("1", "0", "true", "false") as a JSON boolean.
def lj_flag: tostring | ascii_downcase | . == "1" or . == "true";
# The AppDirect fields a LongJump tenant document sets, given the current address (so a
# partial address update keeps the rest: AppDirect replaces the address object whole).
def ad_company_fields($address):
  . as $t
  | ([{name: "company", emailAddress: "email", phoneNumber: "phone"}
      | to_entries[] | select($t[.value] != null) | {(.key): $t[.value]}] | add // {})
  + (if $t.is_partner != null then {reseller: ($t.is_partner | lj_flag)} else {} end)
  + (if $t.active != null then {enabled: ($t.active | lj_flag)} else {} end)
  + ([{street1: "street", city: "city", state: "state", zip: "zip", country: "country"}
      | to_entries[] | select($t[.value] != null) | {(.key): $t[.value]}] | add
     | if . == null then {} else {address: (($address // {}) + .)} end);
# The fields of a tenant document this pack can write to AppDirect.
def lj_writable: ["company", "email", "phone", "is_partner", "active", "street", "city", "state", "zip", "country"];

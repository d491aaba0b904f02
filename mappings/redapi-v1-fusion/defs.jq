# Shared by every filter of this pack.
# V1 Company from a Fusion reseller: suspended → disabled; its owner is its parent.
def v1_company:
  { companyId: .uuid,
    companyName: .name,
    isEnabled: (.status != "suspended"),
    type: "Partner",
    parentCompanyId: (.owner.uuid // null) };
# Fusion's sort direction from V1 `orderBy` (name order; none keeps Fusion's).
def fusion_dir: (.query.orderBy // "" | ascii_downcase) as $o
  | if $o == "desc" or $o == "descending" then "desc" elif $o == "" then null else "asc" end;
# Rosetta's own search, order and page over resellers it gathered (the walks).
def v1_walk_page($c):
  ($c.query.search // "" | ascii_downcase) as $s
  | ($c | fusion_dir) as $o
  | [.[] | select($s == "" or ((.name // "") | ascii_downcase | contains($s)))]
  | (if $o == null then . else sort_by(.name // "" | ascii_downcase) end)
  | (if $o == "desc" then reverse else . end)
  | { total: length, items: [.[$c.page.offset : $c.page.offset + $c.page.size][] | v1_company] };

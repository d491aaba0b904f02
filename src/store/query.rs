//! What the two backends' queries share, written once so they cannot drift: the lists'
//! WHERE clauses (built with the backend's placeholder style), their sort whitelists and
//! paging, the statistics' time window, the values read back from rows (roles, fingerprints,
//! addresses, quotas) and the messages of the errors both answer. What differs between
//! SQLite and PostgreSQL is one [`Sql`] value: placeholders, case-insensitive matching, the
//! order of NULLs and ties, how a JSON array is searched.

use super::{AuditQuery, ListQuery, Quotas, StatsQuery, StoreError, UserGroup, UserQuery};

/// The backend a statement is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sql {
    /// `?1` placeholders, `LIKE` (case-insensitive for ASCII), `rowid` ties.
    Sqlite,
    /// `$1` placeholders, `ILIKE`, SQLite's order of NULLs spelled out, `seq`/`id` ties.
    Postgres,
}

impl Sql {
    /// The placeholder of the `n`th argument (from 1).
    fn placeholder(self, n: usize) -> String {
        match self {
            Sql::Sqlite => format!("?{n}"),
            Sql::Postgres => format!("${n}"),
        }
    }

    /// The case-insensitive `LIKE`.
    fn like(self) -> &'static str {
        match self {
            Sql::Sqlite => "LIKE",
            Sql::Postgres => "ILIKE",
        }
    }

    /// Rows of `audit` whose `targets` array holds exactly `p` (never a substring).
    fn has_target(self, p: &str) -> String {
        match self {
            Sql::Sqlite => format!(
                "EXISTS (SELECT 1 FROM json_each(audit.targets) WHERE json_each.value = {p})"
            ),
            Sql::Postgres => format!("targets ? {p}"),
        }
    }

    /// ` ORDER BY` the whitelisted column of `field` (else the list's default), NULLs first
    /// ascending and last descending (SQLite's order, spelled out on PostgreSQL), then
    /// insertion order.
    pub(super) fn order_by(self, sort: &Sort, field: Option<&str>, desc: bool) -> String {
        let col = sort.column(field);
        match self {
            Sql::Sqlite => format!(
                " ORDER BY {col} {} , rowid",
                if desc { "DESC" } else { "ASC" }
            ),
            Sql::Postgres => {
                let dir = if desc {
                    "DESC NULLS LAST"
                } else {
                    "ASC NULLS FIRST"
                };
                format!(" ORDER BY {col} {dir}, {}", sort.pg_tie)
            }
        }
    }
}

/// An argument bound to a placeholder; each backend converts it to its own type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Arg {
    /// A text value.
    Text(String),
    /// An integer value.
    Int(i64),
}

/// WHERE conditions and their arguments, as a query grows.
#[derive(Debug)]
pub(super) struct Where {
    sql: Sql,
    conds: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    /// No condition yet (everything matches).
    pub(super) fn new(sql: Sql) -> Self {
        Self {
            sql,
            conds: Vec::new(),
            args: Vec::new(),
        }
    }

    /// Adds `arg`; its placeholder, to write into a condition.
    pub(super) fn bind(&mut self, arg: Arg) -> String {
        self.args.push(arg);
        self.sql.placeholder(self.args.len())
    }

    /// Adds a condition, ANDed with the others.
    pub(super) fn and(&mut self, cond: String) {
        self.conds.push(cond);
    }

    /// The conditions, for after `WHERE`.
    pub(super) fn clause(&self) -> String {
        if self.conds.is_empty() {
            "TRUE".to_owned()
        } else {
            self.conds.join(" AND ")
        }
    }

    /// The arguments, in placeholder order.
    pub(super) fn args(&self) -> &[Arg] {
        &self.args
    }

    /// Adds `text` as a case-insensitive substring of any of `cols` (`%`, `_`, `\` literal;
    /// a NULL column is empty).
    fn matching(&mut self, text: &str, cols: &[&str]) {
        let p = self.bind(Arg::Text(like(text)));
        let op = self.sql.like();
        let any: Vec<String> = cols
            .iter()
            .map(|c| format!("{c} {op} {p} ESCAPE '\\'"))
            .collect();
        self.and(format!("({})", any.join(" OR ")));
    }
}

/// `%text%` for LIKE, with the caller's `%`, `_` and `\` taken literally.
fn like(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

/// A list's sortable fields: the names the admin API accepts and their columns.
#[derive(Debug)]
pub(super) struct Sort {
    fields: &'static [(&'static str, &'static str)],
    default: &'static str,
    /// PostgreSQL's insertion-order column (SQLite's `rowid`), the last tie-break.
    pg_tie: &'static str,
}

impl Sort {
    /// The column of `field`; the default for no field or one not listed.
    fn column(&self, field: Option<&str>) -> &'static str {
        field
            .and_then(|f| self.fields.iter().find(|(name, _)| *name == f))
            .map_or(self.default, |(_, col)| col)
    }
}

/// The companies list's sort fields.
pub(super) const COMPANY_SORT: Sort = Sort {
    fields: &[("key", "key"), ("detail", "detail")],
    default: "key",
    pg_tie: "seq",
};

/// The users list's sort fields.
pub(super) const USER_SORT: Sort = Sort {
    fields: &[
        ("username", "username"),
        ("name", "name"),
        ("email", "email"),
        ("company_key", "company_key"),
        ("enabled", "enabled"),
        ("timezone", "timezone"),
    ],
    default: "username",
    pg_tie: "seq",
};

/// The audit trail's sort fields.
pub(super) const AUDIT_SORT: Sort = Sort {
    fields: &[
        ("time", "time_ms"),
        ("username", "username"),
        ("company_key", "company_key"),
        ("service_name", "service"),
        ("operation_id", "operation"),
        ("method_group", "method_group"),
        ("points", "points"),
        ("duration", "duration_ms"),
    ],
    default: "time_ms",
    pg_tie: "id",
};

/// ` LIMIT … OFFSET …` of a page (numbers, never arguments: they are validated `u32`s).
pub(super) fn page(limit: u32, offset: u32) -> String {
    format!(" LIMIT {limit} OFFSET {offset}")
}

/// The companies matching `q`'s filter (key or detail).
pub(super) fn company_where(sql: Sql, q: &ListQuery) -> Where {
    let mut w = Where::new(sql);
    if let Some(f) = &q.filter {
        w.matching(f, &["key", "COALESCE(detail, '')"]);
    }
    w
}

/// The users in `q`'s scope (its company, if any): what `overall` counts.
pub(super) fn user_scope(sql: Sql, q: &UserQuery) -> Where {
    let mut w = Where::new(sql);
    if let Some(c) = &q.company_key {
        let p = w.bind(Arg::Text(c.clone()));
        w.and(format!("company_key = {p}"));
    }
    w
}

/// Narrows `scope` by `q`'s text filter (username, name, e-mail, company) and group.
pub(super) fn user_filters(mut w: Where, q: &UserQuery) -> Where {
    if let Some(f) = &q.list.filter {
        w.matching(
            f,
            &[
                "username",
                "COALESCE(name, '')",
                "COALESCE(email, '')",
                "company_key",
            ],
        );
    }
    match q.group {
        UserGroup::Total => {}
        UserGroup::Active => w.and("enabled".into()),
        UserGroup::Blocked => w.and("NOT enabled".into()),
        UserGroup::Admins => w.and(ADMIN_ROLE.into()),
    }
    w
}

/// A user holding the `ADMIN` role (`roles` is a comma-separated list; `NOTADMIN` is not).
pub(super) const ADMIN_ROLE: &str = "(',' || roles || ',') LIKE '%,ADMIN,%'";

/// Seed 003's user statistics over the users matching `cond`, one row of four counts.
pub(super) fn user_stats_sql(cond: &str) -> String {
    format!(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE enabled), COUNT(*) FILTER (WHERE NOT enabled),
                COUNT(*) FILTER (WHERE {ADMIN_ROLE})
         FROM users WHERE {cond}"
    )
}

/// The audit rows matching `q`: its time range and each filter given.
pub(super) fn audit_where(sql: Sql, q: &AuditQuery) -> Where {
    let mut w = Where::new(sql);
    let from = w.bind(Arg::Int(q.from_ms));
    w.and(format!("time_ms >= {from}"));
    let to = w.bind(Arg::Int(q.to_ms));
    w.and(format!("time_ms < {to}"));
    for (col, v) in [
        ("company_key", &q.company_key),
        ("username", &q.username),
        ("service", &q.service),
        ("operation", &q.operation),
        ("method_group", &q.method_group),
    ] {
        if let Some(v) = v {
            let p = w.bind(Arg::Text(v.clone()));
            w.and(format!("{col} = {p}"));
        }
    }
    if let Some(t) = &q.target {
        let p = w.bind(Arg::Text(t.clone()));
        w.and(sql.has_target(&p));
    }
    w
}

/// A statistics query's arguments and placeholders: the UTC window its rows are read from,
/// its local days, and the user and company filters as ` AND a.… = p` to append.
#[derive(Debug)]
pub(super) struct StatsArgs {
    /// The arguments, in placeholder order.
    pub(super) args: Vec<Arg>,
    /// Placeholders of the UTC window `[lo, hi)`.
    pub(super) lo: String,
    /// See `lo`.
    pub(super) hi: String,
    /// Placeholders of the first and last local day (`YYYY-MM-DD` text).
    pub(super) from: String,
    /// See `from`.
    pub(super) to: String,
    /// ` AND a.username = …` and ` AND a.company_key = …`, for the filters given.
    pub(super) extra: String,
}

/// The arguments of `q`. Rows are narrowed by UTC time with a day of margin either side
/// (timezones reach ±12 h), then by the local day computed per row. `Invalid` for a day
/// that is not `YYYY-MM-DD`.
pub(super) fn stats_args(sql: Sql, q: &StatsQuery) -> Result<StatsArgs, StoreError> {
    let day_ms = super::rollup::day_ms;
    let mut w = Where::new(sql);
    let lo = w.bind(Arg::Int(day_ms(&q.from_day)? - 86_400_000));
    let hi = w.bind(Arg::Int(day_ms(&q.to_day)? + 2 * 86_400_000));
    let from = w.bind(Arg::Text(q.from_day.clone()));
    let to = w.bind(Arg::Text(q.to_day.clone()));
    let mut extra = String::new();
    for (col, v) in [("username", &q.username), ("company_key", &q.company_key)] {
        if let Some(v) = v {
            let p = w.bind(Arg::Text(v.clone()));
            extra.push_str(&format!(" AND a.{col} = {p}"));
        }
    }
    Ok(StatsArgs {
        args: w.args,
        lo,
        hi,
        from,
        to,
        extra,
    })
}

/// A user's roles from their stored comma-separated text.
pub(super) fn roles_of(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A fingerprint from its stored 16 hex digits (0 for anything else).
pub(super) fn fingerprint_of(text: &str) -> u64 {
    u64::from_str_radix(text, 16).unwrap_or(0)
}

/// A client address from its stored text: written by us from an address, so anything else
/// reads as none.
pub(super) fn ip_of(text: Option<&str>) -> Option<std::net::IpAddr> {
    text.and_then(|t| t.parse().ok())
}

/// A user's quotas from their stored rows `(from_day, to_day, services JSON)` ordered by
/// window; the base quotas are the row with no window (empty days).
pub(super) fn quotas_of(
    rows: impl IntoIterator<Item = (String, String, String)>,
) -> Result<Quotas, StoreError> {
    let mut q = Quotas::default();
    for (from, to, text) in rows {
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| StoreError::Backend(format!("stored quotas are not JSON: {e}")))?;
        if from.is_empty() {
            q.base = Some(v);
        } else {
            q.windows.push((from, to, v));
        }
    }
    Ok(q)
}

/// The errors both backends answer, worded once.
pub(super) mod errors {
    use super::StoreError;

    /// `company` is taken.
    pub(in crate::store) fn company_taken(key: &str) -> StoreError {
        StoreError::Conflict(format!("company `{key}`"))
    }

    /// No company `key`.
    pub(in crate::store) fn no_company(key: &str) -> StoreError {
        StoreError::NotFound(format!("company `{key}`"))
    }

    /// A user names a company that does not exist.
    pub(in crate::store) fn unknown_company(key: &str) -> StoreError {
        StoreError::Invalid(format!("company `{key}` does not exist"))
    }

    /// A company is deleted under its `users`.
    pub(in crate::store) fn company_has_users(key: &str, users: i64) -> StoreError {
        StoreError::Invalid(format!(
            "company `{key}` still has {users} user(s); delete or move them first"
        ))
    }

    /// `username` is taken.
    pub(in crate::store) fn user_taken(username: &str) -> StoreError {
        StoreError::Conflict(format!("user `{username}`"))
    }

    /// No user `username`.
    pub(in crate::store) fn no_user(username: &str) -> StoreError {
        StoreError::NotFound(format!("user `{username}`"))
    }

    /// A key names a user that does not exist.
    pub(in crate::store) fn unknown_user(username: &str) -> StoreError {
        StoreError::Invalid(format!("user `{username}` does not exist"))
    }

    /// Which rule a new API key broke, as the backend reported it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(in crate::store) enum KeyClash {
        /// Its user does not exist.
        NoUser,
        /// Its id is taken.
        Id,
        /// Its secret's hash is taken (another key has the same secret).
        Secret,
    }

    /// A new key refused: `Invalid` for an unknown user, `Conflict` for a taken id or secret.
    pub(in crate::store) fn key_refused(clash: KeyClash, id: &str, username: &str) -> StoreError {
        match clash {
            KeyClash::NoUser => unknown_user(username),
            KeyClash::Id => StoreError::Conflict(format!("key `{id}`")),
            KeyClash::Secret => StoreError::Conflict("a key with this secret".to_owned()),
        }
    }

    /// `username` has no key `id`.
    pub(in crate::store) fn no_key(username: &str, id: &str) -> StoreError {
        StoreError::NotFound(format!("key `{id}` of `{username}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(group: UserGroup, company: Option<&str>, filter: Option<&str>) -> UserQuery {
        UserQuery {
            list: ListQuery {
                offset: 0,
                limit: 10,
                filter: filter.map(str::to_owned),
                sort_field: None,
                descending: false,
            },
            company_key: company.map(str::to_owned),
            group,
        }
    }

    #[test]
    fn like_takes_the_callers_wildcards_literally() {
        assert_eq!(like("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
        assert_eq!(like("a%_\\b"), "%a\\%\\_\\\\b%");
        assert_eq!(like(""), "%%");
    }

    #[test]
    fn a_where_clause_numbers_its_placeholders_in_the_backends_style() {
        let q = users(UserGroup::Admins, Some("acme"), Some("an"));
        for (sql, p1, p2, op) in [
            (Sql::Sqlite, "?1", "?2", "LIKE"),
            (Sql::Postgres, "$1", "$2", "ILIKE"),
        ] {
            let scope = user_scope(sql, &q);
            assert_eq!(scope.clause(), format!("company_key = {p1}"));
            let w = user_filters(scope, &q);
            let clause = w.clause();
            assert!(clause.starts_with(&format!("company_key = {p1} AND (username {op} {p2}")));
            assert!(clause.ends_with(&format!("AND {ADMIN_ROLE}")), "{clause}");
            assert_eq!(
                w.args(),
                [Arg::Text("acme".into()), Arg::Text("%an%".into())]
            );
        }
        assert_eq!(Where::new(Sql::Sqlite).clause(), "TRUE");
    }

    #[test]
    fn sorting_reads_only_whitelisted_fields() {
        assert_eq!(COMPANY_SORT.column(Some("detail")), "detail");
        assert_eq!(COMPANY_SORT.column(Some("detail; DROP TABLE x")), "key");
        assert_eq!(AUDIT_SORT.column(Some("service_name")), "service");
        assert_eq!(AUDIT_SORT.column(None), "time_ms");
        assert_eq!(
            Sql::Sqlite.order_by(&USER_SORT, Some("email"), true),
            " ORDER BY email DESC , rowid"
        );
        assert_eq!(
            Sql::Postgres.order_by(&USER_SORT, Some("email"), false),
            " ORDER BY email ASC NULLS FIRST, seq"
        );
        assert_eq!(page(5, 10), " LIMIT 5 OFFSET 10");
    }

    #[test]
    fn audit_filters_bind_every_value_and_search_targets_exactly() {
        let q = AuditQuery {
            offset: 0,
            limit: 10,
            from_ms: 1,
            to_ms: 2,
            company_key: None,
            username: Some("ann".into()),
            service: None,
            operation: None,
            method_group: None,
            target: Some("42".into()),
            sort_field: None,
            descending: false,
        };
        let w = audit_where(Sql::Postgres, &q);
        assert_eq!(
            w.clause(),
            "time_ms >= $1 AND time_ms < $2 AND username = $3 AND targets ? $4"
        );
        assert_eq!(w.args().len(), 4);
        assert!(
            audit_where(Sql::Sqlite, &q)
                .clause()
                .contains("json_each.value = ?4")
        );
    }

    #[test]
    fn statistics_read_a_day_of_margin_and_refuse_a_bad_day() {
        let q = StatsQuery {
            from_day: "2025-03-10".into(),
            to_day: "2025-03-10".into(),
            username: None,
            company_key: Some("acme".into()),
        };
        let a = stats_args(Sql::Sqlite, &q).unwrap();
        let midnight = 1_741_564_800_000;
        assert_eq!(a.args[0], Arg::Int(midnight - 86_400_000));
        assert_eq!(a.args[1], Arg::Int(midnight + 2 * 86_400_000));
        assert_eq!((a.lo.as_str(), a.to.as_str()), ("?1", "?4"));
        assert_eq!(a.extra, " AND a.company_key = ?5");
        let bad = StatsQuery {
            from_day: "10/03/2025".into(),
            ..q
        };
        assert!(matches!(
            stats_args(Sql::Postgres, &bad),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn stored_values_read_back() {
        assert_eq!(roles_of("ADMIN,,USER"), ["ADMIN", "USER"]);
        assert!(roles_of("").is_empty());
        assert_eq!(fingerprint_of("00000000000000ff"), 255);
        assert_eq!(fingerprint_of("zz"), 0);
        assert_eq!(ip_of(Some("::1")), Some("::1".parse().unwrap()));
        assert_eq!(ip_of(Some("nope")), None);
        let q = quotas_of([
            (String::new(), String::new(), "{\"a\":1}".to_owned()),
            ("2025-01-01".into(), "2025-01-31".into(), "[]".into()),
        ])
        .unwrap();
        assert_eq!(q.base, Some(serde_json::json!({"a": 1})));
        assert_eq!(q.windows.len(), 1);
        assert!(matches!(
            quotas_of([(String::new(), String::new(), "{".to_owned())]),
            Err(StoreError::Backend(_))
        ));
    }
}

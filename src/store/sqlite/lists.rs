//! The admin API's lists and reports, each one query (or a few) on the read connection:
//! companies, users with their statistics, the audit trail, and points per user and day.

use super::*;

pub(super) fn list_companies(
    conn: &mut Connection,
    q: ListQuery,
) -> Result<Page<Company, u64>, StoreError> {
    let overall: i64 = conn
        .query_row("SELECT COUNT(*) FROM companies", [], |r| r.get(0))
        .map_err(backend)?;
    let (cond, args): (&str, Vec<String>) = match &q.filter {
        Some(f) => (
            "(key LIKE ?1 ESCAPE '\\' OR COALESCE(detail, '') LIKE ?1 ESCAPE '\\')",
            vec![like(f)],
        ),
        None => ("1 = 1", Vec::new()),
    };
    let filtered: i64 = conn
        .query_row(
            &format!("SELECT COUNT(*) FROM companies WHERE {cond}"),
            params_from_iter(args.iter()),
            |r| r.get(0),
        )
        .map_err(backend)?;
    let sql = format!(
        "SELECT key, detail, enabled FROM companies WHERE {cond}{} LIMIT {} OFFSET {}",
        order(
            q.sort_field.as_deref(),
            &[("key", "key"), ("detail", "detail")],
            "key",
            q.descending
        ),
        q.limit,
        q.offset
    );
    let mut st = conn.prepare(&sql).map_err(backend)?;
    let items = st
        .query_map(params_from_iter(args.iter()), company_row)
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok(Page {
        items,
        overall: overall as u64,
        filtered: filtered as u64,
    })
}

pub(super) fn list_users(
    conn: &mut Connection,
    q: UserQuery,
) -> Result<Page<User, UserStats>, StoreError> {
    let mut conds = vec!["1 = 1".to_owned()];
    let mut args: Vec<String> = Vec::new();
    if let Some(c) = &q.company_key {
        args.push(c.clone());
        conds.push(format!("company_key = ?{}", args.len()));
    }
    // `overall` is within the caller's scope (a company), before text and group filters.
    let overall = user_stats(conn, &conds.join(" AND "), &args)?;
    if let Some(f) = &q.list.filter {
        args.push(like(f));
        let n = args.len();
        conds.push(format!(
            "(username LIKE ?{n} ESCAPE '\\' OR COALESCE(name, '') LIKE ?{n} ESCAPE '\\'
              OR COALESCE(email, '') LIKE ?{n} ESCAPE '\\' OR company_key LIKE ?{n} ESCAPE '\\')"
        ));
    }
    match q.group {
        UserGroup::Total => {}
        UserGroup::Active => conds.push("enabled = 1".into()),
        UserGroup::Blocked => conds.push("enabled = 0".into()),
        UserGroup::Admins => conds.push("(',' || roles || ',') LIKE '%,ADMIN,%'".into()),
    }
    let cond = conds.join(" AND ");
    let filtered = user_stats(conn, &cond, &args)?;
    let sql = format!(
        "SELECT {USER_COLS} FROM users WHERE {cond}{} LIMIT {} OFFSET {}",
        order(
            q.list.sort_field.as_deref(),
            &[
                ("username", "username"),
                ("name", "name"),
                ("email", "email"),
                ("company_key", "company_key"),
                ("enabled", "enabled"),
                ("timezone", "timezone"),
            ],
            "username",
            q.list.descending
        ),
        q.list.limit,
        q.list.offset
    );
    let mut st = conn.prepare(&sql).map_err(backend)?;
    let items = st
        .query_map(params_from_iter(args.iter()), user_row)
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok(Page {
        items,
        overall,
        filtered,
    })
}

pub(super) fn list_audit(
    conn: &mut Connection,
    q: AuditQuery,
) -> Result<Page<AuditRow, u64>, StoreError> {
    let overall: i64 = conn
        .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
        .map_err(backend)?;
    let mut conds = vec!["time_ms >= ?1".to_owned(), "time_ms < ?2".to_owned()];
    let mut args: Vec<rusqlite::types::Value> = vec![q.from_ms.into(), q.to_ms.into()];
    for (col, v) in [
        ("company_key", &q.company_key),
        ("username", &q.username),
        ("service", &q.service),
        ("operation", &q.operation),
        ("method_group", &q.method_group),
    ] {
        if let Some(v) = v {
            args.push(v.clone().into());
            conds.push(format!("{col} = ?{}", args.len()));
        }
    }
    if let Some(t) = &q.target {
        // An exact element of the array, never a substring of the text.
        args.push(t.clone().into());
        conds.push(format!(
            "EXISTS (SELECT 1 FROM json_each(audit.targets) WHERE json_each.value = ?{})",
            args.len()
        ));
    }
    let cond = conds.join(" AND ");
    let filtered: i64 = conn
        .query_row(
            &format!("SELECT COUNT(*) FROM audit WHERE {cond}"),
            params_from_iter(args.iter()),
            |r| r.get(0),
        )
        .map_err(backend)?;
    let sql = format!(
        "SELECT time_ms, username, company_key, tracecode, server, service, operation,
                method_group, points, duration_ms, status, fingerprint, targets, ip
         FROM audit WHERE {cond}{} LIMIT {} OFFSET {}",
        order(
            q.sort_field.as_deref(),
            &[
                ("time", "time_ms"),
                ("username", "username"),
                ("company_key", "company_key"),
                ("service_name", "service"),
                ("operation_id", "operation"),
                ("method_group", "method_group"),
                ("points", "points"),
                ("duration", "duration_ms"),
            ],
            "time_ms",
            q.descending
        ),
        q.limit,
        q.offset
    );
    let mut st = conn.prepare(&sql).map_err(backend)?;
    let items = st
        .query_map(params_from_iter(args.iter()), |r| {
            Ok(AuditRow {
                time_ms: r.get(0)?,
                username: r.get(1)?,
                company_key: r.get(2)?,
                tracecode: r.get(3)?,
                server: r.get(4)?,
                service: r.get(5)?,
                operation: r.get(6)?,
                method_group: r.get(7)?,
                points: r.get(8)?,
                duration_ms: r.get::<_, i64>(9)? as u64,
                status: r.get(10)?,
                fingerprint: u64::from_str_radix(&r.get::<_, String>(11)?, 16).unwrap_or(0),
                targets: targets_of(r.get_ref(12)?.as_str()?).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        12,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
                // Written by us from an address; anything else reads as none.
                ip: r.get::<_, Option<String>>(13)?.and_then(|t| t.parse().ok()),
            })
        })
        .map_err(backend)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    Ok(Page {
        items,
        overall: overall as u64,
        filtered: filtered as u64,
    })
}

pub(super) fn statistics(conn: &mut Connection, q: StatsQuery) -> Result<Vec<StatRow>, StoreError> {
    // Rows are narrowed by UTC time with a day of margin either side (timezones
    // reach ±12 h), then by the local day computed per row.
    let day_ms = super::super::rollup::day_ms;
    let lo = day_ms(&q.from_day)? - 86_400_000;
    let hi = day_ms(&q.to_day)? + 2 * 86_400_000;
    let mut args: Vec<rusqlite::types::Value> = vec![
        lo.into(),
        hi.into(),
        q.from_day.clone().into(),
        q.to_day.clone().into(),
    ];
    let mut extra = String::new();
    if let Some(u) = &q.username {
        args.push(u.clone().into());
        extra.push_str(&format!(" AND a.username = ?{}", args.len()));
    }
    if let Some(c) = &q.company_key {
        args.push(c.clone().into());
        extra.push_str(&format!(" AND a.company_key = ?{}", args.len()));
    }
    // Days past the retention come from their roll-ups: a user's day is all raw or
    // all rolled up (`rollup`), so the two add up without counting a request twice.
    let sql = format!(
        "WITH d AS (
           SELECT a.username AS u,
                  date(a.time_ms / 1000 + COALESCE(us.timezone, 0) * 3600, 'unixepoch') AS day,
                  a.service AS s, a.method_group AS m, a.fingerprint AS f,
                  SUM(a.points) AS pts, MAX(a.points) AS upts
           FROM audit a LEFT JOIN users us ON us.username = a.username
           WHERE a.time_ms >= ?1 AND a.time_ms < ?2{extra}
           GROUP BY u, day, s, m, f),
         r AS (
           SELECT u, day, s, m, pts, upts FROM d WHERE day >= ?3 AND day <= ?4
           UNION ALL
           SELECT a.username, a.day, a.service, a.method_group, a.points, a.unique_points
           FROM audit_daily a WHERE a.day >= ?3 AND a.day <= ?4{extra})
         SELECT u, day, s, m, SUM(pts), SUM(upts) FROM r
         GROUP BY u, day, s, m ORDER BY u, day, s, m"
    );
    let mut st = conn.prepare(&sql).map_err(backend)?;
    st.query_map(params_from_iter(args.iter()), |r| {
        Ok(StatRow {
            username: r.get(0)?,
            day: r.get(1)?,
            service: r.get(2)?,
            method_group: r.get(3)?,
            points: r.get::<_, i64>(4)? as u64,
            unique_points: r.get::<_, i64>(5)? as u64,
        })
    })
    .map_err(backend)?
    .collect::<Result<Vec<_>, _>>()
    .map_err(backend)
}

//! The admin API's lists and reports on PostgreSQL, each a few queries answered by the
//! database (counts, filters, pages, the statistics' day buckets), the same results as
//! SQLite's (`super::super::sqlite::lists`): `ILIKE` for SQLite's case-insensitive `LIKE`,
//! SQLite's order of NULLs, insertion order for ties.

use super::*;

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

pub(super) async fn list_companies(
    client: &Client,
    q: ListQuery,
) -> Result<Page<Company, u64>, StoreError> {
    let overall: i64 = client
        .query_one("SELECT COUNT(*) FROM companies", &[])
        .await
        .map_err(pg)?
        .get(0);
    let mut params = Params::default();
    let cond = match &q.filter {
        Some(f) => {
            let p = params.push(like(f));
            format!("(key ILIKE {p} ESCAPE '\\' OR COALESCE(detail, '') ILIKE {p} ESCAPE '\\')")
        }
        None => "TRUE".to_owned(),
    };
    let filtered: i64 = client
        .query_one(
            &format!("SELECT COUNT(*) FROM companies WHERE {cond}"),
            &params.refs(),
        )
        .await
        .map_err(pg)?
        .get(0);
    let sql = format!(
        "SELECT key, detail, enabled FROM companies WHERE {cond}{} LIMIT {} OFFSET {}",
        order(
            q.sort_field.as_deref(),
            &[("key", "key"), ("detail", "detail")],
            "key",
            q.descending,
            "seq"
        ),
        q.limit,
        q.offset
    );
    let items = client
        .query(&sql, &params.refs())
        .await
        .map_err(pg)?
        .iter()
        .map(company_row)
        .collect();
    Ok(Page {
        items,
        overall: overall as u64,
        filtered: filtered as u64,
    })
}

pub(super) async fn list_users(
    client: &Client,
    q: UserQuery,
) -> Result<Page<User, UserStats>, StoreError> {
    let mut conds = vec!["TRUE".to_owned()];
    let mut params = Params::default();
    if let Some(c) = &q.company_key {
        let p = params.push(c.clone());
        conds.push(format!("company_key = {p}"));
    }
    // `overall` is within the caller's scope (a company), before text and group filters.
    let overall = user_stats(client, &conds.join(" AND "), &params).await?;
    if let Some(f) = &q.list.filter {
        let p = params.push(like(f));
        conds.push(format!(
            "(username ILIKE {p} ESCAPE '\\' OR COALESCE(name, '') ILIKE {p} ESCAPE '\\'
              OR COALESCE(email, '') ILIKE {p} ESCAPE '\\' OR company_key ILIKE {p} ESCAPE '\\')"
        ));
    }
    match q.group {
        UserGroup::Total => {}
        UserGroup::Active => conds.push("enabled".into()),
        UserGroup::Blocked => conds.push("NOT enabled".into()),
        UserGroup::Admins => conds.push("(',' || roles || ',') LIKE '%,ADMIN,%'".into()),
    }
    let cond = conds.join(" AND ");
    let filtered = user_stats(client, &cond, &params).await?;
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
            q.list.descending,
            "seq"
        ),
        q.list.limit,
        q.list.offset
    );
    let items = client
        .query(&sql, &params.refs())
        .await
        .map_err(pg)?
        .iter()
        .map(|r| user_row_at(r, 0))
        .collect();
    Ok(Page {
        items,
        overall,
        filtered,
    })
}

pub(super) async fn list_audit(
    client: &Client,
    q: AuditQuery,
) -> Result<Page<AuditRow, u64>, StoreError> {
    let overall: i64 = client
        .query_one("SELECT COUNT(*) FROM audit", &[])
        .await
        .map_err(pg)?
        .get(0);
    let mut params = Params::default();
    let mut conds = vec![
        format!("time_ms >= {}", params.push(q.from_ms)),
        format!("time_ms < {}", params.push(q.to_ms)),
    ];
    for (col, v) in [
        ("company_key", &q.company_key),
        ("username", &q.username),
        ("service", &q.service),
        ("operation", &q.operation),
        ("method_group", &q.method_group),
    ] {
        if let Some(v) = v {
            conds.push(format!("{col} = {}", params.push(v.clone())));
        }
    }
    if let Some(t) = &q.target {
        // An exact element of the array, never a substring of the text.
        conds.push(format!("targets ? {}", params.push(t.clone())));
    }
    let cond = conds.join(" AND ");
    let filtered: i64 = client
        .query_one(
            &format!("SELECT COUNT(*) FROM audit WHERE {cond}"),
            &params.refs(),
        )
        .await
        .map_err(pg)?
        .get(0);
    let sql = format!(
        "SELECT time_ms, username, company_key, tracecode, server, service, operation,
                method_group, points, duration_ms, status, fingerprint, targets::text, ip
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
            q.descending,
            "id"
        ),
        q.limit,
        q.offset
    );
    let rows = client.query(&sql, &params.refs()).await.map_err(pg)?;
    let items = rows
        .iter()
        .map(|r| {
            Ok(AuditRow {
                time_ms: r.get(0),
                username: r.get::<_, &str>(1).into(),
                company_key: r.get::<_, &str>(2).into(),
                tracecode: r.get::<_, &str>(3).into(),
                server: r.get::<_, &str>(4).into(),
                service: r.get::<_, &str>(5).into(),
                operation: r.get::<_, &str>(6).into(),
                method_group: r.get::<_, &str>(7).into(),
                points: u32::try_from(r.get::<_, i64>(8)).unwrap_or(u32::MAX),
                duration_ms: r.get::<_, i64>(9) as u64,
                status: u16::try_from(r.get::<_, i32>(10)).unwrap_or(0),
                fingerprint: u64::from_str_radix(r.get(11), 16).unwrap_or(0),
                targets: targets_of(r.get(12))
                    .map_err(|e| StoreError::Backend(format!("stored targets: {e}")))?,
                // Written by us from an address; anything else reads as none.
                ip: r.get::<_, Option<&str>>(13).and_then(|t| t.parse().ok()),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Page {
        items,
        overall: overall as u64,
        filtered: filtered as u64,
    })
}

pub(super) async fn statistics(client: &Client, q: StatsQuery) -> Result<Vec<StatRow>, StoreError> {
    // Rows are narrowed by UTC time with a day of margin either side (timezones reach
    // ±12 h), then by the local day computed per row, as on SQLite.
    let lo = rollup::day_ms(&q.from_day)? - 86_400_000;
    let hi = rollup::day_ms(&q.to_day)? + 2 * 86_400_000;
    let mut params = Params::default();
    let (lo, hi) = (params.push(lo), params.push(hi));
    let (from, to) = (params.push(q.from_day), params.push(q.to_day));
    let mut extra = String::new();
    if let Some(u) = q.username {
        extra.push_str(&format!(" AND a.username = {}", params.push(u)));
    }
    if let Some(c) = q.company_key {
        extra.push_str(&format!(" AND a.company_key = {}", params.push(c)));
    }
    // Days past the retention come from their roll-ups: a user's day is all raw or all
    // rolled up (`rollup`), so the two add up without counting a request twice.
    let sql = format!(
        "WITH d AS (
           SELECT a.username AS u,
                  rosetta_local_day(a.time_ms, COALESCE(us.timezone, 0)) AS day,
                  a.service AS s, a.method_group AS m, a.fingerprint AS f,
                  SUM(a.points) AS pts, MAX(a.points) AS upts
           FROM audit a LEFT JOIN users us ON us.username = a.username
           WHERE a.time_ms >= {lo} AND a.time_ms < {hi}{extra}
           GROUP BY 1, 2, 3, 4, 5),
         r AS (
           SELECT u, day, s, m, pts, upts FROM d
           WHERE day >= {from}::text::date AND day <= {to}::text::date
           UNION ALL
           SELECT a.username, a.day, a.service, a.method_group, a.points, a.unique_points
           FROM audit_daily a
           WHERE a.day >= {from}::text::date AND a.day <= {to}::text::date{extra})
         SELECT u, to_char(day, 'YYYY-MM-DD'), s, m, SUM(pts)::BIGINT, SUM(upts)::BIGINT
         FROM r GROUP BY u, day, s, m ORDER BY u, day, s, m"
    );
    let rows = client.query(&sql, &params.refs()).await.map_err(pg)?;
    Ok(rows
        .iter()
        .map(|r| StatRow {
            username: r.get(0),
            day: r.get(1),
            service: r.get(2),
            method_group: r.get(3),
            points: r.get::<_, i64>(4) as u64,
            unique_points: r.get::<_, i64>(5) as u64,
        })
        .collect())
}

//! The admin API's lists and reports on PostgreSQL, each a few queries answered by the
//! database (counts, filters, pages, the statistics' day buckets), the same results as
//! SQLite's (`super::super::sqlite::lists`): `ILIKE` for SQLite's case-insensitive `LIKE`,
//! SQLite's order of NULLs, insertion order for ties.

use super::*;

pub(super) async fn list_companies(
    client: &Client,
    q: ListQuery,
) -> Result<Page<Company, u64>, StoreError> {
    let overall: i64 = client
        .query_one("SELECT COUNT(*) FROM companies", &[])
        .await
        .map_err(pg)?
        .get(0);
    let w = query::company_where(Sql::Postgres, &q);
    let (cond, params) = (w.clause(), Params::of(w.args()));
    let filtered: i64 = client
        .query_one(
            &format!("SELECT COUNT(*) FROM companies WHERE {cond}"),
            &params.refs(),
        )
        .await
        .map_err(pg)?
        .get(0);
    let sql = format!(
        "SELECT key, detail, enabled FROM companies WHERE {cond}{}{}",
        Sql::Postgres.order_by(&COMPANY_SORT, q.sort_field.as_deref(), q.descending),
        query::page(q.limit, q.offset)
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
    // `overall` is within the caller's scope (a company), before text and group filters.
    let scope = query::user_scope(Sql::Postgres, &q);
    let overall = user_stats(client, &scope).await?;
    let w = query::user_filters(scope, &q);
    let filtered = user_stats(client, &w).await?;
    let sql = format!(
        "SELECT {USER_COLS} FROM users WHERE {}{}{}",
        w.clause(),
        Sql::Postgres.order_by(&USER_SORT, q.list.sort_field.as_deref(), q.list.descending),
        query::page(q.list.limit, q.list.offset)
    );
    let items = client
        .query(&sql, &Params::of(w.args()).refs())
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
    let w = query::audit_where(Sql::Postgres, &q);
    let (cond, params) = (w.clause(), Params::of(w.args()));
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
         FROM audit WHERE {cond}{}{}",
        Sql::Postgres.order_by(&AUDIT_SORT, q.sort_field.as_deref(), q.descending),
        query::page(q.limit, q.offset)
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
                fingerprint: query::fingerprint_of(r.get(11)),
                targets: targets_of(r.get(12))
                    .map_err(|e| StoreError::Backend(format!("stored targets: {e}")))?,
                ip: query::ip_of(r.get(13)),
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
    let a = query::stats_args(Sql::Postgres, &q)?;
    let (lo, hi, from, to, extra) = (&a.lo, &a.hi, &a.from, &a.to, &a.extra);
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
    let rows = client
        .query(&sql, &Params::of(&a.args).refs())
        .await
        .map_err(pg)?;
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

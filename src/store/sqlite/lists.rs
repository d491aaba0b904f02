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
    let w = query::company_where(Sql::Sqlite, &q);
    let cond = w.clause();
    let filtered: i64 = conn
        .query_row(
            &format!("SELECT COUNT(*) FROM companies WHERE {cond}"),
            args(&w),
            |r| r.get(0),
        )
        .map_err(backend)?;
    let sql = format!(
        "SELECT key, detail, enabled FROM companies WHERE {cond}{}{}",
        Sql::Sqlite.order_by(&COMPANY_SORT, q.sort_field.as_deref(), q.descending),
        query::page(q.limit, q.offset)
    );
    let mut st = conn.prepare(&sql).map_err(backend)?;
    let items = st
        .query_map(args(&w), company_row)
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
    // `overall` is within the caller's scope (a company), before text and group filters.
    let scope = query::user_scope(Sql::Sqlite, &q);
    let overall = user_stats(conn, &scope)?;
    let w = query::user_filters(scope, &q);
    let filtered = user_stats(conn, &w)?;
    let sql = format!(
        "SELECT {USER_COLS} FROM users WHERE {}{}{}",
        w.clause(),
        Sql::Sqlite.order_by(&USER_SORT, q.list.sort_field.as_deref(), q.list.descending),
        query::page(q.list.limit, q.list.offset)
    );
    let mut st = conn.prepare(&sql).map_err(backend)?;
    let items = st
        .query_map(args(&w), user_row)
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
    let w = query::audit_where(Sql::Sqlite, &q);
    let cond = w.clause();
    let filtered: i64 = conn
        .query_row(
            &format!("SELECT COUNT(*) FROM audit WHERE {cond}"),
            args(&w),
            |r| r.get(0),
        )
        .map_err(backend)?;
    let sql = format!(
        "SELECT time_ms, username, company_key, tracecode, server, service, operation,
                method_group, points, duration_ms, status, fingerprint, targets, ip
         FROM audit WHERE {cond}{}{}",
        Sql::Sqlite.order_by(&AUDIT_SORT, q.sort_field.as_deref(), q.descending),
        query::page(q.limit, q.offset)
    );
    let mut st = conn.prepare(&sql).map_err(backend)?;
    let items = st
        .query_map(args(&w), |r| {
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
                fingerprint: query::fingerprint_of(&r.get::<_, String>(11)?),
                targets: targets_of(r.get_ref(12)?.as_str()?).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        12,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?,
                ip: query::ip_of(r.get::<_, Option<String>>(13)?.as_deref()),
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
    let a = query::stats_args(Sql::Sqlite, &q)?;
    let (lo, hi, from, to, extra) = (&a.lo, &a.hi, &a.from, &a.to, &a.extra);
    // Days past the retention come from their roll-ups: a user's day is all raw or
    // all rolled up (`rollup`), so the two add up without counting a request twice.
    let sql = format!(
        "WITH d AS (
           SELECT a.username AS u,
                  date(a.time_ms / 1000 + COALESCE(us.timezone, 0) * 3600, 'unixepoch') AS day,
                  a.service AS s, a.method_group AS m, a.fingerprint AS f,
                  SUM(a.points) AS pts, MAX(a.points) AS upts
           FROM audit a LEFT JOIN users us ON us.username = a.username
           WHERE a.time_ms >= {lo} AND a.time_ms < {hi}{extra}
           GROUP BY u, day, s, m, f),
         r AS (
           SELECT u, day, s, m, pts, upts FROM d WHERE day >= {from} AND day <= {to}
           UNION ALL
           SELECT a.username, a.day, a.service, a.method_group, a.points, a.unique_points
           FROM audit_daily a WHERE a.day >= {from} AND a.day <= {to}{extra})
         SELECT u, day, s, m, SUM(pts), SUM(upts) FROM r
         GROUP BY u, day, s, m ORDER BY u, day, s, m"
    );
    let mut st = conn.prepare(&sql).map_err(backend)?;
    st.query_map(params_from_iter(a.args.iter().map(value)), |r| {
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

//! The audit writer's statements on PostgreSQL: a batch of audit rows is one `INSERT …
//! SELECT FROM UNNEST` of one array per column (one statement, one round trip, whatever the
//! batch's size), each row keyed by its idempotency key (`ON CONFLICT (id) DO NOTHING`: a
//! batch retried after a failure, or replayed from the spill file, writes no row twice);
//! captures in one transaction; the retention's roll-up of a day in one statement, under an
//! advisory lock so nodes sharing the database take the steps one at a time.

use super::*;

/// The advisory lock the audit retention steps run under (`retain` in ASCII), apart from
/// the migrations' session lock.
const RETENTION_LOCK: i64 = 0x7265_7461_696e;

const INSERT_AUDIT: &str = "INSERT INTO audit (id, time_ms, username, company_key, tracecode,
        client, server, service, operation, method_group, points, duration_ms, status,
        fingerprint, targets, ip)
     SELECT id, time_ms, username, company_key, tracecode, client, server, service, operation,
            method_group, points, duration_ms, status, fingerprint, targets::jsonb, ip
     FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                 $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[],
                 $13::int[], $14::text[], $15::text[], $16::text[])
          AS t(id, time_ms, username, company_key, tracecode, client, server, service,
               operation, method_group, points, duration_ms, status, fingerprint, targets, ip)
     ON CONFLICT (id) DO NOTHING";

/// The batch as one array per column.
#[derive(Default)]
struct Columns<'a> {
    id: Vec<i64>,
    time_ms: Vec<i64>,
    username: Vec<&'a str>,
    company_key: Vec<&'a str>,
    tracecode: Vec<&'a str>,
    client: Vec<String>,
    server: Vec<&'a str>,
    service: Vec<&'a str>,
    operation: Vec<&'a str>,
    method_group: Vec<&'a str>,
    points: Vec<i64>,
    duration_ms: Vec<i64>,
    status: Vec<i32>,
    fingerprint: Vec<String>,
    targets: Vec<String>,
    ip: Vec<Option<String>>,
}

impl<'a> Columns<'a> {
    fn of(rows: &'a [Keyed]) -> Result<Self, StoreError> {
        let mut c = Columns::default();
        let mut targets = Vec::new();
        for k in rows {
            let r = &k.row;
            c.id.push(k.rid);
            c.time_ms.push(r.time_ms);
            c.username.push(&r.username);
            c.company_key.push(&r.company_key);
            c.tracecode.push(&r.tracecode);
            c.client.push(r.client());
            c.server.push(&r.server);
            c.service.push(&r.service);
            c.operation.push(&r.operation);
            c.method_group.push(&r.method_group);
            c.points.push(i64::from(r.points));
            c.duration_ms
                .push(i64::try_from(r.duration_ms).unwrap_or(i64::MAX));
            c.status.push(i32::from(r.status));
            c.fingerprint.push(format!("{:016x}", r.fingerprint));
            targets.clear();
            push_targets(&mut targets, &r.targets)?;
            c.targets.push(
                String::from_utf8(targets.clone())
                    .map_err(|e| StoreError::Backend(format!("targets are not UTF-8: {e}")))?,
            );
            c.ip.push(r.ip.map(|a| a.to_string()));
        }
        Ok(c)
    }
}

impl writer::Sink for PgSink {
    fn write_audit(&mut self, rows: &[Keyed]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let c = Columns::of(rows)?;
        self.block(async |client| {
            let st = client.prepare_cached(INSERT_AUDIT).await.map_err(pg)?;
            client
                .execute(
                    &st,
                    &[
                        &c.id,
                        &c.time_ms,
                        &c.username,
                        &c.company_key,
                        &c.tracecode,
                        &c.client,
                        &c.server,
                        &c.service,
                        &c.operation,
                        &c.method_group,
                        &c.points,
                        &c.duration_ms,
                        &c.status,
                        &c.fingerprint,
                        &c.targets,
                        &c.ip,
                    ],
                )
                .await
                .map_err(pg)?;
            Ok(())
        })
    }

    fn write_captures(
        &mut self,
        captures: &[(String, i64, Vec<CapturedBody>)],
    ) -> Result<(), StoreError> {
        if captures.is_empty() {
            return Ok(());
        }
        self.block(async |client| {
            let tx = client.transaction().await.map_err(pg)?;
            let st = tx
                .prepare_cached(
                    "INSERT INTO captures (tracecode, flow, stage, time_ms, content_type,
                                           truncated, body)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (tracecode, flow, stage) DO UPDATE SET time_ms = EXCLUDED.time_ms,
                        content_type = EXCLUDED.content_type, truncated = EXCLUDED.truncated,
                        body = EXCLUDED.body",
                )
                .await
                .map_err(pg)?;
            for (tc, t, bodies) in captures {
                for b in bodies {
                    tx.execute(
                        &st,
                        &[
                            tc,
                            &b.flow.as_str(),
                            &i16::from(b.stage),
                            t,
                            &b.content_type,
                            &b.truncated,
                            &b.body.as_ref(),
                        ],
                    )
                    .await
                    .map_err(pg)?;
                }
            }
            tx.commit().await.map_err(pg)
        })
    }

    fn retention_step(&mut self, cutoff: Date, after: Option<Date>) -> Result<Step, StoreError> {
        self.block(async |client| {
            // Every node sharing the database runs the retention (nodes started together run
            // it at once): one step at a time, each reading the rows after the last one's
            // commit, or two would add the same rows to a day's totals.
            let tx = client.transaction().await.map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&RETENTION_LOCK])
                .await
                .map_err(pg)?;
            let oldest: Option<i64> = tx
                .query_one("SELECT MIN(time_ms) FROM audit", &[])
                .await
                .map_err(pg)?
                .get(0);
            let Some((day, before_ms)) = rollup::next_day(oldest, cutoff, after) else {
                return Ok(Step::Done);
            };
            // One statement: the roll-up and the delete see the same rows, so a row is
            // either counted in its day's totals and gone, or still raw.
            let rows = tx
                .execute(
                    "WITH t AS (
                       SELECT a.id, a.username, a.company_key, a.service, a.operation,
                              a.method_group, a.points, a.duration_ms, a.status, a.fingerprint,
                              COALESCE(us.timezone, 0) AS tz,
                              rosetta_local_day(a.time_ms, COALESCE(us.timezone, 0)) AS day
                       FROM audit a LEFT JOIN users us ON us.username = a.username
                       WHERE a.time_ms < $1),
                     s AS (
                       SELECT t.*,
                              CASE WHEN status = 429 THEN 429 ELSE status / 100 * 100 END AS class,
                              ROW_NUMBER() OVER (PARTITION BY day, username, service, method_group,
                                                 fingerprint ORDER BY points DESC, id) AS rn
                       FROM t WHERE day <= $2::text::date),
                     rolled AS (
                       INSERT INTO audit_daily (day, day_ms, username, company_key, service,
                                                operation, method_group, status_class, requests,
                                                points, unique_points, duration_ms)
                       SELECT day, ((day - DATE '1970-01-01')::BIGINT * 86400 - MIN(tz) * 3600) * 1000,
                              username, company_key, service, operation, method_group, class,
                              COUNT(*), SUM(points),
                              SUM(CASE WHEN rn = 1 THEN points ELSE 0 END), SUM(duration_ms)
                       FROM s
                       GROUP BY day, username, company_key, service, operation, method_group, class
                       ON CONFLICT (day, username, company_key, service, operation, method_group,
                                    status_class)
                       DO UPDATE SET requests = audit_daily.requests + EXCLUDED.requests,
                                     points = audit_daily.points + EXCLUDED.points,
                                     unique_points = audit_daily.unique_points + EXCLUDED.unique_points,
                                     duration_ms = audit_daily.duration_ms + EXCLUDED.duration_ms)
                     DELETE FROM audit WHERE id IN (SELECT id FROM s)",
                    &[&before_ms, &day.to_string()],
                )
                .await
                .map_err(pg)?;
            tx.commit().await.map_err(pg)?;
            Ok(Step::Rolled { through: day, rows })
        })
    }
}

//! Writing audit rows and captures in batches: multi-row `INSERT`s of a few fixed sizes,
//! each row keyed so a replayed batch writes nothing twice.

use super::*;

/// The writer thread's own connection.
impl writer::Sink for Connection {
    fn write_audit(&mut self, rows: &[Keyed]) -> Result<(), StoreError> {
        write_audit(self, rows)
    }

    fn write_captures(
        &mut self,
        captures: &[(String, i64, Vec<CapturedBody>)],
    ) -> Result<(), StoreError> {
        write_captures(self, captures)
    }

    fn retention_step(
        &mut self,
        cutoff: time::Date,
        after: Option<time::Date>,
    ) -> Result<super::super::rollup::Step, StoreError> {
        super::super::rollup::step(self, cutoff, after)
    }
}

pub(in crate::store) fn write_captures(
    conn: &mut Connection,
    captures: &[(String, i64, Vec<CapturedBody>)],
) -> Result<(), StoreError> {
    if captures.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction().map_err(backend)?;
    {
        let mut st = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO captures (tracecode, flow, stage, time_ms, content_type, truncated, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(backend)?;
        for (tc, t, bodies) in captures {
            for b in bodies {
                st.execute(params![
                    tc,
                    b.flow.as_str(),
                    b.stage,
                    t,
                    b.content_type,
                    b.truncated,
                    b.body.as_ref()
                ])
                .map_err(backend)?;
            }
        }
    }
    tx.commit().map_err(backend)
}

/// Rows per `INSERT` statement, largest first: a batch is written as statements of 64 rows,
/// then of 8, then single rows. One statement per row spent a sixth of the writer's time
/// starting and halting the statement rather than inserting (`sqlite3VdbeHalt`, resets).
pub(super) const INSERT_SIZES: [usize; 3] = [64, 8, 1];

/// The audit table's columns, in the order [`write_audit`] binds them.
pub(super) const AUDIT_COLUMNS: usize = 16;

/// `INSERT INTO audit … VALUES (…), (…)` for the `i`-th of [`INSERT_SIZES`].
pub(super) fn audit_insert_sql(i: usize) -> &'static str {
    static SQL: std::sync::LazyLock<[String; 3]> = std::sync::LazyLock::new(|| {
        INSERT_SIZES.map(|n| {
            let one = format!("({})", vec!["?"; AUDIT_COLUMNS].join(","));
            format!(
                "INSERT OR IGNORE INTO audit (time_ms, username, company_key, tracecode, client,
                 server, service, operation, method_group, points, duration_ms, status,
                 fingerprint, targets, ip, id)
                 VALUES {}",
                vec![one; n].join(",")
            )
        })
    });
    &SQL[i]
}

/// Writes `rows` in one transaction; a row whose key is already in the table is skipped
/// (a replay of the spill file after a partial success).
pub(in crate::store) fn write_audit(
    conn: &mut Connection,
    rows: &[Keyed],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction().map_err(backend)?;
    // The derived texts are written into buffers reused for every row, not `format!`
    // allocations per row (~3% of the writer's time in-process); binding copies them, so
    // one set serves every row of a statement.
    let (mut client, mut fingerprint, mut ip) = (String::new(), String::new(), String::new());
    let mut targets = Vec::new();
    let mut rest = rows;
    for (i, size) in INSERT_SIZES.into_iter().enumerate() {
        if rest.len() < size {
            continue;
        }
        let mut st = tx.prepare_cached(audit_insert_sql(i)).map_err(backend)?;
        while rest.len() >= size {
            let (chunk, after) = rest.split_at(size);
            for (j, k) in chunk.iter().enumerate() {
                let r = &k.row;
                client.clear();
                crate::identity::push_client_label(&mut client, &r.company_key, &r.username);
                fingerprint.clear();
                let _ = write!(fingerprint, "{:016x}", r.fingerprint);
                targets.clear();
                push_targets(&mut targets, &r.targets)?;
                // serde_json writes UTF-8 only; a failure here would be a bug, not data.
                let targets_text = std::str::from_utf8(&targets)
                    .map_err(|e| StoreError::Backend(format!("targets are not UTF-8: {e}")))?;
                let duration_ms = r.duration_ms as i64;
                ip.clear();
                if let Some(addr) = r.ip {
                    let _ = write!(ip, "{addr}");
                }
                let ip = r.ip.map(|_| ip.as_str());
                let values: [&dyn rusqlite::ToSql; AUDIT_COLUMNS] = [
                    &r.time_ms,
                    &&*r.username,
                    &&*r.company_key,
                    &&*r.tracecode,
                    &client.as_str(),
                    &&*r.server,
                    &&*r.service,
                    &&*r.operation,
                    &&*r.method_group,
                    &r.points,
                    &duration_ms,
                    &r.status,
                    &fingerprint.as_str(),
                    &targets_text,
                    &ip,
                    &k.rid,
                ];
                for (k, v) in values.into_iter().enumerate() {
                    st.raw_bind_parameter(j * AUDIT_COLUMNS + k + 1, v)
                        .map_err(backend)?;
                }
            }
            st.raw_execute().map_err(backend)?;
            rest = after;
        }
    }
    tx.commit().map_err(backend)
}

/// `targets` as the JSON array of strings the `targets` column keeps, appended to `out`.
pub(in crate::store) fn push_targets(
    out: &mut Vec<u8>,
    targets: &[Arc<str>],
) -> Result<(), StoreError> {
    out.push(b'[');
    for (i, t) in targets.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, &**t)
            .map_err(|e| StoreError::Backend(format!("targets do not serialize: {e}")))?;
    }
    out.push(b']');
    Ok(())
}

/// The `targets` column read back.
pub(in crate::store) fn targets_of(text: &str) -> Result<Arc<[Arc<str>]>, serde_json::Error> {
    // Most rows have none: no parse, no allocation.
    if text == "[]" {
        return Ok(Arc::from([]));
    }
    let ids: Vec<String> = serde_json::from_str(text)?;
    Ok(ids.into_iter().map(Arc::from).collect())
}

//! The audit spill file: rows the writer could not commit after its retries, as JSON lines
//! next to the store (`<store>.audit-spill.jsonl`, created 0600: it names users and their
//! addresses), replayed into the table when writes succeed again and at start.
//!
//! Each line carries the row's idempotency key, so a replay that half succeeded (or a crash
//! between the replay's commit and the file's removal) writes no row twice: the key is the
//! row's `id`, and `INSERT OR IGNORE` skips what is already there.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{AuditRow, StoreError};

/// An audit row with its idempotency key (written as the row's `id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Keyed {
    /// Unique per row: the store's boot number in the high bits, a per-process sequence in
    /// the low 40.
    pub(super) rid: i64,
    pub(super) row: AuditRow,
}

/// One line of the spill file.
#[derive(Serialize, Deserialize)]
struct Line {
    rid: i64,
    time_ms: i64,
    username: String,
    company_key: String,
    tracecode: String,
    server: String,
    service: String,
    operation: String,
    method_group: String,
    points: u32,
    duration_ms: u64,
    status: u16,
    fingerprint: u64,
    targets: Vec<String>,
    ip: Option<std::net::IpAddr>,
}

impl From<&Keyed> for Line {
    fn from(k: &Keyed) -> Self {
        let r = &k.row;
        Line {
            rid: k.rid,
            time_ms: r.time_ms,
            username: r.username.to_string(),
            company_key: r.company_key.to_string(),
            tracecode: r.tracecode.to_string(),
            server: r.server.to_string(),
            service: r.service.to_string(),
            operation: r.operation.to_string(),
            method_group: r.method_group.to_string(),
            points: r.points,
            duration_ms: r.duration_ms,
            status: r.status,
            fingerprint: r.fingerprint,
            targets: r.targets.iter().map(|t| t.to_string()).collect(),
            ip: r.ip,
        }
    }
}

impl From<Line> for Keyed {
    fn from(l: Line) -> Self {
        Keyed {
            rid: l.rid,
            row: AuditRow {
                time_ms: l.time_ms,
                username: l.username.into(),
                company_key: l.company_key.into(),
                tracecode: l.tracecode.into(),
                server: l.server.into(),
                service: l.service.into(),
                operation: l.operation.into(),
                method_group: l.method_group.into(),
                points: l.points,
                duration_ms: l.duration_ms,
                status: l.status,
                fingerprint: l.fingerprint,
                targets: l.targets.into_iter().map(Arc::from).collect(),
                ip: l.ip,
            },
        }
    }
}

/// The spill file of one store.
#[derive(Debug)]
pub(super) struct Spill {
    path: PathBuf,
}

/// What reading the spill file found.
#[derive(Debug, Default)]
pub(super) struct Replay {
    /// The rows, in the order they were spilled.
    pub(super) rows: Vec<Keyed>,
    /// Lines that do not parse (a line cut short by a crash while it was appended).
    pub(super) bad_lines: Vec<String>,
}

fn io(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{}: {e}", path.display()))
}

impl Spill {
    /// The spill file of the store at `store`.
    pub(super) fn next_to(store: &Path) -> Self {
        let mut name = store.as_os_str().to_owned();
        name.push(".audit-spill.jsonl");
        Self {
            path: PathBuf::from(name),
        }
    }

    /// Where the file is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `rows` and syncs them to disk: once this returns, they are durable.
    pub(super) fn append(&self, rows: &[Keyed]) -> Result<(), StoreError> {
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let file = opts.open(&self.path).map_err(|e| io(&self.path, e))?;
        let mut out = std::io::BufWriter::new(file);
        for k in rows {
            serde_json::to_writer(&mut out, &Line::from(k))
                .map_err(|e| StoreError::Backend(format!("a spilled row: {e}")))?;
            out.write_all(b"\n").map_err(|e| io(&self.path, e))?;
        }
        let file = out
            .into_inner()
            .map_err(|e| io(&self.path, e.into_error()))?;
        file.sync_data().map_err(|e| io(&self.path, e))
    }

    /// Every row in the file; none when there is no file.
    pub(super) fn read(&self) -> Result<Replay, StoreError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replay::default()),
            Err(e) => return Err(io(&self.path, e)),
        };
        let mut replay = Replay::default();
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| io(&self.path, e))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Line>(&line) {
                Ok(l) => replay.rows.push(l.into()),
                Err(_) => replay.bad_lines.push(line),
            }
        }
        Ok(replay)
    }

    /// How many rows the file holds (lines that parse or not), without keeping them.
    pub(super) fn count(&self) -> Result<u64, StoreError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(&self.path, e)),
        };
        let mut n = 0;
        for line in BufReader::new(file).lines() {
            if !line.map_err(|e| io(&self.path, e))?.trim().is_empty() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Empties the file once its rows are in the table.
    pub(super) fn clear(&self) -> Result<(), StoreError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&self.path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(rid: i64) -> Keyed {
        Keyed {
            rid,
            row: AuditRow {
                time_ms: 1_000 + rid,
                username: "ann".into(),
                company_key: "acme".into(),
                tracecode: format!("tc{rid}").into(),
                server: "node".into(),
                service: "SVC".into(),
                operation: "op".into(),
                method_group: "READ".into(),
                points: 3,
                duration_ms: 7,
                status: 499,
                fingerprint: u64::MAX - rid as u64,
                targets: [Arc::<str>::from("a\"b"), Arc::from("c")]
                    .into_iter()
                    .collect(),
                ip: Some(std::net::IpAddr::from([10, 0, 0, 1])),
            },
        }
    }

    #[test]
    fn rows_round_trip_through_a_private_file_and_a_cut_line_is_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let spill = Spill::next_to(&dir.path().join("r.db"));
        assert_eq!(spill.path(), dir.path().join("r.db.audit-spill.jsonl"));
        assert_eq!(spill.read().unwrap().rows, [], "no file, no rows");
        spill.append(&[keyed(1), keyed(2)]).unwrap();
        spill.append(&[keyed(3)]).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(spill.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A crash while appending leaves half a line.
        let mut f = OpenOptions::new().append(true).open(spill.path()).unwrap();
        f.write_all(b"{\"rid\":4,\"time").unwrap();
        assert_eq!(spill.count().unwrap(), 4);
        let replay = spill.read().unwrap();
        assert_eq!(replay.rows, [keyed(1), keyed(2), keyed(3)]);
        assert_eq!(replay.bad_lines, ["{\"rid\":4,\"time"]);
        spill.clear().unwrap();
        assert_eq!(spill.count().unwrap(), 0);
        spill.clear().unwrap();
    }
}

//! Audit retention (`store.audit_days`): raw rows older than the retention are rolled up
//! into `audit_daily` (per user's local day, user, company, service, operation, method
//! group and status class: requests, points, unique points, duration) and deleted, in one
//! transaction per day, by the writer thread.
//!
//! A day is the user's local day, computed as the statistics compute it (the user's current
//! timezone, UTC for a deleted user), and each step rolls up every row of the days it takes:
//! a (user, day) is either all raw or all rolled up, so the statistics add the two sources
//! without counting a request twice. Unique points (a request fingerprint's largest charge,
//! once per day) are credited to the group of the row that holds that charge, so summing the
//! groups gives the day's unique points exactly. Status 429 is kept apart from the other 4xx:
//! quota usage read back from the trail excludes it.

use rusqlite::{Connection, params};
use time::Date;

use super::StoreError;

const DAY_MS: i64 = 86_400_000;
/// Timezones reach ±12 h: a UTC instant this far either side of a day can be in it locally.
const TZ_MARGIN_MS: i64 = 12 * 3_600_000;

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn midnight_ms(d: Date) -> i64 {
    d.midnight().assume_utc().unix_timestamp() * 1000
}

fn date_of(ms: i64) -> Date {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .map_or(Date::MIN, time::OffsetDateTime::date)
}

/// The first local day kept when it is `now_ms` and rows are kept `days` days.
pub(super) fn cutoff(now_ms: i64, days: u32) -> Date {
    date_of(now_ms)
        .checked_sub(time::Duration::days(i64::from(days)))
        .unwrap_or(Date::MIN)
}

/// What one step did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Rolled up and deleted every row of local days up to `through` (how many rows).
    Rolled {
        /// The last local day the step took.
        through: Date,
        /// Raw rows rolled up and deleted.
        rows: u64,
    },
    /// Nothing older than the cutoff is left.
    Done,
}

/// The local day a step takes, from the oldest raw row's time, and the UTC time before
/// which every row of that day (or earlier) lies; `None` when nothing before `cutoff` is
/// left. Both backends' steps take their days by it.
pub(super) fn next_day(
    oldest: Option<i64>,
    cutoff: Date,
    after: Option<Date>,
) -> Option<(Date, i64)> {
    // The oldest row's local day is at most a day before its UTC date.
    let mut day = date_of(oldest?).previous_day().unwrap_or(Date::MIN);
    if let Some(prev) = after.and_then(Date::next_day) {
        day = day.max(prev);
    }
    (day < cutoff).then(|| (day, midnight_ms(day) + DAY_MS + TZ_MARGIN_MS))
}

/// Unix milliseconds of the UTC midnight starting the day `d` (`YYYY-MM-DD`); `Invalid`
/// when `d` is not such a date.
pub(super) fn day_ms(d: &str) -> Result<i64, StoreError> {
    let date = Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| StoreError::Invalid(format!("`{d}` is not a YYYY-MM-DD date")))?;
    Ok(midnight_ms(date))
}

/// Rolls up and deletes the raw rows of the oldest local day(s) before `cutoff` not yet
/// taken (after `after`, the last day a previous step took in this run).
pub(super) fn step(
    conn: &mut Connection,
    cutoff: Date,
    after: Option<Date>,
) -> Result<Step, StoreError> {
    let oldest: Option<i64> = conn
        .query_row("SELECT MIN(time_ms) FROM audit", [], |r| r.get(0))
        .map_err(backend)?;
    let Some((day, before_ms)) = next_day(oldest, cutoff, after) else {
        return Ok(Step::Done);
    };
    let through = day.to_string();
    let tx = conn.transaction().map_err(backend)?;
    tx.execute(
        "WITH t AS (
           SELECT a.id, a.username, a.company_key, a.service, a.operation, a.method_group,
                  a.points, a.duration_ms, a.status, a.fingerprint,
                  COALESCE(us.timezone, 0) AS tz,
                  date(a.time_ms / 1000 + COALESCE(us.timezone, 0) * 3600, 'unixepoch') AS day
           FROM audit a LEFT JOIN users us ON us.username = a.username
           WHERE a.time_ms < ?1),
         s AS (
           SELECT t.*,
                  CASE WHEN status = 429 THEN 429 ELSE status / 100 * 100 END AS class,
                  ROW_NUMBER() OVER (PARTITION BY day, username, service, method_group, fingerprint
                                     ORDER BY points DESC, id) AS rn
           FROM t WHERE day <= ?2)
         INSERT INTO audit_daily (day, day_ms, username, company_key, service, operation,
                                  method_group, status_class, requests, points, unique_points,
                                  duration_ms)
         SELECT day, (CAST(strftime('%s', day) AS INTEGER) - MIN(tz) * 3600) * 1000,
                username, company_key, service, operation, method_group, class, COUNT(*),
                SUM(points), SUM(CASE WHEN rn = 1 THEN points ELSE 0 END), SUM(duration_ms)
         FROM s WHERE 1
         GROUP BY day, username, company_key, service, operation, method_group, class
         ON CONFLICT (day, username, company_key, service, operation, method_group, status_class)
         DO UPDATE SET requests = requests + excluded.requests,
                       points = points + excluded.points,
                       unique_points = unique_points + excluded.unique_points,
                       duration_ms = duration_ms + excluded.duration_ms",
        params![before_ms, through],
    )
    .map_err(backend)?;
    let rows = tx
        .execute(
            "DELETE FROM audit WHERE id IN (
               SELECT a.id FROM audit a LEFT JOIN users us ON us.username = a.username
               WHERE a.time_ms < ?1
                 AND date(a.time_ms / 1000 + COALESCE(us.timezone, 0) * 3600, 'unixepoch') <= ?2)",
            params![before_ms, through],
        )
        .map_err(backend)?;
    tx.commit().map_err(backend)?;
    Ok(Step::Rolled {
        through: day,
        rows: rows as u64,
    })
}

/// When retention runs: once a day on the writer's clock, one step per writer tick so the
/// audit batches keep being written between steps.
#[derive(Debug)]
pub(super) struct Retention {
    days: u32,
    wall: crate::clock::WallClock,
    /// When the next run starts, in Unix milliseconds (the first at the writer's start).
    next_ms: i64,
    /// The run under way: its cutoff and the last day it took.
    run: Option<(Date, Option<Date>)>,
}

impl Retention {
    /// Keeps `days` days (0: forever), dated by `wall`.
    pub(super) fn new(days: u32, wall: crate::clock::WallClock) -> Self {
        Self {
            days,
            wall,
            next_ms: i64::MIN,
            run: None,
        }
    }

    /// Takes one step when a run is due or under way.
    pub(super) fn tick(&mut self, sink: &mut impl super::writer::Sink) {
        if self.days == 0 {
            return;
        }
        let now = self.wall.now_ms();
        let (cut, after) = match self.run {
            Some(run) => run,
            None if now >= self.next_ms => (cutoff(now, self.days), None),
            None => return,
        };
        match sink.retention_step(cut, after) {
            Ok(Step::Rolled { through, rows }) => {
                tracing::info!(day = %through, rows, "audit rows rolled up and deleted");
                self.run = Some((cut, Some(through)));
            }
            Ok(Step::Done) => {
                self.run = None;
                self.next_ms = now + DAY_MS;
            }
            Err(e) => {
                // Tried again in an hour; the rows stay raw meanwhile, nothing is lost.
                tracing::error!(error = %e, "audit retention failed");
                self.run = None;
                self.next_ms = now + DAY_MS / 24;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{
        AuditRow, AuditSink, Company, Directory, QuotaSettings, SqliteStore, Statistics,
        StatsQuery, User,
    };

    /// 2025-03-10T00:00:00Z.
    const T0: i64 = 1_741_564_800_000;
    const HOUR: i64 = 3_600_000;

    fn row(user: &str, t: i64, points: u32, status: u16, fingerprint: u64) -> AuditRow {
        AuditRow {
            time_ms: t,
            username: user.into(),
            company_key: "acme".into(),
            tracecode: format!("tc-{user}-{t}").into(),
            server: "test".into(),
            service: "SVC".into(),
            operation: if fingerprint % 2 == 0 {
                "a.get"
            } else {
                "b.get"
            }
            .into(),
            method_group: "READ".into(),
            points,
            duration_ms: 10,
            status,
            fingerprint,
            targets: Arc::from([]),
            ip: None,
        }
    }

    async fn store_with_users(dir: &std::path::Path) -> SqliteStore {
        // No retention of its own: the test takes the steps.
        let s = SqliteStore::open(&dir.join("r.db")).unwrap();
        s.create_company(Company::fixture("acme")).await.unwrap();
        for (name, tz) in [("ann", 5), ("bob", -8)] {
            s.create_user(
                User {
                    timezone: tz,
                    ..User::fixture(name, "acme")
                },
                None,
            )
            .await
            .unwrap();
        }
        s
    }

    fn all_days() -> StatsQuery {
        StatsQuery {
            from_day: "2025-03-01".into(),
            to_day: "2025-03-20".into(),
            username: None,
            company_key: None,
        }
    }

    async fn run_to_done(s: &SqliteStore, cut: Date) -> Vec<Step> {
        s.with(move |conn| {
            let (mut steps, mut after) = (Vec::new(), None);
            loop {
                let st = step(conn, cut, after)?;
                if let Step::Rolled { through, .. } = st {
                    after = Some(through);
                }
                let done = st == Step::Done;
                steps.push(st);
                if done || steps.len() > 100 {
                    return Ok(steps);
                }
            }
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn rolled_up_days_read_the_same_in_statistics_and_quota_usage() {
        let dir = tempfile::tempdir().unwrap();
        let s = store_with_users(dir.path()).await;
        // Four UTC days of rows for a user east (+5) and one west (-8) of UTC, some near
        // midnight (another local day), repeated fingerprints, a 429 and a 500.
        for d in 0..4 {
            let day = T0 + d * 24 * HOUR;
            for (user, t, points, status, fp) in [
                ("ann", day + HOUR, 2, 200, 1),
                ("ann", day + 2 * HOUR, 3, 200, 1),
                ("ann", day + 20 * HOUR, 5, 200, 2),
                ("ann", day + 21 * HOUR, 1, 429, 3),
                ("bob", day + 3 * HOUR, 4, 200, 4),
                ("bob", day + 9 * HOUR, 4, 500, 4),
                ("bob", day + 23 * HOUR, 7, 200, 5),
                ("gone", day + 12 * HOUR, 1, 200, 6),
            ] {
                s.record_audit(row(user, t, points, status, fp));
            }
        }
        s.flush().await.unwrap();
        let before = s.statistics(all_days()).await.unwrap();
        let used = |user: &'static str, from: i64, to: i64| {
            s.points_used(user.into(), "SVC".into(), "READ".into(), from, to)
        };
        // ann's local 2025-03-11 (+5): from 2025-03-10T19:00Z.
        let ann_day = T0 + 24 * HOUR - 5 * HOUR;
        let ann_used = used("ann", ann_day, ann_day + 24 * HOUR).await.unwrap();
        let bob_day = T0 + 24 * HOUR + 8 * HOUR;
        let bob_used = used("bob", bob_day, bob_day + 24 * HOUR).await.unwrap();
        assert!(ann_used > 0 && bob_used > 0);

        let cut = Date::from_calendar_date(2025, time::Month::March, 12).unwrap();
        let steps = run_to_done(&s, cut).await;
        assert_eq!(steps.last(), Some(&Step::Done));
        let rolled: u64 = steps
            .iter()
            .map(|st| match st {
                Step::Rolled { rows, .. } => *rows,
                Step::Done => 0,
            })
            .sum();
        assert!(rolled > 0);
        // No raw row of a local day before the cutoff is left; every later one is.
        let (raw, old_raw): (i64, i64) = s
            .with(|c| {
                c.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(date(a.time_ms / 1000 + COALESCE(u.timezone, 0) * 3600, 'unixepoch') < '2025-03-12'), 0)
                     FROM audit a LEFT JOIN users u ON u.username = a.username",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(backend)
            })
            .await
            .unwrap();
        assert_eq!(old_raw, 0);
        assert_eq!(raw as u64 + rolled, 32);
        // The same answers from roll-ups as from the raw rows.
        assert_eq!(s.statistics(all_days()).await.unwrap(), before);
        assert_eq!(
            used("ann", ann_day, ann_day + 24 * HOUR).await.unwrap(),
            ann_used
        );
        assert_eq!(
            used("bob", bob_day, bob_day + 24 * HOUR).await.unwrap(),
            bob_used
        );
        let only_acme = StatsQuery {
            company_key: Some("acme".into()),
            username: Some("ann".into()),
            ..all_days()
        };
        let ann: Vec<_> = before
            .iter()
            .filter(|r| r.username == "ann")
            .cloned()
            .collect();
        assert_eq!(s.statistics(only_acme).await.unwrap(), ann);
        // A second run finds nothing more to take and changes nothing.
        let again = run_to_done(&s, cut).await;
        assert!(
            again
                .iter()
                .all(|st| matches!(st, Step::Done | Step::Rolled { rows: 0, .. }))
        );
        assert_eq!(s.statistics(all_days()).await.unwrap(), before);
        // Requests, duration and status classes are kept: 429 apart from the other 4xx.
        let classes: Vec<(i64, i64, i64)> = s
            .with(|c| {
                let mut st = c
                    .prepare(
                        "SELECT status_class, SUM(requests), SUM(duration_ms) FROM audit_daily
                         GROUP BY status_class ORDER BY status_class",
                    )
                    .map_err(backend)?;
                st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(backend)?
                    .collect::<Result<_, _>>()
                    .map_err(backend)
            })
            .await
            .unwrap();
        let total: i64 = classes.iter().map(|c| c.1).sum();
        assert_eq!(total as u64, rolled);
        assert!(classes.iter().any(|c| c.0 == 429));
        assert!(classes.iter().any(|c| c.0 == 500));
        assert!(classes.iter().all(|c| c.2 == c.1 * 10));
    }

    #[tokio::test(start_paused = true)]
    async fn retention_runs_at_start_then_once_a_day_on_the_wall_clock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut conn = super::super::sqlite::open_conn(&path).unwrap();
        super::super::sqlite::migrate(&mut conn).unwrap();
        let keyed = |t: i64, rid: i64| super::super::spill::Keyed {
            rid,
            row: row("ann", t, 1, 200, rid as u64),
        };
        let count = |c: &Connection| -> i64 {
            c.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get(0))
                .unwrap()
        };
        // Rows 10 and 3 days before T0; kept 5 days.
        super::super::sqlite::write_audit(
            &mut conn,
            &[keyed(T0 - 240 * HOUR, 1), keyed(T0 - 72 * HOUR, 2)],
        )
        .unwrap();
        let mut r = Retention::new(5, crate::clock::WallClock::anchored_at(T0));
        for _ in 0..10 {
            r.tick(&mut conn);
        }
        assert_eq!(count(&conn), 1, "the 10-day-old row went at start");
        // A row turning 6 days old stays until the next daily run.
        tokio::time::advance(std::time::Duration::from_secs(3 * 3600)).await;
        for _ in 0..10 {
            r.tick(&mut conn);
        }
        assert_eq!(count(&conn), 1);
        tokio::time::advance(std::time::Duration::from_secs(3 * 86_400)).await;
        for _ in 0..10 {
            r.tick(&mut conn);
        }
        assert_eq!(count(&conn), 0, "the next day's run took it");
        let rolled: i64 = conn
            .query_row("SELECT SUM(requests) FROM audit_daily", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rolled, 2);
        // `audit_days = 0` keeps everything.
        super::super::sqlite::write_audit(&mut conn, &[keyed(0, 3)]).unwrap();
        let mut never = Retention::new(0, crate::clock::WallClock::anchored_at(T0));
        never.tick(&mut conn);
        assert_eq!(count(&conn), 1);
    }
}

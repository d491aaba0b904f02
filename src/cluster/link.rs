//! The connection every node's limit work goes through: one multiplexed Redis connection
//! (redis-rs `ConnectionManager`: every request's script shares it, pipelined, and it
//! reconnects by itself after Redis comes back), each call bounded by `[cluster] timeout`,
//! and what it last saw of Redis, for `/health`.
//!
//! A call that times out or fails marks Redis down. While it is down, requests do not wait
//! on it at all (each would pay the whole timeout, and a node under `allow` would crawl):
//! they fail at once, and a probe task pings Redis every [`PROBE_EVERY`] until it answers,
//! which marks it up again. So a node recovers by itself within a probe of Redis's return,
//! without a restart and without spending requests on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Client, FromRedisValue, RedisError};

use crate::clock::WallClock;
use crate::config::{ClusterConfig, redact_url};

/// Why a call to Redis did not answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Redis answered an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// No answer within `[cluster] timeout`.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis was found unreachable and has not answered a probe since.
    #[error("redis is unreachable (since {0} ms after the epoch)")]
    Down(i64),
    /// A script answered what it never answers (a script of another version).
    #[error("{0}")]
    Script(String),
}

/// How often a node that found Redis down asks it again.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// What a node last saw of Redis.
#[derive(Debug)]
struct Seen {
    up: AtomicBool,
    /// Wall-clock ms of the last change between up and down.
    since_ms: AtomicI64,
    failures: AtomicU64,
}

/// Redis as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkHealth {
    /// The last call answered.
    pub up: bool,
    /// Since when (wall-clock ms) it has been so.
    pub since_ms: i64,
    /// Calls that failed since the node started.
    pub failures: u64,
}

/// A handle on the shared connection; cheap to clone.
#[derive(Clone)]
pub struct Link {
    conn: ConnectionManager,
    timeout: Duration,
    seen: Arc<Seen>,
    wall: WallClock,
    /// The URL without its password, for logs.
    shown: Arc<str>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("redis", &self.shown).finish()
    }
}

impl Link {
    /// A link to `cfg.redis_url`, connected on first use (a node starts while Redis is
    /// down, and counts as down until a call answers). Must be made inside the runtime.
    pub fn open(cfg: &ClusterConfig, url: &str) -> Result<Self, RedisError> {
        let client = Client::open(url)?;
        let conn_cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.timeout))
            .set_response_timeout(Some(cfg.timeout))
            // The request waits at most `timeout` anyway; reconnection goes on underneath
            // at the pace of the requests that find it down.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_lazy_with_config(client, conn_cfg)?;
        let wall = WallClock::System;
        let link = Self {
            conn,
            timeout: cfg.timeout,
            // Presumed up until a call fails: the first requests connect.
            seen: Arc::new(Seen {
                up: AtomicBool::new(true),
                since_ms: AtomicI64::new(wall.now_ms()),
                failures: AtomicU64::new(0),
            }),
            wall,
            shown: redact_url(url).into(),
        };
        tokio::spawn(probe(
            Arc::downgrade(&link.seen),
            link.conn.clone(),
            link.timeout,
            link.wall,
            link.shown.clone(),
        ));
        Ok(link)
    }

    /// Runs a prepared script invocation, bounded by the timeout. EVALSHA, and the script
    /// sent once more when Redis answers NOSCRIPT (after a restart or `SCRIPT FLUSH`).
    pub async fn run<T: FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, LinkError> {
        if !self.seen.up.load(Ordering::Acquire) {
            return Err(LinkError::Down(self.seen.since_ms.load(Ordering::Acquire)));
        }
        let mut conn = self.conn.clone();
        let answer = tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn)).await;
        self.note(match answer {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(LinkError::Redis(e)),
            Err(_) => Err(LinkError::Timeout(self.timeout)),
        })
    }

    /// `PING`, for `/health`.
    pub async fn ping(&self) -> Result<(), LinkError> {
        let mut conn = self.conn.clone();
        let answer = tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        self.note(match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(LinkError::Redis(e)),
            Err(_) => Err(LinkError::Timeout(self.timeout)),
        })
    }

    fn note<T>(&self, result: Result<T, LinkError>) -> Result<T, LinkError> {
        note(&self.seen, self.wall, &self.shown, result)
    }

    /// What the node last saw.
    pub fn health(&self) -> LinkHealth {
        LinkHealth {
            up: self.seen.up.load(Ordering::Acquire),
            since_ms: self.seen.since_ms.load(Ordering::Acquire),
            failures: self.seen.failures.load(Ordering::Relaxed),
        }
    }
}

fn note<T>(
    seen: &Seen,
    wall: WallClock,
    shown: &str,
    result: Result<T, LinkError>,
) -> Result<T, LinkError> {
    let up = match &result {
        Ok(_) => true,
        // A script's odd answer is our bug, not Redis being away; a refusal while down was
        // counted when Redis went down.
        Err(LinkError::Script(_) | LinkError::Down(_)) => return result,
        Err(LinkError::Redis(_) | LinkError::Timeout(_)) => false,
    };
    if !up {
        seen.failures.fetch_add(1, Ordering::Relaxed);
    }
    if seen.up.swap(up, Ordering::AcqRel) != up {
        seen.since_ms.store(wall.now_ms(), Ordering::Release);
        match &result {
            Ok(_) => tracing::info!(redis = %shown, "redis answers again"),
            Err(e) => tracing::warn!(redis = %shown, error = %e, "redis unreachable"),
        }
    }
    result
}

/// While Redis is down, pings it every [`PROBE_EVERY`] (the connection manager reconnects
/// on the way); ends with the last handle on the link.
async fn probe(
    seen: std::sync::Weak<Seen>,
    conn: ConnectionManager,
    timeout: Duration,
    wall: WallClock,
    shown: Arc<str>,
) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(seen) = seen.upgrade() else { return };
        if seen.up.load(Ordering::Acquire) {
            continue;
        }
        let mut c = conn.clone();
        let answer =
            tokio::time::timeout(timeout, redis::cmd("PING").query_async::<String>(&mut c)).await;
        // A failed probe changes nothing: Redis is down already.
        if let Ok(Ok(_)) = answer {
            let _ = note(&seen, wall, &shown, Ok(()));
        }
    }
}

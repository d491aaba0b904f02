//! The bus's two tasks: the publisher (this node's invalidations onto the channel) and the
//! subscriber (the other nodes' off it), each reconnecting by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use super::wire::{Decoded, decode, encode};
use super::{BusState, Caches, Invalidation};
use crate::metrics::ClusterEvent;

/// The first wait before subscribing again; doubled after each failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait between two subscription attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often the subscriber pings Redis: a connection cut without a reset (a partition) is
/// noticed within this and [`patience`].
const PING_EVERY: Duration = Duration::from_secs(1);
/// How soon the publisher tries again to tell the others to drop everything after a loss.
const RETRY_LOST: Duration = Duration::from_millis(250);

/// What both tasks need to reach the channel.
#[derive(Clone)]
pub(super) struct Link {
    pub(super) client: redis::Client,
    /// `{key_prefix}invalidations`.
    pub(super) channel: Arc<str>,
    /// This node's random id, in every message it sends.
    pub(super) node: Arc<str>,
    /// `cluster.timeout`.
    pub(super) timeout: Duration,
}

/// How long the bus waits on one Redis exchange: `cluster.timeout`, but never under a
/// second (the bus is off the request path: a slow Redis should not look like a lost one).
fn patience(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(1))
}

/// Sends each queued invalidation; after one could not be queued or sent, sends
/// [`Invalidation::Everything`] (retrying every [`RETRY_LOST`]) before anything else.
pub(super) async fn publish(
    link: Link,
    mut queue: mpsc::Receiver<Invalidation>,
    lost: Arc<AtomicBool>,
) {
    let wait = patience(link.timeout);
    // Lazy: the node starts while Redis is down; the manager reconnects by itself.
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(wait))
        .set_response_timeout(Some(wait))
        .set_number_of_retries(1)
        .set_min_delay(BACKOFF_MIN)
        .set_max_delay(BACKOFF_MAX);
    let mut conn = match ConnectionManager::new_lazy_with_config(link.client.clone(), config) {
        Ok(c) => c,
        Err(e) => {
            // Every invalidation from now on is counted unsent by `apply` (the queue closes).
            tracing::error!(error = %e, "the invalidation publisher cannot start");
            return;
        }
    };
    loop {
        let next = if lost.load(Ordering::Acquire) {
            tokio::select! {
                got = queue.recv() => match got {
                    Some(inv) => Some(inv),
                    None => return,
                },
                () = tokio::time::sleep(RETRY_LOST) => None,
            }
        } else {
            match queue.recv().await {
                Some(inv) => Some(inv),
                None => return,
            }
        };
        if lost.load(Ordering::Acquire) {
            // `Everything` covers whatever was lost and `next` too.
            match send(&mut conn, &link, &Invalidation::Everything, wait).await {
                Ok(()) => {
                    lost.store(false, Ordering::Release);
                    tracing::info!("the other nodes were told to drop their caches");
                }
                Err(e) => {
                    // Retried every RETRY_LOST: said once, when the loss began.
                    tracing::debug!(error = %e, "still cannot publish invalidations");
                    if next.is_some() {
                        crate::metrics::cluster(ClusterEvent::Unsent);
                    }
                }
            }
            continue;
        }
        if let Some(inv) = next
            && let Err(e) = send(&mut conn, &link, &inv, wait).await
        {
            lost.store(true, Ordering::Release);
            crate::metrics::cluster(ClusterEvent::Unsent);
            tracing::warn!(error = %e,
                "an invalidation could not be published; the other nodes will be told to drop \
                 their caches once Redis takes it");
        }
    }
}

async fn send(
    conn: &mut ConnectionManager,
    link: &Link,
    inv: &Invalidation,
    wait: Duration,
) -> Result<(), String> {
    let payload = encode(&link.node, inv);
    let mut cmd = redis::cmd("PUBLISH");
    cmd.arg(&*link.channel).arg(payload);
    match tokio::time::timeout(wait, cmd.query_async::<i64>(conn)).await {
        Ok(Ok(_receivers)) => {
            crate::metrics::cluster(ClusterEvent::Published);
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("PUBLISH unanswered within {wait:?}")),
    }
}

/// Subscribes, applies the other nodes' invalidations, and subscribes again when the
/// connection is lost (backing off up to a second); each subscription drops every cache.
pub(super) async fn subscribe(link: Link, caches: Caches, state: Arc<Mutex<BusState>>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let (was_subscribed, error) = session(&link, &caches, &state).await;
        if was_subscribed {
            backoff = BACKOFF_MIN;
            tracing::warn!(%error, "the invalidation subscription was lost; reconnecting");
            *state.lock() = BusState::Reconnecting {
                since_ms: crate::clock::system_ms(),
                error: Some(error),
            };
        } else {
            tracing::debug!(%error, "subscribing to invalidations failed");
            if let BusState::Reconnecting { error: last, .. } = &mut *state.lock() {
                *last = Some(error);
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection's life: whether it got as far as subscribing, and why it ended.
async fn session(link: &Link, caches: &Caches, state: &Mutex<BusState>) -> (bool, String) {
    let wait = patience(link.timeout);
    let pubsub = match tokio::time::timeout(wait, link.client.get_async_pubsub()).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return (false, e.to_string()),
        Err(_) => return (false, format!("no connection within {wait:?}")),
    };
    let (mut sink, mut stream) = pubsub.split();
    match tokio::time::timeout(wait, sink.subscribe(&*link.channel)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return (false, e.to_string()),
        Err(_) => return (false, format!("SUBSCRIBE unanswered within {wait:?}")),
    }
    // Subscribed first, then dropped: whatever was sent before the subscription is covered
    // by the drop, whatever after it arrives.
    caches.apply(&Invalidation::Everything);
    *state.lock() = BusState::Subscribed {
        since_ms: crate::clock::system_ms(),
    };
    tracing::info!(channel = %link.channel, "subscribed to invalidations");
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return (true, "the connection closed".into());
                };
                receive(msg.get_payload_bytes(), &link.node, caches);
            }
            _ = ping.tick() => {
                match tokio::time::timeout(wait, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return (true, e.to_string()),
                    Err(_) => return (true, format!("PING unanswered within {wait:?}")),
                }
            }
        }
    }
}

/// One message off the channel, applied unless it is this node's own or not ours.
pub(super) fn receive(payload: &[u8], me: &str, caches: &Caches) {
    match decode(payload, me) {
        Decoded::Theirs(inv) => {
            crate::metrics::cluster(ClusterEvent::Received);
            caches.apply(&inv);
        }
        Decoded::Mine => {}
        Decoded::Malformed(why) => {
            crate::metrics::cluster(ClusterEvent::Ignored);
            tracing::warn!(error = %why, bytes = payload.len(),
                "a message on the invalidation channel is not an invalidation; ignored");
        }
    }
}

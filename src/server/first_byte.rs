//! The first-byte timeout: a new connection must send its first byte, and an HTTP/2 client
//! its whole 24-byte preface, within `server.first_byte_timeout`.
//!
//! hyper-util's `auto::Builder` reads the start of a connection itself to tell HTTP/2's
//! preface from an HTTP/1 request line, and waits as long as it takes: a socket that sends
//! nothing, or `PRI * HTTP/2.0\r\n` and nothing more, would be held forever (hyper's
//! `header_read_timeout` starts only once HTTP/1 is chosen). The guard sits under hyper as
//! the connection's IO: until the question is settled a read that would wait also waits on
//! the timer, and fails with [`FirstByteTimeout`] when it fires, which ends the connection.
//! Once the bytes read leave the preface, or complete it, the timer is dropped and reads go
//! straight through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// What every HTTP/2 connection starts with (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The connection did not send its first byte, or its whole HTTP/2 preface, in time.
#[derive(Debug, thiserror::Error)]
#[error("no request started within {0:?}")]
pub(super) struct FirstByteTimeout(Duration);

/// Whether `e`, or an error it was caused by, is the first-byte timeout.
pub(super) fn is_first_byte_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.is::<FirstByteTimeout>()
            || err
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .is_some_and(|inner| inner.is::<FirstByteTimeout>())
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// Until the preface question is settled: the timer, and how many bytes of the preface
/// have been matched.
struct Pending {
    timer: Pin<Box<Sleep>>,
    timeout: Duration,
    matched: usize,
}

pin_project_lite::pin_project! {
    /// A connection's IO with the first-byte timeout over its first reads.
    pub(super) struct FirstByte<T> {
        #[pin]
        io: T,
        pending: Option<Pending>,
    }
}

impl<T> FirstByte<T> {
    /// `io`, whose first byte (and HTTP/2 preface) must arrive within `timeout` from now.
    pub(super) fn new(io: T, timeout: Duration) -> Self {
        Self {
            io,
            pending: Some(Pending {
                timer: Box::pin(tokio::time::sleep(timeout)),
                timeout,
                matched: 0,
            }),
        }
    }
}

impl<T: AsyncRead> AsyncRead for FirstByte<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let Some(pending) = this.pending else {
            return this.io.poll_read(cx, buf);
        };
        let before = buf.filled().len();
        match this.io.poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                let want = &PREFACE[pending.matched..];
                let n = new.len().min(want.len());
                // End of stream, a byte off the preface (HTTP/1), or the preface complete:
                // settled either way.
                if n == 0 || new[..n] != want[..n] || pending.matched + n == PREFACE.len() {
                    *this.pending = None;
                } else {
                    pending.matched += n;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match pending.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    FirstByteTimeout(pending.timeout),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T: AsyncWrite> AsyncWrite for FirstByte<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const WAIT: Duration = Duration::from_secs(10);

    type Pipe = tokio::io::DuplexStream;

    /// Reads from a guarded pipe after `sent` was written to its other end (returned open:
    /// the guard must not take a quiet client for a closed one).
    async fn read_after(sent: &[u8]) -> (FirstByte<Pipe>, Pipe, io::Result<usize>) {
        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded = FirstByte::new(server, WAIT);
        client.write_all(sent).await.unwrap();
        let mut buf = [0u8; 64];
        let r = guarded.read(&mut buf).await;
        (guarded, client, r)
    }

    #[tokio::test(start_paused = true)]
    async fn silence_fails_the_read_when_the_timeout_runs_out() {
        let (client, server) = tokio::io::duplex(64);
        let mut guarded = FirstByte::new(server, WAIT);
        let start = crate::clock::now();
        let err = guarded.read(&mut [0u8; 8]).await.unwrap_err();
        assert!(is_first_byte_timeout(&err), "{err}");
        assert_eq!(start.elapsed(), WAIT);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn half_a_preface_keeps_the_timer_running() {
        let (mut guarded, _client, r) = read_after(b"PRI * HTTP/2.0\r\n").await;
        assert_eq!(r.unwrap(), 16);
        assert!(guarded.pending.is_some());
        let err = guarded.read(&mut [0u8; 8]).await.unwrap_err();
        assert!(is_first_byte_timeout(&err), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_preface_or_an_http1_byte_settles_it() {
        for sent in [&PREFACE[..], b"GET / HTTP/1.1\r\n", b"POST", b"PRX"] {
            let (guarded, _client, r) = read_after(sent).await;
            assert_eq!(r.unwrap(), sent.len());
            assert!(
                guarded.pending.is_none(),
                "{:?}",
                String::from_utf8_lossy(sent)
            );
        }
    }

    #[test]
    fn the_timeout_is_recognised_inside_a_boxed_chain() {
        let io = io::Error::new(io::ErrorKind::TimedOut, FirstByteTimeout(WAIT));
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(io);
        assert!(is_first_byte_timeout(&*boxed));
        let other = io::Error::new(io::ErrorKind::TimedOut, "elsewhere");
        assert!(!is_first_byte_timeout(&other));
    }
}

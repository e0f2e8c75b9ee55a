//! The admin port's HTTP/1.1 server: one task per connection, with the two timeouts of istiod's
//! monitoring server (Go's `ReadTimeout` and `IdleTimeout`), which `axum::serve` does not have:
//!
//! - read timeout: a request must arrive whole within it, counted from the connection's start
//!   for the first request and from its first byte for later ones. A client that sends half a
//!   request, or connects and says nothing, is disconnected then.
//! - idle timeout: a kept-alive connection that neither sends nor receives anything for that long
//!   between requests is closed (a client that stops reading its response too).
//!
//! hyper's own `header_read_timeout` is not used: it starts as soon as a response is written, so
//! it would close kept-alive connections after the read timeout, not the idle one.
//!
//! Each request carries the peer's address as a [`Peer`] extension. On shutdown the listener
//! closes, idle connections close at once, and those in a request close after its response.
//! Owns connections and their timing; must not know what the routes do.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower_service::Service;

use super::throttle::LogThrottle;

/// How long accepting pauses after the listener fails (out of file descriptors, say), so the
/// loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

static ACCEPT_ERRORS: LogThrottle = LogThrottle::new(Duration::from_secs(10));

/// The admin connections' timeouts (`--admin-read-timeout`, `--admin-idle-timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    pub read: Duration,
    pub idle: Duration,
}

impl Default for HttpTimeouts {
    /// istiod's monitoring server: `ReadTimeout` 30s, `IdleTimeout` 90s.
    fn default() -> HttpTimeouts {
        HttpTimeouts {
            read: Duration::from_secs(30),
            idle: Duration::from_secs(90),
        }
    }
}

/// The TCP peer of the connection a request came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub SocketAddr);

/// Serves `router` on `listener` until `shutdown` completes, then lets open connections finish
/// their request in flight and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: HttpTimeouts,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(
                        stream,
                        peer,
                        router.clone(),
                        timeouts,
                        stopping.clone(),
                    ));
                }
                Err(error) => {
                    if let Some(suppressed) = ACCEPT_ERRORS.allow(Instant::now()) {
                        tracing::warn!(%error, suppressed, "admin server cannot accept connections");
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Serves one connection until the client closes it, a timeout closes it, or shutdown.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    timeouts: HttpTimeouts,
    mut stopping: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new(Instant::now()));
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service = hyper::service::service_fn({
        let activity = activity.clone();
        move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(Peer(peer));
            activity.set(Phase::Handling);
            let mut router = router.clone();
            let activity = activity.clone();
            async move {
                let response = router.call(request).await;
                activity.set(Phase::Idle {
                    since: Instant::now(),
                });
                response
            }
        }
    });
    let conn = http1::Builder::new()
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(io, service);
    let mut conn = pin!(conn);
    let mut shutting_down = false;
    loop {
        let deadline = activity.deadline(timeouts);
        let expiry = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%peer, %error, "admin connection ended with an error");
                }
                return;
            }
            _ = stopping.wait_for(|stop| *stop), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.changed.notified() => {}
            () = expiry => {
                if let Some(reason) = activity.expired(Instant::now(), timeouts) {
                    tracing::debug!(%peer, reason, "closing admin connection");
                    return;
                }
            }
        }
    }
}

/// Where a connection is between requests, as the timeouts see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Part of a request arrived (or, for the first, the connection opened) at `since`.
    Reading { since: Instant },
    /// A request is with the router; no timeout applies (debug work is bounded on its own).
    Handling,
    /// Nothing sent or received since `since`, or a response still being written.
    Idle { since: Instant },
}

/// A connection's phase, shared by its I/O, its service and its timer.
#[derive(Debug)]
struct Activity {
    phase: Mutex<Phase>,
    /// Wakes the timer when the phase changes: a deadline may have moved earlier.
    changed: Notify,
}

impl Activity {
    fn new(opened: Instant) -> Activity {
        Activity {
            phase: Mutex::new(Phase::Reading { since: opened }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, phase: Phase) {
        *self.phase() = phase;
        self.changed.notify_one();
    }

    /// Bytes arrived: the first of a request starts its read timeout.
    fn read(&self) {
        let mut phase = self.phase();
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Reading {
                since: Instant::now(),
            };
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// Bytes left: a response being written is not idleness.
    fn wrote(&self) {
        let mut phase = self.phase();
        if let Phase::Idle { .. } = *phase {
            // Later than before: the timer, which wakes at the earlier deadline, needs no word.
            *phase = Phase::Idle {
                since: Instant::now(),
            };
        }
    }

    fn deadline(&self, timeouts: HttpTimeouts) -> Option<Instant> {
        match *self.phase() {
            Phase::Reading { since } => Some(since + timeouts.read),
            Phase::Handling => None,
            Phase::Idle { since } => Some(since + timeouts.idle),
        }
    }

    /// Why the connection is to be closed at `now`, if it is.
    fn expired(&self, now: Instant, timeouts: HttpTimeouts) -> Option<&'static str> {
        match *self.phase() {
            Phase::Reading { since } if now >= since + timeouts.read => {
                Some("no whole request within --admin-read-timeout")
            }
            Phase::Idle { since } if now >= since + timeouts.idle => {
                Some("idle for --admin-idle-timeout")
            }
            _ => None,
        }
    }
}

/// A TCP stream that tells its [`Activity`] when bytes move.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled
            && written > 0
        {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = polled
            && written > 0
        {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: HttpTimeouts = HttpTimeouts {
        read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[test]
    fn the_first_request_has_the_read_timeout_from_the_connection_start() {
        let opened = Instant::now();
        let activity = Activity::new(opened);
        assert_eq!(activity.deadline(TIMEOUTS), Some(opened + TIMEOUTS.read));
        assert_eq!(activity.expired(opened + TIMEOUTS.read / 2, TIMEOUTS), None);
        assert!(activity.expired(opened + TIMEOUTS.read, TIMEOUTS).is_some());
        // More bytes of the same request do not extend it.
        activity.read();
        assert_eq!(activity.deadline(TIMEOUTS), Some(opened + TIMEOUTS.read));
    }

    #[test]
    fn between_requests_the_idle_timeout_applies_until_bytes_arrive() {
        let activity = Activity::new(Instant::now());
        activity.set(Phase::Handling);
        assert_eq!(activity.deadline(TIMEOUTS), None);
        let answered = Instant::now();
        activity.set(Phase::Idle { since: answered });
        assert_eq!(activity.deadline(TIMEOUTS), Some(answered + TIMEOUTS.idle));
        assert_eq!(activity.expired(answered + TIMEOUTS.read, TIMEOUTS), None);
        activity.read();
        let Some(deadline) = activity.deadline(TIMEOUTS) else {
            panic!("reading has a deadline");
        };
        assert!(deadline >= answered + TIMEOUTS.read && deadline < answered + TIMEOUTS.idle);
    }
}

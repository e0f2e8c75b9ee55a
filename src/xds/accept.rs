//! The xDS port's accept loop, one for plaintext and TLS: each accepted TCP connection gets
//! [`Accepting::timeout`] to complete its handshake (TLS, when the port serves it, and the HTTP/2
//! connection preface) before it is handed to the HTTP/2 server; one that does not is closed,
//! logged at debug with its address and counted (`rudder_xds_refused_total`). Handshakes run side
//! by side, so a silent client holds up no one, and end with the loop. When accepting fails (out
//! of file descriptors, say), the loop backs off and warns at most once per [`REPORT_EVERY`],
//! with a count, instead of spinning or flooding the log.
//!
//! Owns the connection's life until its handshake is done; what a handshake checks is the
//! [`Handshake`]'s business (TLS in [`super::tls`]), and it never looks at HTTP/2 frames beyond
//! the preface.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;
use tracing::{debug, warn};

use super::closer::{ClosableStream, Closers};
use crate::metrics::{Metrics, Refusal};

/// The HTTP/2 connection preface (RFC 9113, section 3.4), the first bytes of every client.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Connections handshaken and waiting for the HTTP/2 server to take them.
const HANDSHAKES_QUEUED: usize = 64;

/// Failures to accept are reported at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// After a failure to accept, accepting pauses this long, doubling with each failure in a row up
/// to [`MAX_BACKOFF`] (as Go's `net/http` server does).
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Why a connection's handshake failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum HandshakeError {
    #[error("TLS handshake failed: {0}")]
    Tls(io::Error),
    #[error("the client is not HTTP/2: it did not start with the connection preface")]
    NotHttp2,
    #[error("the connection failed before its HTTP/2 preface: {0}")]
    Io(io::Error),
}

/// What a connection must do, once accepted, before it is served.
pub(super) trait Handshake: Send + Sync + 'static {
    /// The connection, handshake done.
    type Connection: Send + 'static;

    fn handshake(
        &self,
        stream: ClosableStream,
        peer: SocketAddr,
    ) -> impl Future<Output = Result<Self::Connection, HandshakeError>> + Send;
}

/// Plaintext HTTP/2: the preface is the whole handshake.
pub(super) struct Plaintext;

impl Handshake for Plaintext {
    type Connection = Prefaced<ClosableStream>;

    async fn handshake(
        &self,
        stream: ClosableStream,
        _peer: SocketAddr,
    ) -> Result<Prefaced<ClosableStream>, HandshakeError> {
        Prefaced::read(stream).await
    }
}

/// A connection whose preface was read (to know the client got that far) and is given to the
/// HTTP/2 server as if unread.
pub(super) struct Prefaced<S> {
    inner: S,
    /// How much of the preface the reader has been given back.
    replayed: usize,
}

impl<S: AsyncRead + Unpin> Prefaced<S> {
    /// Reads the preface from `inner`; fails if the client sends anything else.
    pub async fn read(mut inner: S) -> Result<Prefaced<S>, HandshakeError> {
        let mut preface = [0; PREFACE.len()];
        inner
            .read_exact(&mut preface)
            .await
            .map_err(HandshakeError::Io)?;
        if &preface != PREFACE {
            return Err(HandshakeError::NotHttp2);
        }
        Ok(Prefaced { inner, replayed: 0 })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefaced<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = PREFACE.get(this.replayed..).filter(|rest| !rest.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefaced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: Connected> Connected for Prefaced<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> S::ConnectInfo {
        self.inner.connect_info()
    }
}

/// How connections are accepted.
pub(super) struct Accepting {
    /// The time a connection has, from being accepted, to complete its handshake.
    pub timeout: Duration,
    pub metrics: Arc<Metrics>,
    /// Every accepted connection is registered here, so the server can close it.
    pub closers: Arc<Closers>,
}

/// The connections to `listener` whose handshake succeeded. Listening stops, and handshakes
/// under way are dropped, once the stream is dropped.
pub(super) fn incoming<H: Handshake>(
    listener: TcpListener,
    handshake: H,
    accepting: Accepting,
) -> ReceiverStream<Result<H::Connection, Infallible>> {
    let (connections, incoming) = mpsc::channel(HANDSHAKES_QUEUED);
    tokio::spawn(accept(
        listener,
        Arc::new(handshake),
        accepting,
        connections,
    ));
    ReceiverStream::new(incoming)
}

async fn accept<H: Handshake>(
    listener: TcpListener,
    handshake: Arc<H>,
    accepting: Accepting,
    connections: mpsc::Sender<Result<H::Connection, Infallible>>,
) {
    let mut handshakes = JoinSet::new();
    let mut failures = Failures::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Reaps finished handshakes; disabled while there are none.
            Some(_) = handshakes.join_next() => continue,
            () = connections.closed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                let (backoff, report) = failures.failed(Instant::now());
                if let Some(failed) = report {
                    warn!(
                        %error,
                        failed,
                        "accepting xDS connections fails; pausing between attempts (out of file descriptors?)"
                    );
                }
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        failures.succeeded();
        // Pushes are small writes that must not wait for more.
        let _ = stream.set_nodelay(true);
        // Wrapped before the handshake, so a proxy that stops reading can be cut off here too.
        let stream = accepting.closers.wrap(stream);
        let (handshake, connections) = (handshake.clone(), connections.clone());
        let (timeout, metrics) = (accepting.timeout, accepting.metrics.clone());
        handshakes.spawn(async move {
            let refusal = match tokio::time::timeout(timeout, handshake.handshake(stream, peer))
                .await
            {
                Ok(Ok(connection)) => {
                    let _ = connections.send(Ok(connection)).await;
                    return;
                }
                Err(_) => {
                    debug!(%peer, ?timeout, "closing an xDS connection that did not complete its handshake in time (--xds-handshake-timeout)");
                    Refusal::HandshakeTimeout
                }
                Ok(Err(error @ HandshakeError::Tls(_))) => {
                    warn!(%peer, %error, "xDS TLS handshake failed");
                    Refusal::HandshakeFailed
                }
                Ok(Err(error @ HandshakeError::NotHttp2)) => {
                    debug!(%peer, %error, "closing an xDS connection");
                    Refusal::HandshakeFailed
                }
                // Gone before it said anything, as TCP health checks are: nothing refused.
                Ok(Err(error @ HandshakeError::Io(_))) => {
                    debug!(%peer, %error, "xDS connection closed during its handshake");
                    return;
                }
            };
            metrics.refused(refusal);
        });
    }
}

/// Failures to accept in a row, and what has been reported of them.
#[derive(Debug, Default)]
struct Failures {
    /// The pause after the last failure; zero after a success.
    backoff: Duration,
    /// When failures were last reported.
    reported: Option<Instant>,
    /// Failures since then.
    unreported: u64,
}

impl Failures {
    /// One failure at `now`: how long to pause, and whether to report now (with how many
    /// failures there were since the last report).
    fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        self.backoff = (self.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
        self.unreported += 1;
        let due = self
            .reported
            .is_none_or(|reported| now.duration_since(reported) >= REPORT_EVERY);
        if !due {
            return (self.backoff, None);
        }
        self.reported = Some(now);
        (self.backoff, Some(std::mem::take(&mut self.unreported)))
    }

    fn succeeded(&mut self) {
        self.backoff = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_preface_is_checked_and_given_back() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(PREFACE).await.unwrap();
        client.write_all(b"then frames").await.unwrap();
        drop(client);
        let mut prefaced = Prefaced::read(server).await.unwrap();
        let mut read = Vec::new();
        prefaced.read_to_end(&mut read).await.unwrap();
        assert_eq!(read, [&PREFACE[..], b"then frames"].concat());

        // A small buffer gets the preface in pieces.
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(PREFACE).await.unwrap();
        let mut prefaced = Prefaced::read(server).await.unwrap();
        let mut piece = [0; 10];
        let n = prefaced.read(&mut piece).await.unwrap();
        assert_eq!(&piece[..n], &PREFACE[..10]);
    }

    #[tokio::test]
    async fn other_protocols_are_not_http2() {
        let (mut client, server) = tokio::io::duplex(1024);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: rudder\r\n\r\n")
            .await
            .unwrap();
        let error = Prefaced::read(server).await.err().unwrap();
        assert!(matches!(error, HandshakeError::NotHttp2), "{error}");

        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(&PREFACE[..5]).await.unwrap();
        drop(client);
        let error = Prefaced::read(server).await.err().unwrap();
        assert!(matches!(error, HandshakeError::Io(_)), "{error}");
    }

    #[test]
    fn failures_back_off_and_are_reported_once_per_period() {
        let mut failures = Failures::default();
        let start = Instant::now();
        assert_eq!(failures.failed(start), (FIRST_BACKOFF, Some(1)));
        let (backoff, report) = failures.failed(start + Duration::from_millis(5));
        assert_eq!((backoff, report), (FIRST_BACKOFF * 2, None));
        for i in 0..20 {
            let (backoff, report) = failures.failed(start + Duration::from_millis(10 + i));
            assert!(backoff <= MAX_BACKOFF);
            assert_eq!(report, None);
        }
        assert_eq!(failures.backoff, MAX_BACKOFF);
        // Once the period is over, the failures since the last report are counted.
        let (_, report) = failures.failed(start + REPORT_EVERY);
        assert_eq!(report, Some(22));
        // A success starts the backoff afresh, not the reporting period.
        failures.succeeded();
        let later = start + REPORT_EVERY + Duration::from_secs(1);
        assert_eq!(failures.failed(later), (FIRST_BACKOFF, None));
    }
}

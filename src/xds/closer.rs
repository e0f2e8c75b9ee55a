//! Proxy connections the xDS server can close from a stream's task. Each accepted TCP connection
//! is wrapped so that, once closed by its peer address, every read and write on it fails and the
//! HTTP/2 connection above it ends at once, freeing what it had buffered.
//!
//! Ending a stream's task is not enough for a proxy that stopped reading: its responses wait in
//! HTTP/2 buffers that flow control never lets out, and the proxy still answers HTTP/2 pings, so
//! the stream would stay open and hold them forever. Owns only the transport wrapper; when to
//! give up on a proxy is the server's decision (see `server.rs`), and it never reads or writes
//! anything itself.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The open connections, by the proxy's address.
#[derive(Debug, Default)]
pub(super) struct Closers {
    open: Mutex<HashMap<SocketAddr, Arc<CloseSignal>>>,
}

#[derive(Debug, Default)]
struct CloseSignal {
    closed: AtomicBool,
    /// The tasks waiting to read from and write to the connection, woken when it is closed.
    reader: AtomicWaker,
    writer: AtomicWaker,
}

impl Closers {
    /// Wraps a newly accepted connection so that [`Closers::close`] can end it.
    pub fn wrap(self: &Arc<Self>, inner: TcpStream) -> ClosableStream {
        let signal = Arc::new(CloseSignal::default());
        let peer = inner.peer_addr().ok();
        if let Some(peer) = peer {
            self.lock().insert(peer, signal.clone());
        }
        ClosableStream {
            inner,
            signal,
            peer,
            closers: self.clone(),
        }
    }

    /// Ends the connection from `peer`: its reads and writes fail from now on, and every stream
    /// on it ends (Envoy opens one connection for its one ADS stream). False if there is no
    /// such connection (any more).
    pub fn close(&self, peer: SocketAddr) -> bool {
        let Some(signal) = self.lock().remove(&peer) else {
            return false;
        };
        signal.closed.store(true, Ordering::SeqCst);
        signal.reader.wake();
        signal.writer.wake();
        true
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SocketAddr, Arc<CloseSignal>>> {
        // Entries are inserted and removed whole, so the map is consistent after a panic.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An accepted connection that fails every read and write once closed.
pub(super) struct ClosableStream {
    inner: TcpStream,
    signal: Arc<CloseSignal>,
    peer: Option<SocketAddr>,
    closers: Arc<Closers>,
}

impl ClosableStream {
    /// Fails if the connection was closed; otherwise makes sure closing it wakes this task.
    fn check(&self, waker: &AtomicWaker, cx: &Context<'_>) -> io::Result<()> {
        waker.register(cx.waker());
        if self.signal.closed.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed by the xDS server",
            ));
        }
        Ok(())
    }
}

impl Drop for ClosableStream {
    fn drop(&mut self) {
        let Some(peer) = self.peer else { return };
        let mut open = self.closers.lock();
        // A later connection may have reused the address; only this one's entry goes.
        if open
            .get(&peer)
            .is_some_and(|signal| Arc::ptr_eq(signal, &self.signal))
        {
            open.remove(&peer);
        }
    }
}

impl AsyncRead for ClosableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(&this.signal.reader, cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClosableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(&this.signal.writer, cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(&this.signal.writer, cx)?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(&this.signal.writer, cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Connected for ClosableStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn closing_fails_a_pending_read_and_forgets_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let peer = client.local_addr().unwrap();
        let closers = Arc::new(Closers::default());
        let (accepted, _) = listener.accept().await.unwrap();
        let mut stream = closers.wrap(accepted);
        client.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();

        let pending = tokio::spawn(async move {
            let result = stream.read(&mut byte).await;
            (stream, result)
        });
        tokio::task::yield_now().await;
        assert!(closers.close(peer));
        let (stream, result) = pending.await.unwrap();
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionAborted);
        assert!(!closers.close(peer), "closed connections are forgotten");
        drop(stream);
        assert!(closers.lock().is_empty());
    }
}

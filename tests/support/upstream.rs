//! Upstream HTTP servers, on loopback addresses or in a test host's network namespace: each
//! answers every request with its own name and what it received, so a test can see where Envoy
//! sent a request. A running upstream can be told to answer with another status or after a
//! delay or only once it has the whole request body, counts what it served, remembers the last
//! Host it was sent, and can terminate TLS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running upstream; stops when dropped.
pub struct Upstream {
    pub name: String,
    pub address: SocketAddr,
    behavior: Arc<Behavior>,
    task: JoinHandle<()>,
}

/// How an upstream answers, changeable while it runs.
#[derive(Default)]
struct Behavior {
    /// The status to answer with; 0 for 200.
    status: AtomicU16,
    delay_millis: AtomicU64,
    requests: AtomicU64,
    /// Requests still to be answered 503 before the usual answer (see `fail_next`).
    failures_left: AtomicU64,
    /// Whether to read the whole request body before answering (see `read_bodies`).
    read_bodies: AtomicBool,
    /// The Host (or `:authority`) of the last request.
    last_host: Mutex<Option<String>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What an upstream saw, as it reports it in its response body.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Echo {
    pub upstream: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
}

impl Upstream {
    /// Serves on `address` (e.g. `127.0.13.2:19080`) as `name`.
    pub async fn start(name: &str, address: &str) -> Upstream {
        let listener = TcpListener::bind(address)
            .await
            .unwrap_or_else(|error| panic!("bind upstream {name} on {address}: {error}"));
        Self::serve(name, listener)
    }

    /// Serves as `name` on a socket bound elsewhere (e.g. in a test host's network namespace).
    pub fn start_on(name: &str, listener: std::net::TcpListener) -> Upstream {
        Self::serve(name, tokio_listener(listener))
    }

    /// Serves as `name` on `address` over TLS; `acceptor` holds the certificate and decides
    /// whether clients must present one.
    pub async fn start_tls(
        name: &str,
        address: &str,
        acceptor: tokio_rustls::TlsAcceptor,
    ) -> Upstream {
        let tcp = TcpListener::bind(address)
            .await
            .unwrap_or_else(|error| panic!("bind upstream {name} on {address}: {error}"));
        Self::serve(name, TlsListener { tcp, acceptor })
    }

    /// From now on answers every request with `status` (200 restores normal answers); the body
    /// still tells who answered.
    pub fn answer_with(&self, status: u16) {
        self.behavior.status.store(status, Ordering::SeqCst);
    }

    /// From now on answers every request after `delay`.
    pub fn delay_answers(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.behavior.delay_millis.store(millis, Ordering::SeqCst);
    }

    /// Answers the next `count` requests with 503, then as before (for retries: the request that
    /// finally gets through shows `x-envoy-attempt-count`).
    pub fn fail_next(&self, count: u64) {
        self.behavior.failures_left.store(count, Ordering::SeqCst);
    }

    /// From now on answers only once the whole request body has arrived (a server that answers
    /// early would hide how long the upload took).
    pub fn read_bodies(&self) {
        self.behavior.read_bodies.store(true, Ordering::SeqCst);
    }

    /// The Host of the last request that reached this upstream.
    pub fn last_host(&self) -> Option<String> {
        self.behavior
            .last_host
            .lock()
            .map(|host| host.clone())
            .unwrap_or_default()
    }

    /// How many requests reached this upstream so far.
    pub fn requests(&self) -> u64 {
        self.behavior.requests.load(Ordering::SeqCst)
    }

    fn serve<L>(name: &str, listener: L) -> Upstream
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        let address = listener.local_addr().expect("bound address");
        let upstream = name.to_string();
        let behavior = Arc::new(Behavior::default());
        let shared = behavior.clone();
        let app = Router::new().fallback(move |request: Request<Body>| {
            let upstream = upstream.clone();
            let behavior = shared.clone();
            async move {
                let host = request
                    .headers()
                    .get("host")
                    .and_then(|host| host.to_str().ok())
                    .map(str::to_string)
                    .or_else(|| request.uri().authority().map(ToString::to_string));
                if let Ok(mut last) = behavior.last_host.lock() {
                    *last = host;
                }
                let request = if behavior.read_bodies.load(Ordering::SeqCst) {
                    let (parts, body) = request.into_parts();
                    let bytes = axum::body::to_bytes(body, usize::MAX)
                        .await
                        .unwrap_or_default();
                    Request::from_parts(parts, Body::from(bytes))
                } else {
                    request
                };
                behavior.requests.fetch_add(1, Ordering::SeqCst);
                let delay = behavior.delay_millis.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let mut status = match behavior.status.load(Ordering::SeqCst) {
                    0 => StatusCode::OK,
                    code => StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
                };
                let failing = behavior
                    .failures_left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                        left.checked_sub(1)
                    })
                    .is_ok();
                if failing {
                    status = StatusCode::SERVICE_UNAVAILABLE;
                }
                echo(&upstream, status, request)
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream {
            name: name.to_string(),
            address,
            behavior,
            task,
        }
    }
}

/// A TCP listener that completes a TLS handshake before handing a connection over; connections
/// whose handshake fails are dropped.
struct TlsListener {
    tcp: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, peer)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(stream)).await
            {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

fn echo(upstream: &str, status: StatusCode, request: Request<Body>) -> Response {
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.to_string(),
                value.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let body = json!({
        "upstream": upstream,
        "path": request.uri().path_and_query().map(ToString::to_string).unwrap_or_default(),
        "headers": headers,
    });
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A plain TCP server: it answers the first bytes of every connection with its name and closes.
/// For traffic Envoy passes through without looking into it (TLS routed by SNI).
pub struct TcpUpstream {
    pub name: String,
    pub address: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TcpUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TcpUpstream {
    /// Serves on `address` (e.g. `127.0.13.2:19080`) as `name`.
    pub async fn start(name: &str, address: &str) -> TcpUpstream {
        let listener = TcpListener::bind(address)
            .await
            .unwrap_or_else(|error| panic!("bind TCP upstream {name} on {address}: {error}"));
        Self::serve(name, listener)
    }

    /// Serves as `name` on a socket bound elsewhere (e.g. in a test pod's network namespace).
    pub fn start_on(name: &str, listener: std::net::TcpListener) -> TcpUpstream {
        Self::serve(name, tokio_listener(listener))
    }

    fn serve(name: &str, listener: TcpListener) -> TcpUpstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let bound = listener.local_addr().expect("bound address");
        let reply = name.as_bytes().to_vec();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let reply = reply.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    if matches!(socket.read(&mut buffer).await, Ok(read) if read > 0) {
                        let _ = socket.write_all(&reply).await;
                    }
                    let _ = socket.shutdown().await;
                });
            }
        });
        TcpUpstream {
            name: name.to_string(),
            address: bound,
            task,
        }
    }
}

/// A socket bound outside tokio (e.g. inside a network namespace), made a tokio listener.
fn tokio_listener(listener: std::net::TcpListener) -> TcpListener {
    listener
        .set_nonblocking(true)
        .expect("a non-blocking socket");
    TcpListener::from_std(listener).expect("a tokio listener")
}

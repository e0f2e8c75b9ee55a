//! The admin HTTP server: readiness, Prometheus metrics and debug views. Read-only: it reads the
//! published snapshot, the xDS registry and the metrics, and never changes what proxies are sent.
//!
//! Debug endpoints, all JSON and deterministic (sorted by proxy id and stream, or by object),
//! answered by one table ([`views`]) that the xDS type `istio.io/debug` answers from too:
//! - istiod's, in istiod's shapes, for the tools that read them ([`istiod`]): `/debug/syncz`,
//!   `/debug/adsz`, `/debug/connections`, `/debug/configz` (the Istio objects, untranslated
//!   kinds included), `/debug/config_dump?proxyID=` (and `/debug/edsz`), `/debug/registryz`,
//!   `/debug/endpointz`, `/debug/clusterz`, `/debug/list` and the `/debug` index.
//! - rudder's own, richer: `/debug/streamz` (per stream and type, the version and nonce last
//!   sent, the version last ACKed, the last NACK and its error, and the resulting [`SyncState`];
//!   SotW or delta), `/debug/inputz` (every input as loaded with its config errors, and the
//!   objects of kinds rudder does not translate with what that means), `/debug/peerz` (each
//!   stream's peer, proven identity and Secret access) and `/debug/envoy_config_dump?proxyID=`
//!   (what a proxy gets in the shape of Envoy's own `/config_dump`, for any node id).
//!
//! `/ready` and `/metrics` answer anyone (probes, Prometheus). `/debug/*` answers loopback callers
//! and authenticated ones only ([`auth`]), and runs on the blocking pool under a concurrency
//! bound ([`work`]), so debug requests cannot slow xDS or `/ready`. Connections have read and
//! idle timeouts ([`http`]).
//!
//! The JSON shapes of streamz and peerz are the types below; `rudder proxy-status` reads
//! streamz through them.

pub mod auth;
pub mod http;
mod inputz;
pub mod istiod;
mod throttle;
pub mod views;
pub mod work;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;
pub use crate::proxy_status::SyncState;
use crate::xds::debug::Scope;
use crate::xds::{ConnectedProxy, Registry, Snapshot, TypeStatus};
use auth::{Caller, DebugAuth, Decision};
pub use http::{HttpTimeouts, Peer};
use throttle::LogThrottle;
use work::DebugWork;

/// Whether rudder is ready to serve: set once the config is loaded and xDS is listening.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the endpoints read.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub registry: Registry,
    pub readiness: Readiness,
}

/// How the admin server protects itself and the rest of rudder.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    /// Who may read `/debug/*`.
    pub auth: Arc<DebugAuth>,
    /// How many debug requests do their work at once (`--debug-concurrency`).
    pub debug_concurrency: usize,
    /// How long a debug request waits for a free slot before a 503 (`--debug-queue-timeout`).
    pub debug_queue_timeout: Duration,
    pub timeouts: HttpTimeouts,
}

/// One debug request works at a time by default: a config dump of a large mesh is about a CPU
/// second, and the manifest gives rudder two CPUs, so one stays for xDS whatever debug callers do.
pub const DEFAULT_DEBUG_CONCURRENCY: usize = 1;
/// Long enough for a person's or `istioctl`'s request to wait out another one's small dump; short
/// enough that a flood is refused at once rather than held.
pub const DEFAULT_DEBUG_QUEUE_TIMEOUT: Duration = Duration::from_secs(1);

impl Default for AdminOptions {
    /// Loopback callers only, in the system namespace `istio-system`.
    fn default() -> AdminOptions {
        AdminOptions {
            auth: Arc::new(DebugAuth::new(crate::model::DEFAULT_ROOT_NAMESPACE)),
            debug_concurrency: DEFAULT_DEBUG_CONCURRENCY,
            debug_queue_timeout: DEFAULT_DEBUG_QUEUE_TIMEOUT,
            timeouts: HttpTimeouts::default(),
        }
    }
}

/// The routes' state: what they read and how debug requests are checked and bounded.
#[derive(Debug, Clone)]
struct App {
    state: AdminState,
    auth: Arc<DebugAuth>,
    work: DebugWork,
}

/// Refusals are logged at most once a second each; a client can cause them at will.
static REFUSED: LogThrottle = LogThrottle::new(Duration::from_secs(1));
static BUSY: LogThrottle = LogThrottle::new(Duration::from_secs(1));

/// Serves the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve_admin(
    listener: TcpListener,
    state: AdminState,
    options: AdminOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = App {
        state,
        auth: options.auth,
        work: DebugWork::new(options.debug_concurrency, options.debug_queue_timeout),
    };
    let debug = Router::new()
        .route("/", get(index))
        .route("/{name}", get(debug_view))
        // Its own, so that the check below covers unknown debug paths too.
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .layer(middleware::from_fn_with_state(app.clone(), authorize));
    let router = Router::new()
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .nest("/debug", debug)
        .with_state(app);
    http::serve(listener, router, options.timeouts, shutdown).await
}

/// Lets a debug request through to its route, or answers 401 or 403 with a one-line reason.
async fn authorize(State(app): State<App>, request: Request, next: Next) -> Response {
    let Some(Peer(peer)) = request.extensions().get::<Peer>().copied() else {
        // Every connection sets it; without it nothing can be decided.
        return (StatusCode::FORBIDDEN, "unknown peer\n").into_response();
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let path = request.uri().path().to_string();
    let (status, reason) = match app.auth.decide(peer.ip(), authorization).await {
        Decision::Allowed(caller) => {
            if caller != Caller::Local {
                tracing::debug!(%peer, ?caller, path, "debug request authorized");
            }
            return next.run(request).await;
        }
        Decision::Unauthenticated(reason) => (StatusCode::UNAUTHORIZED, reason.to_string()),
        Decision::Forbidden(reason) => (StatusCode::FORBIDDEN, reason),
    };
    if let Some(suppressed) = REFUSED.allow(Instant::now()) {
        tracing::warn!(%peer, path, status = status.as_u16(), reason, suppressed, "debug request refused");
    }
    let mut response = (status, reason + "\n").into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Runs `work` under the debug bound; over it, 503 with `Retry-After`.
async fn bounded(
    app: &App,
    peer: Option<Peer>,
    work: impl FnOnce() -> Response + Send + 'static,
) -> Response {
    match app.work.run(work).await {
        Ok(response) => response,
        Err(busy) => {
            if let Some(suppressed) = BUSY.allow(Instant::now()) {
                let peer = peer.map(|Peer(peer)| peer.to_string()).unwrap_or_default();
                tracing::warn!(peer, suppressed, "{busy}");
            }
            let retry_after = busy.queue_timeout.as_secs().max(1);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, retry_after.to_string())],
                format!("{busy}\n"),
            )
                .into_response()
        }
    }
}

async fn ready(State(app): State<App>) -> Response {
    if app.state.readiness.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    (
        [(header::CONTENT_TYPE, content_type)],
        app.state.metrics.render(),
    )
        .into_response()
}

/// How `/debug/syncz` names the protocol of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// State of the world (`StreamAggregatedResources`).
    Sotw,
    /// Incremental (`DeltaAggregatedResources`).
    Delta,
}

impl Protocol {
    fn of(connected: &ConnectedProxy) -> Protocol {
        if connected.delta {
            Protocol::Delta
        } else {
            Protocol::Sotw
        }
    }

    /// `SotW` or `Delta`, for people.
    pub fn display_name(self) -> &'static str {
        match self {
            Protocol::Sotw => "SotW",
            Protocol::Delta => "Delta",
        }
    }
}

/// One ADS stream in `/debug/syncz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSync {
    pub proxy_id: String,
    /// The stream's number; one proxy holds two for a moment while Envoy reconnects.
    pub connection: u64,
    pub protocol: Protocol,
    /// By type (`cds`, `eds`, `lds`, `rds`, `sds`); a type the proxy never subscribed to is absent.
    pub types: BTreeMap<String, TypeSync>,
}

/// What one stream did with one type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeSync {
    /// The version of the last response sent.
    pub sent: Option<String>,
    /// The nonce of the last response sent.
    pub nonce: Option<String>,
    /// The version the proxy last ACKed.
    pub acked: Option<String>,
    /// The last rejection, until the proxy ACKs a later response.
    pub nack: Option<NackSync>,
    /// What `istioctl proxy-status` would show.
    pub state: SyncState,
}

/// A rejected response: the version and Envoy's reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NackSync {
    pub version: String,
    pub message: String,
}

impl From<&TypeStatus> for TypeSync {
    fn from(status: &TypeStatus) -> TypeSync {
        let nack = status.nack.as_ref().map(|nack| NackSync {
            version: nack.version.clone(),
            message: nack.message.clone(),
        });
        TypeSync {
            state: SyncState::of(
                status.sent.as_deref(),
                status.acked.as_deref(),
                nack.as_ref().map(|nack| nack.version.as_str()),
            ),
            sent: status.sent.clone(),
            nonce: status.nonce.clone(),
            acked: status.acked.clone(),
            nack,
        }
    }
}

/// Every live stream with, per type, what was sent, ACKed and NACKed.
pub fn syncz_view(registry: &Registry) -> Vec<StreamSync> {
    registry
        .connected()
        .iter()
        .map(|connected| StreamSync {
            proxy_id: connected.proxy.id.clone(),
            connection: connected.connection,
            protocol: Protocol::of(connected),
            types: connected
                .types
                .iter()
                .map(|(ty, status)| (ty.short_name().to_string(), TypeSync::from(status)))
                .collect(),
        })
        .collect()
}

/// One ADS stream in `/debug/peerz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConnection {
    pub proxy_id: String,
    pub connection: u64,
    /// The proxy's address as the TCP connection shows it, when known.
    pub peer: Option<String>,
    /// The identity it proved (a SPIFFE id); `None`: unauthenticated.
    pub identity: Option<String>,
    /// The Secrets that identity may be sent: `none`, `ca-only` or `all`.
    pub secrets: String,
    /// When the stream opened, RFC 3339 in UTC.
    pub connected_since: String,
    pub protocol: Protocol,
}

/// `/debug/peerz`: every stream with its peer, proven identity and Secret access.
pub fn peerz_view(registry: &Registry) -> Vec<StreamConnection> {
    registry
        .connected()
        .iter()
        .map(|connected| StreamConnection {
            proxy_id: connected.proxy.id.clone(),
            connection: connected.connection,
            peer: connected.peer.map(|peer| peer.to_string()),
            identity: connected.identity.clone(),
            secrets: connected.proxy.secret_access.as_str().to_string(),
            connected_since: rfc3339(connected.connected_at),
            protocol: Protocol::of(connected),
        })
        .collect()
}

fn rfc3339(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time)
        .map(|timestamp| {
            format!(
                "{:.3}",
                timestamp
                    .round(jiff::Unit::Millisecond)
                    .unwrap_or(timestamp)
            )
        })
        .unwrap_or_default()
}

/// `/debug/NAME?QUERY`: the view of [`views::answer`], under the debug bound.
async fn debug_view(
    State(app): State<App>,
    peer: Option<axum::Extension<Peer>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let registry = app.state.registry.clone();
    let snapshot = app.state.snapshots.borrow().clone();
    bounded(&app, peer.map(|peer| peer.0), move || {
        let request = format!("{name}?{}", query.unwrap_or_default());
        let sources = views::Sources {
            registry: &registry,
            snapshot: &snapshot,
        };
        let answer = views::answer(&request, sources, &Scope::All);
        let mut response = match answer.body {
            views::Body::Json(value) => json_response(&value),
            views::Body::Text(message) => message.into_response(),
        };
        if response.status() == StatusCode::OK {
            *response.status_mut() = answer.status;
        }
        response
    })
    .await
}

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        istiod::index_html(),
    )
        .into_response()
}

fn json_response(value: &Value) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body + "\n").into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A minimal HTTP/1.1 GET: (status, body).
    async fn get(address: SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response.split(' ').nth(1).unwrap().parse().unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    }

    #[tokio::test]
    async fn serves_readiness_metrics_and_debug() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (_snapshots, receiver) = watch::channel(Arc::new(Snapshot::default()));
        let state = AdminState {
            snapshots: receiver,
            metrics: Arc::new(Metrics::new()),
            registry: Registry::default(),
            readiness: Readiness::default(),
        };
        let readiness = state.readiness.clone();
        let (_shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_admin(
            listener,
            state,
            AdminOptions::default(),
            async move {
                let _ = stop.await;
            },
        ));

        assert_eq!(get(address, "/ready").await.0, 503);
        readiness.set_ready();
        assert_eq!(get(address, "/ready").await, (200, "ready\n".to_string()));

        let (status, metrics) = get(address, "/metrics").await;
        assert_eq!(status, 200);
        for name in [
            "pilot_xds ",
            "pilot_xds_pushes{type=\"cds\"}",
            "pilot_total_xds_rejects{type=\"cds\"}",
            "pilot_proxy_convergence_time_bucket",
            "process_resident_memory_bytes",
            "rudder_config_errors",
            "rudder_config_builds_total",
        ] {
            assert!(metrics.contains(name), "{name} missing from\n{metrics}");
        }

        assert_eq!(get(address, "/debug/config_dump").await.0, 400);
        let (status, body) = get(address, "/debug/config_dump?proxyID=nonsense").await;
        assert_eq!(status, 404);
        assert!(body.contains("nonsense"), "{body}");
        let id = "sidecar~10.0.0.1~app.default~default.svc.cluster.local";
        let (status, body) = get(address, &format!("/debug/config_dump?proxyID={id}")).await;
        assert_eq!(status, 200);
        let dump: Value = serde_json::from_str(&body).unwrap();
        // istiod's: bootstrap, clusters, listeners, scoped routes, routes, secrets, extensions.
        assert_eq!(dump["configs"].as_array().unwrap().len(), 7);
        let (status, body) = get(address, &format!("/debug/envoy_config_dump?proxyID={id}")).await;
        assert_eq!(status, 200);
        let dump: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(dump["configs"].as_array().unwrap().len(), 5);
        assert_eq!(get(address, "/debug/nosuch").await.0, 404);

        assert_eq!(
            get(address, "/debug/syncz").await,
            (200, "[]\n".to_string())
        );
        assert_eq!(
            get(address, "/debug/streamz").await,
            (200, "[]\n".to_string())
        );
        let (status, index) = get(address, "/debug").await;
        assert_eq!(status, 200);
        for (path, _) in istiod::ENDPOINTS {
            assert!(
                index.contains(path),
                "{path} missing from the index:\n{index}"
            );
        }
        let (status, list) = get(address, "/debug/list").await;
        assert_eq!(status, 200);
        assert!(list.contains("\"syncz\""), "{list}");
        // A short form of no connected proxy: istiod's 404.
        assert_eq!(
            get(address, "/debug/config_dump?proxyID=app.default")
                .await
                .0,
            404
        );
        let (status, body) = get(address, "/debug/connections").await;
        assert_eq!(status, 200);
        let connections: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(connections, serde_json::json!({"totalClients": 0}));
        assert_eq!(
            get(address, "/debug/peerz").await,
            (200, "[]\n".to_string())
        );
        assert_eq!(
            get(address, "/debug/configz").await,
            (200, "[]\n".to_string())
        );
        let (status, body) = get(address, "/debug/inputz").await;
        assert_eq!(status, 200);
        let inputz: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            inputz,
            serde_json::json!({"generation": 0, "objects": [], "errors": [], "untranslated": []})
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc_to_the_millisecond() {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(rfc3339(time), "2023-11-14T22:13:20.123Z");
    }
}

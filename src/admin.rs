//! The admin HTTP server: readiness, Prometheus metrics and debug views (a proxy's config dump,
//! the sync state of connected proxies). Read-only: it reads the published model, the xDS
//! registry and the metrics, and never changes what proxies are sent.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::envoy_json;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::translate::{self, ResourceType};
use crate::xds::{Registry, Snapshot};

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

#[derive(Debug, Clone)]
pub struct AdminState {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub registry: Registry,
    pub readiness: Readiness,
}

/// Serves the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve_admin(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/debug/config_dump", get(config_dump))
        .route("/debug/syncz", get(syncz))
        .with_state(state);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn ready(State(state): State<AdminState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    (
        [(header::CONTENT_TYPE, content_type)],
        state.metrics.render(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct DumpQuery {
    #[serde(rename = "proxyID")]
    proxy_id: Option<String>,
}

/// What a proxy gets from the current model, as Envoy's `/config_dump` would show it. A connected
/// proxy is dumped as identified on its stream (metadata included) with the versions it was sent;
/// any other node id is dumped as if it connected without metadata, with empty versions.
async fn config_dump(State(state): State<AdminState>, Query(query): Query<DumpQuery>) -> Response {
    let Some(proxy_id) = query.proxy_id.filter(|id| !id.is_empty()) else {
        return bad_request("missing ?proxyID= (the proxy's node id)".to_string());
    };
    let snapshot = state.snapshots.borrow().clone();
    let (proxy, versions) = match state.registry.get(&proxy_id) {
        Some(connected) => {
            let versions: BTreeMap<ResourceType, String> = connected
                .types
                .into_iter()
                .filter_map(|(ty, status)| Some((ty, status.sent?)))
                .collect();
            (connected.proxy, versions)
        }
        None => match Proxy::parse(&proxy_id, &Value::Null) {
            Ok(proxy) => (proxy.with_workload_labels(&snapshot.model), BTreeMap::new()),
            Err(error) => return bad_request(error.to_string()),
        },
    };
    let resources = translate::translate(&snapshot.model, &proxy);
    match envoy_json::config_dump(&resources, |ty| {
        versions.get(&ty).cloned().unwrap_or_default()
    }) {
        Ok(dump) => json_response(&dump),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
    }
}

/// Every connected proxy with, per type, the versions sent and ACKed and the last rejection.
async fn syncz(State(state): State<AdminState>) -> Response {
    let proxies: Vec<Value> = state
        .registry
        .connected()
        .into_iter()
        .map(|connected| {
            let types: serde_json::Map<String, Value> = connected
                .types
                .iter()
                .map(|(ty, status)| {
                    let nack = status
                        .nack
                        .as_ref()
                        .map(|nack| json!({"version": nack.version, "message": nack.message}));
                    let entry = json!({"sent": status.sent, "acked": status.acked, "nack": nack});
                    (ty.short_name().to_string(), entry)
                })
                .collect();
            json!({
                "proxy_id": connected.proxy.id,
                "connection": connected.connection,
                "types": types,
            })
        })
        .collect();
    json_response(&Value::Array(proxies))
}

fn json_response(value: &Value) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body + "\n").into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
    }
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message + "\n").into_response()
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
        tokio::spawn(serve_admin(listener, state, async move {
            let _ = stop.await;
        }));

        assert_eq!(get(address, "/ready").await.0, 503);
        readiness.set_ready();
        assert_eq!(get(address, "/ready").await, (200, "ready\n".to_string()));

        let (status, metrics) = get(address, "/metrics").await;
        assert_eq!(status, 200);
        for name in [
            "rudder_xds_connected_proxies",
            "rudder_xds_pushes_total",
            "rudder_xds_rejects_total",
            "rudder_config_errors",
            "rudder_config_builds_total",
        ] {
            assert!(metrics.contains(name), "{name} missing from\n{metrics}");
        }

        assert_eq!(get(address, "/debug/config_dump").await.0, 400);
        let (status, body) = get(address, "/debug/config_dump?proxyID=nonsense").await;
        assert_eq!(status, 400);
        assert!(body.contains("nonsense"), "{body}");
        let id = "sidecar~10.0.0.1~app.default~default.svc.cluster.local";
        let (status, body) = get(address, &format!("/debug/config_dump?proxyID={id}")).await;
        assert_eq!(status, 200);
        let dump: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(dump["configs"].as_array().unwrap().len(), 4);

        assert_eq!(
            get(address, "/debug/syncz").await,
            (200, "[]\n".to_string())
        );
    }
}

//! Upstream HTTP servers, on loopback addresses or in a test host's network namespace: each
//! answers every request with its own name and what it received, so a test can see where Envoy
//! sent a request.

use std::collections::BTreeMap;
use std::net::SocketAddr;

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
    task: JoinHandle<()>,
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
        listener
            .set_nonblocking(true)
            .expect("a non-blocking socket");
        Self::serve(
            name,
            TcpListener::from_std(listener).expect("a tokio listener"),
        )
    }

    fn serve(name: &str, listener: TcpListener) -> Upstream {
        let address = listener.local_addr().expect("bound address");
        let upstream = name.to_string();
        let app = Router::new().fallback(move |request: Request<Body>| {
            let upstream = upstream.clone();
            async move { echo(&upstream, request) }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream {
            name: name.to_string(),
            address,
            task,
        }
    }
}

fn echo(upstream: &str, request: Request<Body>) -> Response {
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
        StatusCode::OK,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

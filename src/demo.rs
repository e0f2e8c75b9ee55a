//! `rudder demo-backends`: stand-in workloads for trying rudder on a config directory without
//! real applications. Every endpoint address of the config's services gets a small HTTP server
//! that answers each request with the service, version and Pod it stands for, so a request sent
//! through Envoy shows where it was routed. For demos and the README's quickstart only: `serve`
//! never uses it, and it holds no routing logic of its own.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Router;
use axum::http::{HeaderMap, Method, Uri, header};
use tokio::net::TcpListener;

use crate::model::{EndpointAddress, Model};

/// One stand-in workload: where it listens and who it says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub address: SocketAddr,
    /// The short name of the first service (by hostname) with an endpoint here.
    pub service: String,
    pub namespace: String,
    /// The endpoint's `version` label, or `-`.
    pub version: String,
    /// The Pod with the endpoint's IP, or `-`.
    pub pod: String,
}

impl Backend {
    /// What it answers to every request: one line, service and version first.
    fn answer(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> String {
        let host = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .unwrap_or("-");
        format!(
            "{} {} (pod {}.{} on {}): {method} {uri} host {host}\n",
            self.service, self.version, self.pod, self.namespace, self.address
        )
    }
}

/// Why the backends could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("the config has no service endpoint with an IP address to stand in for")]
    NoEndpoints,
    #[error("listen on {address} for {service} {version}: {source}")]
    Bind {
        address: SocketAddr,
        service: String,
        version: String,
        source: std::io::Error,
    },
}

/// The backends `model` calls for: one per endpoint IP and port of its services, the first
/// service by hostname naming it (a Pod behind several services answers as the first).
/// Endpoints known by name only (DNS entries) have no address to listen on and are left out.
pub fn backends(model: &Model) -> Vec<Backend> {
    let mut by_address: BTreeMap<SocketAddr, Backend> = BTreeMap::new();
    for service in model.services.values() {
        for endpoint in &service.endpoints {
            let EndpointAddress::Ip(ip) = endpoint.address else {
                continue;
            };
            let address = SocketAddr::new(ip, endpoint.port);
            by_address.entry(address).or_insert_with(|| Backend {
                address,
                service: service.name.clone(),
                namespace: service.namespace.clone(),
                version: endpoint
                    .labels
                    .get("version")
                    .cloned()
                    .unwrap_or_else(|| "-".to_string()),
                pod: model
                    .workloads
                    .get(&ip)
                    .map_or_else(|| "-".to_string(), |workload| workload.name.clone()),
            });
        }
    }
    by_address.into_values().collect()
}

/// Listens on every backend's address, then serves them until the process ends. Binding all
/// first means a taken address fails the command before anything answers.
pub async fn serve_backends(backends: Vec<Backend>) -> Result<(), DemoError> {
    if backends.is_empty() {
        return Err(DemoError::NoEndpoints);
    }
    let mut bound = Vec::new();
    for backend in backends {
        let listener =
            TcpListener::bind(backend.address)
                .await
                .map_err(|source| DemoError::Bind {
                    address: backend.address,
                    service: backend.service.clone(),
                    version: backend.version.clone(),
                    source,
                })?;
        tracing::info!(
            address = %backend.address,
            service = %backend.service,
            version = %backend.version,
            pod = %backend.pod,
            "backend listening"
        );
        bound.push((listener, backend));
    }
    let mut servers = tokio::task::JoinSet::new();
    for (listener, backend) in bound {
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
            let answer = backend.answer(&method, &uri, &headers);
            async move { answer }
        });
        servers.spawn(async move { axum::serve(listener, app).await });
    }
    // The servers run until the process is stopped; one that fails is logged, the rest go on.
    while let Some(ended) = servers.join_next().await {
        if let Ok(Err(error)) = ended {
            tracing::warn!(%error, "a backend stopped");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LastGood, build};
    use crate::source::file::load_dirs;

    #[test]
    fn the_bookinfo_example_gets_one_backend_per_pod_with_its_version() {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bookinfo");
        let built = build(&load_dirs(&[example]).inputs(), &LastGood::default());
        let backends = backends(&built.model);
        let found: Vec<(String, &str, &str, &str)> = backends
            .iter()
            .map(|backend| {
                (
                    backend.address.to_string(),
                    backend.service.as_str(),
                    backend.version.as_str(),
                    backend.pod.as_str(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                (
                    "127.0.10.1:9080".to_string(),
                    "productpage",
                    "v1",
                    "productpage-v1"
                ),
                ("127.0.11.1:9080".to_string(), "details", "v1", "details-v1"),
                ("127.0.12.1:9080".to_string(), "ratings", "v1", "ratings-v1"),
                ("127.0.13.1:9080".to_string(), "reviews", "v1", "reviews-v1"),
                ("127.0.13.2:9080".to_string(), "reviews", "v2", "reviews-v2"),
                ("127.0.13.3:9080".to_string(), "reviews", "v3", "reviews-v3"),
            ]
        );
    }
}

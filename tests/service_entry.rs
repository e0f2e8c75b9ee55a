//! ServiceEntries end to end through a real Envoy: a STATIC entry's endpoints receive requests
//! for its host, and a DestinationRule subset routed to by a VirtualService reaches only its own
//! endpoints; a DNS entry's endpoint `localhost` is resolved by Envoy; a WorkloadEntry selected
//! by an entry's `workloadSelector` receives the entry's traffic; a `unix://` endpoint receives
//! requests on its socket. Each test has its own port
//! (19401-19409, endpoints on 1941x) and upstream addresses (127.0.14N.x), so they run in
//! parallel.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use rudder::bootstrap::AdsApiType;
use support::mesh::{Mesh, NAMESPACE};
use support::upstream::Upstream;

const PROPAGATION_LIMIT: Duration = Duration::from_secs(5);

/// The upstreams that answer `count` requests for `host` (with `headers`).
async fn answering(
    mesh: &Mesh,
    host: &str,
    headers: &[(&str, &str)],
    count: usize,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for _ in 0..count {
        seen.insert(mesh.upstream_of(host, headers).await);
    }
    seen
}

fn names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_entry_reaches_its_endpoints_and_subsets_split_them() {
    let port = 19401;
    let _v1 = Upstream::start("inventory-v1", &format!("127.0.141.1:{port}")).await;
    let _v2 = Upstream::start("inventory-v2", &format!("127.0.141.2:{port}")).await;
    let entry = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: inventory, namespace: {NAMESPACE}}}\n\
         spec:\n  hosts: [inventory.shop.example]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  \
         ports: [{{number: {port}, name: http, protocol: HTTP}}]\n  endpoints:\n  \
         - {{address: 127.0.141.1, labels: {{version: v1}}}}\n  \
         - {{address: 127.0.141.2, labels: {{version: v2}}}}\n"
    );
    let mesh = Mesh::start(AdsApiType::Grpc, port, &[("entry.yaml", entry)]).await;
    let host = "inventory.shop.example";
    let both = names(&["inventory-v1", "inventory-v2"]);
    let balanced = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            answering(&mesh, host, &[], 10).await == both
        })
        .await;
    assert!(
        balanced.is_some(),
        "both endpoints should answer; saw {:?}",
        answering(&mesh, host, &[], 10).await
    );

    let rules = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {{name: inventory, namespace: {NAMESPACE}}}\n\
         spec:\n  host: {host}\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  \
         - {{name: v2, labels: {{version: v2}}}}\n\
         ---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: inventory, namespace: {NAMESPACE}}}\n\
         spec:\n  hosts: [{host}]\n  http:\n  \
         - match: [{{headers: {{x-canary: {{exact: \"yes\"}}}}}}]\n    \
         route: [{{destination: {{host: {host}, subset: v2}}}}]\n  \
         - route: [{{destination: {{host: {host}, subset: v1}}}}]\n"
    );
    mesh.write("rules.yaml", &rules);
    // Settled once both routes hold for a run of requests (one lucky run could fool either).
    let canary = [("x-canary", "yes")];
    let routed = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            answering(&mesh, host, &canary, 10).await == names(&["inventory-v2"])
                && answering(&mesh, host, &[], 10).await == names(&["inventory-v1"])
        })
        .await;
    assert!(routed.is_some(), "{}", mesh.envoy.log());
    assert_eq!(
        answering(&mesh, host, &[], 20).await,
        names(&["inventory-v1"])
    );
    assert_eq!(
        answering(&mesh, host, &canary, 20).await,
        names(&["inventory-v2"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_entry_resolves_localhost() {
    let port = 19402;
    let _upstream = Upstream::start("resolved", "127.0.0.1:19412").await;
    let entry = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: search, namespace: {NAMESPACE}}}\n\
         spec:\n  hosts: [search.example.com]\n  location: MESH_EXTERNAL\n  resolution: DNS\n  \
         ports: [{{number: {port}, name: http, protocol: HTTP}}]\n  \
         endpoints: [{{address: localhost, ports: {{http: 19412}}}}]\n"
    );
    let mesh = Mesh::start(AdsApiType::Grpc, port, &[("entry.yaml", entry)]).await;
    let reached = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            mesh.upstream_of("search.example.com", &[]).await == "resolved"
        })
        .await;
    assert!(
        reached.is_some(),
        "saw {}; Envoy's log:\n{}",
        mesh.upstream_of("search.example.com", &[]).await,
        mesh.envoy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_entry_selected_by_an_entry_receives_its_traffic() {
    let port = 19403;
    let _vm = Upstream::start("legacy-vm", "127.0.142.1:19413").await;
    let config = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: legacy, namespace: {NAMESPACE}}}\n\
         spec:\n  hosts: [legacy.vms.example]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  \
         ports: [{{number: {port}, name: http, protocol: HTTP}}]\n  \
         workloadSelector: {{labels: {{app: legacy}}}}\n\
         ---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
         metadata: {{name: vm-1, namespace: {NAMESPACE}}}\n\
         spec:\n  address: 127.0.142.1\n  labels: {{app: legacy}}\n  ports: {{http: 19413}}\n\
         ---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
         metadata: {{name: vm-elsewhere, namespace: other}}\n\
         spec:\n  address: 127.0.142.2\n  labels: {{app: legacy}}\n  ports: {{http: 19413}}\n"
    );
    let mesh = Mesh::start(AdsApiType::Grpc, port, &[("legacy.yaml", config)]).await;
    let reached = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            mesh.upstream_of("legacy.vms.example", &[]).await == "legacy-vm"
        })
        .await;
    assert!(
        reached.is_some(),
        "saw {}",
        mesh.upstream_of("legacy.vms.example", &[]).await
    );
    // Only the WorkloadEntry of the entry's namespace is an endpoint.
    assert_eq!(
        answering(&mesh, "legacy.vms.example", &[], 10).await,
        names(&["legacy-vm"])
    );
}

/// An HTTP server on the unix domain socket `path`, answering every request as `name` (in the
/// JSON `support::upstream` answers with), one request per connection.
fn unix_upstream(name: &'static str, path: &std::path::Path) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::UnixListener::bind(path).expect("bind the socket");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let body = serde_json::json!({"upstream": name, "path": "/", "headers": {}});
                let body = body.to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_entry_reaches_a_unix_domain_socket() {
    let port = 19404;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let socket = dir.path().join("app.sock");
    let server = unix_upstream("socket", &socket);
    let entry = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: local-socket, namespace: {NAMESPACE}}}\n\
         spec:\n  hosts: [socket.example.internal]\n  resolution: STATIC\n  \
         ports: [{{number: {port}, name: http, protocol: HTTP}}]\n  \
         endpoints: [{{address: \"unix://{}\"}}]\n",
        socket.display()
    );
    let mesh = Mesh::start(AdsApiType::Grpc, port, &[("entry.yaml", entry)]).await;
    let reached = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            mesh.upstream_of("socket.example.internal", &[]).await == "socket"
        })
        .await;
    assert!(
        reached.is_some(),
        "saw {}; Envoy's log:\n{}",
        mesh.upstream_of("socket.example.internal", &[]).await,
        mesh.envoy.log()
    );
    server.abort();
}

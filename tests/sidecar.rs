//! The Sidecar resource end to end: rudder serves a config directory, a real Envoy attaches over
//! ADS as a proxy in `bookinfo`, and what it holds (its admin `/config_dump`) and what requests
//! through it get show the Sidecar applied: REGISTRY_ONLY answering 502 for unknown hosts while
//! known services still work, egress hosts leaving other namespaces' clusters out, and an egress
//! listener with `captureMode: NONE` bound for real under iptables interception. Each test has its
//! own ports (19236 to 19239) and addresses (`127.0.236.x`), so they run in parallel.

mod support;

use std::time::Duration;

use rudder::bootstrap::AdsApiType;
use rudder::serve::Server;
use serde_json::json;
use support::envoy_process::EnvoyProcess;
use support::mesh::{Backend, Mesh, NODE_ID, Reply, local_serve_options, service_yaml};
use support::upstream::Upstream;

const PROPAGATION_LIMIT: Duration = Duration::from_secs(10);
/// Unknown hosts get a 502 rather than passing through to the address dialled, which with
/// listeners on loopback would be Envoy itself.
const REGISTRY_ONLY: &str = "  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n";

fn ip(octet: u8) -> String {
    format!("127.0.236.{octet}")
}

/// A Service `name` in `namespace` on `port` served by one upstream Pod at `127.0.236.OCTET`.
fn service_in(namespace: &str, name: &str, octet: u8, port: u16) -> String {
    let backend = Backend::new(&format!("{name}-1"), &ip(octet), "v1");
    service_yaml(name, &format!("10.96.236.{octet}"), port, &[backend])
        .replace("namespace: bookinfo", &format!("namespace: {namespace}"))
}

fn sidecar(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: bookinfo}}\nspec:\n{spec}"
    )
}

async fn envoy_admin(admin: &str, path: &str) -> String {
    reqwest::get(format!("http://{admin}{path}"))
        .await
        .expect("Envoy's admin answers")
        .text()
        .await
        .expect("Envoy's admin body")
}

async fn active_clusters(mesh: &Mesh) -> String {
    envoy_admin(
        &mesh.envoy.admin,
        "/config_dump?resource=dynamic_active_clusters",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_only_blocks_unknown_hosts_and_known_services_still_work() {
    let port = 19236;
    let _reviews = Upstream::start("reviews", &format!("{}:{port}", ip(1))).await;
    let files = [
        ("reviews.yaml", service_in("bookinfo", "reviews", 1, port)),
        ("sidecar.yaml", sidecar(REGISTRY_ONLY)),
    ];
    let mesh = Mesh::start(AdsApiType::Grpc, port, &files).await;
    assert_eq!(mesh.upstream_of("reviews", &[]).await, "reviews");
    match mesh.get("unknown.example.com", "/", &[]).await {
        Reply::Status(502) => {}
        other => panic!("an unknown host gets Envoy's 502, not {other:?}"),
    }
    let routes = envoy_admin(
        &mesh.envoy.admin,
        "/config_dump?resource=dynamic_route_configs",
    )
    .await;
    assert!(routes.contains("\"block_all\""), "{routes}");
    assert!(!routes.contains("PassthroughCluster"), "{routes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_hosts_leave_other_namespaces_out_of_envoy() {
    let port = 19237;
    let _reviews = Upstream::start("reviews", &format!("{}:{port}", ip(11))).await;
    let _billing = Upstream::start("billing", &format!("{}:{port}", ip(12))).await;
    let files = [
        ("reviews.yaml", service_in("bookinfo", "reviews", 11, port)),
        ("billing.yaml", service_in("finance", "billing", 12, port)),
        (
            "sidecar.yaml",
            sidecar(&format!("{REGISTRY_ONLY}  egress:\n  - hosts: [./*]\n")),
        ),
    ];
    let mesh = Mesh::start(AdsApiType::Grpc, port, &files).await;
    let billing_cluster = format!("outbound|{port}||billing.finance.svc.cluster.local");
    let reviews_cluster = format!("outbound|{port}||reviews.bookinfo.svc.cluster.local");
    let clusters = active_clusters(&mesh).await;
    assert!(clusters.contains(&reviews_cluster), "{clusters}");
    assert!(!clusters.contains(&billing_cluster), "{clusters}");
    assert_eq!(mesh.upstream_of("reviews", &[]).await, "reviews");
    // Unknown to this proxy, billing's name is refused.
    assert!(matches!(
        mesh.get("billing.finance.svc.cluster.local", "/", &[])
            .await,
        Reply::Status(502)
    ));

    // Importing finance brings billing's cluster and route.
    mesh.write(
        "sidecar.yaml",
        &sidecar(&format!(
            "{REGISTRY_ONLY}  egress:\n  - hosts: [./*, finance/*]\n"
        )),
    );
    let arrived = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            mesh.upstream_of("billing.finance.svc.cluster.local", &[])
                .await
                == "billing"
        })
        .await;
    assert!(arrived.is_some(), "{}", mesh.envoy.log());
    assert!(active_clusters(&mesh).await.contains(&billing_cluster));

    // An invalid edit is reported; the last valid Sidecar keeps applying.
    mesh.write(
        "sidecar.yaml",
        &sidecar("  egress:\n  - hosts: [finance]\n"),
    );
    let reported = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            mesh.admin("/debug/inputz")
                .await
                .contains("is not namespace/host")
        })
        .await;
    assert!(reported.is_some());
    assert_eq!(
        mesh.upstream_of("billing.finance.svc.cluster.local", &[])
            .await,
        "billing"
    );
}

/// Under iptables interception nothing binds but virtualOutbound, except an egress listener with
/// `captureMode: NONE`, which binds for real and carries traffic for the hosts it imports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_none_egress_listener_binds_under_interception() {
    let port = 19238;
    let other_port = 19239;
    let _reviews = Upstream::start("reviews", &format!("{}:{port}", ip(21))).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files = [
        ("reviews.yaml", service_in("bookinfo", "reviews", 21, port)),
        (
            "ratings.yaml",
            service_in("bookinfo", "ratings", 22, other_port),
        ),
        (
            "sidecar.yaml",
            sidecar(&format!(
                "  egress:\n  - port: {{number: {port}, protocol: HTTP, name: http-reviews}}\n    \
                 bind: 127.0.0.1\n    captureMode: NONE\n    hosts: [./reviews.bookinfo.svc.cluster.local]\n  \
                 - hosts: [./*]\n"
            )),
        ),
    ];
    for (name, contents) in &files {
        std::fs::write(dir.path().join(name), contents).expect("write a config file");
    }
    let server = Server::start(local_serve_options(vec![dir.path().to_path_buf()]))
        .await
        .expect("rudder starts");
    let metadata = json!({
        "NAMESPACE": "bookinfo",
        "INTERCEPTION_MODE": "REDIRECT",
        "LABELS": {"app": "client"},
    });
    let envoy = EnvoyProcess::start(NODE_ID, metadata, server.xds_address(), AdsApiType::Grpc);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    let get = |port: u16| {
        client
            .get(format!("http://127.0.0.1:{port}/"))
            .header("host", "reviews")
            .send()
    };
    let mut answer = None;
    for _ in 0..200 {
        if let Ok(response) = get(port).await {
            answer = Some(response.text().await.unwrap_or_default());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = answer.unwrap_or_else(|| panic!("nothing listens on {port}: {}", envoy.log()));
    assert!(answer.contains("\"reviews\""), "{answer}");

    // The catch-all's listener for ratings exists but does not bind.
    let listeners = envoy_admin(&envoy.admin, "/listeners").await;
    assert!(
        listeners.contains(&format!("127.0.0.1_{port}")),
        "{listeners}"
    );
    assert!(
        listeners.contains(&format!("0.0.0.0_{other_port}")),
        "{listeners}"
    );
    assert!(get(other_port).await.is_err());
}

//! Istio kinds rudder does not translate, against a real Kubernetes API server: with Istio's own
//! CRDs for AuthorizationPolicy and PeerAuthentication installed (from the `istio.io/api` module
//! on the Go module proxy) and every other Istio CRD missing, rudder still becomes ready, and each
//! object of those kinds `kubectl apply` creates is listed in `/debug/inputz` with what it means
//! for traffic and in istiod's `/debug/configz` as an object, counted in
//! `rudder_untranslated_objects{kind}` and logged as a warning; deleting it takes it out again.

mod support;

use std::time::{Duration, Instant};

use rudder::serve::{ServeOptions, Server};
use serde_json::Value;
use support::cluster::DevCluster;
use support::mesh::local_serve_options;

const PROPAGATION_LIMIT: Duration = Duration::from_secs(10);

/// The CRDs of `kinds` only, from Istio's pinned CRDs (`support::istio_crds`).
fn istio_crds(kinds: &[&str]) -> String {
    let all = support::istio_crds::yaml(&support::istio_crds::pinned());
    let wanted: Vec<&str> = all
        .split("\n---\n")
        .filter(|document| {
            kinds
                .iter()
                .any(|kind| document.contains(&format!("\n    kind: {kind}\n")))
        })
        .collect();
    assert_eq!(wanted.len(), kinds.len(), "one CRD per kind");
    wanted.join("\n---\n")
}

const DENY_ALL: &str = "\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: default}
spec: {action: DENY, rules: [{}]}
";

const STRICT: &str = "\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: default}
spec: {mtls: {mode: STRICT}}
";

async fn get(url: String) -> String {
    reqwest::get(url)
        .await
        .expect("admin answers")
        .text()
        .await
        .expect("a body")
}

/// `(kind, namespace/name)` of each object `/debug/inputz` lists as untranslated.
async fn untranslated(admin: std::net::SocketAddr) -> Vec<(String, String)> {
    let inputz: Value =
        serde_json::from_str(&get(format!("http://{admin}/debug/inputz")).await).expect("JSON");
    inputz["untranslated"]
        .as_array()
        .expect("an untranslated list")
        .iter()
        .map(|object| {
            (
                object["kind"].as_str().unwrap_or_default().to_string(),
                format!(
                    "{}/{}",
                    object["namespace"].as_str().unwrap_or_default(),
                    object["name"].as_str().unwrap_or_default()
                ),
            )
        })
        .collect()
}

async fn gauge(admin: std::net::SocketAddr, kind: &str) -> String {
    let metrics = get(format!("http://{admin}/metrics")).await;
    let prefix = format!("rudder_untranslated_objects{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
        .to_string()
}

/// Waits until `condition` holds, failing the test after [`PROPAGATION_LIMIT`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PROPAGATION_LIMIT;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untranslated_objects_in_the_cluster_are_reported() {
    let cluster = DevCluster::up("untranslated");
    cluster.apply_crds(
        &["apply", "--server-side", "-f", "-"],
        &istio_crds(&["AuthorizationPolicy", "PeerAuthentication"]),
    );
    cluster.apply(DENY_ALL);

    let server = Server::start(ServeOptions {
        kubernetes: Some(cluster.kubernetes_options()),
        ..local_serve_options(Vec::new())
    })
    .await
    .expect("rudder starts with most Istio CRDs missing");
    let admin = server.admin_address();
    let ready = reqwest::get(format!("http://{admin}/ready"))
        .await
        .expect("admin answers");
    assert_eq!(ready.status(), 200);

    let deny_all = (
        "AuthorizationPolicy".to_string(),
        "default/deny-all".to_string(),
    );
    eventually("the AuthorizationPolicy listed", || async {
        untranslated(admin).await == [deny_all.clone()]
    })
    .await;
    assert_eq!(gauge(admin, "AuthorizationPolicy").await, "1");
    assert_eq!(gauge(admin, "EnvoyFilter").await, "0");
    let inputz = get(format!("http://{admin}/debug/inputz")).await;
    assert!(
        inputz.contains(
            "AuthorizationPolicy default/deny-all: warning: not translated by rudder yet; NOT \
             enforced"
        ),
        "{inputz}"
    );
    // istiod's configz lists it as its config store would: an object of its kind.
    let configz: Value =
        serde_json::from_str(&get(format!("http://{admin}/debug/configz")).await).expect("JSON");
    let listed = configz.as_array().expect("a list").iter().any(|object| {
        object["kind"] == "AuthorizationPolicy"
            && object["apiVersion"] == "security.istio.io/v1"
            && object["metadata"]["namespace"] == "default"
            && object["metadata"]["name"] == "deny-all"
    });
    assert!(listed, "{configz}");

    cluster.apply(STRICT);
    let strict = (
        "PeerAuthentication".to_string(),
        "default/strict".to_string(),
    );
    eventually("the PeerAuthentication listed", || async {
        untranslated(admin).await == [deny_all.clone(), strict.clone()]
    })
    .await;

    cluster.ok(
        &["delete", "authorizationpolicy", "deny-all", "-n", "default"],
        "",
    );
    eventually("the AuthorizationPolicy gone", || async {
        untranslated(admin).await == [strict.clone()]
    })
    .await;
    assert_eq!(gauge(admin, "AuthorizationPolicy").await, "0");
    assert_eq!(gauge(admin, "PeerAuthentication").await, "1");
    server.stop().await;
}

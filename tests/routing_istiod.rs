//! Route behaviour where rudder once differed from istiod 1.31, checked with traffic through a
//! real Envoy sidecar (interception `NONE`, see `support::mesh`): what istiod's routes do is the
//! expected outcome (each was confirmed against istiod's own config for the same rules).
//! - No status code is retried by default (istiod since 1.24): a plain 503 reaches the client.
//! - A VirtualService `timeout` bounds the wait for the answer, not the upload: no
//!   `max_stream_duration`.
//! - Retries to a consistently hashed destination stay on the hashed host.
//! - A mirrored request keeps its Host (no `-shadow` suffix).
//! - A destination service without the listener's port is not rerouted to a port it has.
//! - A service answers to its absolute name (`name.namespace.svc.cluster.local.`).
//!
//! Each test has its own port (19210 to 19212) and its own addresses (`127.0.NET.x`).

mod support;

use std::time::Duration;

use rudder::bootstrap::AdsApiType;
use support::mesh::{Mesh, NAMESPACE, Reply, TestNet};
use support::upstream::{Echo, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROPAGATION_LIMIT: Duration = Duration::from_secs(5);

fn config(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: {kind}\n\
         metadata: {{name: {name}, namespace: {NAMESPACE}}}\nspec:\n{spec}"
    )
}

fn echo(reply: &Reply) -> &Echo {
    match reply {
        Reply::Upstream(echo) => echo,
        other => panic!("expected an upstream's answer, got {other:?}"),
    }
}

/// Waits until `GET host path` is answered by an upstream (rules propagated).
async fn wait_for_upstream(mesh: &Mesh, host: &str, path: &str) {
    let reached = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            matches!(mesh.get(host, path, &[]).await, Reply::Upstream(_))
        })
        .await;
    assert!(
        reached.is_some(),
        "GET {host}{path} never reached an upstream; Envoy log:\n{}",
        mesh.envoy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_503s_are_not_retried_and_hashed_retries_stay_on_their_host() {
    let net = TestNet(210);
    let failing = Upstream::start("failing", &net.address(1)).await;
    let sticky_a = Upstream::start("sticky-a", &net.address(2)).await;
    let sticky_b = Upstream::start("sticky-b", &net.address(3)).await;
    let rules = [
        config(
            "DestinationRule",
            "sticky",
            "  host: sticky\n  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}\n",
        ),
        config(
            "VirtualService",
            "sticky",
            "  hosts: [sticky]\n  http:\n  - retries: {attempts: 2, retryOn: '503'}\n    \
             route: [{destination: {host: sticky}}]\n",
        ),
    ]
    .join("---\n");
    let files = [
        (
            "failing.yaml",
            net.service("failing", 1, &[("failing-1", 1, "v1")]),
        ),
        (
            "sticky.yaml",
            net.service("sticky", 2, &[("sticky-a", 2, "v1"), ("sticky-b", 3, "v1")]),
        ),
        ("rules.yaml", rules),
    ];
    let mesh = Mesh::start(AdsApiType::Grpc, net.port(), &files).await;
    wait_for_upstream(&mesh, "failing", "/").await;
    wait_for_upstream(&mesh, "sticky", "/").await;

    // The default retry policy retries connect failures and resets, not an answered 503: a
    // non-idempotent request must not be replayed.
    failing.answer_with(503);
    let before = failing.requests();
    let reply = mesh.get("failing", "/", &[]).await;
    assert!(matches!(reply, Reply::Status(503)), "{reply:?}");
    assert_eq!(failing.requests() - before, 1);

    // Consistent hashing: the retry of a failed request goes to the same host, not another.
    let user = [("x-user", "alice")];
    let first = echo(&mesh.get("sticky", "/", &user).await).upstream.clone();
    let (hashed, other) = if first == "sticky-a" {
        (&sticky_a, &sticky_b)
    } else {
        (&sticky_b, &sticky_a)
    };
    let (hashed_before, other_before) = (hashed.requests(), other.requests());
    hashed.fail_next(1);
    let retried = mesh.get("sticky", "/", &user).await;
    let retried = echo(&retried);
    assert_eq!(retried.upstream, first);
    assert_eq!(
        retried
            .headers
            .get("x-envoy-attempt-count")
            .map(String::as_str),
        Some("2")
    );
    assert_eq!(hashed.requests() - hashed_before, 2);
    assert_eq!(other.requests() - other_before, 0);
}

/// A POST through the sidecar whose body follows its headers after `body_delay`; the status.
async fn slow_upload(port: u16, host: &str, path: &str, body_delay: Duration) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the sidecar");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send the headers");
    tokio::time::sleep(body_delay).await;
    stream.write_all(b"hello").await.expect("send the body");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_bounds_the_answer_not_the_upload() {
    let net = TestNet(211);
    let web = Upstream::start("web", &net.address(1)).await;
    web.read_bodies();
    let rules = config(
        "VirtualService",
        "web",
        "  hosts: [web]\n  http:\n  - timeout: 1s\n    route: [{destination: {host: web}}]\n",
    );
    let files = [
        ("web.yaml", net.service("web", 1, &[("web-1", 1, "v1")])),
        ("rules.yaml", rules),
    ];
    let mesh = Mesh::start(AdsApiType::Grpc, net.port(), &files).await;
    wait_for_upstream(&mesh, "web", "/").await;

    // The body arrives 2.5 s after the headers: the 1 s timeout starts only once it is in.
    let status = slow_upload(net.port(), "web", "/upload", Duration::from_millis(2500)).await;
    assert_eq!(status, 200, "Envoy log:\n{}", mesh.envoy.log());

    // An answer slower than the timeout is still cut off.
    web.delay_answers(Duration::from_millis(1500));
    let slow = mesh.get("web", "/", &[]).await;
    assert!(matches!(slow, Reply::Status(504)), "{slow:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_destinations_and_domains_as_istiod() {
    let net = TestNet(212);
    let _web = Upstream::start("web", &net.address(1)).await;
    let shadow = Upstream::start("shadow", &net.address(2)).await;
    // `single` listens on another port only.
    let single_port = net.port() + 100;
    let single = Upstream::start("single", &format!("{}:{single_port}", net.ip(3))).await;
    let rules = config(
        "VirtualService",
        "web",
        "  hosts: [web]\n  http:\n  - match: [{uri: {prefix: /single}}]\n    \
         route: [{destination: {host: single}}]\n  - mirror: {host: shadow}\n    \
         route: [{destination: {host: web}}]\n",
    );
    let files = [
        ("web.yaml", net.service("web", 1, &[("web-1", 1, "v1")])),
        (
            "shadow.yaml",
            net.service("shadow", 2, &[("shadow-1", 2, "v1")]),
        ),
        (
            "single.yaml",
            net.service_on("single", 3, single_port, &[("single-1", 3, "v1")]),
        ),
        ("rules.yaml", rules),
    ];
    let mesh = Mesh::start(AdsApiType::Grpc, net.port(), &files).await;
    wait_for_upstream(&mesh, "web", "/").await;

    // The mirror sees the request's own Host.
    let before = shadow.requests();
    assert_eq!(echo(&mesh.get("web", "/", &[]).await).upstream, "web");
    let mirrored = mesh
        .wait_until(PROPAGATION_LIMIT, || async { shadow.requests() > before })
        .await;
    assert!(mirrored.is_some(), "the mirror got nothing");
    assert_eq!(shadow.last_host().as_deref(), Some("web"));

    // The absolute name is one of the service's domains.
    let absolute = format!("web.{NAMESPACE}.svc.cluster.local.");
    assert_eq!(echo(&mesh.get(&absolute, "/", &[]).await).upstream, "web");

    // `single` has no service port on this listener's port: its cluster would be
    // `outbound|PORT||single...`, which does not exist, so Envoy answers 503 itself.
    let reply = mesh.get("web", "/single", &[]).await;
    assert!(matches!(reply, Reply::Status(503)), "{reply:?}");
    assert_eq!(single.requests(), 0);
}

//! DestinationRule traffic policies end to end through a real Envoy: consistent hashing keeps a
//! key on one endpoint, outlier detection ejects a failing endpoint, connection-pool limits
//! overflow, locality failover moves traffic away from failing local endpoints, and TLS is
//! originated to an upstream that requires it. Each test has its own port (19180-19189) and
//! upstream addresses (127.0.18N.x), so they run in parallel.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rudder::bootstrap::AdsApiType;
use support::certs::TestCa;
use support::mesh::{Backend, Mesh, NAMESPACE, Reply, service_yaml};
use support::upstream::Upstream;

const PROPAGATION_LIMIT: Duration = Duration::from_secs(5);

/// `count` upstreams `NAME-1..` on `127.0.NET.1..` at `port`, and the service `name` over them.
async fn backends(name: &str, net: u8, port: u16, count: u8) -> (Vec<Upstream>, String) {
    let mut upstreams = Vec::new();
    let mut pods = Vec::new();
    for i in 1..=count {
        let pod = format!("{name}-{i}");
        let ip = format!("127.0.{net}.{i}");
        upstreams.push(Upstream::start(&pod, &format!("{ip}:{port}")).await);
        pods.push(Backend::new(&pod, &ip, "v1"));
    }
    let yaml = service_yaml(name, &format!("10.96.{net}.1"), port, &pods);
    (upstreams, yaml)
}

fn destination_rule(name: &str, traffic_policy: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
         spec:\n  host: {name}\n  trafficPolicy:\n{traffic_policy}"
    )
}

/// Waits until `host` answers from an upstream.
async fn wait_for_traffic(mesh: &Mesh, host: &str, headers: &[(&str, &str)]) {
    let ready = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            matches!(mesh.get(host, "/", headers).await, Reply::Upstream(_))
        })
        .await;
    if ready.is_none() {
        panic!(
            "{host} never answered (last: {:?}); rudder's config errors:\n{}\nEnvoy's clusters:\n{}",
            mesh.get(host, "/", headers).await,
            mesh.admin("/debug/inputz").await,
            envoy_admin(mesh, "/clusters").await,
        );
    }
}

/// Envoy's admin endpoint `path`, as text.
async fn envoy_admin(mesh: &Mesh, path: &str) -> String {
    reqwest::get(format!("http://{}{path}", mesh.envoy.admin))
        .await
        .expect("Envoy's admin answers")
        .text()
        .await
        .expect("Envoy's admin body")
}

/// The value of one Envoy counter or gauge, by full name (0 when Envoy does not have it yet).
async fn envoy_stat(mesh: &Mesh, name: &str) -> u64 {
    // Filter on the last part only: cluster names hold characters a regex would read.
    let last = name.rsplit('.').next().unwrap_or(name);
    let stats = envoy_admin(mesh, &format!("/stats?filter={last}")).await;
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_keeps_a_key_on_one_endpoint() {
    let port = 19180;
    let (_upstreams, service) = backends("sticky", 180, port, 4).await;
    let by_header = destination_rule(
        "sticky",
        "    loadBalancer:\n      consistentHash: {httpHeaderName: x-user}\n",
    );
    let mesh = Mesh::start(
        AdsApiType::Grpc,
        port,
        &[("sticky.yaml", service), ("rules.yaml", by_header)],
    )
    .await;
    wait_for_traffic(&mesh, "sticky", &[]).await;
    // The route carries the hash policy once CDS and RDS have both arrived.
    let hashed = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            envoy_admin(&mesh, "/config_dump?resource=dynamic_route_configs")
                .await
                .contains("x-user")
        })
        .await;
    assert!(hashed.is_some(), "no hash policy reached Envoy");

    for user in ["alice", "bob", "carol"] {
        let first = mesh.upstream_of("sticky", &[("x-user", user)]).await;
        assert!(first.starts_with("sticky-"), "{user}: {first}");
        for _ in 0..50 {
            assert_eq!(
                mesh.upstream_of("sticky", &[("x-user", user)]).await,
                first,
                "{user} moved"
            );
        }
    }
    let mut spread = BTreeSet::new();
    for user in 0..40 {
        spread.insert(
            mesh.upstream_of("sticky", &[("x-user", &format!("user-{user}"))])
                .await,
        );
    }
    eprintln!("40 users went to {spread:?}");
    assert!(spread.len() >= 2, "every user went to {spread:?}");

    // The same with a query parameter, after an edit.
    mesh.write(
        "rules.yaml",
        &destination_rule(
            "sticky",
            "    loadBalancer:\n      consistentHash: {httpQueryParameterName: user}\n",
        ),
    );
    let switched = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            envoy_admin(&mesh, "/config_dump?resource=dynamic_route_configs")
                .await
                .contains("query_parameter")
        })
        .await;
    assert!(switched.is_some(), "the query parameter hash never arrived");
    let upstream_for = |user: String| {
        let mesh = &mesh;
        async move {
            match mesh.get("sticky", &format!("/?user={user}"), &[]).await {
                Reply::Upstream(echo) => echo.upstream,
                other => format!("{other:?}"),
            }
        }
    };
    let first = upstream_for("dave".to_string()).await;
    for _ in 0..50 {
        assert_eq!(upstream_for("dave".to_string()).await, first);
    }
    let mut spread = BTreeSet::new();
    for user in 0..40 {
        spread.insert(upstream_for(format!("u{user}")).await);
    }
    assert!(spread.len() >= 2, "every user went to {spread:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_a_failing_endpoint() {
    let port = 19181;
    let (upstreams, service) = backends("flaky", 181, port, 3).await;
    let rule = destination_rule(
        "flaky",
        "    outlierDetection:\n      consecutive5xxErrors: 2\n      interval: 1s\n      \
         baseEjectionTime: 1m\n      maxEjectionPercent: 100\n",
    );
    let mesh = Mesh::start(
        AdsApiType::DeltaGrpc,
        port,
        &[("flaky.yaml", service), ("rules.yaml", rule)],
    )
    .await;
    wait_for_traffic(&mesh, "flaky", &[]).await;
    let cluster = format!("outbound|{port}||flaky.{NAMESPACE}.svc.cluster.local");
    let configured = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            envoy_admin(&mesh, "/config_dump?resource=dynamic_active_clusters")
                .await
                .contains("consecutive_5xx")
        })
        .await;
    assert!(
        configured.is_some(),
        "outlier detection never reached Envoy"
    );

    let failing = &upstreams[0];
    failing.answer_with(503);
    // Requests spread over the three; the failing one is ejected after two 503s in a row.
    let ejected = mesh
        .wait_until(Duration::from_secs(10), || async {
            mesh.get("flaky", "/", &[]).await;
            envoy_stat(
                &mesh,
                &format!("cluster.{cluster};.outlier_detection.ejections_enforced_consecutive_5xx"),
            )
            .await
                > 0
        })
        .await;
    assert!(
        ejected.is_some(),
        "the failing endpoint was never ejected; clusters:\n{}",
        envoy_admin(&mesh, "/clusters").await
    );
    let clusters = envoy_admin(&mesh, "/clusters").await;
    assert!(
        clusters.contains(&format!(
            "{cluster}::{}::health_flags::/failed_outlier_check",
            failing.address
        )),
        "{clusters}"
    );
    let before = failing.requests();
    for _ in 0..50 {
        let reply = mesh.get("flaky", "/", &[]).await;
        let upstream = reply.upstream().map(str::to_string);
        assert!(
            matches!(upstream.as_deref(), Some("flaky-2" | "flaky-3")),
            "{reply:?}"
        );
    }
    assert_eq!(
        failing.requests(),
        before,
        "an ejected endpoint got requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_pool_limits_overflow() {
    let port = 19182;
    let (upstreams, service) = backends("narrow", 182, port, 1).await;
    let rule = destination_rule(
        "narrow",
        "    connectionPool:\n      tcp: {maxConnections: 1}\n      \
         http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1000}\n",
    );
    let mesh = Mesh::start(
        AdsApiType::Grpc,
        port,
        &[("narrow.yaml", service), ("rules.yaml", rule)],
    )
    .await;
    wait_for_traffic(&mesh, "narrow", &[]).await;
    let cluster = format!("outbound|{port}||narrow.{NAMESPACE}.svc.cluster.local");
    let limited = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            envoy_admin(&mesh, "/config_dump?resource=dynamic_active_clusters")
                .await
                .contains("\"max_pending_requests\": 1")
        })
        .await;
    assert!(limited.is_some(), "the limits never reached Envoy");
    let overflow_stat = format!("cluster.{cluster};.upstream_rq_pending_overflow");
    assert_eq!(envoy_stat(&mesh, &overflow_stat).await, 0);

    // One request on the one connection, one pending; the others overflow at once.
    upstreams[0].delay_answers(Duration::from_millis(1500));
    let mesh = Arc::new(mesh);
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let mesh = mesh.clone();
            tokio::spawn(async move { mesh.get("narrow", "/", &[]).await })
        })
        .collect();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for request in requests {
        let reply = request.await.expect("the request task");
        let status = match reply {
            Reply::Upstream(_) => "200".to_string(),
            Reply::Status(code) => code.to_string(),
            Reply::Failed(error) => error,
        };
        *statuses.entry(status).or_default() += 1;
    }
    eprintln!("8 concurrent requests: {statuses:?}");
    let overflowed = statuses.get("503").copied().unwrap_or(0);
    assert!(overflowed >= 5, "{statuses:?}");
    assert!(
        statuses.get("200").copied().unwrap_or(0) >= 1,
        "{statuses:?}"
    );
    assert_eq!(envoy_stat(&mesh, &overflow_stat).await, overflowed as u64);
}

/// Three backends in three localities and the client's Pod in the first, all placed by their
/// Nodes' topology labels.
fn locality_config(port: u16) -> String {
    let nodes = [
        ("node-a", "us-east", "zone-a"),
        ("node-b", "us-east", "zone-b"),
        ("node-c", "eu-west", "zone-c"),
    ];
    let pods = [
        ("client", "node-a", "127.0.0.1", "client"),
        ("near-1", "node-a", "127.0.183.1", "near"),
        ("same-region-1", "node-b", "127.0.183.2", "near"),
        ("far-1", "node-c", "127.0.183.3", "near"),
    ];
    let mut docs = Vec::new();
    for (name, region, zone) in nodes {
        docs.push(format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels: \
             {{topology.kubernetes.io/region: {region}, topology.kubernetes.io/zone: {zone}}}\n"
        ));
    }
    for (name, node, ip, app) in pods {
        docs.push(format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NAMESPACE}, labels: {{app: {app}}}}}\n\
             spec: {{nodeName: {node}, containers: []}}\nstatus: {{podIP: {ip}}}\n"
        ));
    }
    let backends: Vec<Backend> = pods[1..]
        .iter()
        .map(|(name, _, ip, _)| Backend::new(name, ip, "v1"))
        .collect();
    let service = service_yaml("near", "10.96.183.1", port, &backends);
    // service_yaml writes its own Pods; keep only the Service and the EndpointSlice.
    for doc in service.split("---\n") {
        if !doc.starts_with("apiVersion: v1\nkind: Pod\n") {
            docs.push(doc.to_string());
        }
    }
    docs.push(destination_rule(
        "near",
        "    outlierDetection:\n      consecutive5xxErrors: 1\n      interval: 1s\n      \
         baseEjectionTime: 1m\n      maxEjectionPercent: 100\n    loadBalancer:\n      \
         localityLbSetting:\n        failover: [{from: us-east, to: eu-west}]\n",
    ));
    docs.join("---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locality_failover_when_local_endpoints_fail() {
    let port = 19183;
    let mut upstreams = BTreeMap::new();
    for (name, ip) in [
        ("near-1", "127.0.183.1"),
        ("same-region-1", "127.0.183.2"),
        ("far-1", "127.0.183.3"),
    ] {
        upstreams.insert(name, Upstream::start(name, &format!("{ip}:{port}")).await);
    }
    let mesh = Mesh::start(
        AdsApiType::Grpc,
        port,
        &[("all.yaml", locality_config(port))],
    )
    .await;
    wait_for_traffic(&mesh, "near", &[]).await;
    let prioritized = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            envoy_admin(&mesh, "/config_dump?include_eds")
                .await
                .contains("\"priority\": 2")
        })
        .await;
    assert!(
        prioritized.is_some(),
        "locality priorities never reached Envoy:\n{}",
        envoy_admin(&mesh, "/config_dump?include_eds").await
    );

    // Everything goes to the client's own zone while it is healthy.
    for _ in 0..20 {
        assert_eq!(mesh.upstream_of("near", &[]).await, "near-1");
    }
    // When it fails, the same region takes over; then the failover region.
    for (failing, next) in [("near-1", "same-region-1"), ("same-region-1", "far-1")] {
        upstreams[failing].answer_with(503);
        let moved = mesh
            .wait_until(PROPAGATION_LIMIT, || async {
                mesh.upstream_of("near", &[]).await == next
            })
            .await;
        assert!(
            moved.is_some(),
            "traffic never moved from {failing} to {next}; clusters:\n{}",
            envoy_admin(&mesh, "/clusters").await
        );
        for _ in 0..20 {
            assert_eq!(mesh.upstream_of("near", &[]).await, next);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_origination_to_an_upstream_that_requires_it() {
    let port = 19184;
    let certificates = tempfile::tempdir().expect("a temporary directory");
    let ca = TestCa::new(certificates.path());
    ca.issue_server("server", &["secure.example.com"]);
    ca.issue_client("client");
    let _upstream = Upstream::start_tls(
        "secure-1",
        &format!("127.0.184.1:{port}"),
        ca.acceptor("server", true),
    )
    .await;
    let service = service_yaml(
        "secure",
        "10.96.184.1",
        port,
        &[Backend::new("secure-1", "127.0.184.1", "v1")],
    );
    let path = |name: &str| ca.path(name).display().to_string();
    let tls_rule = |mode: &str, client_certificate: bool| {
        let mut tls = format!(
            "    tls:\n      mode: {mode}\n      sni: secure.example.com\n      \
             subjectAltNames: [secure.example.com]\n      caCertificates: {}\n",
            path("ca.pem")
        );
        if client_certificate {
            tls.push_str(&format!(
                "      clientCertificate: {}\n      privateKey: {}\n",
                path("client.pem"),
                path("client-key.pem")
            ));
        }
        destination_rule("secure", &tls)
    };
    // Plaintext first: the upstream refuses it.
    let mesh = Mesh::start(AdsApiType::Grpc, port, &[("secure.yaml", service)]).await;
    let refused = mesh.get("secure", "/", &[]).await;
    assert!(matches!(refused, Reply::Status(502 | 503)), "{refused:?}");

    // MUTUAL: Envoy presents the client certificate and checks the server's.
    mesh.write("rules.yaml", &tls_rule("MUTUAL", true));
    wait_for_traffic(&mesh, "secure", &[]).await;
    for _ in 0..10 {
        assert_eq!(mesh.upstream_of("secure", &[]).await, "secure-1");
    }

    // SIMPLE has no client certificate, which this upstream requires.
    mesh.write("rules.yaml", &tls_rule("SIMPLE", false));
    let rejected = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            matches!(mesh.get("secure", "/", &[]).await, Reply::Status(503))
        })
        .await;
    assert!(rejected.is_some(), "SIMPLE got through an mTLS upstream");

    // A server name the certificate does not have fails verification.
    mesh.write(
        "rules.yaml",
        &tls_rule("MUTUAL", true).replace(
            "subjectAltNames: [secure.example.com]",
            "subjectAltNames: [other.example.com]",
        ),
    );
    let san_stat = format!(
        "cluster.outbound|{port}||secure.{NAMESPACE}.svc.cluster.local;.ssl.fail_verify_san"
    );
    let arrived = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            envoy_admin(&mesh, "/config_dump?resource=dynamic_active_clusters")
                .await
                .contains("other.example.com")
        })
        .await;
    assert!(arrived.is_some(), "the new subjectAltNames never arrived");
    let unverified = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            matches!(mesh.get("secure", "/", &[]).await, Reply::Status(503))
                && envoy_stat(&mesh, &san_stat).await > 0
        })
        .await;
    assert!(
        unverified.is_some(),
        "a wrong subjectAltName was accepted, or its failure not counted:\n{}",
        envoy_admin(&mesh, "/stats?filter=ssl").await
    );

    // Back to MUTUAL: traffic flows again.
    mesh.write("rules.yaml", &tls_rule("MUTUAL", true));
    wait_for_traffic(&mesh, "secure", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rule_leaves_the_last_good_policy_in_force() {
    let port = 19185;
    let (_upstreams, service) = backends("kept", 185, port, 3).await;
    let good = destination_rule(
        "kept",
        "    loadBalancer:\n      consistentHash: {httpHeaderName: x-user}\n",
    );
    let mesh = Mesh::start(
        AdsApiType::Grpc,
        port,
        &[("kept.yaml", service), ("rules.yaml", good)],
    )
    .await;
    wait_for_traffic(&mesh, "kept", &[]).await;
    let hashed = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            envoy_admin(&mesh, "/config_dump?resource=dynamic_route_configs")
                .await
                .contains("x-user")
        })
        .await;
    assert!(hashed.is_some(), "no hash policy reached Envoy");
    let config_errors = |metrics: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("rudder_config_errors "))
            .and_then(|value| value.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(config_errors(&mesh.admin("/metrics").await), 0.0);

    // A Maglev table size that is not prime: refused, and the ring hash stays.
    mesh.write(
        "rules.yaml",
        &destination_rule(
            "kept",
            "    loadBalancer:\n      consistentHash:\n        httpHeaderName: x-user\n        \
             maglev: {tableSize: 1000}\n",
        ),
    );
    let reported = mesh
        .wait_until(PROPAGATION_LIMIT, || async {
            config_errors(&mesh.admin("/metrics").await) > 0.0
        })
        .await;
    assert!(reported.is_some(), "the bad rule was never reported");
    let clusters = envoy_admin(&mesh, "/config_dump?resource=dynamic_active_clusters").await;
    assert!(clusters.contains("RING_HASH"), "{clusters}");
    assert!(!clusters.contains("MAGLEV"), "{clusters}");
    let first = mesh.upstream_of("kept", &[("x-user", "erin")]).await;
    for _ in 0..20 {
        assert_eq!(mesh.upstream_of("kept", &[("x-user", "erin")]).await, first);
    }
}

#[test]
fn validate_reports_bad_rules_and_warns_about_unsupported_settings() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let service = service_yaml("cart", "10.96.186.1", 80, &[]);
    let unsupported = destination_rule("cart", "    tls: {mode: ISTIO_MUTUAL}\n");
    let bad = format!(
        "{}---\n{}",
        destination_rule("cart", "    loadBalancer: {simple: FASTEST}\n")
            .replace("name: cart,", "name: fastest,"),
        destination_rule(
            "cart",
            "    connectionPool:\n      http: {http2MaxRequests: -5}\n"
        )
        .replace("name: cart,", "name: negative,"),
    );
    std::fs::write(dir.path().join("cart.yaml"), service).expect("write");
    std::fs::write(dir.path().join("unsupported.yaml"), unsupported).expect("write");
    let validate = || {
        Command::new(env!("CARGO_BIN_EXE_rudder"))
            .arg("validate")
            .arg(dir.path())
            .output()
            .expect("run rudder validate")
    };

    // A warning alone does not fail validation.
    let output = validate();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "unsupported.yaml:1: DestinationRule {NAMESPACE}/cart: spec.trafficPolicy.tls.mode: \
             warning: ISTIO_MUTUAL needs Istio's certificate authority"
        )),
        "{stdout}"
    );

    std::fs::write(dir.path().join("bad.yaml"), bad).expect("write");
    let output = validate();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    for expected in [
        format!(
            "bad.yaml:1: DestinationRule {NAMESPACE}/fastest: spec.trafficPolicy.loadBalancer.simple: unknown load balancer"
        ),
        format!(
            "bad.yaml:9: DestinationRule {NAMESPACE}/negative: spec.trafficPolicy.connectionPool.http.http2MaxRequests: -5 cannot be negative"
        ),
    ] {
        assert!(stdout.contains(&expected), "{expected}\nnot in:\n{stdout}");
    }
}

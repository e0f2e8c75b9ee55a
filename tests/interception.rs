//! Transparent interception end to end, as in a real mesh: the applications do not know about
//! Envoy. Pods are network namespaces routed through a node namespace (see `support::pods`),
//! each sidecar pod has istio-init's REDIRECT rules and a stock Envoy bootstrapped with
//! `rudder bootstrap`, and rudder serves them from inside the node namespace. A plain HTTP client
//! in the productpage pod calls `reviews` by its cluster IP; the request goes through the
//! client's sidecar (outbound: routing rules) and the server's (inbound), as both Envoys' stats
//! show; a VirtualService retry policy retries an attempt that failed behind the server's
//! sidecar. reviews-v1's application listens on loopback only, reached through its Sidecar's
//! ingress `defaultEndpoint`; a service port without a declared protocol is sniffed as HTTP by
//! the client's sidecar. A TCP service, an undeclared port of a meshed pod and an address outside
//! the registry behave as ALLOW_ANY says, raw TCP to such an address on a port the mesh declares
//! HTTP included (the port's listener sniffs, as istiod's does). The TPROXY variant runs the servers' sidecars under
//! istio-init's TPROXY rules instead.
//!
//! Needs root, iproute2 and iptables (scripts/test installs them); it fails, never skips, when
//! the machine cannot create namespaces or rules.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::envoy::envoy_binary;
use support::pods::{Node, Pod};
use support::upstream::{Echo, TcpUpstream, Upstream};

const REVIEWS_VIP: &str = "10.96.231.10";
const ECHO_VIP: &str = "10.96.231.20";
const RATINGS_VIP: &str = "10.96.231.30";

fn pod_yaml(name: &str, ip: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: bookinfo\n  labels: {{{labels}}}\nstatus: {{podIP: {ip}}}\n"
    )
}

fn slice_yaml(service: &str, port_name: &str, port: u16, pods: &[(&str, &str)]) -> String {
    let endpoints: String = pods
        .iter()
        .map(|(pod, ip)| {
            format!(
                "- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, name: {pod}, namespace: bookinfo}}\n"
            )
        })
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-slice\n  namespace: bookinfo\n  \
         labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nports: [{{name: {port_name}, port: {port}}}]\nendpoints:\n{endpoints}"
    )
}

/// The registry and the routing rules: `reviews` (HTTP, two versions; `end-user: jason` goes to
/// v2, retried on 5xx, everyone else is split evenly), `echo` (TCP, on reviews-v1's pod) and
/// `ratings` (reviews-v2's application again, on a port without a declared protocol, with a
/// VirtualService adding a response header). With `v1_ingress`, a Sidecar gives reviews-v1 its
/// inbound ports instead of the Services: 9080 to the application on 127.0.0.1:9180, 9000 as is.
fn mesh_yaml(client: &Pod, v1: &Pod, v2: &Pod, v1_ingress: bool) -> String {
    let ingress = if v1_ingress {
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: reviews-v1, namespace: bookinfo}\n\
         spec:\n  workloadSelector: {labels: {version: v1}}\n  ingress:\n  \
         - {port: {number: 9080, protocol: HTTP, name: http}, defaultEndpoint: '127.0.0.1:9180'}\n  \
         - {port: {number: 9000, protocol: TCP, name: tcp-echo}}\n"
    } else {
        ""
    };
    [
        ingress.to_string(),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: ratings, namespace: bookinfo}}\n\
             spec:\n  clusterIP: {RATINGS_VIP}\n  selector: {{app: reviews, version: v2}}\n  ports: [{{port: 9081, targetPort: 9080}}]\n"
        ),
        slice_yaml("ratings", "", 9080, &[("reviews-v2", &v2.ip)]),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings, namespace: bookinfo}\n\
         spec:\n  hosts: [ratings]\n  http:\n  - route: [{destination: {host: ratings}}]\n    \
         headers: {response: {set: {x-sniffed: http}}}\n"
            .to_string(),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: bookinfo}\n".to_string(),
        pod_yaml("productpage", &client.ip, "app: productpage"),
        pod_yaml("reviews-v1", &v1.ip, "app: reviews, version: v1"),
        pod_yaml("reviews-v2", &v2.ip, "app: reviews, version: v2"),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: reviews, namespace: bookinfo}}\n\
             spec:\n  clusterIP: {REVIEWS_VIP}\n  selector: {{app: reviews}}\n  ports: [{{name: http, port: 9080}}]\n"
        ),
        slice_yaml(
            "reviews",
            "http",
            9080,
            &[("reviews-v1", &v1.ip), ("reviews-v2", &v2.ip)],
        ),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: echo, namespace: bookinfo}}\n\
             spec:\n  clusterIP: {ECHO_VIP}\n  selector: {{app: reviews, version: v1}}\n  ports: [{{name: tcp-echo, port: 9000}}]\n"
        ),
        slice_yaml("echo", "tcp-echo", 9000, &[("reviews-v1", &v1.ip)]),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: bookinfo}\n\
         spec:\n  host: reviews\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n"
            .to_string(),
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: bookinfo}\n\
         spec:\n  hosts: [reviews]\n  http:\n  - match: [{headers: {end-user: {exact: jason}}}]\n    route: [{destination: {host: reviews, subset: v2}}]\n    \
         retries: {attempts: 3, retryOn: 5xx}\n  \
         - route:\n    - {destination: {host: reviews, subset: v1}, weight: 50}\n    - {destination: {host: reviews, subset: v2}, weight: 50}\n"
            .to_string(),
    ]
    .into_iter()
    .filter(|document| !document.is_empty())
    .collect::<Vec<_>>()
    .join("---\n")
}

/// The sidecar's bootstrap, from the `rudder bootstrap` command.
fn bootstrap(pod_name: &str, pod: &Pod, xds_address: &str, delta: bool, mode: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args([
            "bootstrap",
            "--node-id",
            &format!(
                "sidecar~{}~{pod_name}.bookinfo~bookinfo.svc.cluster.local",
                pod.ip
            ),
            "--xds-address",
            xds_address,
            "--metadata",
            &format!(r#"{{"NAMESPACE":"bookinfo","INTERCEPTION_MODE":"{mode}"}}"#),
            "--admin-address",
            "127.0.0.1:15000",
        ])
        .args(delta.then_some("--delta"))
        .output()
        .expect("run rudder bootstrap");
    assert!(
        output.status.success(),
        "rudder bootstrap failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("a UTF-8 bootstrap")
}

/// Which upstream answered a GET from the client pod, or why none did.
fn upstream_of(client: &Pod, address: &str, host: &str, headers: &[(&str, &str)]) -> String {
    match client.http_get(address, host, "/", headers) {
        Ok(reply) if reply.status == 200 => serde_json::from_str::<Echo>(&reply.body)
            .map(|echo| echo.upstream)
            .unwrap_or_else(|_| format!("unexpected body {:?}", reply.body)),
        Ok(reply) => format!("status {}", reply.status),
        Err(error) => error,
    }
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + limit;
    loop {
        match done() {
            Ok(()) => return,
            Err(last) if Instant::now() > deadline => panic!("{what}: still {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// How the servers' sidecars (reviews v1 and v2) receive their inbound traffic; the client's
/// always uses REDIRECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerInterception {
    Redirect,
    Tproxy,
}

#[test]
fn intercepted_pods_route_through_both_sidecars_sotw() {
    intercepted_pods_route_through_both_sidecars(false, 200, ServerInterception::Redirect);
}

#[test]
fn intercepted_pods_route_through_both_sidecars_delta() {
    intercepted_pods_route_through_both_sidecars(true, 204, ServerInterception::Redirect);
}

/// The servers' sidecars under TPROXY: inbound connections keep their original destination on
/// the socket (a `transparent` virtualInbound) and reach the application with the client's
/// address (`original_src`).
#[test]
fn tproxy_intercepted_servers_route_through_both_sidecars() {
    intercepted_pods_route_through_both_sidecars(false, 208, ServerInterception::Tproxy);
}

/// The mesh on `10.231.<first_subnet>.0/24` and the three subnets after it, the sidecars
/// speaking delta or state-of-the-world ADS.
fn intercepted_pods_route_through_both_sidecars(
    delta: bool,
    first_subnet: u8,
    servers: ServerInterception,
) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the applications");
    let _runtime = runtime.enter();
    let mut node = Node::create(&format!("node{first_subnet}"));
    let mut client = node.pod(first_subnet);
    let mut v1 = node.pod(first_subnet + 1);
    let mut v2 = node.pod(first_subnet + 2);
    let outside = node.pod(first_subnet + 3);
    // rudder serves xDS on the node's address on the client pod's link.
    let xds_address = format!("10.231.{first_subnet}.1:15010");
    // Under REDIRECT reviews-v1 listens on loopback only, on another port: only the Sidecar's
    // ingress `defaultEndpoint` reaches it.
    let v1_ingress = servers == ServerInterception::Redirect;

    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("a config directory");
    std::fs::write(
        config.join("mesh.yaml"),
        mesh_yaml(&client, &v1, &v2, v1_ingress),
    )
    .expect("write config");
    let rudder_log = dir.path().join("rudder.log");
    node.spawn(
        Path::new(env!("CARGO_BIN_EXE_rudder")),
        &[
            "serve",
            "--config-dir",
            config.to_str().expect("a UTF-8 path"),
            "--xds-address",
            &xds_address,
            "--admin-address",
            "127.0.0.1:15014",
        ],
        &rudder_log,
    );

    // The applications listen on every address of their pod, unaware of Envoy.
    let v1_address = if v1_ingress {
        "127.0.0.1:9180"
    } else {
        "0.0.0.0:9080"
    };
    let _v1_app = Upstream::start_on("reviews-v1", v1.bind(v1_address));
    let v2_app = Upstream::start_on("reviews-v2", v2.bind("0.0.0.0:9080"));
    let _echo_app = TcpUpstream::start_on("echo-v1", v1.bind("0.0.0.0:9000"));
    let _undeclared_app = Upstream::start_on("reviews-v1-undeclared", v1.bind("0.0.0.0:7070"));
    let _outside_app = Upstream::start_on("outside", outside.bind("0.0.0.0:8080"));
    // A plain TCP server outside the registry on a port the mesh declares HTTP (reviews').
    let _outside_tcp = TcpUpstream::start_on("outside-tcp", outside.bind("0.0.0.0:9080"));

    let control_plane: SocketAddr = xds_address.parse().expect("an address");
    let envoy = envoy_binary();
    for (name, pod, tproxy) in [
        ("productpage", &mut client, false),
        ("reviews-v1", &mut v1, servers == ServerInterception::Tproxy),
        ("reviews-v2", &mut v2, servers == ServerInterception::Tproxy),
    ] {
        let mode = if tproxy {
            pod.intercept_tproxy(control_plane);
            "TPROXY"
        } else {
            pod.intercept(control_plane);
            "REDIRECT"
        };
        let bootstrap = bootstrap(name, pod, &xds_address, delta, mode);
        pod.start_envoy(&envoy, &bootstrap);
    }

    let reviews = format!("{REVIEWS_VIP}:9080");
    let logs = || {
        format!(
            "client Envoy:\n{}\nreviews-v2 Envoy:\n{}\nrudder:\n{}",
            client.envoy_log(),
            v2.envoy_log(),
            std::fs::read_to_string(&rudder_log).unwrap_or_default()
        )
    };
    let jason = [("end-user", "jason")];
    let ready = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            "reviews v2 through both sidecars",
            Duration::from_secs(40),
            || match upstream_of(&client, &reviews, "reviews:9080", &jason).as_str() {
                "reviews-v2" => Ok(()),
                other => Err(other.to_string()),
            },
        )
    }));
    if ready.is_err() {
        panic!("the mesh never answered; logs:\n{}", logs());
    }

    // Header routing: jason always reaches v2.
    for _ in 0..10 {
        assert_eq!(
            upstream_of(&client, &reviews, "reviews:9080", &jason),
            "reviews-v2"
        );
    }
    // The split: everyone else reaches both versions (the chance of missing one is 2^-39).
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        seen.insert(upstream_of(&client, &reviews, "reviews:9080", &[]));
    }
    assert_eq!(
        seen,
        BTreeSet::from(["reviews-v1".to_string(), "reviews-v2".to_string()]),
        "the 50/50 split"
    );

    // Both sidecars handled the requests: the client's outbound subset clusters, and each
    // server's inbound cluster to its application.
    let outbound_v2 =
        "cluster.outbound|9080|v2|reviews.bookinfo.svc.cluster.local;.upstream_rq_200";
    assert!(client.envoy_stat(outbound_v2) >= 11, "{outbound_v2}");
    let inbound = "cluster.inbound|9080||;.upstream_rq_200";
    assert!(v2.envoy_stat(inbound) >= 11, "reviews-v2 {inbound}");
    assert!(v1.envoy_stat(inbound) >= 1, "reviews-v1 {inbound}");
    assert!(v2.envoy_stat("http.inbound_0.0.0.0_9080;.downstream_rq_completed") >= 11);
    if servers == ServerInterception::Tproxy {
        // The kernel's TPROXY target, not a NAT redirect, brought the connections to Envoy.
        assert!(
            v2.tproxied_packets() > 0,
            "reviews-v2's TPROXY rule matched"
        );
    }

    // Retries: v2 fails the next request with 503; its sidecar passes the 503 back (inbound
    // routes do not retry) and the client's sidecar retries, so the client still gets v2.
    let v2_failures_before = v2.envoy_stat("cluster.inbound|9080||;.upstream_rq_503");
    v2_app.fail_next(1);
    assert_eq!(
        upstream_of(&client, &reviews, "reviews:9080", &jason),
        "reviews-v2",
        "the retried request"
    );
    let retried = "cluster.outbound|9080|v2|reviews.bookinfo.svc.cluster.local;.upstream_rq_retry";
    assert!(client.envoy_stat(retried) >= 1, "{retried}");
    assert!(
        v2.envoy_stat("cluster.inbound|9080||;.upstream_rq_503") > v2_failures_before,
        "reviews-v2's sidecar saw the failed attempt"
    );

    // A port without a declared protocol: the client's sidecar sniffs HTTP and applies the
    // service's HTTP routes (the response header), through the HTTP chain of its listener.
    let ratings = format!("{RATINGS_VIP}:9081");
    let reply = client
        .exchange(
            &ratings,
            b"GET / HTTP/1.1\r\nHost: ratings:9081\r\nConnection: close\r\n\r\n".to_vec(),
        )
        .expect("ratings answers");
    assert!(reply.contains("reviews-v2"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("x-sniffed: http"),
        "{reply}"
    );
    let sniffed = format!("http.outbound_{RATINGS_VIP}_9081;.downstream_rq_completed");
    assert!(client.envoy_stat(&sniffed) >= 1, "{sniffed}");

    // A TCP service: through the client's per-address listener and the server's inbound chain.
    let echoed = client
        .exchange(&format!("{ECHO_VIP}:9000"), b"ping".to_vec())
        .expect("the TCP service answers");
    assert_eq!(echoed, "echo-v1");
    assert!(
        client.envoy_stat(
            "cluster.outbound|9000||echo.bookinfo.svc.cluster.local;.upstream_cx_total"
        ) >= 1
    );
    assert!(v1.envoy_stat("cluster.inbound|9000||;.upstream_cx_total") >= 1);

    // A port of a meshed pod no Service declares: passed through on both sides (ALLOW_ANY out,
    // the inbound HTTP catch-all in).
    let undeclared = format!("{}:7070", v1.ip);
    assert_eq!(
        upstream_of(&client, &undeclared, &undeclared, &[]),
        "reviews-v1-undeclared"
    );
    assert!(v1.envoy_stat("cluster.PassthroughCluster;.upstream_rq_200") >= 1);

    // An address outside the registry: ALLOW_ANY passes it through the client's sidecar.
    let outside_address = format!("{}:8080", outside.ip);
    let before = client.envoy_stat("cluster.PassthroughCluster;.upstream_cx_total");
    assert_eq!(
        upstream_of(&client, &outside_address, &outside_address, &[]),
        "outside"
    );
    assert!(client.envoy_stat("cluster.PassthroughCluster;.upstream_cx_total") > before);

    // Raw TCP to that address on an HTTP port of the mesh: the port's listener sniffs, finds no
    // HTTP, and its default chain passes the connection through (istiod's
    // PassthroughFilterChain) instead of answering it as a bad HTTP request; HTTP on the same
    // listener kept its routes above.
    // The bytes start as a TLS record does: not HTTP from the first byte on (bytes that could
    // still become a request line keep the inspector waiting, with istiod's config too).
    let before = client.envoy_stat("cluster.PassthroughCluster;.upstream_cx_total");
    let raw = client
        .exchange(
            &format!("{}:9080", outside.ip),
            b"\x16\x03\x01\x00\x04ping".to_vec(),
        )
        .unwrap_or_else(|error| panic!("raw TCP on an HTTP port: {error}; logs:\n{}", logs()));
    assert_eq!(raw, "outside-tcp");
    assert!(client.envoy_stat("cluster.PassthroughCluster;.upstream_cx_total") > before);
}

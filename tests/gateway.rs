//! Istio Gateways end to end with stock Envoy: rudder serves a config directory, Envoys attach
//! as gateway Pods (`router~...` node ids, labels `istio: ingressgateway` or `istio:
//! egressgateway`), and clients reach real upstreams through them, as in Istio's tasks "Ingress
//! Gateways", "Secure Gateways" and "Egress Gateways". Certificates come from a test CA made
//! with openssl; `credentialName`s name Kubernetes Secrets in the gateway's namespace, served to
//! Envoy over SDS. Each test (and ADS mode) has its own loopback addresses `127.0.NET.x`
//! (NET 220-233) and free ports, and every gateway server binds its address, so the tests run in
//! parallel and touch loopback only.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rudder::bootstrap::AdsApiType;
use rudder::xds::TlsFiles;
use support::certs::{TestCa, certificate_der, connector_trusting};
use support::envoy_process::EnvoyProcess;
use support::in_both_modes;
use support::mesh::{Backend, NAMESPACE, service_yaml, wait_until};
use support::router::{
    ControlPlane, Curl, CurlReply, ISTIO_SYSTEM, envoy_admin, envoy_stat, free_ports,
    served_certificate, tcp_exchange,
};
use support::upstream::{TcpUpstream, Upstream};

/// How long config may take from a file to Envoy (Secrets included).
const PROPAGATION_LIMIT: Duration = Duration::from_secs(10);
/// The port every upstream listens on (each on its own address).
const BACKEND_PORT: u16 = 18000;
/// The labels of Istio's default ingress gateway, which the Gateways below select.
const INGRESS_LABELS: &[(&str, &str)] = &[("istio", "ingressgateway")];

in_both_modes!(
    https_ingress_routes_by_host_and_path,
    a_rotated_secret_reaches_clients_without_replacing_the_listener,
);

#[path = "gateway/egress.rs"]
mod egress;

/// The test's loopback network: `base` for state of the world, `base + 1` for delta.
fn net(base: u8, api_type: AdsApiType) -> u8 {
    match api_type {
        AdsApiType::Grpc => base,
        AdsApiType::DeltaGrpc => base + 1,
    }
}

/// The gateway's loopback address on the test's network `net`, and `N` free ports on it.
fn gateway_ports<const N: usize>(net: u8) -> (String, [u16; N]) {
    let ip = format!("127.0.{net}.1");
    let ports = free_ports(&ip, N)
        .try_into()
        .expect("as many ports as asked for");
    (ip, ports)
}

/// A new test CA, in a temporary directory that lives as long as the returned guard.
fn test_ca() -> (tempfile::TempDir, TestCa) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca = TestCa::new(dir.path());
    (dir, ca)
}

/// The Gateway `istio-system/NAME` selecting `istio: SELECTOR`, with `servers` (YAML list items
/// indented by two spaces).
fn gateway(name: &str, selector: &str, servers: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\n\
         metadata: {{name: {name}, namespace: {ISTIO_SYSTEM}}}\n\
         spec:\n  selector: {{istio: {selector}}}\n  servers:\n{servers}"
    )
}

/// One gateway server item, bound to `ip` so that it listens on loopback only.
fn server(protocol: &str, port: u16, ip: &str, hosts: &str, tls: &str) -> String {
    let name = protocol.to_lowercase();
    let mut item = format!(
        "  - port: {{number: {port}, name: {name}, protocol: {protocol}}}\n    \
         bind: {ip}\n    hosts: {hosts}\n"
    );
    if !tls.is_empty() {
        item.push_str(&format!("    tls: {tls}\n"));
    }
    item
}

/// A VirtualService in the mesh namespace bound to the ingress Gateway, with `rules` (the rest of
/// its spec, indented by two spaces).
fn ingress_virtual_service(name: &str, hosts: &str, rules: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: {name}, namespace: {NAMESPACE}}}\n\
         spec:\n  hosts: {hosts}\n  gateways: [{ISTIO_SYSTEM}/ingress]\n{rules}"
    )
}

/// The in-mesh name of a backend service.
fn fqdn(service: &str) -> String {
    format!("{service}.{NAMESPACE}.svc.cluster.local")
}

/// Istio's httpbin example behind the ingress: `/status` and `/delay` go to httpbin.
fn httpbin_virtual_service() -> String {
    ingress_virtual_service(
        "httpbin",
        "[httpbin.example.com]",
        &format!(
            "  http:\n  - match: [{{uri: {{prefix: /status}}}}, {{uri: {{prefix: /delay}}}}]\n    \
             route: [{{destination: {{host: {}, port: {{number: {BACKEND_PORT}}}}}}}]\n",
            fqdn("httpbin")
        ),
    )
}

/// The HTTPS server for httpbin.example.com on `ip:port`, TLS `mode` with the certificate of the
/// Secret `httpbin-credential`.
fn httpbin_https_server(port: u16, ip: &str, mode: &str) -> String {
    server(
        "HTTPS",
        port,
        ip,
        "[httpbin.example.com]",
        &format!("{{mode: {mode}, credentialName: httpbin-credential}}"),
    )
}

/// rudder serving httpbin (`service`) behind the ingress Gateway with `servers`, and the Secret
/// `credential` when there is one.
async fn httpbin_ingress(
    service: String,
    servers: &str,
    credential: Option<String>,
) -> ControlPlane {
    let mut files = vec![
        ("httpbin.yaml", service),
        (
            "gateway.yaml",
            gateway("ingress", "ingressgateway", servers),
        ),
        ("routes.yaml", httpbin_virtual_service()),
    ];
    files.extend(credential.map(|secret| ("credential.yaml", secret)));
    ControlPlane::start(&files).await
}

/// An HTTPS request for httpbin.example.com at `ip:port`, trusting the test CA `ca`.
fn httpbin_https(ip: &str, port: u16, path: &str, ca: &TestCa) -> Curl {
    Curl::new("https", "httpbin.example.com", address(ip, port), path).ca(&ca.path("ca.pem"))
}

/// An upstream `NAME` on `IP:BACKEND_PORT` and the Service in front of it.
async fn backend(name: &str, ip: &str, cluster_ip: &str) -> (Upstream, String) {
    let upstream = Upstream::start(name, &format!("{ip}:{BACKEND_PORT}")).await;
    let service = service_yaml(
        name,
        cluster_ip,
        BACKEND_PORT,
        &[Backend::new(&format!("{name}-1"), ip, "v1")],
    );
    (upstream, service)
}

fn address(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().expect("a socket address")
}

/// Waits until `request` is answered with 200 by `upstream`, or fails with what rudder rejected
/// and what the gateway has.
async fn wait_for_upstream(
    control_plane: &ControlPlane,
    gateway: &EnvoyProcess,
    request: &Curl,
    upstream: &str,
) {
    let reached = wait_until(PROPAGATION_LIMIT, || async {
        request.send().await.upstream().as_deref() == Some(upstream)
    })
    .await;
    if reached.is_none() {
        panic!(
            "{upstream} was never reached through the gateway (last reply: {:?})\n{}",
            request.send().await,
            control_plane.diagnose(gateway).await
        );
    }
}

/// A plain HTTP request for httpbin.example.com to the server at `address`, once it answers at
/// all: each listener of a gateway starts serving when its own routes (and Secrets) arrived, so
/// the HTTPS one answering says nothing of this one.
async fn redirect_from_http(
    control_plane: &ControlPlane,
    gateway: &EnvoyProcess,
    address: SocketAddr,
    path: &str,
) -> CurlReply {
    let request = Curl::new("http", "httpbin.example.com", address, path);
    let answered = wait_until(PROPAGATION_LIMIT, || async {
        request.send().await.status.is_some()
    })
    .await;
    if answered.is_none() {
        panic!(
            "the HTTP server never answered (last reply: {:?})\n{}",
            request.send().await,
            control_plane.diagnose(gateway).await
        );
    }
    request.send().await
}

/// HTTPS ingress (Istio's "Secure Gateways" task, SIMPLE): the gateway terminates TLS with the
/// certificate of a Kubernetes Secret named by `credentialName` and routes by host and path;
/// what no route matches gets 404 from the gateway; the HTTP server with `httpsRedirect`
/// answers 301 to https.
async fn https_ingress_routes_by_host_and_path(api_type: AdsApiType) {
    let net = net(220, api_type);
    let (ip, [http_port, https_port]) = gateway_ports(net);
    let (_certificates, ca) = test_ca();
    ca.issue_server("httpbin", &["httpbin.example.com"]);
    let (httpbin, service) = backend("httpbin", &format!("127.0.{net}.10"), "10.96.220.1").await;
    let servers = [
        server(
            "HTTP",
            http_port,
            &ip,
            "[httpbin.example.com]",
            "{httpsRedirect: true}",
        ),
        httpbin_https_server(https_port, &ip, "SIMPLE"),
    ]
    .concat();
    let credential = ca.tls_secret("httpbin-credential", ISTIO_SYSTEM, "httpbin", false);
    let control_plane = httpbin_ingress(service, &servers, Some(credential)).await;
    let ingress = control_plane.router(&ip, "ingress-xyz", INGRESS_LABELS, api_type);
    let https = |path: &str| httpbin_https(&ip, https_port, path, &ca);

    wait_for_upstream(&control_plane, &ingress, &https("/status/200"), "httpbin").await;
    let delayed = https("/delay/1").send().await;
    assert_eq!(
        delayed.upstream().as_deref(),
        Some("httpbin"),
        "the second path prefix of the route: {delayed:?}"
    );
    let served = httpbin.requests();

    let unrouted = https("/headers").send().await;
    assert_eq!(
        unrouted.status,
        Some(404),
        "a path no route matches must get 404 from the gateway: {unrouted:?}"
    );
    let wrong_host = https("/status/200")
        .host_header("other.example.com")
        .send()
        .await;
    assert_eq!(
        wrong_host.status,
        Some(404),
        "a host the server does not expose must get 404 from the gateway: {wrong_host:?}"
    );
    assert_eq!(
        httpbin.requests(),
        served,
        "requests the gateway answered 404 reached httpbin"
    );

    let plaintext = redirect_from_http(
        &control_plane,
        &ingress,
        address(&ip, http_port),
        "/status/200",
    )
    .await;
    assert_eq!(
        plaintext.status,
        Some(301),
        "httpsRedirect must answer 301: {plaintext:?}"
    );
    assert!(
        plaintext
            .redirect
            .starts_with("https://httpbin.example.com"),
        "httpsRedirect must send the client to https on the same host: {plaintext:?}"
    );

    let cluster = format!("cluster.outbound|{BACKEND_PORT}||{};", fqdn("httpbin"));
    let counted = envoy_stat(&ingress, &format!("{cluster}.upstream_rq_200")).await;
    assert_eq!(
        counted,
        httpbin.requests(),
        "the gateway's own count of requests to httpbin differs from what httpbin served:\n{}",
        envoy_admin(&ingress, "/stats?filter=httpbin").await
    );
}

/// MUTUAL: the gateway asks for a client certificate and verifies it with the Secret's
/// `ca.crt`; a client without one, or with one from another CA, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_ingress_requires_a_client_certificate() {
    let net = 222;
    let (ip, [https_port]) = gateway_ports(net);
    let (_certificates, ca) = test_ca();
    ca.issue_server("httpbin", &["httpbin.example.com"]);
    ca.issue_client("client");
    let (_strangers, other_ca) = test_ca();
    other_ca.issue_client("stranger");
    let (httpbin, service) = backend("httpbin", &format!("127.0.{net}.10"), "10.96.222.1").await;
    let servers = httpbin_https_server(https_port, &ip, "MUTUAL");
    let credential = ca.tls_secret("httpbin-credential", ISTIO_SYSTEM, "httpbin", true);
    let control_plane = httpbin_ingress(service, &servers, Some(credential)).await;
    let ingress = control_plane.router(&ip, "ingress-xyz", INGRESS_LABELS, AdsApiType::DeltaGrpc);
    let request = || httpbin_https(&ip, https_port, "/status/200", &ca);

    let with_certificate =
        request().client_certificate(&ca.path("client.pem"), &ca.path("client-key.pem"));
    wait_for_upstream(&control_plane, &ingress, &with_certificate, "httpbin").await;
    let served = httpbin.requests();

    let anonymous = request().send().await;
    assert_eq!(
        anonymous.status, None,
        "a client without a certificate got through MUTUAL: {anonymous:?}"
    );
    let stranger = request()
        .client_certificate(
            &other_ca.path("stranger.pem"),
            &other_ca.path("stranger-key.pem"),
        )
        .send()
        .await;
    assert_eq!(
        stranger.status, None,
        "a client certificate from another CA got through MUTUAL: {stranger:?}"
    );
    assert_eq!(
        httpbin.requests(),
        served,
        "a refused client reached httpbin"
    );
    assert_eq!(
        with_certificate.send().await.upstream().as_deref(),
        Some("httpbin"),
        "the client with a certificate is still let through"
    );
}

/// PASSTHROUGH: the gateway does not terminate TLS; it picks the backend by SNI (`tls` routes
/// with `sniHosts`), and the client sees the backend's own certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_passthrough_picks_the_backend_by_sni() {
    let net = 224;
    let (ip, [tls_port]) = gateway_ports(net);
    let (_certificates, ca) = test_ca();
    let mut upstreams = Vec::new();
    let mut files = Vec::new();
    for (i, name) in ["a", "b"].into_iter().enumerate() {
        let host = format!("{name}.example.com");
        ca.issue_server(name, &[&host]);
        let service = format!("pass-{name}");
        let backend_ip = format!("127.0.{net}.{}", 10 + i);
        let upstream = Upstream::start_tls(
            &service,
            &format!("{backend_ip}:{BACKEND_PORT}"),
            ca.acceptor(name, false),
        )
        .await;
        upstreams.push(upstream);
        files.push((
            format!("{service}.yaml"),
            service_yaml(
                &service,
                &format!("10.96.224.{}", 1 + i),
                BACKEND_PORT,
                &[Backend::new(&format!("{service}-1"), &backend_ip, "v1")],
            ),
        ));
    }
    let servers = server(
        "TLS",
        tls_port,
        &ip,
        "[a.example.com, b.example.com]",
        "{mode: PASSTHROUGH}",
    );
    let route = |name: &str| {
        format!(
            "  - match: [{{port: {tls_port}, sniHosts: [{name}.example.com]}}]\n    \
             route: [{{destination: {{host: {}, port: {{number: {BACKEND_PORT}}}}}}}]\n",
            fqdn(&format!("pass-{name}"))
        )
    };
    files.push((
        "gateway.yaml".to_string(),
        gateway("ingress", "ingressgateway", &servers),
    ));
    files.push((
        "routes.yaml".to_string(),
        ingress_virtual_service(
            "passthrough",
            "[a.example.com, b.example.com]",
            &format!("  tls:\n{}{}", route("a"), route("b")),
        ),
    ));
    let files: Vec<(&str, String)> = files
        .iter()
        .map(|(name, contents)| (name.as_str(), contents.clone()))
        .collect();
    let control_plane = ControlPlane::start(&files).await;
    let ingress = control_plane.router(&ip, "ingress-xyz", INGRESS_LABELS, AdsApiType::Grpc);
    let request =
        |host: &str| Curl::new("https", host, address(&ip, tls_port), "/").ca(&ca.path("ca.pem"));

    wait_for_upstream(
        &control_plane,
        &ingress,
        &request("a.example.com"),
        "pass-a",
    )
    .await;
    let b = request("b.example.com").send().await;
    assert_eq!(
        b.upstream().as_deref(),
        Some("pass-b"),
        "SNI b.example.com must reach pass-b: {b:?}"
    );
    for name in ["a", "b"] {
        let presented = served_certificate(
            &ca.connector(),
            address(&ip, tls_port),
            &format!("{name}.example.com"),
        )
        .await;
        assert_eq!(
            presented,
            Ok(ca.der(name)),
            "the client must see pass-{name}'s own certificate, untouched by the gateway"
        );
        let cluster = format!(
            "cluster.outbound|{BACKEND_PORT}||{};",
            fqdn(&format!("pass-{name}"))
        );
        assert!(
            envoy_stat(&ingress, &format!("{cluster}.upstream_cx_total")).await > 0,
            "the gateway did not count connections to pass-{name}:\n{}",
            envoy_admin(&ingress, "/stats?filter=pass-").await
        );
    }
    let unknown = request("c.example.com").send().await;
    assert_eq!(
        unknown.status, None,
        "an SNI no route matches must not reach a backend: {unknown:?}"
    );
}

/// A TCP server with a `tcp` route: bytes go to the backend as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_server_forwards_to_the_tcp_route() {
    let net = 226;
    let (ip, [tcp_port]) = gateway_ports(net);
    let backend_ip = format!("127.0.{net}.10");
    let _echo = TcpUpstream::start("tcp-echo", &format!("{backend_ip}:{BACKEND_PORT}")).await;
    let service = service_yaml(
        "tcp-echo",
        "10.96.226.1",
        BACKEND_PORT,
        &[Backend::new("tcp-echo-1", &backend_ip, "v1")],
    );
    let servers = server("TCP", tcp_port, &ip, "[\"*\"]", "");
    let routes = ingress_virtual_service(
        "tcp-echo",
        "[\"*\"]",
        &format!(
            "  tcp:\n  - match: [{{port: {tcp_port}}}]\n    \
             route: [{{destination: {{host: {}, port: {{number: {BACKEND_PORT}}}}}}}]\n",
            fqdn("tcp-echo")
        ),
    );
    let control_plane = ControlPlane::start(&[
        ("tcp-echo.yaml", service),
        (
            "gateway.yaml",
            gateway("ingress", "ingressgateway", &servers),
        ),
        ("routes.yaml", routes),
    ])
    .await;
    let ingress = control_plane.router(&ip, "ingress-xyz", INGRESS_LABELS, AdsApiType::DeltaGrpc);
    let gateway_address = address(&ip, tcp_port);
    let reached = wait_until(PROPAGATION_LIMIT, || async {
        tcp_exchange(gateway_address, "hello").await.as_deref() == Ok("tcp-echo")
    })
    .await;
    if reached.is_none() {
        panic!(
            "tcp-echo was never reached through the gateway (last: {:?})\n{}",
            tcp_exchange(gateway_address, "hello").await,
            control_plane.diagnose(&ingress).await
        );
    }
    let cluster = format!("cluster.outbound|{BACKEND_PORT}||{};", fqdn("tcp-echo"));
    assert!(
        envoy_stat(&ingress, &format!("{cluster}.upstream_cx_total")).await > 0,
        "the gateway did not count connections to tcp-echo:\n{}",
        envoy_admin(&ingress, "/stats?filter=tcp-echo").await
    );
}

/// Secret rotation: rewriting the Secret a `credentialName` names changes the certificate
/// clients see, through SDS alone, as istiod does: Envoy keeps its listener (no drain, no
/// restart), and the Secret is the SDS resource `kubernetes://NAME`.
async fn a_rotated_secret_reaches_clients_without_replacing_the_listener(api_type: AdsApiType) {
    let net = net(228, api_type);
    let (ip, [https_port]) = gateway_ports(net);
    let (_certificates, ca) = test_ca();
    ca.issue_server("before", &["httpbin.example.com"]);
    ca.issue_server("after", &["httpbin.example.com"]);
    let (_httpbin, service) = backend("httpbin", &format!("127.0.{net}.10"), "10.96.228.1").await;
    let servers = httpbin_https_server(https_port, &ip, "SIMPLE");
    let secret = |name: &str| ca.tls_secret("httpbin-credential", ISTIO_SYSTEM, name, false);
    let control_plane = httpbin_ingress(service, &servers, Some(secret("before"))).await;
    let ingress = control_plane.router(&ip, "ingress-xyz", INGRESS_LABELS, api_type);
    let gateway_address = address(&ip, https_port);
    let request = httpbin_https(&ip, https_port, "/status/200", &ca);
    wait_for_upstream(&control_plane, &ingress, &request, "httpbin").await;
    let connector = ca.connector();
    let presented = || served_certificate(&connector, gateway_address, "httpbin.example.com");
    assert_eq!(
        presented().await,
        Ok(ca.der("before")),
        "the first certificate"
    );
    let secrets = envoy_admin(&ingress, "/config_dump?resource=dynamic_active_secrets").await;
    assert!(
        secrets.contains("\"kubernetes://httpbin-credential\""),
        "the credential must reach Envoy as the SDS Secret kubernetes://httpbin-credential:\n{secrets}"
    );
    let listener_changes = || async {
        let mut changes = Vec::new();
        for stat in ["listener_modified", "listener_removed", "listener_added"] {
            changes.push(envoy_stat(&ingress, &format!("listener_manager.{stat}")).await);
        }
        changes
    };
    let before = listener_changes().await;

    control_plane.write("credential.yaml", &secret("after"));
    let rotated = wait_until(PROPAGATION_LIMIT, || async {
        presented().await == Ok(ca.der("after"))
    })
    .await;
    assert!(
        rotated.is_some(),
        "the rotated certificate never reached clients\n{}",
        control_plane.diagnose(&ingress).await
    );
    eprintln!("rotation took {rotated:?}");
    assert_eq!(
        request.send().await.upstream().as_deref(),
        Some("httpbin"),
        "requests pass with the new certificate"
    );
    assert_eq!(
        listener_changes().await,
        before,
        "the listener was added, modified or removed (modified, removed, added): a rotation must \
         reach Envoy over SDS alone"
    );
}

/// Certificates from files (`serverCertificate`, `privateKey`): paths on the gateway's own file
/// system, read by Envoy itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_ingress_with_certificate_files() {
    let net = 232;
    let (ip, [https_port]) = gateway_ports(net);
    let (_certificates, ca) = test_ca();
    ca.issue_server("httpbin", &["httpbin.example.com"]);
    let (_httpbin, service) = backend("httpbin", &format!("127.0.{net}.10"), "10.96.232.1").await;
    let tls = format!(
        "{{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}",
        ca.path("httpbin.pem").display(),
        ca.path("httpbin-key.pem").display()
    );
    let servers = server("HTTPS", https_port, &ip, "[httpbin.example.com]", &tls);
    let control_plane = httpbin_ingress(service, &servers, None).await;
    let ingress = control_plane.router(&ip, "ingress-xyz", INGRESS_LABELS, AdsApiType::Grpc);
    let request = httpbin_https(&ip, https_port, "/status/200", &ca);
    wait_for_upstream(&control_plane, &ingress, &request, "httpbin").await;
}

/// The README's "Ingress gateway with a stock Envoy", as written: `examples/ingress-gateway`,
/// its `credential.sh` for the Secret, and an Envoy bootstrapped by `rudder bootstrap` with
/// `--namespace` and `--label`, reaching rudder over mutual TLS with the certificates of
/// `xds-certs.sh`; then the certificate is rotated the way the README says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_gateway_example_serves_https_and_rotates() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ingress-gateway");
    let certificates = tempfile::tempdir().expect("a temporary directory");
    let credential = || {
        let output = std::process::Command::new(example.join("credential.sh"))
            .arg(certificates.path())
            .output()
            .expect("run examples/ingress-gateway/credential.sh");
        assert!(
            output.status.success(),
            "credential.sh: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("a Secret as text")
    };
    let certificate = || {
        let pem = certificates.path().join("httpbin.pem");
        std::fs::read_to_string(&pem).expect("the issued certificate")
    };
    let _httpbin = Upstream::start("httpbin", "127.0.0.2:8000").await;
    let secret = credential();
    let xds_certs = std::process::Command::new(example.join("xds-certs.sh"))
        .arg(certificates.path())
        .output()
        .expect("run examples/ingress-gateway/xds-certs.sh");
    assert!(
        xds_certs.status.success(),
        "xds-certs.sh: {}",
        String::from_utf8_lossy(&xds_certs.stderr)
    );
    let file = |name: &str| certificates.path().join(name);
    let tls = TlsFiles {
        certificate: file("xds.pem"),
        private_key: file("xds-key.pem"),
        client_ca: Some(file("ca.pem")),
    };
    let control_plane =
        ControlPlane::start_from(&example, &[("httpbin-credential.yaml", secret)], tls).await;
    let text = |name: &str| file(name).display().to_string();
    let bootstrap = std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args([
            "bootstrap",
            "--node-id",
            "router~127.0.0.1~ingress-xyz.istio-system~istio-system.svc.cluster.local",
            "--xds-address",
            &control_plane.server.xds_address().to_string(),
            "--namespace",
            "istio-system",
            "--label",
            "istio=ingressgateway",
            "--admin-address",
            "127.0.0.1:0",
            "--xds-tls-ca",
            &text("ca.pem"),
            "--xds-tls-cert",
            &text("gateway.pem"),
            "--xds-tls-key",
            &text("gateway-key.pem"),
            "--xds-tls-server-name",
            "localhost",
        ])
        .output()
        .expect("run rudder bootstrap");
    assert!(
        bootstrap.status.success(),
        "rudder bootstrap: {}",
        String::from_utf8_lossy(&bootstrap.stderr)
    );
    let ingress = EnvoyProcess::start_from_bootstrap(
        "gateway.yaml",
        &String::from_utf8_lossy(&bootstrap.stdout),
    );
    let gateway_address = address("127.0.0.1", 8443);
    let request = Curl::new("https", "httpbin.example.com", gateway_address, "/")
        .ca(&certificates.path().join("ca.pem"));
    wait_for_upstream(&control_plane, &ingress, &request, "httpbin").await;
    let plaintext =
        redirect_from_http(&control_plane, &ingress, address("127.0.0.1", 8080), "/").await;
    assert_eq!(plaintext.status, Some(301), "{plaintext:?}");

    let first = certificate();
    control_plane.write("httpbin-credential.yaml", &credential());
    assert_ne!(
        certificate(),
        first,
        "credential.sh issued a new certificate"
    );
    let expected = certificate_der(&certificates.path().join("httpbin.pem"));
    let connector = connector_trusting(&certificates.path().join("ca.pem"));
    let rotated = wait_until(PROPAGATION_LIMIT, || async {
        served_certificate(&connector, gateway_address, "httpbin.example.com").await
            == Ok(expected.clone())
    })
    .await;
    assert!(
        rotated.is_some(),
        "the rotated certificate never reached clients\n{}",
        control_plane.diagnose(&ingress).await
    );
}

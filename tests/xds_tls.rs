//! xDS over TLS and mutual TLS with a real Envoy: an Envoy whose bootstrap trusts rudder's CA gets
//! its config over TLS and routes traffic; with a client CA, an Envoy without a client
//! certificate is refused at the handshake (and rudder logs it), one whose certificate's SPIFFE
//! identity is of another namespace is refused on its first request, and one with a matching
//! certificate is served. Certificates replaced on disk are served to the next connection.

mod support;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rudder::bootstrap::{AdsApiType, ClientCertificate, XdsClientTls};
use rudder::serve::{ServeOptions, Server};
use rudder::xds::{TlsFiles, XdsOptions, XdsTls};
use serde_json::json;
use support::certs::{TestCa, connector_trusting};
use support::envoy_process::EnvoyProcess;
use support::mesh::{Backend, NAMESPACE, NODE_ID, local_serve_options, service_yaml, wait_until};
use support::upstream::{Echo, Upstream};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// The DNS name of rudder's server certificate, which Envoy checks.
const SERVER_NAME: &str = "rudder.test";

/// What rudder logged, for every test of this binary (the subscriber is global).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("rudder=info")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        logs
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(logs: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(
        &logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
    .into_owned()
}

/// A CA with rudder's server certificate `rudder.pem` for [`SERVER_NAME`].
fn test_ca(dir: &Path) -> TestCa {
    let ca = TestCa::new(dir);
    ca.issue_server("rudder", &[SERVER_NAME]);
    ca
}

fn server_files(ca: &TestCa, client_ca: bool) -> TlsFiles {
    TlsFiles {
        certificate: ca.path("rudder.pem"),
        private_key: ca.path("rudder-key.pem"),
        client_ca: client_ca.then(|| ca.path("ca.pem")),
    }
}

/// A service `web` on `port` whose one Pod is an upstream on `127.0.NET.1`; rudder serving it
/// with `tls` on the xDS port.
async fn start_rudder(config: &Path, net: u8, port: u16, tls: TlsFiles) -> (Server, Upstream) {
    let ip = format!("127.0.{net}.1");
    let upstream = Upstream::start("web-v1", &format!("{ip}:{port}")).await;
    let backends = [Backend::new("web-v1", &ip, "v1")];
    let service = service_yaml("web", &format!("10.96.{net}.1"), port, &backends);
    std::fs::write(config.join("web.yaml"), service).expect("write the config");
    let server = Server::start(ServeOptions {
        xds: XdsOptions {
            tls: Some(XdsTls::load(tls).expect("the TLS files load")),
            ..XdsOptions::default()
        },
        ..local_serve_options(vec![config.to_path_buf()])
    })
    .await
    .expect("rudder starts");
    (server, upstream)
}

/// An Envoy sidecar reaching `server` over TLS, trusting `ca`, presenting `client` (the name of
/// a certificate of `ca`) if given.
fn start_envoy(server: &Server, ca: &TestCa, client: Option<&str>) -> EnvoyProcess {
    let path = |file: String| ca.path(&file).to_string_lossy().into_owned();
    let tls = XdsClientTls {
        ca_file: path("ca.pem".to_string()),
        client_certificate: client.map(|name| ClientCertificate {
            certificate_file: path(format!("{name}.pem")),
            private_key_file: path(format!("{name}-key.pem")),
        }),
        server_name: Some(SERVER_NAME.to_string()),
    };
    let metadata = json!({
        "NAMESPACE": NAMESPACE,
        "INTERCEPTION_MODE": "NONE",
        "LABELS": {"app": "client"},
    });
    EnvoyProcess::start_with_tls(
        NODE_ID,
        metadata,
        &server.xds_address().to_string(),
        AdsApiType::DeltaGrpc,
        Some(tls),
    )
}

/// Waits until a request to `web` through the sidecar's listener on `port` reaches the upstream.
async fn assert_routes(envoy: &EnvoyProcess, port: u16) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client");
    let routed = wait_until(Duration::from_secs(20), || async {
        let response = client
            .get(format!("http://127.0.0.1:{port}/"))
            .header("host", "web")
            .send()
            .await;
        match response {
            Ok(response) => response
                .json::<Echo>()
                .await
                .is_ok_and(|echo| echo.upstream == "web-v1"),
            Err(_) => false,
        }
    })
    .await;
    assert!(
        routed.is_some(),
        "Envoy never routed to web over TLS xDS; its log:\n{}",
        envoy.log()
    );
}

/// Envoy's `control_plane.connected_state` (1 while its ADS stream is up).
async fn connected_state(envoy: &EnvoyProcess) -> String {
    let url = format!(
        "http://{}/stats?filter=^control_plane.connected_state$",
        envoy.admin
    );
    reqwest::get(url)
        .await
        .expect("Envoy's admin answers")
        .text()
        .await
        .expect("a stats body")
}

/// Asserts that Envoy has had no config for a while: no clusters from rudder, not connected.
async fn assert_not_served(envoy: &EnvoyProcess) {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let state = connected_state(envoy).await;
    assert!(
        state.contains("control_plane.connected_state: 0"),
        "Envoy is not connected: {state}\n{}",
        envoy.log()
    );
    let clusters = reqwest::get(format!("http://{}/clusters", envoy.admin))
        .await
        .expect("Envoy's admin answers")
        .text()
        .await
        .expect("a clusters body");
    assert!(
        !clusters.contains("outbound|"),
        "Envoy got no clusters: {clusters}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_gets_its_config_over_tls() {
    let (net, port) = (241, 19241);
    let certs = tempfile::tempdir().expect("a temporary directory");
    let config = tempfile::tempdir().expect("a temporary directory");
    let ca = test_ca(certs.path());
    let (server, _upstream) =
        start_rudder(config.path(), net, port, server_files(&ca, false)).await;
    let envoy = start_envoy(&server, &ca, None);
    assert_routes(&envoy, port).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_serves_only_envoys_with_a_matching_client_certificate() {
    let logs = captured_logs();
    let (net, port) = (242, 19242);
    let certs = tempfile::tempdir().expect("a temporary directory");
    let config = tempfile::tempdir().expect("a temporary directory");
    let ca = test_ca(certs.path());
    ca.issue_client_with_uri(
        "other-namespace",
        "spiffe://cluster.local/ns/elsewhere/sa/client",
    );
    ca.issue_client_with_uri(
        "client",
        &format!("spiffe://cluster.local/ns/{NAMESPACE}/sa/client"),
    );
    let (server, _upstream) = start_rudder(config.path(), net, port, server_files(&ca, true)).await;

    let anonymous = start_envoy(&server, &ca, None);
    let impostor = start_envoy(&server, &ca, Some("other-namespace"));
    assert_not_served(&anonymous).await;
    assert_not_served(&impostor).await;
    let log = logged(&logs);
    assert!(
        log.contains("xDS TLS handshake failed"),
        "rudder logs the refused handshake:\n{log}"
    );
    assert!(
        log.contains("authorization failed") && log.contains("ns/elsewhere"),
        "rudder logs the refused identity:\n{log}"
    );

    let client = start_envoy(&server, &ca, Some("client"));
    assert_routes(&client, port).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificates_serve_the_next_connection() {
    let (net, port) = (243, 19243);
    let certs = tempfile::tempdir().expect("a temporary directory");
    let config = tempfile::tempdir().expect("a temporary directory");
    let ca = test_ca(certs.path());
    ca.issue_server("rotated", &[SERVER_NAME]);
    let (server, _upstream) =
        start_rudder(config.path(), net, port, server_files(&ca, false)).await;
    let presented = || async {
        let tcp = TcpStream::connect(server.xds_address())
            .await
            .expect("connect to xDS");
        let name = ServerName::try_from(SERVER_NAME).expect("a server name");
        let tls = connector_trusting(&ca.path("ca.pem"))
            .connect(name, tcp)
            .await
            .expect("a TLS handshake");
        let certificates = tls.get_ref().1.peer_certificates().expect("a certificate");
        certificates[0].to_vec()
    };
    assert_eq!(presented().await, ca.der("rudder"));

    // The way a kubelet or cert-manager swaps them: each file replaced whole.
    for (from, to) in [
        ("rotated.pem", "rudder.pem"),
        ("rotated-key.pem", "rudder-key.pem"),
    ] {
        std::fs::copy(ca.path(from), ca.path(&format!("{to}.new"))).expect("copy");
        std::fs::rename(ca.path(&format!("{to}.new")), ca.path(to)).expect("rename");
    }
    let rotated = ca.der("rotated");
    let served = wait_until(Duration::from_secs(5), || async {
        presented().await == rotated
    })
    .await;
    assert!(served.is_some(), "the rotated certificate is served");
    server.stop().await;
}

#[test]
fn missing_or_bad_certificate_files_fail_startup_naming_the_file() {
    let certs = tempfile::tempdir().expect("a temporary directory");
    let ca = test_ca(certs.path());
    std::fs::write(ca.path("garbage.pem"), "not PEM at all").expect("write a file");
    let cases = [
        ("missing.pem", "rudder-key.pem", "missing.pem"),
        ("garbage.pem", "rudder-key.pem", "garbage.pem"),
        ("rudder.pem", "ca.pem", "ca.pem"),
    ];
    for (certificate, key, named) in cases {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
            .args([
                "serve",
                "--xds-address",
                "127.0.0.1:0",
                "--admin-address",
                "127.0.0.1:0",
            ])
            .arg("--config-dir")
            .arg(certs.path())
            .arg("--xds-tls-cert")
            .arg(ca.path(certificate))
            .arg("--xds-tls-key")
            .arg(ca.path(key))
            .output()
            .expect("run rudder");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(named) && !stderr.contains("panicked"),
            "{named}: {stderr}"
        );
    }
}

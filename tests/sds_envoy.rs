//! Gateway credentials through a real Envoy: rudder serves a config directory holding a TLS
//! Secret; a stock Envoy, identified as a gateway (`router`) of the Secret's namespace, has one
//! static listener whose TLS context names `kubernetes://cred` over ADS. The listener warms on
//! the Secret rudder sends and terminates TLS with it; editing the Secret's file reaches Envoy
//! without a restart. The gateway proves its identity to rudder with a SPIFFE client certificate
//! (mutual TLS), without which it would get no Secret. Runs with state-of-the-world and with
//! delta ADS. (Gateway listeners built
//! from Gateway resources are the gateway tests' business.)

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rudder::bootstrap::{AdsApiType, BootstrapOptions, bootstrap_json};
use rudder::serve::Server;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

use support::envoy_process::EnvoyProcess;
use support::identity::{GATEWAY_SERVICE_ACCOUNT, MeshCa};
use support::mesh::local_serve_options;

const NODE_ID: &str = "router~127.0.0.1~ingress-a.gw~gw.svc.cluster.local";
const CA_PEM: &str = include_str!("../testdata/credentials/ca.pem");
const CERT_PEM: &str = include_str!("../testdata/credentials/server.pem");
const KEY_PEM: &str = include_str!("../testdata/credentials/server-key.pem");
const GREETING: &str = "hello over tls\n";
const WAIT: Duration = Duration::from_secs(20);

/// The Secret `cred` of namespace `gw` with certificate chain `chain`, as a file's YAML.
fn secret_yaml(chain: &str) -> String {
    let block = |pem: &str| -> String { pem.lines().map(|l| format!("    {l}\n")).collect() };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: cred, namespace: gw}}\n\
         type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        block(chain),
        block(KEY_PEM)
    )
}

/// A free loopback port (bound and released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("an address").port()
}

/// Starts Envoy as the gateway, ADS to `server`, with a TLS listener on `port` that answers
/// every HTTP request with [`GREETING`], using the certificate `kubernetes://cred`.
fn start_gateway_envoy(
    server: &Server,
    ca: &MeshCa,
    api_type: AdsApiType,
    port: u16,
) -> EnvoyProcess {
    let mut bootstrap = bootstrap_json(&BootstrapOptions {
        node_id: NODE_ID.to_string(),
        xds_address: server.xds_address().to_string(),
        metadata: json!({"NAMESPACE": "gw"}),
        admin_address: "127.0.0.1:0".parse().expect("an address"),
        api_type,
        xds_tls: Some(ca.envoy_tls("gw", GATEWAY_SERVICE_ACCOUNT)),
        access_log_service: None,
    })
    .expect("a bootstrap");
    bootstrap["static_resources"]["listeners"] = json!([{
        "name": "tls",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": {"tls_certificate_sds_secret_configs": [{
                    "name": "kubernetes://cred",
                    "sds_config": {"ads": {}, "resource_api_version": "V3"},
                }]},
            }},
            "filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "tls",
                "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                }}],
                "route_config": {"virtual_hosts": [{
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{
                        "match": {"prefix": "/"},
                        "direct_response": {"status": 200, "body": {"inline_string": GREETING}},
                    }],
                }]},
            }}],
        }],
    }]);
    EnvoyProcess::start_from_bootstrap("envoy.json", &bootstrap.to_string())
}

/// A TLS connection to `port` that trusts only the test CA and expects the gateway's name:
/// the greeting and how many certificates the server presented.
async fn handshake(port: u16) -> Result<(String, usize), String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(CA_PEM.as_bytes()) {
        roots
            .add(ca.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("gateway.example.com").expect("a server name");
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .map_or(0, |certificates| certificates.len());
    let request = "GET / HTTP/1.1\r\nHost: gateway.example.com\r\nConnection: close\r\n\r\n";
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    // Envoy may close without close_notify; what arrived is what counts.
    let _ = tls.read_to_string(&mut response).await;
    let greeting = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or(response);
    Ok((greeting, presented))
}

/// Waits until a handshake gives `presented` certificates and the greeting.
async fn until_served(port: u16, presented: usize, envoy: &EnvoyProcess) {
    let deadline = Instant::now() + WAIT;
    let mut last = Err("no attempt".to_string());
    while Instant::now() < deadline {
        last = handshake(port).await;
        if matches!(&last, Ok((greeting, count)) if greeting == GREETING && *count == presented) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the gateway never served {presented} certificate(s): last {last:?}; \
         Envoy's secrets: {}\nits log:\n{}",
        secrets_dump(envoy).await,
        envoy.log()
    );
}

async fn secrets_dump(envoy: &EnvoyProcess) -> Value {
    let url = format!(
        "http://{}/config_dump?resource=dynamic_active_secrets",
        envoy.admin
    );
    match reqwest::get(&url).await {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

async fn rotation_reaches_envoy(api_type: AdsApiType) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("a config directory");
    let secret_file = config.join("secret.yaml");
    std::fs::write(&secret_file, secret_yaml(CERT_PEM)).expect("write the Secret");
    let ca = MeshCa::new();
    let mut options = local_serve_options(vec![config]);
    options.xds = ca.serve(options.xds);
    let server = Server::start(options).await.expect("rudder starts");
    let port = free_port();
    let envoy = start_gateway_envoy(&server, &ca, api_type, port);
    until_served(port, 1, &envoy).await;

    // The Secret's chain now carries the CA too: Envoy presents both, same process.
    std::fs::write(&secret_file, secret_yaml(&format!("{CERT_PEM}{CA_PEM}")))
        .expect("rewrite the Secret");
    until_served(port, 2, &envoy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_rotation_reaches_envoy() {
    rotation_reaches_envoy(AdsApiType::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_rotation_reaches_envoy() {
    rotation_reaches_envoy(AdsApiType::DeltaGrpc).await;
}

//! A sanity check of gateway translation end to end: rudder serves an HTTP Gateway bound to a
//! loopback address, a real Envoy attaches as a `router` proxy over ADS, and a request to the
//! gateway's listener reaches the upstream the bound VirtualService names. Addresses 127.0.237.x,
//! port 19237. The full proof of gateways, TLS included, is in the gateway end-to-end tests.

mod support;

use std::time::{Duration, Instant};

use rudder::bootstrap::AdsApiType;
use rudder::serve::Server;
use serde_json::json;
use support::envoy_process::EnvoyProcess;
use support::mesh::{Backend, local_serve_options, service_yaml};
use support::upstream::{Echo, Upstream};

const PORT: u16 = 19237;
const GATEWAY_IP: &str = "127.0.237.1";
const BACKEND_IP: &str = "127.0.237.2";

fn config() -> String {
    let service = service_yaml(
        "web",
        "10.96.237.1",
        PORT,
        &[Backend::new("web-v1", BACKEND_IP, "v1")],
    );
    format!(
        "{service}---\napiVersion: networking.istio.io/v1\nkind: Gateway\n\
         metadata: {{name: edge, namespace: bookinfo}}\n\
         spec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  \
         - port: {{number: {PORT}, name: http, protocol: HTTP}}\n    bind: {GATEWAY_IP}\n    \
         hosts: [web.example.com]\n\
         ---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: web, namespace: bookinfo}}\n\
         spec:\n  hosts: [web.example.com]\n  gateways: [edge]\n  http:\n  \
         - route: [{{destination: {{host: web}}}}]\n"
    )
}

#[tokio::test]
async fn a_gateway_routes_its_hosts_to_the_bound_virtual_service() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("mesh.yaml"), config()).expect("write the config");
    let server = Server::start(local_serve_options(vec![dir.path().to_path_buf()]))
        .await
        .expect("rudder starts");
    let _upstream = Upstream::start("web-v1", &format!("{BACKEND_IP}:{PORT}")).await;
    let envoy = EnvoyProcess::start(
        &format!("router~{GATEWAY_IP}~ingress.istio-system~istio-system.svc.cluster.local"),
        json!({"LABELS": {"istio": "ingressgateway"}}),
        server.xds_address(),
        AdsApiType::default(),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client");
    let get = |host: &'static str| {
        let request = client
            .get(format!("http://{GATEWAY_IP}:{PORT}/"))
            .header("host", host);
        async move {
            match request.send().await {
                Ok(response) if response.status().is_success() => response
                    .json::<Echo>()
                    .await
                    .map(|echo| echo.upstream)
                    .unwrap_or_else(|error| error.to_string()),
                Ok(response) => format!("status {}", response.status().as_u16()),
                Err(error) => error.to_string(),
            }
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answer = get("web.example.com").await;
    while answer != "web-v1" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        answer = get("web.example.com").await;
    }
    assert_eq!(answer, "web-v1", "Envoy's log:\n{}", envoy.log());
    // Hosts the server does not expose find no virtual host.
    assert_eq!(get("other.example.com").await, "status 404");
}

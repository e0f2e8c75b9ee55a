//! Access logs with a real Envoy: the mesh config's `accessLogFile` makes the sidecar write a
//! line per request through its outbound listener, in istiod's default text format, and an edit
//! of the mesh config file (JSON encoding) applies live to the next request. With
//! `enableEnvoyAccessLogService` and `rudder bootstrap --access-log-service`, the entries reach
//! a gRPC access log service.
//!
//! Ports 19261 to 19263 and addresses 127.0.161.x are this file's own.

mod support;

use std::path::Path;
use std::time::Duration;

use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::{
    AccessLogService, AccessLogServiceServer,
};
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use envoy_types::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
};
use rudder::bootstrap::{AdsApiType, BootstrapOptions, bootstrap_json};
use rudder::serve::{ServeOptions, Server};
use serde_json::{Value, json};
use support::envoy_process::EnvoyProcess;
use support::mesh::{
    Backend, Mesh, get_through, local_serve_options, replace_file, service_yaml, wait_until,
};
use support::upstream::Upstream;
use tokio::sync::mpsc;

const PORT: u16 = 19261;
const LIMIT: Duration = Duration::from_secs(15);
const CLUSTER: &str = "outbound|19261||web.bookinfo.svc.cluster.local";

/// The lines of the access log that are about requests for `web`.
fn web_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(CLUSTER))
        .map(ToString::to_string)
        .collect()
}

/// Sends requests for `web` until the log has more than `seen` lines about it (Envoy flushes
/// access logs about once a second); the new ones.
async fn new_lines(mesh: &Mesh, log: &Path, seen: usize) -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let _ = mesh.get("web", "/logged", &[]).await;
        let mut lines = web_lines(log);
        if lines.len() > seen {
            return lines.split_off(seen);
        }
        assert!(
            start.elapsed() < LIMIT,
            "no access log line for web in {}; Envoy log:\n{}",
            log.display(),
            mesh.envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_through_the_sidecar_are_logged_as_the_mesh_config_says() {
    let _upstream = Upstream::start("web-v1", "127.0.161.1:19261").await;
    let logs = tempfile::tempdir().expect("a temp dir");
    let log = logs.path().join("access.log");
    let files = [(
        "web.yaml",
        service_yaml(
            "web",
            "10.96.161.1",
            PORT,
            &[Backend::new("web-v1", "127.0.161.1", "v1")],
        ),
    )];
    let mesh =
        Mesh::start_with_mesh_config(PORT, &files, &format!("accessLogFile: {}\n", log.display()))
            .await;

    // istiod's default text format: request line, status, flags, ..., the upstream cluster.
    let lines = new_lines(&mesh, &log, 0).await;
    let line = &lines[0];
    assert!(line.starts_with('['), "{line}");
    assert!(
        line.contains("\"GET /logged HTTP/1.1\" 200 - via_upstream"),
        "{line}"
    );
    assert!(line.contains("\"web\" \"127.0.161.1:19261\""), "{line}");
    let seen = web_lines(&log).len();

    // JSON encoding, live: the next lines are objects with istiod's default labels.
    replace_file(
        mesh.mesh_config_path().parent().expect("a directory"),
        "mesh.yaml",
        &format!(
            "accessLogFile: {}\naccessLogEncoding: JSON\n",
            log.display()
        ),
    );
    let json = wait_until(LIMIT, || async {
        let _ = mesh.get("web", "/logged", &[]).await;
        web_lines(&log)[seen..]
            .iter()
            .any(|line| serde_json::from_str::<Value>(line).is_ok())
    })
    .await;
    assert!(
        json.is_some(),
        "no JSON line after the edit: {:?}",
        web_lines(&log)
    );
    let record: Value = web_lines(&log)[seen..]
        .iter()
        .find_map(|line| serde_json::from_str(line).ok())
        .expect("a JSON line");
    assert_eq!(record["upstream_cluster"], CLUSTER, "{record:#}");
    assert_eq!(record["response_code"], 200, "{record:#}");
    assert_eq!(record["path"], "/logged", "{record:#}");
    assert_eq!(record["authority"], "web", "{record:#}");
}

/// An access log service that hands over every message Envoy streams.
struct Collector(mpsc::UnboundedSender<StreamAccessLogsMessage>);

#[tonic::async_trait]
impl AccessLogService for Collector {
    async fn stream_access_logs(
        &self,
        request: tonic::Request<tonic::Streaming<StreamAccessLogsMessage>>,
    ) -> Result<tonic::Response<StreamAccessLogsResponse>, tonic::Status> {
        let mut stream = request.into_inner();
        while let Some(message) = stream.message().await? {
            let _ = self.0.send(message);
        }
        Ok(tonic::Response::new(StreamAccessLogsResponse {}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_service_of_the_bootstrap_gets_the_entries() {
    const PORT: u16 = 19262;
    let _upstream = Upstream::start("web-v1", "127.0.161.2:19262").await;
    let (sender, mut received) = mpsc::unbounded_channel();
    let service = "127.0.161.9:19263";
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AccessLogServiceServer::new(Collector(sender)))
            .serve(service.parse().expect("an address")),
    );

    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("a config directory");
    std::fs::write(
        config.join("web.yaml"),
        service_yaml(
            "web",
            "10.96.161.2",
            PORT,
            &[Backend::new("web-v1", "127.0.161.2", "v1")],
        ),
    )
    .expect("write the service");
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(&mesh, "enableEnvoyAccessLogService: true\n").expect("write the mesh config");
    let server = Server::start(ServeOptions {
        mesh_config_file: Some(mesh),
        ..local_serve_options(vec![config])
    })
    .await
    .expect("rudder starts");
    let bootstrap = bootstrap_json(&BootstrapOptions {
        node_id: support::mesh::NODE_ID.to_string(),
        xds_address: server.xds_address().to_string(),
        metadata: json!({"NAMESPACE": "bookinfo", "INTERCEPTION_MODE": "NONE", "LABELS": {"app": "client"}}),
        admin_address: "127.0.0.1:0".parse().expect("an address"),
        api_type: AdsApiType::Grpc,
        xds_tls: None,
        access_log_service: Some(service.to_string()),
    })
    .expect("a bootstrap");
    let envoy = EnvoyProcess::start_from_bootstrap("envoy.json", &bootstrap.to_string());

    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let _ = get_through(&client, PORT, "web", "/logged", &[]).await;
        while let Ok(message) = received.try_recv() {
            let named = message
                .identifier
                .as_ref()
                .is_some_and(|id| id.log_name == "http_envoy_accesslog");
            let Some(LogEntries::HttpLogs(logs)) = message.log_entries else {
                continue;
            };
            let for_web = logs.log_entry.iter().any(|entry| {
                entry
                    .request
                    .as_ref()
                    .is_some_and(|request| request.authority == "web" && request.path == "/logged")
            });
            if named && for_web {
                server.stop().await;
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the access log service got no entry for web; Envoy log:\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

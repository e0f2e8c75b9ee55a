//! Seeing into rudder: a real Envoy is made to reject config (through the xDS server's test hook,
//! since rudder's own translation never produces what Envoy rejects), and the rejection shows
//! where an operator looks: as `ERROR` with Envoy's message in `rudder proxy-status` (the
//! rendering on the fetched syncz, and the real binary), and in istiod's metrics
//! (`pilot_total_xds_rejects`, `pilot_xds_cds_reject`). Once the config is good again the proxy
//! is `SYNCED` and convergence is measured. Also: `/debug/inputz`, `/debug/peerz`, and
//! `--log-level`.
//!
//! Ports 19170-19179 and addresses 127.0.170.x are this file's own.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use rudder::admin::{Protocol, StreamConnection, StreamSync};
use rudder::bootstrap::AdsApiType;
use rudder::proxy_status::{self, SyncState};
use rudder::serve::Server;
use rudder::xds::{ResourcesHook, XdsOptions};
use serde_json::Value;
use support::mesh::{Backend, Mesh, NODE_ID, local_serve_options, service_yaml};
use support::upstream::Upstream;

const LIMIT: Duration = Duration::from_secs(10);

mod sotw {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rejected_push_shows_and_recovers() {
        super::a_rejected_push_shows_and_recovers(rudder::bootstrap::AdsApiType::Grpc, 0).await
    }
}

mod delta {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rejected_push_shows_and_recovers() {
        super::a_rejected_push_shows_and_recovers(rudder::bootstrap::AdsApiType::DeltaGrpc, 1).await
    }
}

/// While `corrupt` is set, every cluster gets a negative connect timeout, which Envoy's proto
/// validation rejects.
fn corrupting_hook(corrupt: Arc<AtomicBool>) -> ResourcesHook {
    ResourcesHook::new(move |_proxy, resources| {
        if corrupt.load(Ordering::SeqCst) {
            for cluster in resources.clusters.values_mut() {
                Arc::make_mut(cluster).connect_timeout = Some(ProtoDuration {
                    seconds: -1,
                    nanos: 0,
                });
            }
        }
    })
}

/// The sum of a metric's samples (all label sets) in Prometheus text.
fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The one sample of `series` (name and labels exactly as rendered).
fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn syncz(mesh: &Mesh) -> Vec<StreamSync> {
    proxy_status::fetch(&mesh.server.admin_address().to_string())
        .await
        .expect("syncz answers")
}

/// The newest stream's state per type, in CDS, LDS, EDS, RDS order.
fn states(streams: &[StreamSync]) -> Option<Vec<SyncState>> {
    let stream = streams.iter().max_by_key(|stream| stream.connection)?;
    Some(
        proxy_status::TYPE_COLUMNS
            .iter()
            .map(|(_, ty)| {
                stream
                    .types
                    .get(*ty)
                    .map(|sync| sync.state)
                    .unwrap_or_default()
            })
            .collect(),
    )
}

/// Waits until the proxy's states are `wanted`; the last syncz seen either way.
async fn wait_for_states(mesh: &Mesh, wanted: &[SyncState]) -> (bool, Vec<StreamSync>) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let streams = syncz(mesh).await;
        if states(&streams).as_deref() == Some(wanted) {
            return (true, streams);
        }
        if tokio::time::Instant::now() > deadline {
            return (false, streams);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `rudder proxy-status --admin-address ADDRESS`, the real binary: its stdout.
async fn proxy_status_command(mesh: &Mesh) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(["proxy-status", "--admin-address"])
        .arg(mesh.server.admin_address().to_string())
        .output()
        .await
        .expect("run rudder proxy-status");
    assert!(
        output.status.success(),
        "rudder proxy-status failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Whether `table` has a row of these cells.
fn has_row(table: &str, cells: &[&str]) -> bool {
    table
        .lines()
        .any(|line| line.split_whitespace().eq(cells.iter().copied()))
}

const SYNCED: [SyncState; 4] = [SyncState::Synced; 4];

async fn a_rejected_push_shows_and_recovers(api_type: AdsApiType, index: u8) {
    let port = 19170 + u16::from(index);
    let ip = |octet: u8| format!("127.0.170.{}", octet + 10 * index);
    let _reviews = Upstream::start("reviews-v1", &format!("{}:{port}", ip(1))).await;
    let _details = Upstream::start("details-v1", &format!("{}:{port}", ip(2))).await;
    let corrupt = Arc::new(AtomicBool::new(false));
    let details_yaml = |cluster_ip: u8| {
        service_yaml(
            "details",
            &format!("10.96.170.{}", cluster_ip + 10 * index),
            port,
            &[Backend::new("details-v1", &ip(2), "v1")],
        )
    };
    let reviews_yaml = service_yaml(
        "reviews",
        &format!("10.96.170.{}", 1 + 10 * index),
        port,
        &[Backend::new("reviews-v1", &ip(1), "v1")],
    );
    let mesh = Mesh::start_with(
        api_type,
        port,
        &[("reviews.yaml", reviews_yaml)],
        XdsOptions {
            resources_hook: Some(corrupting_hook(corrupt.clone())),
            ..XdsOptions::default()
        },
    )
    .await;
    let routed = mesh
        .wait_until(LIMIT, || async {
            mesh.upstream_of("reviews", &[]).await == "reviews-v1"
        })
        .await;
    assert!(routed.is_some(), "Envoy log:\n{}", mesh.envoy.log());
    let (synced, streams) = wait_for_states(&mesh, &SYNCED).await;
    assert!(synced, "never SYNCED: {streams:#?}");
    let protocol = match api_type {
        AdsApiType::Grpc => Protocol::Sotw,
        AdsApiType::DeltaGrpc => Protocol::Delta,
    };
    assert_eq!(streams.len(), 1, "{streams:#?}");
    assert_eq!(streams[0].proxy_id, NODE_ID);
    assert_eq!(streams[0].protocol, protocol);
    let cds = &streams[0].types["cds"];
    assert!(cds.nonce.is_some() && cds.nack.is_none(), "{cds:?}");

    // A config change pushed while the hook corrupts clusters: Envoy rejects the CDS response.
    corrupt.store(true, Ordering::SeqCst);
    mesh.write("details.yaml", &details_yaml(2));
    let rejected = [
        SyncState::Error,
        SyncState::Synced,
        SyncState::Synced,
        SyncState::Synced,
    ];
    let (nacked, streams) = wait_for_states(&mesh, &rejected).await;
    assert!(nacked, "the NACK never showed: {streams:#?}");
    let nack = streams[0].types["cds"]
        .nack
        .clone()
        .expect("the NACK is kept");
    assert_eq!(Some(&nack.version), streams[0].types["cds"].sent.as_ref());
    assert!(
        nack.message.contains("duration") && nack.message.contains("-1"),
        "Envoy's reason: {}",
        nack.message
    );
    let first_line = nack.message.lines().next().unwrap_or_default().trim_end();
    let table = proxy_status::render(&streams);
    let row = [
        "client.bookinfo",
        "ERROR",
        "SYNCED",
        "SYNCED",
        "SYNCED",
        protocol.display_name(),
    ];
    assert!(has_row(&table, &row), "{table}");
    assert!(
        table.contains(&format!("    CDS rejected {}: {first_line}", nack.version)),
        "{table}"
    );
    let printed = proxy_status_command(&mesh).await;
    assert!(has_row(&printed, &row), "{printed}");
    assert!(printed.contains(first_line), "{printed}");
    let metrics = mesh.admin("/metrics").await;
    assert!(
        metric(&metrics, "pilot_total_xds_rejects{type=\"cds\"}") >= Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "pilot_total_xds_rejects{type=\"lds\"}"),
        Some(0.0)
    );
    assert!(
        metric(
            &metrics,
            &format!("pilot_xds_cds_reject{{node=\"{NODE_ID}\"}}")
        ) >= Some(1.0),
        "{metrics}"
    );
    // Envoy keeps serving what it had.
    assert_eq!(mesh.upstream_of("reviews", &[]).await, "reviews-v1");

    // The config is good again and changes: the proxy takes it and is SYNCED.
    corrupt.store(false, Ordering::SeqCst);
    mesh.write("details.yaml", &details_yaml(3));
    let (recovered, streams) = wait_for_states(&mesh, &SYNCED).await;
    assert!(recovered, "never recovered: {streams:#?}");
    assert!(streams[0].types["cds"].nack.is_none());
    let reached = mesh
        .wait_until(LIMIT, || async {
            mesh.upstream_of("details", &[]).await == "details-v1"
        })
        .await;
    assert!(reached.is_some(), "details never routed");
    let printed = proxy_status_command(&mesh).await;
    let row = [
        "client.bookinfo",
        "SYNCED",
        "SYNCED",
        "SYNCED",
        "SYNCED",
        protocol.display_name(),
    ];
    assert!(has_row(&printed, &row), "{printed}");
    assert!(!printed.contains("ERROR"), "{printed}");

    let metrics = mesh.admin("/metrics").await;
    assert_eq!(metric(&metrics, "pilot_xds"), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, "pilot_services"), Some(2.0), "{metrics}");
    assert!(metric_sum(&metrics, "pilot_xds_pushes") >= 8.0, "{metrics}");
    assert!(metric(&metrics, "pilot_xds_pushes{type=\"cds\"}") >= Some(3.0));
    assert!(metric(&metrics, "pilot_proxy_convergence_time_count") >= Some(4.0));
    let converged = metric(&metrics, "pilot_proxy_convergence_time_sum").unwrap_or_default()
        / metric(&metrics, "pilot_proxy_convergence_time_count").unwrap_or(1.0);
    assert!(converged < 5.0, "mean convergence {converged}s");
    assert!(metric(&metrics, "pilot_xds_push_time_count{type=\"cds\"}") >= Some(3.0));
    assert!(metric(&metrics, "pilot_xds_config_size_bytes_sum{type=\"cds\"}") > Some(0.0));
    assert!(metric(&metrics, "pilot_push_triggers{type=\"service\"}") >= Some(2.0));
    assert!(metric(&metrics, "pilot_push_triggers{type=\"endpoint\"}") >= Some(2.0));
    assert!(metric(&metrics, "process_resident_memory_bytes") > Some(0.0));
    assert!(metric(&metrics, "process_cpu_seconds_total").is_some());

    // The stream as /debug/peerz shows it.
    let body = mesh.admin("/debug/peerz").await;
    let connections: Vec<StreamConnection> = serde_json::from_str(&body).expect("JSON");
    assert_eq!(connections.len(), 1, "{body}");
    let connection = &connections[0];
    assert_eq!(connection.proxy_id, NODE_ID);
    assert_eq!(connection.protocol, protocol);
    assert!(
        connection
            .peer
            .as_deref()
            .is_some_and(|peer| peer.starts_with("127.0.0.1:")),
        "{body}"
    );
    assert!(connection.connected_since.ends_with('Z'), "{body}");
    // Plaintext: nothing proven, no Secret.
    assert_eq!(
        (connection.identity.as_deref(), connection.secrets.as_str()),
        (None, "none"),
        "{body}"
    );
}

/// `/debug/inputz` shows every input as loaded, with the errors of each object, and the errors
/// that belong to no object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputz_shows_inputs_and_their_errors() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "reviews.yaml",
        &service_yaml(
            "reviews",
            "10.96.170.100",
            19178,
            &[Backend::new("reviews-v1", "127.0.170.100", "v1")],
        ),
    );
    write(
        "rules.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {name: reviews, namespace: bookinfo}\n\
         spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: nowhere}\n",
    );
    write(
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: bookinfo}\n\
         stringData: {password: hunter2}\n",
    );
    write("broken.yaml", "kind: [unclosed\n");
    let server = Server::start(local_serve_options(vec![dir.path().to_path_buf()]))
        .await
        .expect("rudder starts");
    let url = format!("http://{}/debug/inputz", server.admin_address());
    let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
    let configz: Value = serde_json::from_str(&body).expect("JSON");
    let objects = configz["objects"].as_array().expect("objects");
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|object| object["kind"] == kind && object["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {body}"))
    };
    let service = find("Service", "reviews");
    assert_eq!(service["namespace"], "bookinfo");
    assert_eq!(service["errors"], Value::Array(Vec::new()), "{body}");
    assert_eq!(service["object"]["spec"]["clusterIP"], "10.96.170.100");
    assert!(
        service["origin"]
            .as_str()
            .is_some_and(|origin| origin.ends_with("reviews.yaml:1")),
        "{body}"
    );
    let rule = find("VirtualService", "reviews");
    let errors = rule["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .any(|error| error.as_str().is_some_and(|e| e.contains("nowhere"))),
        "{body}"
    );
    assert_eq!(rule["object"]["spec"]["hosts"][0], "reviews");
    // A Secret's values stay out of debug output.
    let secret = find("Secret", "creds");
    assert_eq!(secret["object"]["keys"][0], "password");
    assert!(!body.contains("hunter2"), "{body}");
    // The unreadable file is an error of the build, with no object.
    let all: Vec<&str> = configz["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(all.iter().any(|e| e.contains("broken.yaml")), "{body}");
    assert!(all.iter().any(|e| e.contains("nowhere")), "{body}");
    // Sorted: the same answer twice.
    let again = reqwest::get(&url).await.unwrap().text().await.unwrap();
    assert_eq!(body, again);
    server.stop().await;
}

fn rudder(args: &[&str], rust_log: Option<&str>) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rudder"));
    command.args(args).env_remove("RUST_LOG");
    if let Some(value) = rust_log {
        command.env("RUST_LOG", value);
    }
    command.output().expect("run rudder")
}

#[test]
fn log_level_flag_and_rust_log() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(
        dir.path().join("other.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let skipped = "skipping a kind rudder does not read";
    let stderr =
        |output: &std::process::Output| String::from_utf8_lossy(&output.stderr).into_owned();

    let quiet = rudder(&["validate", path], None);
    assert!(quiet.status.success());
    assert!(!stderr(&quiet).contains(skipped), "info by default");

    let verbose = rudder(&["--log-level", "debug", "validate", path], None);
    assert!(verbose.status.success());
    assert!(stderr(&verbose).contains(skipped), "{}", stderr(&verbose));
    // The flag is global: after the subcommand too.
    let after = rudder(&["validate", path, "--log-level=debug"], None);
    assert!(stderr(&after).contains(skipped), "{}", stderr(&after));

    // RUST_LOG wins.
    let overridden = rudder(&["--log-level", "debug", "validate", path], Some("warn"));
    assert!(
        !stderr(&overridden).contains(skipped),
        "{}",
        stderr(&overridden)
    );

    let wrong = rudder(&["--log-level", "loud", "validate", path], None);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(stderr(&wrong).contains("--log-level"), "{}", stderr(&wrong));
}

#[test]
fn proxy_status_without_a_server_says_so() {
    // Nothing listens on this port of this file's own.
    let output = rudder(
        &["proxy-status", "--admin-address", "127.0.170.200:19179"],
        None,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/debug/streamz"), "{stderr}");
}

//! Access logs with a real Envoy: the mesh config's `accessLogFile` makes the sidecar write a
//! line per request through its outbound listener, in istiod's default text format, and an edit
//! of the mesh config file (JSON encoding) applies live to the next request.
//!
//! Port 19261 and addresses 127.0.161.x are this file's own.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::mesh::{Backend, Mesh, replace_file, service_yaml, wait_until};
use support::upstream::Upstream;

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

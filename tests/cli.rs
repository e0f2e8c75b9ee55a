//! The `rudder` binary as a user runs it: `validate` exit codes and messages, a `bootstrap` that
//! Envoy accepts, and `translate` output in config_dump shape.

mod support;

use std::path::Path;
use std::process::Command;

fn rudder(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run rudder")
}

#[test]
fn validate_accepts_the_example() {
    let output = rudder(&["validate", "examples/bookinfo"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn validate_reports_one_line_per_problem_and_fails() {
    let case = "testdata/golden/invalid-objects/input";
    let output = rudder(&["validate", case]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // The golden errors are the same problems with the case directory left out of the paths.
    let expected = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/golden/invalid-objects/expected/errors.txt"),
    )
    .expect("golden errors");
    let expected: Vec<String> = expected
        .lines()
        .map(|line| format!("testdata/golden/invalid-objects/{line}"))
        .collect();
    assert_eq!(lines, expected);
    assert!(lines.iter().any(|l| {
        l.contains(":15: VirtualService default/bad-regex: spec.http[0].match[0].uri.regex:")
    }));
}

#[test]
fn validate_takes_single_files() {
    let output = rudder(&[
        "validate",
        "testdata/golden/invalid-objects/input/broken.yaml",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("testdata/golden/invalid-objects/input/broken.yaml:7: "),
        "{stdout}"
    );
}

/// The exit statuses are documented where users look: 0 clean, 1 errors, 2 a command-line
/// mistake, 3 warnings only with `--fail-on-warnings`.
#[test]
fn validate_documents_and_keeps_its_exit_statuses() {
    let help = rudder(&["validate", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for status in [
        "0 when there is no error",
        "1 when any problem is an error",
        "2 for a command-line",
        "3 when there are warnings",
    ] {
        assert!(text.contains(status), "{status:?} not in\n{text}");
    }
    let clean = rudder(&["validate", "--fail-on-warnings", "examples/bookinfo"]);
    assert_eq!(clean.status.code(), Some(0));
    let mistake = rudder(&["validate", "--no-such-flag", "examples/bookinfo"]);
    assert_eq!(mistake.status.code(), Some(2));
}

#[test]
fn bootstrap_is_accepted_by_envoy() {
    let output = rudder(&[
        "bootstrap",
        "--node-id",
        "sidecar~127.0.10.1~productpage-v1.bookinfo~bookinfo.svc.cluster.local",
        "--xds-address",
        "rudder.example:15010",
        "--metadata",
        r#"{"NAMESPACE":"bookinfo","INTERCEPTION_MODE":"NONE","LABELS":{"app":"productpage"}}"#,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, &output.stdout).expect("write the bootstrap");
    if let Err(error) = support::envoy::envoy_validate_file(&path) {
        panic!("envoy rejects the bootstrap:\n{error}");
    }
}

#[test]
fn bootstrap_refuses_a_malformed_node_id() {
    let output = rudder(&["bootstrap", "--node-id", "not-an-istio-node"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not-an-istio-node"));
}

#[test]
fn translate_prints_a_config_dump() {
    let output = rudder(&[
        "translate",
        "--config-dir",
        "examples/bookinfo",
        "--node-id",
        "sidecar~127.0.10.1~productpage-v1.bookinfo~bookinfo.svc.cluster.local",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dump: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let types: Vec<&str> = dump["configs"]
        .as_array()
        .expect("configs")
        .iter()
        .map(|config| config["@type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
            "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
            "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
        ]
    );
    let clusters = dump["configs"][0]["dynamic_active_clusters"]
        .as_array()
        .expect("clusters");
    assert!(
        clusters
            .iter()
            .any(|c| c["cluster"]["name"] == "outbound|9080|v2|reviews.bookinfo.svc.cluster.local")
    );
}

//! The `rudder` binary as a user runs it: `validate` exit codes and messages, a `bootstrap` that
//! Envoy accepts, `translate` output in config_dump shape, the README's quickstart run as
//! written, and `serve`'s flags for logs, addresses and the kubeconfig.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::cluster::DevCluster;
use support::envoy_process::EnvoyProcess;
use support::readme;
use support::rudder_process::RudderProcess;

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

/// How long a rudder started by these tests may take to serve.
const START_LIMIT: Duration = Duration::from_secs(60);

/// The README's quickstart, run as written there: its first command (`cargo run --release --
/// serve ...`, run here as the binary Cargo built for the tests), which must say what it loaded
/// and how to attach an Envoy; then each line of the block that starts `rudder demo-backends`:
/// the stand-in workloads, `rudder bootstrap` into a file, a real Envoy started from that file,
/// and each `curl`, whose answer must start with what its `# comment` says. Binds the README's
/// own ports (15010, 15014, 15000, 127.0.0.1:9080 and the example's 127.0.1x.y:9080).
#[test]
fn the_readme_quickstart_answers_from_the_right_version() {
    let readme = readme::readme();
    let serve = readme::sh_block_containing(&readme, "cargo run --release -- serve");
    let [serve] = serve.as_slice() else {
        panic!("the quickstart's first block is one command: {serve:?}");
    };
    let words: Vec<&str> = serve.words.iter().map(String::as_str).collect();
    let [
        "cargo",
        "run",
        "--release",
        "--",
        "serve",
        "--config-dir",
        config_dir,
        args @ ..,
    ] = words.as_slice()
    else {
        panic!(
            "not `cargo run --release -- serve --config-dir DIR`: {}",
            serve.line
        );
    };
    let mut rudder = RudderProcess::start(Path::new(config_dir), args);
    let loaded = rudder.wait_for_line("loaded config", START_LIMIT);
    assert!(
        loaded.contains("6 Pod") && loaded.contains("errors=0"),
        "{loaded}"
    );
    rudder.wait_for_line("serving", START_LIMIT);
    let attach = rudder.wait_for_line("attach a stock Envoy", START_LIMIT);
    assert!(
        attach.contains("rudder bootstrap --node-id 'sidecar~127.0.10.1~productpage-v1.bookinfo~"),
        "{attach}"
    );

    let mut background = Vec::new();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut envoy = None;
    let mut answers = 0;
    for step in readme::sh_block_containing(&readme, "rudder demo-backends") {
        let words: Vec<&str> = step.words.iter().map(String::as_str).collect();
        match words.as_slice() {
            // The test runs its own binaries, and waits for answers instead of sleeping.
            ["export", ..] | ["sleep", _] => {}
            ["rudder", args @ ..] if step.background => {
                let child = Command::new(env!("CARGO_BIN_EXE_rudder"))
                    .args(args)
                    .current_dir(env!("CARGO_MANIFEST_DIR"))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start rudder");
                background.push(readme::Background(child));
            }
            ["rudder", "bootstrap", ..] => {
                // Envoy's admin port on one the OS picks, so that the Envoys of other tests
                // running at the same time do not get in the way (it is no part of what the
                // quickstart shows).
                let args = [&words[1..], &["--admin-address", "127.0.0.1:0"]].concat();
                let output = rudder_ok(&args);
                if let Some(file) = &step.stdout_to {
                    files.insert(file.clone(), String::from_utf8_lossy(&output).into_owned());
                }
            }
            ["envoy", "-c", file] if step.background => {
                let bootstrap = files
                    .get(*file)
                    .unwrap_or_else(|| panic!("{file} was not written before: {}", step.line));
                envoy = Some(EnvoyProcess::start_from_bootstrap(file, bootstrap));
            }
            ["curl", args @ ..] => {
                let expected = step
                    .comment
                    .as_deref()
                    .unwrap_or_else(|| panic!("no `# answer` after {}", step.line));
                let answer = curl_until(args, expected);
                assert!(
                    answer.starts_with(&format!("{expected} ")),
                    "{}\nanswered {answer:?}, the README says {expected:?}; Envoy log:\n{}",
                    step.line,
                    envoy.as_ref().map(EnvoyProcess::log).unwrap_or_default()
                );
                answers += 1;
            }
            _ => panic!("the quickstart test does not know how to run {}", step.line),
        }
    }
    assert!(
        envoy.is_some() && answers >= 2,
        "the quickstart attaches an Envoy and asks it"
    );
}

/// `rudder ARGS`, which must succeed; its stdout.
fn rudder_ok(args: &[&str]) -> Vec<u8> {
    let output = rudder(args);
    assert!(
        output.status.success(),
        "rudder {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// curl's answer to `args` once it starts with `expected` (Envoy needs a moment to get its
/// config), or its last answer after 20 s.
fn curl_until(args: &[&str], expected: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .args(args)
            .output()
            .expect("run curl");
        let answer = String::from_utf8_lossy(&output.stdout).into_owned();
        if answer.starts_with(expected) || Instant::now() > deadline {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Off a terminal (stderr is a pipe here, `NO_COLOR` unset) the text log has no colour codes;
/// `--log-format json` makes every line a JSON object with the event's fields beside the
/// message; an unknown format is refused.
#[test]
fn logs_are_plain_off_a_terminal_and_json_on_request() {
    let any_ports = [
        "--xds-address",
        "127.0.0.1:0",
        "--admin-address",
        "127.0.0.1:0",
    ];
    let mut text = RudderProcess::start_with_env(
        &[&["--config-dir", "examples/bookinfo"], &any_ports[..]].concat(),
        &[],
    );
    text.wait_for_line("attach a stock Envoy", START_LIMIT);
    let log = text.log();
    assert!(!log.contains('\u{1b}'), "colour codes in:\n{log}");
    assert!(log.contains(" INFO rudder::serve: serving "), "{log}");

    let mut json = RudderProcess::start_with_env(
        &[
            &["--config-dir", "examples/bookinfo", "--log-format", "json"],
            &any_ports[..],
        ]
        .concat(),
        &[],
    );
    json.wait_for_line("attach a stock Envoy", START_LIMIT);
    let lines: Vec<serde_json::Value> = json
        .log()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let loaded = lines
        .iter()
        .find(|line| line["message"] == "loaded config")
        .expect("a `loaded config` line");
    assert_eq!(loaded["level"], "INFO");
    assert_eq!(loaded["target"], "rudder::serve");
    assert_eq!(loaded["errors"], 0);
    assert!(
        loaded["objects"]
            .as_str()
            .unwrap_or_default()
            .contains("4 Service")
    );
    assert!(lines.iter().all(|line| line["timestamp"].is_string()));

    let refused = rudder(&[
        "serve",
        "--config-dir",
        "examples/bookinfo",
        "--log-format",
        "yaml",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--log-format"));
}

/// `:PORT` wherever rudder takes an address: `serve` listens on every interface, `bootstrap`
/// points Envoy at this host, `proxy-status` asks this host; malformed addresses are refused
/// naming the flag.
#[test]
fn address_flags_take_a_port_alone() {
    let mut served = RudderProcess::start(
        Path::new("examples/bookinfo"),
        &["--xds-address", ":0", "--admin-address", ":0"],
    );
    let (xds, admin) = served.addresses();
    assert!(
        xds.ip().is_unspecified() && admin.ip().is_unspecified(),
        "{xds} {admin}"
    );
    let status = rudder_ok(&[
        "proxy-status",
        "--admin-address",
        &format!(":{}", admin.port()),
    ]);
    assert!(
        String::from_utf8_lossy(&status).starts_with("NAME"),
        "{status:?}"
    );

    let bootstrap = rudder_ok(&[
        "bootstrap",
        "--node-id",
        "sidecar~127.0.10.1~productpage-v1.bookinfo~bookinfo.svc.cluster.local",
        "--xds-address",
        ":15010",
        "--admin-address",
        ":15000",
    ]);
    let bootstrap: serde_json::Value =
        serde_saphyr::from_slice(&bootstrap).expect("the bootstrap is YAML");
    let xds = &bootstrap["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
        [0]["endpoint"]["address"]["socket_address"];
    assert_eq!(
        (&xds["address"], &xds["port_value"]),
        (&"127.0.0.1".into(), &15010.into())
    );
    let admin = &bootstrap["admin"]["address"]["socket_address"];
    assert_eq!(
        (&admin["address"], &admin["port_value"]),
        (&"0.0.0.0".into(), &15000.into())
    );

    let node = "sidecar~127.0.10.1~productpage-v1.bookinfo~bookinfo.svc.cluster.local";
    for (args, flag) in [
        (
            ["serve", "--config-dir", "examples/bookinfo"],
            "--xds-address",
        ),
        (
            ["serve", "--config-dir", "examples/bookinfo"],
            "--admin-address",
        ),
        (["bootstrap", "--node-id", node], "--xds-address"),
        (["bootstrap", "--node-id", node], "--admin-address"),
    ] {
        let output = rudder(&[&args[..], &[flag, "15010"]].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains("HOST:PORT"),
            "{stderr}"
        );
    }
}

/// With no source named, `serve` watches the cluster kubectl would talk to: the files in
/// `KUBECONFIG`, missing ones skipped, the rest merged. A real API server.
#[test]
fn serve_without_a_source_watches_the_kubeconfig_cluster() {
    let cluster = DevCluster::up("cli-kubeconfig");
    let kubeconfig = format!("/nonexistent/kubeconfig:{}", cluster.kubeconfig.display());
    let mut rudder = RudderProcess::start_with_env(
        &[
            "--xds-address",
            "127.0.0.1:0",
            "--admin-address",
            "127.0.0.1:0",
        ],
        &[("KUBECONFIG", &kubeconfig)],
    );
    rudder.wait_for_line(
        "waiting for every watched kind to be listed once",
        START_LIMIT,
    );
    let loaded = rudder.wait_for_line("loaded config", START_LIMIT);
    // default, kube-system, kube-public and kube-node-lease at least.
    assert!(loaded.contains(" Namespace"), "{loaded}");
    rudder.wait_for_line("serving", START_LIMIT);
}

/// A named source is all `serve` reads: with `--config-dir`, a `KUBECONFIG` in the environment
/// (here one that does not exist) is not used.
#[test]
fn serve_with_a_config_dir_ignores_kubeconfig() {
    let mut rudder = RudderProcess::start_with_env(
        &[
            "--config-dir",
            "examples/bookinfo",
            "--xds-address",
            "127.0.0.1:0",
            "--admin-address",
            "127.0.0.1:0",
        ],
        &[("KUBECONFIG", "/nonexistent/kubeconfig")],
    );
    rudder.wait_for_line("serving", START_LIMIT);
    assert!(!rudder.log().contains("kubeconfig"), "{}", rudder.log());
}

/// The README's table of contents lists its `##` and `###` headings, in order, each linking to
/// the anchor GitHub gives it; the documents it links to in docs/ exist.
#[test]
fn the_readme_contents_list_every_section() {
    let readme = readme::readme();
    let mut in_code = false;
    let mut headings = Vec::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && let Some(rest) = line.strip_prefix("##") {
            let (depth, title) = match rest.strip_prefix("# ") {
                Some(title) => (1, title),
                None => (0, rest.trim_start()),
            };
            if title != "Contents" {
                let anchor: String = title
                    .to_lowercase()
                    .chars()
                    .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
                    .map(|c| if c == ' ' { '-' } else { c })
                    .collect();
                headings.push(format!("{}- [{title}](#{anchor})", "  ".repeat(depth)));
            }
        }
    }
    let contents = readme
        .split_once("## Contents\n\n")
        .and_then(|(_, rest)| rest.split_once("\n\n"))
        .map(|(list, _)| list.lines().map(str::to_string).collect::<Vec<_>>())
        .expect("README.md has a \"## Contents\" list");
    assert_eq!(contents, headings);
    for document in ["docs/coverage.md", "docs/tests.md"] {
        assert!(readme.contains(&format!("]({document})")), "{document}");
        assert!(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(document)
                .is_file()
        );
    }
}

/// `serve` on config with mistakes says at startup how many errors and warnings it found, and
/// logs each one, as `rudder validate` prints them.
#[test]
fn serve_counts_the_config_errors_it_logged_at_startup() {
    let mut rudder = RudderProcess::start(
        Path::new("testdata/golden/invalid-objects/input"),
        &[
            "--xds-address",
            "127.0.0.1:0",
            "--admin-address",
            "127.0.0.1:0",
        ],
    );
    let loaded = rudder.wait_for_line("loaded config", START_LIMIT);
    let count = |name: &str| -> usize {
        loaded
            .split_whitespace()
            .find_map(|field| field.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {loaded:?}"))
    };
    let (errors, warnings) = (count("errors"), count("warnings"));
    assert!(errors > 0, "{loaded}");
    let logged = rudder
        .log()
        .lines()
        .filter(|line| line.contains("config error: "))
        .count();
    assert_eq!(logged, errors + warnings, "{}", rudder.log());
}

/// On a terminal (a pseudo-terminal from util-linux's `script`) the text log has colour codes,
/// unless `NO_COLOR` is set. rudder stops at once here (its config directory does not exist),
/// after its first log line.
#[test]
fn logs_are_coloured_on_a_terminal_unless_no_color() {
    let on_terminal = |no_colour: Option<&str>| {
        let command = format!(
            "{} serve --config-dir /nonexistent/config --xds-address 127.0.0.1:0 \
             --admin-address 127.0.0.1:0",
            env!("CARGO_BIN_EXE_rudder")
        );
        let mut script = Command::new("script");
        script
            .args(["-qec", &command, "/dev/null"])
            .env_remove("NO_COLOR")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        if let Some(value) = no_colour {
            script.env("NO_COLOR", value);
        }
        let output = script.output().expect("run script (util-linux)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let coloured = on_terminal(None);
    assert!(
        coloured.contains("open file limit") && coloured.contains("\u{1b}["),
        "{coloured:?}"
    );
    let plain = on_terminal(Some("1"));
    assert!(
        plain.contains("open file limit") && !plain.contains('\u{1b}'),
        "{plain:?}"
    );
}

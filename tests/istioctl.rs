//! The real istioctl against rudder, with real Envoys connected. istioctl is built from the Istio
//! commit `scripts/istiod` builds istiod from (`scripts/istiod build-istioctl`; `ISTIOCTL=PATH`
//! uses another), and reaches rudder's xDS port with `--xds-address`:
//!
//! - over TLS, with a client certificate from `--cert-dir` of the system namespace:
//!   `istioctl proxy-status` and `istioctl x proxy-status -v 1` list every Envoy, each type
//!   `SYNCED`, with rudder's control plane id; `-o json` is Envoy's CSDS `ClientConfig` per proxy;
//! - with an identity of another namespace, only the proxies of that namespace;
//! - `istioctl proxy-status POD.NAMESPACE --file DUMP` compares Envoy's own config dump with
//!   rudder's `istio.io/debug/config_dump` of the proxy named by istiod's short form: they match;
//!   an identity of another namespace gets no dump of it;
//! - `istioctl proxy-config routes|clusters -f DUMP` shows the VirtualService of each route and
//!   the DestinationRule of each cluster, from the Istio metadata rudder writes as istiod does;
//! - `istioctl x internal-debug` (istiod's generic `istio.io/debug` type): `--list`, `syncz`,
//!   `adsz`, `connections`, `configz` and `config_dump?proxyID=` in istiod's shapes; another
//!   namespace's identity may dump its own proxies only and is refused the rest
//!   (`PermissionDenied`); an unknown endpoint gets Go's 404, on which istioctl lists the others;
//! - over plaintext, refused at once with istiod's `authentication required` (istiod 1.31 answers
//!   the same), so the plaintext port shows nobody the list of proxies;
//! - `istioctl x precheck` and `istioctl analyze`, which read the cluster only, find nothing wrong
//!   with rudder's CRDs and manifest installed;
//! - and `rudder proxy-status` over two replicas.
//!
//! Every output is printed and kept under `CARGO_TARGET_TMPDIR/istioctl/`. istioctl wants an API
//! server even with `--xds-address`, so a dev cluster (`scripts/dev-cluster`) runs beside.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rudder::bootstrap::{AdsApiType, ClientCertificate, XdsClientTls};
use serde_json::{Value, json};
use support::certs::TestCa;
use support::cluster::DevCluster;
use support::envoy_process::EnvoyProcess;
use support::istio_module::istioctl_binary;
use support::rudder_process::RudderProcess;

const SERVER_NAME: &str = "istiod.istio-system.svc";
const BENCH_PROXY: &str = "sidecar~127.0.200.1~svc-0-v1.bench~bench.svc.cluster.local";
const SHOP_PROXY: &str = "sidecar~127.0.201.1~web-1.shop~shop.svc.cluster.local";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Istioctl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    outputs: PathBuf,
}

/// What one istioctl run printed.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Istioctl {
    /// Runs istioctl with `args`; the output is printed and kept as `NAME.txt`.
    fn run(&self, name: &str, args: &[&str]) -> Run {
        let started = Instant::now();
        let output = Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("run istioctl");
        let run = Run {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            took: started.elapsed(),
        };
        let kept = format!(
            "$ istioctl {}\n{}{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        eprintln!("{kept}");
        std::fs::write(self.outputs.join(format!("{name}.txt")), kept).expect("keep the output");
        run
    }

    /// Runs istioctl until its output satisfies `done` (Envoys ACK in their own time).
    fn run_until(&self, name: &str, args: &[&str], done: impl Fn(&Run) -> bool) -> Run {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let run = self.run(name, args);
            if done(&run) || Instant::now() > deadline {
                return run;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// istioctl's `--cert-dir`: `root-cert.pem`, `cert-chain.pem` and `key.pem`.
fn cert_dir(ca: &TestCa, dir: &Path, name: &str) -> PathBuf {
    let certs = dir.join(format!("{name}-certs"));
    std::fs::create_dir_all(&certs).expect("a cert dir");
    std::fs::copy(ca.path("ca.pem"), certs.join("root-cert.pem")).expect("copy the CA");
    std::fs::copy(
        ca.path(&format!("{name}.pem")),
        certs.join("cert-chain.pem"),
    )
    .expect("copy the certificate");
    std::fs::copy(ca.path(&format!("{name}-key.pem")), certs.join("key.pem"))
        .expect("copy the key");
    certs
}

fn envoy(
    ca: &TestCa,
    xds: &str,
    node_id: &str,
    namespace: &str,
    api_type: AdsApiType,
) -> EnvoyProcess {
    let file = |name: String| ca.path(&name).display().to_string();
    EnvoyProcess::start_with_tls(
        node_id,
        json!({"NAMESPACE": namespace, "INTERCEPTION_MODE": "NONE"}),
        xds,
        api_type,
        Some(XdsClientTls {
            ca_file: file("ca.pem".to_string()),
            client_certificate: Some(ClientCertificate {
                certificate_file: file(format!("envoy-{namespace}.pem")),
                private_key_file: file(format!("envoy-{namespace}-key.pem")),
            }),
            server_name: Some(SERVER_NAME.to_string()),
        }),
    )
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// The rows of a proxy-status table whose first cell is `name`.
fn row<'a>(table: &'a str, name: &str) -> Option<&'a str> {
    table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name))
}

#[test]
fn istioctl_reads_rudder() {
    let istioctl_binary = istioctl_binary();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca = TestCa::new(dir.path());
    ca.issue_server("rudder", &[SERVER_NAME]);
    for (name, namespace) in [
        ("envoy-bench", "bench"),
        ("envoy-shop", "shop"),
        ("istioctl-system", "istio-system"),
        ("istioctl-bench", "bench"),
        ("istioctl-shop", "shop"),
    ] {
        ca.issue_client_with_uri(
            name,
            &format!("spiffe://cluster.local/ns/{namespace}/sa/default"),
        );
    }
    let config = root().join("testdata/bench-mesh");
    let path = |name: &str| ca.path(name).display().to_string();
    let (cert, key, client_ca) = (path("rudder.pem"), path("rudder-key.pem"), path("ca.pem"));
    let mut tls = RudderProcess::start(
        &config,
        &[
            "--xds-address",
            "127.0.0.1:0",
            "--admin-address",
            "127.0.0.1:0",
            "--xds-tls-cert",
            &cert,
            "--xds-tls-key",
            &key,
            "--xds-tls-client-ca",
            &client_ca,
        ],
    );
    let (xds, tls_admin) = tls.addresses();
    let xds = xds.to_string();
    let bench = envoy(&ca, &xds, BENCH_PROXY, "bench", AdsApiType::Grpc);
    let _shop = envoy(&ca, &xds, SHOP_PROXY, "shop", AdsApiType::DeltaGrpc);

    let cluster = DevCluster::up("istioctl");
    let outputs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("istioctl");
    std::fs::create_dir_all(&outputs).expect("a directory for istioctl's outputs");
    let istioctl = Istioctl {
        binary: istioctl_binary,
        kubeconfig: cluster.kubeconfig.clone(),
        outputs,
    };
    let system_certs = cert_dir(&ca, dir.path(), "istioctl-system");
    let bench_certs = cert_dir(&ca, dir.path(), "istioctl-bench");
    let shop_certs = cert_dir(&ca, dir.path(), "istioctl-shop");
    let over_tls = |certs: &Path| -> Vec<String> {
        [
            "--xds-address",
            &xds,
            "--cert-dir",
            &certs.display().to_string(),
            "--authority",
            SERVER_NAME,
            "--timeout",
            "10s",
        ]
        .map(str::to_string)
        .to_vec()
    };
    let args = |command: &[&str], certs: &Path| -> Vec<String> {
        let mut args: Vec<String> = command.iter().map(|arg| arg.to_string()).collect();
        args.extend(over_tls(certs));
        args
    };

    // Every Envoy, every type SYNCED, as istiod's proxy-status shows them.
    let verbose = args(&["x", "proxy-status", "-v", "1"], &system_certs);
    let synced = |run: &Run| {
        [BENCH_PROXY, SHOP_PROXY].iter().all(|id| {
            let name = rudder::proxy_status::proxy_name(id);
            row(&run.stdout, name).is_some_and(|line| line.matches("SYNCED").count() == 4)
        })
    };
    let run = istioctl.run_until("x-proxy-status-verbose", &strs(&verbose), synced);
    assert!(
        run.success && synced(&run),
        "not every Envoy SYNCED:\n{}{}\nrudder:\n{}\nEnvoy:\n{}",
        run.stdout,
        run.stderr,
        tls.log(),
        bench.log()
    );
    assert!(
        run.stdout.starts_with("NAME "),
        "istioctl's table: {}",
        run.stdout
    );

    let run = istioctl.run(
        "proxy-status",
        &strs(&args(&["proxy-status"], &system_certs)),
    );
    assert!(run.success, "{}", run.stderr);
    let header: Vec<&str> = run
        .stdout
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "CLUSTER",
            "ISTIOD",
            "VERSION",
            "SUBSCRIBED",
            "TYPES"
        ]
    );
    for id in [BENCH_PROXY, SHOP_PROXY] {
        let line = row(&run.stdout, rudder::proxy_status::proxy_name(id))
            .unwrap_or_else(|| panic!("{id} in\n{}", run.stdout));
        assert!(line.contains("4 (CDS,LDS,EDS,RDS)"), "{line}");
    }

    // JSON: each proxy's CSDS ClientConfig, and rudder's control plane identifier.
    let run = istioctl.run(
        "x-proxy-status-json",
        &strs(&args(&["x", "proxy-status", "-o", "json"], &system_certs)),
    );
    assert!(run.success, "{}", run.stderr);
    let response: Value = serde_json::from_str(&run.stdout).expect("istioctl prints JSON");
    let identifier: Value = serde_json::from_str(
        response["controlPlane"]["identifier"]
            .as_str()
            .expect("a control plane identifier"),
    )
    .expect("the identifier is JSON");
    assert_eq!(identifier["Component"], "istiod");
    let configs = response["resources"].as_array().expect("resources");
    assert_eq!(configs.len(), 2, "{response}");
    for config in configs {
        assert_eq!(
            config["@type"],
            "type.googleapis.com/envoy.service.status.v3.ClientConfig"
        );
        let statuses: Vec<&str> = config["genericXdsConfigs"]
            .as_array()
            .expect("genericXdsConfigs")
            .iter()
            .map(|status| status["configStatus"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(statuses, ["SYNCED"; 4], "{config}");
    }

    // An identity of the namespace bench sees the proxies of bench only.
    let run = istioctl.run(
        "proxy-status-bench-identity",
        &strs(&args(&["proxy-status", "-i", "bench"], &bench_certs)),
    );
    assert!(run.success, "{}", run.stderr);
    assert!(
        row(&run.stdout, "svc-0-v1.bench").is_some(),
        "{}",
        run.stdout
    );
    assert!(row(&run.stdout, "web-1.shop").is_none(), "{}", run.stdout);
    // ... and its certificate does not pass for the system namespace.
    let run = istioctl.run(
        "proxy-status-wrong-namespace",
        &strs(&args(&["proxy-status"], &bench_certs)),
    );
    assert!(!run.success);
    assert!(run.stderr.contains("PermissionDenied"), "{}", run.stderr);

    // The sync diff of one proxy, named by istiod's short form: rudder's dump matches Envoy's.
    let dump = dir.path().join("envoy-config-dump.json");
    let envoy_dump = tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(async {
            reqwest::get(format!("http://{}/config_dump", bench.admin))
                .await?
                .text()
                .await
        })
        .expect("Envoy's config dump");
    std::fs::write(&dump, envoy_dump).expect("write Envoy's config dump");
    let dump = dump.display().to_string();
    let run = istioctl.run(
        "proxy-status-diff",
        &strs(&args(
            &["proxy-status", "svc-0-v1.bench", "--file", &dump],
            &system_certs,
        )),
    );
    assert!(run.success, "{}", run.stderr);
    for line in ["Clusters Match", "Listeners Match", "Routes Match"] {
        assert!(run.stdout.contains(line), "{line} in:\n{}", run.stdout);
    }

    // proxy-config reads the Istio metadata on routes and clusters: the VirtualService of each
    // route and the DestinationRule of each cluster, as with istiod.
    let run = istioctl.run(
        "proxy-config-routes",
        &["proxy-config", "routes", "-f", &dump, "--name", "8080"],
    );
    assert!(run.success, "{}", run.stderr);
    let svc_0 = "svc-0.bench.svc.cluster.local:8080";
    let vs_rows: Vec<&str> = run.stdout.lines().filter(|l| l.contains(svc_0)).collect();
    assert!(!vs_rows.is_empty(), "{}", run.stdout);
    for line in vs_rows {
        assert!(line.trim_end().ends_with("svc-0.bench"), "{line}");
    }
    let run = istioctl.run(
        "proxy-config-clusters",
        &[
            "proxy-config",
            "clusters",
            "-f",
            &dump,
            "--fqdn",
            "svc-0.bench.svc.cluster.local",
        ],
    );
    assert!(run.success, "{}", run.stderr);
    let dr_rows: Vec<&str> = run.stdout.lines().skip(1).collect();
    assert_eq!(
        dr_rows.len(),
        4,
        "the cluster and its 3 subsets: {}",
        run.stdout
    );
    for line in dr_rows {
        assert!(line.trim_end().ends_with("svc-0.bench"), "{line}");
    }

    // Another namespace's identity gets no dump of it: istiod's empty answer, nothing to compare.
    let run = istioctl.run(
        "proxy-status-diff-out-of-scope",
        &strs(&args(
            &[
                "proxy-status",
                "svc-0-v1.bench",
                "--file",
                &dump,
                "-i",
                "shop",
            ],
            &shop_certs,
        )),
    );
    assert!(
        !run.success && !run.stdout.contains("Match"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("unable to find config dump"),
        "{}",
        run.stderr
    );

    // `istioctl x internal-debug`: istiod's generic debug type, answered with the admin port's
    // views, in istiod's shapes.
    // `-i NAMESPACE`: the namespace of the caller's identity, as istiod checks it.
    let internal_debug = |name: &str, request: &str, namespace: &str, certs: &Path| {
        let run = istioctl.run(
            name,
            &strs(&args(
                &["x", "internal-debug", request, "-i", namespace],
                certs,
            )),
        );
        assert!(run.success, "{request}: {}{}", run.stdout, run.stderr);
        let value: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|error| panic!("{request}: not JSON ({error}):\n{}", run.stdout));
        value
    };
    let run = istioctl.run(
        "x-internal-debug-list",
        &strs(&args(&["x", "internal-debug", "--list"], &system_certs)),
    );
    assert!(run.success, "{}", run.stderr);
    let list: Value = serde_json::from_str(&run.stdout).expect("the list is JSON");
    for name in [
        "syncz",
        "adsz",
        "configz",
        "config_dump",
        "connections",
        "inputz",
    ] {
        assert!(
            list.as_array()
                .is_some_and(|names| names.contains(&json!(name))),
            "{name} in {list}"
        );
    }
    let system = "istio-system";
    let syncz = internal_debug("x-internal-debug-syncz", "syncz", system, &system_certs);
    let proxies: Vec<&str> = syncz
        .as_array()
        .expect("syncz is a list")
        .iter()
        .filter_map(|status| status["proxy"].as_str())
        .collect();
    assert_eq!(proxies, ["svc-0-v1.bench", "web-1.shop"], "{syncz}");
    let adsz = internal_debug("x-internal-debug-adsz", "adsz", system, &system_certs);
    assert_eq!(adsz["totalClients"], 2, "{adsz}");
    let connections = internal_debug(
        "x-internal-debug-connections",
        "connections",
        system,
        &system_certs,
    );
    assert_eq!(connections["totalClients"], 2, "{connections}");
    let configz = internal_debug("x-internal-debug-configz", "configz", system, &system_certs);
    assert!(
        configz
            .as_array()
            .is_some_and(|objects| objects.iter().any(|object| {
                object["kind"] == "ServiceEntry" && object["apiVersion"] == "networking.istio.io/v1"
            })),
        "{configz}"
    );
    let dump = internal_debug(
        "x-internal-debug-config-dump",
        "config_dump?proxyID=svc-0-v1.bench",
        system,
        &system_certs,
    );
    let clusters = dump["configs"]
        .as_array()
        .and_then(|configs| {
            configs.iter().find(|config| {
                config["@type"] == "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"
            })
        })
        .unwrap_or_else(|| panic!("a clusters dump in {dump}"));
    assert!(
        clusters["dynamicActiveClusters"]
            .as_array()
            .is_some_and(|clusters| !clusters.is_empty()),
        "istiod's camelCase names: {clusters}"
    );
    // Another namespace may dump its own proxies only, and see nothing else.
    let own = internal_debug(
        "x-internal-debug-config-dump-own",
        "config_dump?proxyID=svc-0-v1.bench",
        "bench",
        &bench_certs,
    );
    assert!(own["configs"].is_array(), "{own}");
    let run = istioctl.run(
        "x-internal-debug-config-dump-other",
        &strs(&args(
            &[
                "x",
                "internal-debug",
                "config_dump?proxyID=web-1.shop",
                "-i",
                "bench",
            ],
            &bench_certs,
        )),
    );
    assert!(
        run.stdout
            .contains("Proxy not connected to this Pilot instance"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    let run = istioctl.run(
        "x-internal-debug-syncz-other",
        &strs(&args(
            &["x", "internal-debug", "syncz", "-i", "bench"],
            &bench_certs,
        )),
    );
    assert!(!run.success, "{}", run.stdout);
    assert!(
        run.stderr.contains(
            "PermissionDenied desc = the debug info is not available for current identity"
        ),
        "{}",
        run.stderr
    );
    // An endpoint rudder does not serve: Go's 404, on which istioctl lists what there is.
    let run = istioctl.run(
        "x-internal-debug-unknown",
        &strs(&args(&["x", "internal-debug", "nosuchz"], &system_certs)),
    );
    assert!(run.success, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("please check all supported internal debug commands")
            && run.stdout.contains("\"syncz\""),
        "{}",
        run.stdout
    );

    // Plaintext: istiod's refusal, at once.
    let mut plaintext = RudderProcess::start(
        &config,
        &[
            "--xds-address",
            "127.0.0.1:0",
            "--admin-address",
            "127.0.0.1:0",
        ],
    );
    let (plain_xds, plain_admin) = plaintext.addresses();
    let plain_xds = plain_xds.to_string();
    let run = istioctl.run(
        "proxy-status-plaintext",
        &[
            "proxy-status",
            "--xds-address",
            &plain_xds,
            "--plaintext",
            "--timeout",
            "10s",
        ],
    );
    assert!(!run.success);
    assert!(
        run.stderr
            .contains("code = Unauthenticated desc = authentication required"),
        "{}",
        run.stderr
    );
    assert!(run.took < Duration::from_secs(10), "took {:?}", run.took);

    // precheck and analyze read the cluster only (neither asks the control plane): with Istio's
    // CRDs and rudder's manifest applied as the README says, they find nothing wrong.
    let manifest = |name: &str| std::fs::read_to_string(root().join(name)).expect("a manifest");
    cluster.install_istio_crds();
    if !cluster
        .kubectl(&["get", "namespace", "istio-system"], "")
        .status
        .success()
    {
        cluster.ok(&["create", "namespace", "istio-system"], "");
    }
    cluster.ok(
        &["apply", "--server-side", "-f", "-"],
        &manifest("manifests/rudder.yaml"),
    );
    let run = istioctl.run("x-precheck", &["x", "precheck"]);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    // istioctl prints its verdicts on stderr.
    assert!(run.stderr.contains("No issues found"), "{}", run.stderr);
    let run = istioctl.run("analyze", &["analyze", "--all-namespaces"]);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    let said = run.stdout + &run.stderr;
    assert!(!said.contains("Error"), "{said}");

    // rudder's own proxy-status over two replicas: the streams of both, each row's replica named.
    let output = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .args(["proxy-status", "--admin-address", &tls_admin.to_string()])
        .args(["--admin-address", &plain_admin.to_string()])
        .output()
        .expect("run rudder proxy-status");
    let table = String::from_utf8_lossy(&output.stdout);
    eprintln!("$ rudder proxy-status (two replicas)\n{table}");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(table.starts_with("NAME "), "{table}");
    assert!(
        table.lines().next().unwrap_or_default().contains("ISTIOD"),
        "{table}"
    );
    for name in ["svc-0-v1.bench", "web-1.shop"] {
        let line = row(&table, name).unwrap_or_else(|| panic!("{name} in\n{table}"));
        assert!(line.contains(&tls_admin.to_string()), "{line}");
    }
}

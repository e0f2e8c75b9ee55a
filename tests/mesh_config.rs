//! The mesh config against a real API server (kube-apiserver + etcd from `scripts/dev-cluster`):
//! `rudder serve --kubeconfig` reads the `istio` ConfigMap of istio-system as istiod does,
//! follows `kubectl` edits of it live, keeps the last good one in force when an edit is refused
//! (saying which field, in the log and in `/debug/inputz`), and goes back to istiod's defaults
//! when the ConfigMap is deleted. And `--mesh-config FILE` in file mode, followed as the file
//! changes. What proxies get is read from `/debug/config_dump`, the same translation ADS serves.
//! `discoverySelectors` is checked through a real Envoy: a namespace the selectors leave out
//! has its Service and ServiceEntry absent from the Envoy's clusters, and labelling the
//! namespace or editing the ConfigMap brings them in or takes them out, live.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rudder::bootstrap::AdsApiType;
use rudder::serve::{ServeOptions, Server};
use serde_json::{Value, json};
use support::cluster::DevCluster;
use support::envoy::dynamic_clusters;
use support::envoy_process::EnvoyProcess;
use support::mesh::local_serve_options;

const PROXY: &str = "sidecar~10.0.0.1~client.default~default.svc.cluster.local";
const LIMIT: Duration = Duration::from_secs(15);

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n\
                       spec: {ports: [{name: http, port: 80}]}\n";

fn config_map(mesh: &str) -> String {
    let indented: String = mesh.lines().map(|line| format!("    {line}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\n\
         data:\n  mesh: |-\n{indented}"
    )
}

async fn get_json(url: String) -> Value {
    reqwest::get(url)
        .await
        .expect("admin answers")
        .json()
        .await
        .expect("JSON")
}

/// What the proxy is served, in a few facts: where unknown destinations go, and the connect
/// timeout of the `web` cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Served {
    unknown_destinations: String,
    web_connect_timeout: String,
}

async fn served(server: &Server) -> Served {
    let dump = get_json(format!(
        "http://{}/debug/envoy_config_dump?proxyID={PROXY}",
        server.admin_address()
    ))
    .await;
    let text = dump.to_string();
    let unknown_destinations = if text.contains("\"block_all\"") {
        "block_all"
    } else if text.contains("\"allow_any\"") {
        "allow_any"
    } else {
        "neither"
    };
    let web_connect_timeout = dynamic_clusters(&dump)
        .find(|cluster| cluster["name"] == "outbound|80||web.default.svc.cluster.local")
        .map(|cluster| cluster["connect_timeout"].to_string())
        .unwrap_or_default();
    Served {
        unknown_destinations: unknown_destinations.to_string(),
        web_connect_timeout,
    }
}

/// Waits until the proxy is served `wanted`; returns how long that took.
async fn until_served(server: &Server, wanted: &Served) -> Duration {
    let start = Instant::now();
    loop {
        let now = served(server).await;
        if &now == wanted {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < LIMIT,
            "never served {wanted:?}; still {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn facts(unknown: &str, timeout: &str) -> Served {
    Served {
        unknown_destinations: unknown.to_string(),
        web_connect_timeout: format!("\"{timeout}\""),
    }
}

async fn config_errors(server: &Server) -> Vec<String> {
    let configz = get_json(format!("http://{}/debug/inputz", server.admin_address())).await;
    configz["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|error| error.as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_istio_config_map_applies_live_and_a_bad_edit_keeps_the_last_good_one() {
    let cluster = DevCluster::up("mesh-config");
    cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n");
    cluster.apply(SERVICE);
    // Present before rudder starts: the first config served already has it.
    cluster.apply(&config_map(
        "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\nconnectTimeout: 3s",
    ));
    let server = Server::start(ServeOptions {
        kubernetes: Some(cluster.kubernetes_options()),
        ..local_serve_options(Vec::new())
    })
    .await
    .expect("rudder starts");
    assert_eq!(served(&server).await, facts("block_all", "3s"));

    // An edit applies live.
    cluster.apply(&config_map(
        "outboundTrafficPolicy:\n  mode: ALLOW_ANY\nconnectTimeout: 4s",
    ));
    let took = until_served(&server, &facts("allow_any", "4s")).await;
    eprintln!("a ConfigMap edit was served after {took:?}");

    // An edit istiod would refuse changes nothing and is reported with its field.
    cluster.apply(&config_map(
        "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\nconnectTimeout: 2h",
    ));
    let start = Instant::now();
    let expected_error = "kubernetes: ConfigMap istio-system/istio: data.mesh.connectTimeout: \
                          7200s must be from 1ms to 1h; the last valid mesh config stays in force";
    while !config_errors(&server)
        .await
        .iter()
        .any(|e| e == expected_error)
    {
        assert!(
            start.elapsed() < LIMIT,
            "the refused edit was not reported: {:?}",
            config_errors(&server).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served(&server).await, facts("allow_any", "4s"));
    let metrics = reqwest::get(format!("http://{}/metrics", server.admin_address()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("rudder_config_errors") && !line.ends_with(" 0")),
        "the refused mesh config is counted as a config error:\n{metrics}"
    );
    // Not YAML at all: the same.
    cluster.apply(&config_map("connectTimeout: [1s"));
    let start = Instant::now();
    while !config_errors(&server)
        .await
        .iter()
        .any(|e| e.starts_with("kubernetes: ConfigMap istio-system/istio: data.mesh: "))
    {
        assert!(
            start.elapsed() < LIMIT,
            "the unparsable edit was not reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served(&server).await, facts("allow_any", "4s"));

    // Fixed: applies, and the error is gone.
    cluster.apply(&config_map("outboundTrafficPolicy:\n  mode: REGISTRY_ONLY"));
    until_served(&server, &facts("block_all", "10s")).await;
    let errors = config_errors(&server).await;
    assert!(
        !errors.iter().any(|error| error.contains("ConfigMap")),
        "{errors:?}"
    );

    // Deleted: istiod's defaults.
    cluster.ok(&["-n", "istio-system", "delete", "configmap", "istio"], "");
    until_served(&server, &facts("allow_any", "10s")).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_config_file_applies_and_is_followed() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = dir.path().join("config");
    std::fs::create_dir(&config).expect("config dir");
    std::fs::write(
        config.join("web.yaml"),
        SERVICE.replace("ports:", "clusterIP: 10.96.0.1, ports:"),
    )
    .expect("write the service");
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(&mesh, "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n").expect("write mesh");
    let server = Server::start(ServeOptions {
        mesh_config_file: Some(mesh.clone()),
        ..local_serve_options(vec![config])
    })
    .await
    .expect("rudder starts");
    assert_eq!(served(&server).await, facts("block_all", "10s"));

    // Replaced as a ConfigMap volume replaces it: written aside, renamed into place.
    let aside = dir.path().join(".mesh.yaml.new");
    std::fs::write(&aside, "connectTimeout: 5s\n").expect("write");
    std::fs::rename(&aside, &mesh).expect("rename");
    until_served(&server, &facts("allow_any", "5s")).await;

    // Written in place with a value istiod refuses: the last good one stays.
    std::fs::write(&mesh, "connectTimeout: 0s\n").expect("write");
    let start = Instant::now();
    while !config_errors(&server).await.iter().any(|e| {
        e.ends_with("meshConfig.connectTimeout: 0s must be from 1ms to 1h; the last valid mesh config stays in force")
    }) {
        assert!(start.elapsed() < LIMIT, "the bad file was not reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served(&server).await, facts("allow_any", "5s"));
    server.stop().await;
}

/// The outbound clusters a real Envoy holds.
async fn envoy_outbound_clusters(envoy: &EnvoyProcess) -> BTreeSet<String> {
    let dump = get_json(format!("http://{}/config_dump", envoy.admin)).await;
    dynamic_clusters(&dump)
        .filter_map(|cluster| cluster["name"].as_str())
        .filter(|name| name.starts_with("outbound|"))
        .map(str::to_string)
        .collect()
}

/// Waits until the Envoy holds exactly the outbound clusters of `hosts` (port 80 each, and the
/// API server's own Service, in `default`, when `with_api_server`); returns how long that took.
async fn until_envoy_has(envoy: &EnvoyProcess, hosts: &[&str], with_api_server: bool) -> Duration {
    let mut wanted: BTreeSet<String> = hosts
        .iter()
        .map(|host| format!("outbound|80||{host}"))
        .collect();
    if with_api_server {
        wanted.insert("outbound|443||kubernetes.default.svc.cluster.local".to_string());
    }
    let start = Instant::now();
    loop {
        let now = envoy_outbound_clusters(envoy).await;
        if now == wanted {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < LIMIT,
            "the Envoy never held {wanted:?}; it holds {now:?}; its log:\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const WEB: &str = "web.shop.svc.cluster.local";
const DB: &str = "db.lab.svc.cluster.local";
const LEGACY: &str = "legacy.lab.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_selectors_choose_the_namespaces_a_real_envoy_sees_live() {
    let cluster = DevCluster::up("discovery-selectors");
    cluster.install_istio_crds();
    cluster.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {mesh: enabled}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: lab}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
         spec: {ports: [{name: http, port: 80}]}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: lab}\n\
         spec: {ports: [{name: http, port: 80}]}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {name: legacy, namespace: lab}\n\
         spec: {hosts: [legacy.lab.test], addresses: [10.96.50.1], \
         ports: [{number: 80, name: http, protocol: HTTP}], resolution: STATIC, \
         endpoints: [{address: 10.1.50.1}]}\n",
    );
    cluster.apply(&config_map(
        "discoverySelectors:\n- matchLabels: {mesh: enabled}",
    ));
    let server = Server::start(ServeOptions {
        kubernetes: Some(cluster.kubernetes_options()),
        ..local_serve_options(Vec::new())
    })
    .await
    .expect("rudder starts");
    let metadata = json!({"NAMESPACE": "default", "INTERCEPTION_MODE": "NONE"});
    let envoy = EnvoyProcess::start(PROXY, metadata, server.xds_address(), AdsApiType::Grpc);
    // `lab` matches no selector: neither its Service nor its ServiceEntry is discovered (nor
    // `default`, whose `kubernetes` Service stays out too).
    until_envoy_has(&envoy, &[WEB], false).await;

    // Labelled, it is discovered: its Service and its Istio config come in.
    cluster.ok(&["label", "namespace", "lab", "mesh=enabled"], "");
    let took = until_envoy_has(&envoy, &[WEB, DB, LEGACY], false).await;
    eprintln!("a namespace labelled into the selectors was served after {took:?}");

    // The ConfigMap edited to select `lab` alone (by the name label the API server sets):
    // `shop` leaves.
    cluster.apply(&config_map(
        "discoverySelectors:\n- matchExpressions:\n  - key: kubernetes.io/metadata.name\n    \
         operator: In\n    values: [lab]",
    ));
    let took = until_envoy_has(&envoy, &[DB, LEGACY], false).await;
    eprintln!("a discoverySelectors edit was served after {took:?}");

    // A selector Kubernetes refuses: reported, and the namespaces discovered stay.
    cluster.apply(&config_map(
        "discoverySelectors:\n- matchExpressions: [{key: app, operator: Within, values: [a]}]",
    ));
    let start = Instant::now();
    while !config_errors(&server)
        .await
        .iter()
        .any(|e| e.contains("is not a valid label selector operator"))
    {
        assert!(
            start.elapsed() < LIMIT,
            "the invalid selector was not reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        envoy_outbound_clusters(&envoy).await,
        [DB, LEGACY]
            .iter()
            .map(|host| format!("outbound|80||{host}"))
            .collect::<BTreeSet<_>>()
    );

    // No selectors: every namespace, `default` (the API server's Service) too.
    cluster.apply(&config_map("connectTimeout: 5s"));
    until_envoy_has(&envoy, &[WEB, DB, LEGACY], true).await;
    drop(envoy);
    server.stop().await;
}

//! The mesh config's main fields, rudder against real istiod (`scripts/istiod`): both serve the
//! same config directory with the same mesh config to a stock Envoy, and what each Envoy
//! accepted (its `/config_dump`) must agree on what those fields shape: connect timeouts, DNS
//! refresh, TCP keepalive, HTTP/2 upgrade, the baseline connection pool and outlier detection,
//! the default retry policy, REGISTRY_ONLY, the default `exportTo` of services, VirtualServices
//! and DestinationRules, the root namespace's Sidecar, the virtual listeners' ports, the
//! protocol detection timeout, path normalization and outbound clusters' stat names. A second
//! test compares the stat names `inboundClusterStatName` and `outboundClusterStatName` give
//! inbound clusters and TCP proxies (inbound and outbound, with and without a subset route).
//! istiod runs without Kubernetes, so the services are ServiceEntries.

mod support;

use rudder::bootstrap::AdsApiType;
use rudder::serve::{ServeOptions, Server};
use serde_json::{Value, json};
use support::envoy::active_listener;
use support::envoy::dynamic_clusters;
use support::envoy_process::EnvoyProcess;
use support::istiod::Istiod;
use support::mesh::local_serve_options;

const NODE: &str = "sidecar~127.0.0.1~client.default~default.svc.cluster.local";
const WEB_PORT: u16 = 19871;
const API_PORT: u16 = 19872;
/// proxyListenPort and proxyInboundListenPort: Envoy binds them (the two Envoys run one after
/// the other).
const OUTBOUND_PORT: u16 = 19873;
const INBOUND_PORT: u16 = 19874;

const MESH: &str = "\
# Without Istio's CA neither side has mutual TLS; istiod would add it otherwise.
enableAutoMtls: false
outboundTrafficPolicy: {mode: REGISTRY_ONLY}
connectTimeout: 3s
dnsRefreshRate: 30s
h2UpgradePolicy: UPGRADE
tcpKeepalive: {time: 600s, probes: 3}
defaultTrafficPolicy:
  connectionPool:
    tcp: {maxConnections: 100}
  outlierDetection: {consecutive5xxErrors: 7, interval: 20s}
defaultHttpRetryPolicy: {attempts: 4, retryOn: 'gateway-error,connect-failure', perTryTimeout: 2s}
defaultServiceExportTo: [.]
defaultVirtualServiceExportTo: [.]
defaultDestinationRuleExportTo: [.]
rootNamespace: mesh-root
proxyListenPort: 19873
proxyInboundListenPort: 19874
protocolDetectionTimeout: 1s
pathNormalization: {normalization: DECODE_AND_MERGE_SLASHES}
outboundClusterStatName: '%SERVICE%_%SERVICE_PORT%_%SERVICE_PORT_NAME%_%SUBSET_NAME%'
";

/// `default` has `web` (HTTP, STATIC) and `api.example.com` (DNS); `other` has `hidden`, which
/// takes the default exportTo (its own namespace only), and `shared`, which exports itself, with
/// a DestinationRule and a VirtualService that take the default and stay in `other`. The root
/// namespace's Sidecar applies to every namespace without one and leaves `unlisted` out. The
/// mesh-wide PeerAuthentication (which rudder does not read) keeps istiod from adding inbound
/// mutual TLS chains, whose certificates only istio-agent serves: without it, a stock Envoy's
/// listeners would wait for them forever.
fn config() -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: web, namespace: default}}\n\
         spec:\n  hosts: [web.mesh.test]\n  addresses: [10.96.7.1]\n\
         \x20 ports: [{{number: {WEB_PORT}, name: http, protocol: HTTP}}]\n\
         \x20 location: MESH_INTERNAL\n  resolution: STATIC\n\
         \x20 endpoints: [{{address: 10.1.7.1}}]\n---\n\
         apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: api, namespace: default}}\n\
         spec:\n  hosts: [api.example.com]\n\
         \x20 ports: [{{number: {API_PORT}, name: tcp, protocol: TCP}}]\n\
         \x20 location: MESH_EXTERNAL\n  resolution: DNS\n---\n\
         apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: unlisted, namespace: default}}\n\
         spec:\n  hosts: [unlisted.mesh.test]\n  addresses: [10.96.7.2]\n\
         \x20 ports: [{{number: {WEB_PORT}, name: http, protocol: HTTP}}]\n\
         \x20 resolution: STATIC\n  endpoints: [{{address: 10.1.7.2}}]\n---\n\
         apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: hidden, namespace: other}}\n\
         spec:\n  hosts: [hidden.mesh.test]\n  addresses: [10.96.7.3]\n\
         \x20 ports: [{{number: {WEB_PORT}, name: http, protocol: HTTP}}]\n\
         \x20 resolution: STATIC\n  endpoints: [{{address: 10.1.7.3}}]\n---\n\
         apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: shared, namespace: other}}\n\
         spec:\n  hosts: [shared.mesh.test]\n  addresses: [10.96.7.4]\n  exportTo: ['*']\n\
         \x20 ports: [{{number: {WEB_PORT}, name: http, protocol: HTTP}}]\n\
         \x20 resolution: STATIC\n  endpoints: [{{address: 10.1.7.4}}]\n---\n\
         apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {{name: shared, namespace: other}}\n\
         spec:\n  host: shared.mesh.test\n  trafficPolicy: {{loadBalancer: {{simple: RANDOM}}}}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: shared, namespace: other}}\n\
         spec:\n  hosts: [shared.mesh.test]\n\
         \x20 http: [{{timeout: 7s, route: [{{destination: {{host: shared.mesh.test}}}}]}}]\n---\n\
         apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {{name: default, namespace: mesh-root}}\nspec: {{mtls: {{mode: DISABLE}}}}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: Sidecar\n\
         metadata: {{name: default, namespace: mesh-root}}\n\
         spec:\n  egress: [{{hosts: ['./web.mesh.test', './api.example.com', 'other/*']}}]\n"
    )
}

/// The config dump of a stock Envoy attached to `xds`, once it holds the web cluster and the
/// web port's routes.
async fn config_dump(xds: std::net::SocketAddr) -> Value {
    config_dump_once(
        xds,
        "the web cluster, routes and virtual listeners",
        |dump| {
            let text = dump.to_string();
            let active = |name: &str| !active_listener(dump, name).is_null();
            text.contains(&format!("outbound|{WEB_PORT}||web.mesh.test"))
                && text.contains(&format!("\"name\":\"{WEB_PORT}\""))
                && active("virtualOutbound")
                && active("virtualInbound")
        },
    )
    .await
}

/// The config dump of a stock Envoy attached to `xds`, once `complete` says it holds `what`.
async fn config_dump_once(
    xds: std::net::SocketAddr,
    what: &str,
    complete: impl Fn(&Value) -> bool,
) -> Value {
    let metadata = json!({
        "NAMESPACE": "default",
        "INTERCEPTION_MODE": "REDIRECT",
        "LABELS": {"app": "client"},
    });
    let envoy = EnvoyProcess::start(NODE, metadata, xds, AdsApiType::Grpc);
    envoy.config_dump_when(what, complete).await
}

fn cluster<'d>(dump: &'d Value, name: &str) -> &'d Value {
    dynamic_clusters(dump)
        .find(|cluster| cluster["name"] == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

/// Where a listener sends connections no other chain matches: its default chain (rudder) or its
/// chain that matches anything (istiod's `virtualOutbound-catchall-tcp`).
fn catch_all_cluster(listener: &Value) -> &Value {
    let chains = listener["filter_chains"].as_array().into_iter().flatten();
    let chain = match listener.get("default_filter_chain") {
        Some(chain) => chain,
        None => chains
            .into_iter()
            .find(|chain| chain.get("filter_chain_match").is_none())
            .unwrap_or(&Value::Null),
    };
    &chain["filters"][0]["typed_config"]["cluster"]
}

fn route_config<'d>(dump: &'d Value, name: &str) -> &'d Value {
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|config| {
            config["dynamic_route_configs"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .map(|entry| &entry["route_config"])
        .find(|config| config["name"] == name)
        .unwrap_or_else(|| panic!("no route configuration {name}"))
}

/// What the mesh config's main fields shape, as the Envoy holds it.
fn facts(dump: &Value) -> Value {
    let web = cluster(dump, &format!("outbound|{WEB_PORT}||web.mesh.test"));
    let api = cluster(dump, &format!("outbound|{API_PORT}||api.example.com"));
    let passthrough = cluster(dump, "PassthroughCluster");
    let upgraded = |cluster: &Value| {
        cluster["typed_extension_protocol_options"]
            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
            .get("http2_protocol_options")
            .is_some()
    };
    let routes = route_config(dump, &WEB_PORT.to_string());
    let virtual_hosts: Vec<&Value> = routes["virtual_hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let web_host = virtual_hosts
        .iter()
        .find(|host| {
            host["domains"]
                .as_array()
                .is_some_and(|domains| domains.iter().any(|d| d == "web.mesh.test"))
        })
        .expect("a virtual host for web.mesh.test");
    let retry = &web_host["routes"][0]["route"]["retry_policy"];
    let last_host = virtual_hosts.last().expect("virtual hosts");
    let shared_host = virtual_hosts
        .iter()
        .find(|host| {
            host["domains"]
                .as_array()
                .is_some_and(|domains| domains.iter().any(|d| d == "shared.mesh.test"))
        })
        .expect("a virtual host for shared.mesh.test");
    let mut outbound: Vec<&str> = dynamic_clusters(dump)
        .filter_map(|cluster| cluster["name"].as_str())
        .filter(|name| name.starts_with("outbound|"))
        .collect();
    outbound.sort_unstable();
    let shared = cluster(dump, &format!("outbound|{WEB_PORT}||shared.mesh.test"));
    let virtual_outbound = active_listener(dump, "virtualOutbound");
    let virtual_inbound = active_listener(dump, "virtualInbound");
    let web_listener = active_listener(dump, &format!("0.0.0.0_{WEB_PORT}"));
    let manager = &web_listener["filter_chains"][0]["filters"][0]["typed_config"];
    json!({
        "web listener.normalize_path": manager["normalize_path"],
        "web listener.merge_slashes": manager["merge_slashes"],
        "web listener.escaped_slashes": manager["path_with_escaped_slashes_action"],
        "outbound clusters": outbound,
        "shared.lb_policy": shared["lb_policy"],
        "shared.route_timeout": shared_host["routes"][0]["route"]["timeout"],
        "virtualOutbound.port": virtual_outbound["address"]["socket_address"]["port_value"],
        "virtualOutbound.unknown": catch_all_cluster(virtual_outbound),
        "virtualInbound.port": virtual_inbound["address"]["socket_address"]["port_value"],
        "virtualInbound.listener_filters_timeout": virtual_inbound["listener_filters_timeout"],
        "web.connect_timeout": web["connect_timeout"],
        "web.alt_stat_name": web["alt_stat_name"],
        "web.keepalive": web["upstream_connection_options"],
        "web.http2": upgraded(web),
        "web.max_connections": web["circuit_breakers"]["thresholds"][0]["max_connections"],
        "web.consecutive_5xx": web["outlier_detection"]["consecutive_5xx"],
        "web.outlier_interval": web["outlier_detection"]["interval"],
        "api.connect_timeout": api["connect_timeout"],
        "api.dns_refresh_rate": api["dns_refresh_rate"],
        "api.http2": upgraded(api),
        "passthrough.connect_timeout": passthrough["connect_timeout"],
        "passthrough.keepalive": passthrough["upstream_connection_options"],
        "passthrough.max_connections": passthrough["circuit_breakers"]["thresholds"][0]["max_connections"],
        "retry.num_retries": retry["num_retries"],
        "retry.retry_on": retry["retry_on"],
        "retry.per_try_timeout": retry["per_try_timeout"],
        "catch_all.name": last_host["name"],
        "catch_all.status": last_host["routes"][0]["direct_response"]["status"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_mesh_config_fields_shape_envoy_as_istiod_does() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("config dir");
    std::fs::write(config_dir.join("services.yaml"), config()).expect("write config");
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(&mesh, MESH).expect("write the mesh config");

    let server = Server::start(ServeOptions {
        mesh_config_file: Some(mesh.clone()),
        ..local_serve_options(vec![config_dir.clone()])
    })
    .await
    .expect("rudder starts");
    let rudder = facts(&config_dump(server.xds_address()).await);
    server.stop().await;

    let istiod = Istiod::up(&config_dir, Some(&mesh)).unwrap_or_else(|error| panic!("{error}"));
    let reference = facts(&config_dump(istiod.xds).await);
    drop(istiod);

    // The mesh config took effect at all (not both on the same defaults).
    assert_eq!(reference["web.connect_timeout"], "3s", "{reference:#}");
    assert_eq!(reference["catch_all.name"], "block_all", "{reference:#}");
    assert_eq!(
        reference["web.alt_stat_name"],
        format!("web.mesh.test_{WEB_PORT}_http_;"),
        "{reference:#}"
    );
    assert_eq!(
        reference["virtualOutbound.port"], OUTBOUND_PORT,
        "{reference:#}"
    );
    assert_eq!(
        reference["virtualInbound.port"], INBOUND_PORT,
        "{reference:#}"
    );
    assert_eq!(
        rudder, reference,
        "rudder (left) and istiod (right) differ:\nrudder: {rudder:#}\nistiod: {reference:#}"
    );
}

/// Every placeholder istiod fills in, so each shows in the names compared.
const STAT_PATTERN: &str = "%SERVICE%_%SERVICE_NAME%_%SERVICE_FQDN%_%SERVICE_PORT%_%SERVICE_PORT_NAME%_%TARGET_PORT%_%SUBSET_NAME%";
const DB_PORT: u16 = 19881;
const CACHE_PORT: u16 = 19882;
const INBOUND_TCP_PORT: u16 = 19883;
const INBOUND_HTTP_PORT: u16 = 19884;

/// TCP services `db` (routed to its subset `v1` by a VirtualService) and `cache` (no rules), and
/// a Sidecar whose ingress listeners give the proxy a TCP and an HTTP inbound port.
fn stat_names_config() -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: db, namespace: default}}\n\
         spec:\n  hosts: [db.mesh.test]\n  addresses: [10.96.8.1]\n\
         \x20 ports: [{{number: {DB_PORT}, name: tcp-db, protocol: TCP}}]\n\
         \x20 location: MESH_INTERNAL\n  resolution: STATIC\n\
         \x20 endpoints: [{{address: 10.1.8.1, labels: {{version: v1}}}}]\n---\n\
         apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {{name: db, namespace: default}}\n\
         spec:\n  host: db.mesh.test\n  subsets: [{{name: v1, labels: {{version: v1}}}}]\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: db, namespace: default}}\n\
         spec:\n  hosts: [db.mesh.test]\n\
         \x20 tcp: [{{route: [{{destination: {{host: db.mesh.test, subset: v1}}}}]}}]\n---\n\
         apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: cache, namespace: default}}\n\
         spec:\n  hosts: [cache.mesh.test]\n  addresses: [10.96.8.2]\n\
         \x20 ports: [{{number: {CACHE_PORT}, name: tcp-cache, protocol: TCP}}]\n\
         \x20 location: MESH_INTERNAL\n  resolution: STATIC\n\
         \x20 endpoints: [{{address: 10.1.8.2}}]\n---\n\
         apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {{name: default, namespace: istio-system}}\nspec: {{mtls: {{mode: DISABLE}}}}\n---\n\
         apiVersion: networking.istio.io/v1\nkind: Sidecar\n\
         metadata: {{name: client, namespace: default}}\n\
         spec:\n  ingress:\n\
         \x20 - port: {{number: {INBOUND_TCP_PORT}, name: tcp-in, protocol: TCP}}\n\
         \x20   defaultEndpoint: 127.0.0.1:18080\n\
         \x20 - port: {{number: {INBOUND_HTTP_PORT}, name: http-in, protocol: HTTP}}\n\
         \x20   defaultEndpoint: 127.0.0.1:18081\n\
         \x20 egress: [{{hosts: ['./*']}}]\n"
    )
}

/// The TCP proxies of a listener's chains: (stat prefix, cluster) of each.
fn tcp_proxies(listener: &Value) -> Vec<(Value, Value)> {
    listener["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|chain| chain["filters"].as_array().into_iter().flatten())
        .filter(|filter| filter["name"] == "envoy.filters.network.tcp_proxy")
        .map(|filter| {
            let config = &filter["typed_config"];
            (config["stat_prefix"].clone(), config["cluster"].clone())
        })
        .collect()
}

/// The stat names the patterns shape, as the Envoy holds them.
fn stat_facts(dump: &Value) -> Value {
    let alt_stat_names: serde_json::Map<String, Value> = dynamic_clusters(dump)
        .filter_map(|cluster| {
            let name = cluster["name"].as_str()?;
            let interesting = name.starts_with("inbound|") || name.contains(".mesh.test");
            interesting.then(|| (name.to_string(), cluster["alt_stat_name"].clone()))
        })
        .collect();
    // Envoy picks a chain by its match, not its place: istiod lists the passthrough chain first.
    let mut inbound = tcp_proxies(active_listener(dump, "virtualInbound"));
    inbound.sort_by_key(|(prefix, _)| prefix.to_string());
    json!({
        "alt_stat_names": alt_stat_names,
        "db": tcp_proxies(active_listener(dump, &format!("10.96.8.1_{DB_PORT}"))),
        "cache": tcp_proxies(active_listener(dump, &format!("10.96.8.2_{CACHE_PORT}"))),
        "inbound": inbound,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_name_patterns_name_clusters_and_tcp_proxies_as_istiod_does() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("config dir");
    std::fs::write(config_dir.join("services.yaml"), stat_names_config()).expect("write config");
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(
        &mesh,
        format!(
            "enableAutoMtls: false\nproxyListenPort: 19885\nproxyInboundListenPort: 19886\n\
             inboundClusterStatName: 'in_{STAT_PATTERN}'\n\
             outboundClusterStatName: 'out_{STAT_PATTERN}'\n"
        ),
    )
    .expect("write the mesh config");
    let complete = |dump: &Value| {
        let active = |name: &str| !active_listener(dump, name).is_null();
        active("virtualInbound")
            && active(&format!("10.96.8.1_{DB_PORT}"))
            && active(&format!("10.96.8.2_{CACHE_PORT}"))
            && dump
                .to_string()
                .contains(&format!("inbound|{INBOUND_HTTP_PORT}||"))
    };
    let what = "the TCP listeners and the inbound clusters";

    let server = Server::start(ServeOptions {
        mesh_config_file: Some(mesh.clone()),
        ..local_serve_options(vec![config_dir.clone()])
    })
    .await
    .expect("rudder starts");
    let rudder = stat_facts(&config_dump_once(server.xds_address(), what, complete).await);
    server.stop().await;

    let istiod = Istiod::up(&config_dir, Some(&mesh)).unwrap_or_else(|error| panic!("{error}"));
    let reference = stat_facts(&config_dump_once(istiod.xds, what, complete).await);
    drop(istiod);

    // The patterns took effect at all: istiod's names are not the clusters'.
    assert_eq!(
        reference["cache"][0][0],
        // The service's own chain: istiod's port there has no name.
        format!("out_cache.mesh.test_cache.mesh.test_cache.mesh.test_{CACHE_PORT}__0_"),
        "{reference:#}"
    );
    assert_eq!(
        rudder, reference,
        "rudder (left) and istiod (right) differ:\nrudder: {rudder:#}\nistiod: {reference:#}"
    );
}

/// ServiceEntries in `default` (the proxy's namespace) and `other`, one exported everywhere and
/// one to `default` only.
fn visibility_config() -> String {
    let entry = |name: &str, namespace: &str, address: &str, export_to: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {{name: {name}, namespace: {namespace}}}\n\
             spec:\n  hosts: [{name}.mesh.test]\n  addresses: [{address}]\n  exportTo: {export_to}\n\
             \x20 ports: [{{number: {WEB_PORT}, name: http, protocol: HTTP}}]\n\
             \x20 resolution: STATIC\n  endpoints: [{{address: 10.1.9.1}}]\n---\n"
        )
    };
    [
        entry("local", "default", "10.96.9.1", "['*']"),
        entry("shared", "other", "10.96.9.2", "['*']"),
        entry("pointed", "other", "10.96.9.3", "[default]"),
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: DISABLE}}\n"
            .to_string(),
    ]
    .concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_entry_visibility_caps_export_to_as_istiod_does() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("config dir");
    std::fs::write(config_dir.join("services.yaml"), visibility_config()).expect("write config");
    let mesh = dir.path().join("mesh.yaml");
    // istiod without Kubernetes knows no namespace labels: the policy matches nothing and the
    // default applies (the unit tests cover labels).
    std::fs::write(
        &mesh,
        "enableAutoMtls: false\nproxyListenPort: 19887\nproxyInboundListenPort: 19888\n\
         serviceEntryVisibility:\n  applyToSidecars: true\n  defaultVisibility: NAMESPACE\n\
         \x20 policies:\n  - visibility: PUBLIC\n    matchingRules:\n\
         \x20   - namespaceSelector: {matchLabels: {team: web}}\n",
    )
    .expect("write the mesh config");
    let outbound = |dump: &Value| -> Vec<String> {
        let mut names: Vec<String> = dynamic_clusters(dump)
            .filter_map(|cluster| cluster["name"].as_str())
            .filter(|name| name.starts_with("outbound|"))
            .map(str::to_string)
            .collect();
        names.sort();
        names
    };
    let complete = |dump: &Value| {
        let text = dump.to_string();
        text.contains("local.mesh.test") && !active_listener(dump, "virtualOutbound").is_null()
    };
    let what = "the local ServiceEntry";

    let server = Server::start(ServeOptions {
        mesh_config_file: Some(mesh.clone()),
        ..local_serve_options(vec![config_dir.clone()])
    })
    .await
    .expect("rudder starts");
    let rudder = outbound(&config_dump_once(server.xds_address(), what, complete).await);
    server.stop().await;

    let istiod = Istiod::up(&config_dir, Some(&mesh)).unwrap_or_else(|error| panic!("{error}"));
    let reference = outbound(&config_dump_once(istiod.xds, what, complete).await);
    drop(istiod);

    assert_eq!(
        reference,
        [format!("outbound|{WEB_PORT}||local.mesh.test")],
        "the cap took effect in istiod"
    );
    assert_eq!(rudder, reference, "rudder (left) and istiod (right) differ");
}

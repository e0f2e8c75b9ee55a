//! Access logs and tracing, rudder against real istiod (`scripts/istiod`): both serve the same
//! ServiceEntries with the same mesh config to a stock Envoy, and what each Envoy accepted (its
//! `/config_dump`) must agree on the `access_log` of listeners, connection managers and TCP
//! proxies, and on the connection managers' `tracing` and request ID extension. Mesh configs:
//! the legacy fields (`accessLogFile`, JSON `accessLogFormat`, `enableTracing` with
//! `defaultConfig.tracing`), and `defaultProviders` naming file access logs and a zipkin or an
//! OpenTelemetry tracer from `extensionProviders`.

mod support;

use rudder::bootstrap::AdsApiType;
use rudder::serve::{ServeOptions, Server};
use serde_json::{Value, json};
use support::envoy::active_listener;
use support::envoy_process::EnvoyProcess;
use support::istiod::Istiod;
use support::mesh::local_serve_options;

const NODE: &str = "sidecar~127.0.0.1~client.default~default.svc.cluster.local";
const WEB_PORT: u16 = 19264;
const API_PORT: u16 = 19265;
/// proxyListenPort and proxyInboundListenPort: Envoy binds them (the Envoys run one after the
/// other).
const OUTBOUND_PORT: u16 = 19266;
const INBOUND_PORT: u16 = 19267;

/// The mesh config's shared part: no mutual TLS (no CA here), this file's listener ports.
fn mesh(telemetry: &str) -> String {
    format!(
        "enableAutoMtls: false\nproxyListenPort: {OUTBOUND_PORT}\n\
         proxyInboundListenPort: {INBOUND_PORT}\n{telemetry}"
    )
}

const LEGACY: &str = "\
accessLogFile: /dev/stdout
enableEnvoyAccessLogService: true
accessLogEncoding: JSON
accessLogFormat: '{\"code\": \"%RESPONSE_CODE%\", \"route\": \"%ROUTE_NAME%\", \"nested\": {\"host\": \"%UPSTREAM_HOST%\"}}'
defaultConfig:
  tracing:
    sampling: 25
    maxPathTagLength: 99
    customTags:
      team: {literal: {value: payments}}
      user: {header: {name: x-user, defaultValue: none}}
";

const ZIPKIN: &str = "\
accessLogFile: /tmp/ignored-when-a-default-provider-logs.log
disableEnvoyListenerLog: true
extensionProviders:
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411, maxTagLength: 64}
- name: json-file
  envoyFileAccessLog:
    path: /tmp/rudder-telemetry-json.log
    logFormat: {labels: {code: '%RESPONSE_CODE%', path: '%REQ_WITHOUT_QUERY(:PATH)%'}}
defaultProviders:
  accessLogging: [json-file, envoy]
  tracing: [zipkin]
";

const OPENTELEMETRY: &str = "\
enableTracing: false
extensionProviders:
- name: otel
  opentelemetry:
    service: istio-system/otel.istio-system.svc.cluster.local
    port: 4317
    grpc: {timeout: 3s, initialMetadata: [{name: x-tenant, value: shop}]}
- name: otel-http
  opentelemetry:
    service: otel.istio-system.svc.cluster.local
    port: 4318
    http: {path: /v1/traces, timeout: 2s, headers: [{name: x-tenant, value: shop}]}
- name: text
  envoyFileAccessLog: {path: /dev/stdout, logFormat: {text: '%RESPONSE_CODE% %ROUTE_NAME%'}}
defaultProviders:
  accessLogging: [text]
  tracing: [otel]
";

/// web (HTTP), api.example.com (TCP), and the tracers' services in istio-system. The mesh-wide
/// PeerAuthentication keeps istiod from adding inbound mutual TLS chains (see
/// tests/mesh_config_istiod.rs).
fn config() -> String {
    let entry = |name: &str, namespace: &str, host: &str, address: &str, ports: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
             metadata: {{name: {name}, namespace: {namespace}}}\n\
             spec:\n  hosts: [{host}]\n  addresses: [{address}]\n  ports: {ports}\n\
             \x20 location: MESH_INTERNAL\n  resolution: STATIC\n\
             \x20 endpoints: [{{address: 10.1.9.1}}]\n---\n"
        )
    };
    let mut config = entry(
        "web",
        "default",
        "web.mesh.test",
        "10.96.9.1",
        &format!("[{{number: {WEB_PORT}, name: http, protocol: HTTP}}]"),
    );
    config.push_str(&entry(
        "zipkin",
        "istio-system",
        "zipkin.istio-system.svc.cluster.local",
        "10.96.9.2",
        "[{number: 9411, name: http, protocol: HTTP}]",
    ));
    config.push_str(&entry(
        "otel",
        "istio-system",
        "otel.istio-system.svc.cluster.local",
        "10.96.9.3",
        "[{number: 4317, name: grpc, protocol: GRPC}, {number: 4318, name: http, protocol: HTTP}]",
    ));
    config.push_str(&format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: api, namespace: default}}\n\
         spec:\n  hosts: [api.example.com]\n\
         \x20 ports: [{{number: {API_PORT}, name: tcp, protocol: TCP}}]\n\
         \x20 location: MESH_EXTERNAL\n  resolution: DNS\n---\n\
         apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n\
         metadata: {{name: default, namespace: istio-system}}\nspec: {{mtls: {{mode: DISABLE}}}}\n"
    ));
    config
}

/// The config dump of a stock Envoy attached to `xds`, once its listeners are all active.
async fn config_dump(xds: std::net::SocketAddr) -> Value {
    let metadata = json!({
        "NAMESPACE": "default",
        "INTERCEPTION_MODE": "REDIRECT",
        "LABELS": {"app": "client", "service.istio.io/canonical-name": "client-app"},
    });
    let envoy = EnvoyProcess::start(NODE, metadata, xds, AdsApiType::Grpc);
    envoy
        .config_dump_when("its listeners", |dump| {
            let active = |name: &str| !active_listener(dump, name).is_null();
            active("virtualOutbound")
                && active("virtualInbound")
                && active(&format!("0.0.0.0_{WEB_PORT}"))
                && active(&format!("0.0.0.0_{API_PORT}"))
        })
        .await
}

/// The typed config of the filter `filter` in the chain of `listener` named `chain` (`*`: any
/// chain that has it; `None`: the chain without a match, or the default chain).
fn filter<'d>(listener: &'d Value, chain: Option<&str>, filter: &str) -> &'d Value {
    let chains = listener["filter_chains"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(listener.get("default_filter_chain"));
    let mut chains = chains.filter(|c| match chain {
        Some("*") => true,
        Some(name) => c["name"] == name,
        None => c.get("filter_chain_match").is_none(),
    });
    chains
        .find_map(|c| {
            c["filters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|f| f["name"] == filter)
        })
        .map_or(&Value::Null, |f| &f["typed_config"])
}

const HCM: &str = "envoy.filters.network.http_connection_manager";
const TCP: &str = "envoy.filters.network.tcp_proxy";

/// What telemetry shapes in the Envoy: listener-level access logs, and the access logs and
/// tracing of connection managers and TCP proxies on both sides.
fn facts(dump: &Value) -> Value {
    let outbound = active_listener(dump, "virtualOutbound");
    let inbound = active_listener(dump, "virtualInbound");
    let web = active_listener(dump, &format!("0.0.0.0_{WEB_PORT}"));
    let api = active_listener(dump, &format!("0.0.0.0_{API_PORT}"));
    let hcm = |config: &Value| {
        json!({
            "access_log": config["access_log"],
            "tracing": config["tracing"],
            "request_id_extension": config["request_id_extension"],
        })
    };
    json!({
        "virtualOutbound.access_log": outbound["access_log"],
        "virtualInbound.access_log": inbound["access_log"],
        "web.listener.access_log": web["access_log"],
        // istiod's chain matches the HTTP it sniffs; rudder's, everything.
        "web.hcm": hcm(filter(web, Some("*"), HCM)),
        "api.tcp.access_log": filter(api, Some("*"), TCP)["access_log"],
        // rudder's default chain, istiod's `virtualOutbound-catchall-tcp`.
        "passthrough.tcp.access_log": filter(outbound, None, TCP)["access_log"],
        "outbound.blackhole.tcp.access_log":
            filter(outbound, Some("virtualOutbound-blackhole"), TCP)["access_log"],
        "inbound.blackhole.tcp.access_log":
            filter(inbound, Some("virtualInbound-blackhole"), TCP)["access_log"],
        "inbound.passthrough.tcp.access_log":
            filter(inbound, Some("virtualInbound"), TCP)["access_log"],
        "inbound.passthrough.hcm": hcm(filter(inbound, Some("virtualInbound-catchall-http"), HCM)),
    })
}

async fn compare(name: &str, telemetry: &str, check: impl Fn(&Value)) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("config dir");
    std::fs::write(config_dir.join("services.yaml"), config()).expect("write config");
    let mesh_file = dir.path().join("mesh.yaml");
    std::fs::write(&mesh_file, mesh(telemetry)).expect("write the mesh config");

    let server = Server::start(ServeOptions {
        mesh_config_file: Some(mesh_file.clone()),
        ..local_serve_options(vec![config_dir.clone()])
    })
    .await
    .expect("rudder starts");
    let rudder = facts(&config_dump(server.xds_address()).await);
    server.stop().await;

    let istiod =
        Istiod::up(&config_dir, Some(&mesh_file)).unwrap_or_else(|error| panic!("{error}"));
    let reference = facts(&config_dump(istiod.xds).await);
    drop(istiod);

    // The mesh config took effect at all (not both without telemetry).
    check(&reference);
    assert_eq!(
        rudder, reference,
        "{name}: rudder (left) and istiod (right) differ:\nrudder: {rudder:#}\nistiod: {reference:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_logs_and_tracing_match_istiod() {
    compare("legacy fields", LEGACY, |facts| {
        // The file log and the access log service's, each.
        assert_eq!(
            facts["virtualOutbound.access_log"].as_array().map(Vec::len),
            Some(2),
            "{facts:#}"
        );
        assert_eq!(
            facts["api.tcp.access_log"].as_array().map(Vec::len),
            Some(2),
            "{facts:#}"
        );
        assert!(
            facts["inbound.passthrough.hcm"]["tracing"].is_object(),
            "{facts:#}"
        );
        assert_eq!(
            facts["web.hcm"]["tracing"]["random_sampling"]["value"].as_f64(),
            Some(25.0),
            "{facts:#}"
        );
    })
    .await;
    compare("zipkin", ZIPKIN, |facts| {
        assert!(facts["virtualOutbound.access_log"].is_null(), "{facts:#}");
        assert_eq!(
            facts["inbound.passthrough.tcp.access_log"]
                .as_array()
                .map(Vec::len),
            Some(2),
            "{facts:#}"
        );
        assert_eq!(
            facts["web.hcm"]["tracing"]["provider"]["name"], "envoy.tracers.zipkin",
            "{facts:#}"
        );
    })
    .await;
    compare("opentelemetry", OPENTELEMETRY, |facts| {
        assert_eq!(
            facts["web.hcm"]["tracing"]["provider"]["name"], "envoy.tracers.opentelemetry",
            "{facts:#}"
        );
    })
    .await;
}

use std::path::Path;

use super::*;
use crate::duration::Duration;

fn parsed(yaml: &str) -> Parsed {
    parse(yaml, &MeshConfig::default()).expect("the mesh config is accepted")
}

fn config(yaml: &str) -> MeshConfig {
    parsed(yaml).config
}

fn error(yaml: &str) -> String {
    parse(yaml, &MeshConfig::default())
        .expect_err("the mesh config is refused")
        .to_string()
}

fn warnings(yaml: &str) -> Vec<String> {
    parsed(yaml)
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn an_empty_mesh_config_is_istiods_defaults() {
    for text in ["", "{}", "# nothing\n", "connectTimeout: null\n"] {
        assert_eq!(config(text), MeshConfig::default(), "{text:?}");
    }
    let defaults = MeshConfig::default();
    assert_eq!(defaults.root_namespace, "istio-system");
    assert_eq!(defaults.outbound_traffic_policy, OutboundPolicy::AllowAny);
    assert_eq!(defaults.connect_timeout, Duration::from_secs(10));
    assert_eq!(defaults.dns_refresh_rate, Duration::from_secs(60));
    assert_eq!(defaults.default_service_export_to, ["*"]);
    assert_eq!(
        defaults.locality_lb_setting.and_then(|s| s.enabled),
        Some(true)
    );
    assert_eq!(
        (
            defaults.proxy_listen_port,
            defaults.proxy_inbound_listen_port
        ),
        (15001, 15006)
    );
}

#[test]
fn each_honoured_field_replaces_its_default() {
    let mesh = config(
        "rootNamespace: mesh-root\n\
         outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n\
         inboundTrafficPolicy: {mode: LOCALHOST}\n\
         defaultServiceExportTo: [.]\n\
         defaultVirtualServiceExportTo: [a, b]\n\
         defaultDestinationRuleExportTo: ['~']\n\
         connectTimeout: 1.5s\n\
         tcpKeepalive: {time: 60s, probes: 3}\n\
         defaultHttpRetryPolicy: {attempts: 5, retryOn: 5xx}\n\
         h2UpgradePolicy: UPGRADE\n\
         localityLbSetting: {failoverPriority: [version]}\n\
         dnsRefreshRate: 5m\n\
         protocolDetectionTimeout: 100ms\n\
         proxyListenPort: 15101\n\
         proxyInboundListenPort: '15106'\n\
         defaultTrafficPolicy: {connectionPool: {tcp: {maxConnections: 9}}}\n",
    );
    assert_eq!(mesh.root_namespace, "mesh-root");
    assert_eq!(mesh.outbound_traffic_policy, OutboundPolicy::RegistryOnly);
    assert_eq!(mesh.inbound_traffic_policy, InboundPolicy::Localhost);
    assert_eq!(mesh.default_service_export_to, ["."]);
    assert_eq!(mesh.default_virtual_service_export_to, ["a", "b"]);
    assert_eq!(mesh.default_destination_rule_export_to, ["~"]);
    assert_eq!(mesh.connect_timeout, Duration::from_millis(1500));
    let keepalive = mesh.tcp_keepalive.expect("keepalive");
    assert_eq!(
        (keepalive.time, keepalive.probes),
        (Some(Duration::from_secs(60)), Some(3))
    );
    let retries = mesh.default_http_retry_policy.expect("retries");
    assert_eq!(
        (retries.attempts, retries.retry_on.as_deref()),
        (5, Some("5xx"))
    );
    assert!(mesh.h2_upgrade);
    assert!(config("h2UpgradePolicy: 1").h2_upgrade, "an enum by number");
    assert_eq!(
        config("pathNormalization: {normalization: MERGE_SLASHES}").path_normalization,
        PathNormalization::MergeSlashes
    );
    assert_eq!(
        config("pathNormalization: {normalization: DEFAULT}").path_normalization,
        PathNormalization::Base
    );
    let tls =
        config("tlsDefaults: {minProtocolVersion: TLSV1_3, ecdhCurves: [P-256]}").tls_defaults;
    assert_eq!(
        (tls.min_protocol_version, tls.ecdh_curves),
        (MinTlsVersion::TlsV1_3, vec!["P-256".to_string()])
    );
    // A setting present replaces the default whole: `enabled` is no longer set.
    let locality = mesh.locality_lb_setting.expect("locality setting");
    assert_eq!(
        (locality.enabled, locality.failover_priority),
        (None, vec!["version".to_string()])
    );
    assert_eq!(mesh.dns_refresh_rate, Duration::from_secs(300));
    assert_eq!(mesh.protocol_detection_timeout, Duration::from_millis(100));
    assert_eq!(
        (mesh.proxy_listen_port, mesh.proxy_inbound_listen_port),
        (15101, 15106)
    );
    let pool = mesh.default_traffic_policy.connection_pool.expect("pool");
    assert_eq!(pool.tcp.and_then(|tcp| tcp.max_connections), Some(9));
}

#[test]
fn an_outbound_policy_without_mode_is_istios_zero_value_registry_only() {
    assert_eq!(
        config("outboundTrafficPolicy: {}").outbound_traffic_policy,
        OutboundPolicy::RegistryOnly
    );
    assert_eq!(
        config("outboundTrafficPolicy: {mode: ALLOW_ANY}").outbound_traffic_policy,
        OutboundPolicy::AllowAny
    );
    // The dynamic DNS mode is not built: unknown destinations pass, with a warning.
    let dynamic = parsed("outboundTrafficPolicy: {mode: ALLOW_ANY_DYNAMIC_DNS}");
    assert_eq!(
        dynamic.config.outbound_traffic_policy,
        OutboundPolicy::AllowAny
    );
    assert_eq!(dynamic.warnings.len(), 1, "{:?}", dynamic.warnings);
}

#[test]
fn locality_load_balancing_can_be_turned_off_mesh_wide() {
    let off = config("localityLbSetting: {enabled: false}");
    assert_eq!(off.locality_lb_setting.and_then(|s| s.enabled), Some(false));
}

#[test]
fn proto_field_names_are_taken_as_istiod_takes_them() {
    let mesh = config("connect_timeout: 2s\nroot_namespace: x\ndefault_service_export_to: [.]\n");
    assert_eq!(mesh.connect_timeout, Duration::from_secs(2));
    assert_eq!(mesh.root_namespace, "x");
    assert_eq!(mesh.default_service_export_to, ["."]);
    assert!(warnings("mesh_mTLS: {minProtocolVersion: TLSV1_3}")[0].starts_with("meshMTLS: "));
}

#[test]
fn unknown_fields_are_ignored_with_a_warning() {
    let parsed = parsed("connectTimeot: 5s\nconnectTimeout: 2s\n");
    assert_eq!(parsed.config.connect_timeout, Duration::from_secs(2));
    assert_eq!(
        parsed
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["connectTimeot: unknown field, ignored (as istiod ignores it)"]
    );
}

#[test]
fn fields_not_carried_out_warn_only_when_they_differ_from_istiods_default() {
    assert_eq!(
        warnings("proxyHttpPort: 8080\n").len(),
        1,
        "a field rudder does not carry out, set to something else than istiod's default"
    );
    // An Istio install's usual settings that change nothing say nothing.
    assert!(
        warnings(
            "accessLogFile: ''\ntrustDomain: cluster.local\nenablePrometheusMerge: true\n\
             defaultConfig: {discoveryAddress: istiod.istio-system.svc:15012}\n\
             ingressClass: istio\n"
        )
        .is_empty()
    );
    assert_eq!(warnings("trustDomain: example.org").len(), 1);
}

#[test]
fn wrong_types_are_refused_naming_the_field() {
    let cases = [
        ("connectTimeout: 5", "connectTimeout: 5 is not a duration"),
        (
            "connectTimeout: five",
            "connectTimeout: \"five\" is not a duration",
        ),
        (
            "defaultServiceExportTo: '*'",
            "defaultServiceExportTo: \"*\" is not a list of strings",
        ),
        (
            "enableTracing: 'yes'",
            "enableTracing: \"yes\" is not true or false",
        ),
        (
            "proxyListenPort: 1.5",
            "proxyListenPort: 1.5 is not a 32-bit integer",
        ),
        (
            "h2UpgradePolicy: ALWAYS",
            "h2UpgradePolicy: \"ALWAYS\" is not one of DO_NOT_UPGRADE, UPGRADE",
        ),
        (
            "outboundTrafficPolicy: REGISTRY_ONLY",
            "outboundTrafficPolicy: \"REGISTRY_ONLY\" is not a mapping",
        ),
        (
            "outboundTrafficPolicy: {mode: BLOCK}",
            "outboundTrafficPolicy.mode: unknown variant `BLOCK`",
        ),
        (
            "tcpKeepalive: {probes: -1}",
            "tcpKeepalive.probes: invalid value",
        ),
        (
            "extensionProviders: {name: x}",
            "extensionProviders: {\"name\":\"x\"} is not a list of mappings",
        ),
        (
            "- connectTimeout: 1s",
            "a mesh config is a mapping of field names",
        ),
        ("connectTimeout: [1s", "line 1"),
    ];
    for (yaml, expected) in cases {
        let message = error(yaml);
        assert!(
            message.starts_with(expected) || message.contains(expected),
            "{yaml:?}: {message}"
        );
    }
}

#[test]
fn values_istiods_validation_refuses_are_refused() {
    let cases = [
        (
            "connectTimeout: 0s",
            "connectTimeout: 0s must be from 1ms to 1h",
        ),
        (
            "connectTimeout: 2h",
            "connectTimeout: 7200s must be from 1ms to 1h",
        ),
        (
            "connectTimeout: 1500us",
            "connectTimeout: only durations to ms precision",
        ),
        (
            "protocolDetectionTimeout: 1500us",
            "protocolDetectionTimeout: only durations to ms",
        ),
        (
            "proxyListenPort: 0",
            "proxyListenPort: port number 0 must be in the range 1..65535",
        ),
        (
            "proxyInboundListenPort: 70000",
            "proxyInboundListenPort: port number 70000",
        ),
        (
            "localityLbSetting: {distribute: [{from: a, to: {b: 100}}], failover: [{from: a, to: b}]}",
            "localityLbSetting: distribute and failover exclude each other",
        ),
        (
            "localityLbSetting: {distribute: [{from: a, to: {b: 60}}]}",
            "localityLbSetting.distribute[0].to: locality weights add up to 60",
        ),
        (
            "defaultTrafficPolicy: {connectionPool: {}}",
            "defaultTrafficPolicy.connectionPool: connection pool must have at least one field",
        ),
        (
            "defaultTrafficPolicy: {outlierDetection: {maxEjectionPercent: 140}}",
            "defaultTrafficPolicy.outlierDetection.maxEjectionPercent",
        ),
        (
            "defaultHttpRetryPolicy: {attempts: -1}",
            "defaultHttpRetryPolicy.attempts",
        ),
        ("dnsRefreshRate: 0s", "dnsRefreshRate: must be at least 1ms"),
    ];
    for (yaml, expected) in cases {
        let message = error(yaml);
        assert!(message.starts_with(expected), "{yaml:?}: {message}");
    }
}

#[test]
fn mesh_networks_are_checked_and_declared_networks_warned_about() {
    assert_eq!(parse_networks("networks: {}"), Ok(Vec::new()));
    assert_eq!(parse_networks(""), Ok(Vec::new()));
    assert_eq!(
        parse_networks("networks: {n1: {endpoints: [{fromRegistry: k}]}}").map(|w| w.len()),
        Ok(1)
    );
    assert_eq!(
        parse_networks("networks: [a]").map_err(|e| e.to_string()),
        Err("networks: must be a mapping".to_string())
    );
}

#[test]
fn the_root_namespace_flag_is_a_default_the_mesh_config_overrides() {
    let defaults = MeshConfig::with_root_namespace("flag-root");
    let parse_root = |yaml: &str| {
        parse(yaml, &defaults)
            .expect("accepted")
            .config
            .root_namespace
    };
    assert_eq!(parse_root(""), "flag-root");
    assert_eq!(parse_root("rootNamespace: mesh-root"), "mesh-root");
}

#[test]
fn every_field_name_is_known_once() {
    let mut names: Vec<&str> = fields::FIELDS.iter().map(|field| field.name).collect();
    names.sort_unstable();
    let count = names.len();
    names.dedup();
    assert_eq!(names.len(), count, "a field is listed twice");
    // A field rudder honours is listed as supported or partial, and one listed so is honoured:
    // setting it changes the config.
    for field in fields::FIELDS {
        let honoured = matches!(
            field.status,
            fields::Status::Supported | fields::Status::SupportedAs(_) | fields::Status::Partial(_)
        );
        let read = HONOURED.contains(&field.name);
        assert_eq!(
            honoured, read,
            "{}: status and parsing disagree",
            field.name
        );
    }
}

/// The fields `apply` reads.
const HONOURED: [&str; 31] = [
    "enableEnvoyAccessLogService",
    "enableTracing",
    "accessLogFile",
    "accessLogFormat",
    "accessLogEncoding",
    "disableEnvoyListenerLog",
    "defaultProviders",
    "extensionProviders",
    "defaultConfig",
    "serviceEntryVisibility",
    "outboundClusterStatName",
    "inboundClusterStatName",
    "discoverySelectors",
    "tlsDefaults",
    "pathNormalization",
    "proxyListenPort",
    "proxyInboundListenPort",
    "connectTimeout",
    "protocolDetectionTimeout",
    "tcpKeepalive",
    "outboundTrafficPolicy",
    "inboundTrafficPolicy",
    "defaultServiceExportTo",
    "defaultVirtualServiceExportTo",
    "defaultDestinationRuleExportTo",
    "rootNamespace",
    "localityLbSetting",
    "dnsRefreshRate",
    "h2UpgradePolicy",
    "defaultHttpRetryPolicy",
    "defaultTrafficPolicy",
];

#[test]
fn docs_mesh_config_md_is_the_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/mesh-config.md");
    let generated = fields::render();
    if std::env::var_os("RUDDER_UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(path.parent().expect("docs/")).expect("create docs/");
        std::fs::write(&path, &generated).expect("write docs/mesh-config.md");
        return;
    }
    let written = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        written == generated,
        "docs/mesh-config.md differs from src/mesh_config/fields.rs; regenerate it with \
         RUDDER_UPDATE_DOCS=1 cargo test --lib mesh_config"
    );
}

#[test]
fn telemetry_fields_merge_over_istiods_defaults() {
    let defaults = MeshConfig::default().telemetry;
    assert!(defaults.enable_tracing);
    let names: Vec<&str> = defaults
        .extension_providers
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["prometheus", "stackdriver", "envoy"]);

    let parsed = parsed(
        "accessLogFile: /tmp/a.log\naccessLogEncoding: 1\nenableTracing: false\n\
         extensionProviders:\n\
         - {name: envoy, envoyFileAccessLog: {path: /tmp/b.log}}\n\
         - {name: zipkin, zipkin: {service: zipkin.istio-system, port: 9411}}\n\
         - {name: als, envoyHttpAls: {service: als, port: 9000}}\n\
         defaultProviders: {tracing: [zipkin]}\n\
         defaultConfig: {tracing: {sampling: 10}, discoveryAddress: x:15012}\n",
    );
    let telemetry = parsed.config.telemetry;
    assert_eq!(telemetry.access_log_file, "/tmp/a.log");
    assert_eq!(
        telemetry.access_log_encoding,
        telemetry::AccessLogEncoding::Json
    );
    assert!(!telemetry.enable_tracing);
    // `envoy` replaced in place, the others appended, as istiod merges them.
    assert_eq!(telemetry.extension_providers.len(), 5);
    assert!(matches!(
        &telemetry.extension_providers[2].kind,
        telemetry::Provider::EnvoyFileAccessLog(file) if file.path == "/tmp/b.log"
    ));
    assert!(matches!(
        &telemetry.provider("ZIPKIN").map(|p| &p.kind),
        Some(telemetry::Provider::Zipkin(zipkin)) if zipkin.port == 9411
    ));
    assert_eq!(telemetry.default_providers.tracing, ["zipkin"]);
    assert_eq!(telemetry.proxy_tracing.sampling, 10.0);
    // The ALS provider is not carried out: a warning.
    assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
    assert!(parsed.warnings[0].field.starts_with("extensionProviders"));

    assert_eq!(
        error("extensionProviders: [{name: z, zipkin: {port: x}}]"),
        "extensionProviders[0].zipkin.port: invalid type: string \"x\", expected u32"
    );
    assert!(
        error("extensionProviders: [{name: z, zipkin: {}, opentelemetry: {}}]")
            .contains("more than one provider")
    );
}

#[test]
fn discovery_selectors_are_read_and_an_invalid_one_keeps_those_in_force() {
    let selectors = config(
        "discoverySelectors:\n- matchLabels: {env: prod}\n\
         - matchExpressions: [{key: app, operator: In, values: [a, b]}]\n- null\n",
    )
    .discovery_selectors;
    assert_eq!(selectors.len(), 3);
    assert!(
        selectors[2].is_none(),
        "a null selector stays, selecting nothing"
    );
    // Of the wrong type: refused as istiod's decoder refuses it.
    assert!(error("discoverySelectors: [{matchLabels: [x]}]").starts_with("discoverySelectors"));
    // Well-typed but refused by Kubernetes' selector rules: istiod takes the mesh config and its
    // discovery filter keeps what it had.
    let invalid = parsed(
        "connectTimeout: 2s\n\
         discoverySelectors: [{matchExpressions: [{key: app, operator: Within, values: [a]}]}]\n",
    );
    assert!(invalid.keeps_discovery_selectors);
    assert_eq!(invalid.config.connect_timeout, Duration::from_secs(2));
    assert_eq!(
        invalid
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "discoverySelectors[0].matchExpressions[0]: \"Within\" is not a valid label selector \
             operator; invalid discovery selector, the namespaces discovered before stay \
             discovered (as istiod keeps them)"
        ]
    );
    assert!(!parsed("discoverySelectors: []").keeps_discovery_selectors);
}

#[test]
fn stat_name_patterns_are_read() {
    let config = config(
        "inboundClusterStatName: 'in_%SERVICE%_%TARGET_PORT%'\n\
         outboundClusterStatName: 'out_%SERVICE%'\n",
    );
    assert_eq!(
        config.inbound_cluster_stat_name,
        "in_%SERVICE%_%TARGET_PORT%"
    );
    assert_eq!(config.outbound_cluster_stat_name, "out_%SERVICE%");
}

#[test]
fn service_entry_visibility_is_read_and_a_refused_selector_is_reported() {
    let parsed = parsed(
        "serviceEntryVisibility:\n  applyToSidecars: true\n  defaultVisibility: 2\n\
         \x20 policies:\n  - visibility: NONE\n    matchingRules:\n\
         \x20   - namespaceSelector: {matchExpressions: [{key: team, operator: In}]}\n",
    );
    let visibility = parsed.config.service_entry_visibility.expect("read");
    assert!(visibility.apply_to_sidecars);
    assert_eq!(
        visibility.default_visibility,
        crate::model::visibility::Visibility::Namespace
    );
    assert_eq!(
        parsed
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "serviceEntryVisibility.policies[0].matchingRules[0].namespaceSelector.\
             matchExpressions[0]: for 'in', 'notin' operators, values set can't be empty; the \
             rule matches no namespace"
        ]
    );
    assert!(error("serviceEntryVisibility: {defaultVisibility: SOMETIMES}").contains("SOMETIMES"));
}

//! meshConfig: the mesh-wide settings istiod reads from the `istio` ConfigMap (its `mesh` key) or
//! its mesh config file, as far as they shape what proxies get.
//!
//! [`parse`] reads the YAML over istiod's defaults (`mesh.DefaultMeshConfig`) the way istiod's
//! `ApplyMeshConfig` does: a field that is present replaces the default whole (lists and objects
//! too), `null` leaves the default, and an unknown field is ignored (istiod's decoder retries with
//! unknown fields allowed); rudder reports it as a warning so a misspelling is seen. It refuses
//! what istiod refuses: text that is not YAML, a value of the wrong type, and what istiod's
//! `ValidateMeshConfig` rejects. [`fields`] lists every field with what rudder does with it
//! (docs/mesh-config.md is rendered from it), and checks the type of those rudder does not read.
//!
//! Pure: the sources read the text (`source::mesh`), `model::build` keeps the last good
//! [`MeshConfig`] in force when a new one is refused, and translation reads it from the model.

pub mod fields;
pub mod telemetry;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::duration::Duration;
use crate::inputs::yaml::parse_documents;
use crate::istio;
use crate::model::discovery::{self, DiscoverySelector};
use crate::model::sidecar::OutboundPolicy;
use crate::model::visibility::ServiceEntryVisibility;

/// The meshConfig fields rudder honours, with istiod's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshConfig {
    /// Where the mesh-wide default Sidecar and DestinationRules live.
    pub root_namespace: String,
    /// Where sidecars send traffic to destinations outside the registry, unless their Sidecar
    /// says otherwise.
    pub outbound_traffic_policy: OutboundPolicy,
    /// Where inbound clusters send traffic: the workload's own address, or localhost.
    pub inbound_traffic_policy: InboundPolicy,
    /// What `exportTo` means when an object (or a Service's annotation) leaves it out.
    pub default_service_export_to: Vec<String>,
    pub default_virtual_service_export_to: Vec<String>,
    pub default_destination_rule_export_to: Vec<String>,
    /// Every cluster's connect timeout unless a DestinationRule sets `tcp.connectTimeout`.
    pub connect_timeout: Duration,
    /// TCP keepalive of clusters whose connection pool is configured; a DestinationRule's own
    /// keepalive settings override it attribute by attribute.
    pub tcp_keepalive: Option<istio::TcpKeepalive>,
    /// The retry policy of HTTP routes that set none (istiod's built-in policy when unset).
    pub default_http_retry_policy: Option<istio::HttpRetry>,
    /// `h2UpgradePolicy: UPGRADE`: HTTP/1.1 clusters of HTTP ports speak HTTP/2 upstream.
    pub h2_upgrade: bool,
    /// Locality load balancing for DestinationRules that set none; `None` turns it off.
    pub locality_lb_setting: Option<istio::LocalityLbSetting>,
    /// How often Envoy re-resolves DNS clusters (it honours the records' TTL too).
    pub dns_refresh_rate: Duration,
    /// How long protocol sniffing waits for the first bytes; 0 waits as long as it takes.
    pub protocol_detection_timeout: Duration,
    /// The `virtualOutbound` listener's port.
    pub proxy_listen_port: u16,
    /// The `virtualInbound` listener's port.
    pub proxy_inbound_listen_port: u16,
    /// Connection pool and outlier detection for clusters whose DestinationRule sets none.
    pub default_traffic_policy: DefaultTrafficPolicy,
    /// How HTTP connection managers normalize request paths.
    pub path_normalization: PathNormalization,
    /// TLS parameters for gateway servers and DestinationRule TLS (not ISTIO_MUTUAL).
    pub tls_defaults: TlsDefaults,
    /// The pattern of outbound clusters' stat names (`%SERVICE%`, `%SERVICE_PORT%`, ...);
    /// empty: Envoy names stats after the cluster.
    pub outbound_cluster_stat_name: String,
    /// Access logs and tracing (`model::telemetry` resolves what a proxy gets).
    pub telemetry: telemetry::TelemetryConfig,
    /// The same for inbound clusters and TCP proxies (`%TARGET_PORT%` is the port's own).
    pub inbound_cluster_stat_name: String,
    /// Which namespaces' Kubernetes objects are read (`model::discovery`); empty: all of them.
    pub discovery_selectors: Vec<DiscoverySelector>,
    /// A cap on ServiceEntries' `exportTo` (`model::visibility`); `None`: no cap.
    pub service_entry_visibility: Option<ServiceEntryVisibility>,
}

/// `tlsDefaults`: what gateway servers (SIMPLE, MUTUAL) start from before their own settings,
/// and the curves and cipher suites of DestinationRule TLS (istiod applies the minimum version
/// to servers only).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TlsDefaults {
    pub min_protocol_version: MinTlsVersion,
    pub ecdh_curves: Vec<String>,
    pub cipher_suites: Vec<String>,
}

/// `TLSConfig.minProtocolVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MinTlsVersion {
    /// Envoy's own choice.
    #[default]
    TlsAuto,
    #[serde(rename = "TLSV1_2")]
    TlsV1_2,
    #[serde(rename = "TLSV1_3")]
    TlsV1_3,
}

/// `pathNormalization.normalization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathNormalization {
    /// RFC 3986 normalization (`DEFAULT` is this too).
    #[default]
    #[serde(alias = "DEFAULT")]
    Base,
    /// Paths as they come.
    None,
    /// BASE, and consecutive slashes merged.
    MergeSlashes,
    /// MERGE_SLASHES, after decoding escaped slashes (`%2F`, `%5C`).
    DecodeAndMergeSlashes,
}

/// `inboundTrafficPolicy.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InboundPolicy {
    /// To the address the connection was for (the workload's own).
    #[default]
    Passthrough,
    /// To the workload on localhost.
    Localhost,
}

/// `defaultTrafficPolicy`: the baseline a DestinationRule replaces part by part.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DefaultTrafficPolicy {
    pub connection_pool: Option<istio::ConnectionPoolSettings>,
    pub outlier_detection: Option<istio::OutlierDetection>,
}

impl Default for MeshConfig {
    /// istiod's `mesh.DefaultMeshConfig()`, for the fields rudder reads.
    fn default() -> Self {
        let public = || vec!["*".to_string()];
        MeshConfig {
            root_namespace: crate::model::DEFAULT_ROOT_NAMESPACE.to_string(),
            outbound_traffic_policy: OutboundPolicy::AllowAny,
            inbound_traffic_policy: InboundPolicy::Passthrough,
            default_service_export_to: public(),
            default_virtual_service_export_to: public(),
            default_destination_rule_export_to: public(),
            connect_timeout: Duration::from_secs(10),
            tcp_keepalive: None,
            default_http_retry_policy: None,
            h2_upgrade: false,
            locality_lb_setting: Some(istio::LocalityLbSetting {
                enabled: Some(true),
                ..Default::default()
            }),
            dns_refresh_rate: Duration::from_secs(60),
            protocol_detection_timeout: Duration::default(),
            proxy_listen_port: 15001,
            proxy_inbound_listen_port: 15006,
            default_traffic_policy: DefaultTrafficPolicy::default(),
            path_normalization: PathNormalization::Base,
            tls_defaults: TlsDefaults::default(),
            outbound_cluster_stat_name: String::new(),
            telemetry: telemetry::TelemetryConfig::default(),
            inbound_cluster_stat_name: String::new(),
            discovery_selectors: Vec::new(),
            service_entry_visibility: None,
        }
    }
}

impl MeshConfig {
    /// istiod's defaults with another root namespace (`--root-namespace`), which a mesh config
    /// that sets `rootNamespace` still overrides.
    pub fn with_root_namespace(root_namespace: &str) -> Self {
        MeshConfig {
            root_namespace: root_namespace.to_string(),
            ..MeshConfig::default()
        }
    }
}

/// What is wrong with a mesh config: the field (dotted path; empty for the text as a whole) and
/// why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if field.is_empty() { String::new() } else { format!("{field}: ") })]
pub struct MeshConfigError {
    pub field: String,
    pub message: String,
}

fn problem(field: impl Into<String>, message: impl Into<String>) -> MeshConfigError {
    MeshConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// A mesh config istiod would accept, with what it ignores.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub config: MeshConfig,
    /// Unknown fields (ignored, as istiod does) and fields rudder does not carry out.
    pub warnings: Vec<MeshConfigError>,
    /// `discoverySelectors` holds a selector Kubernetes refuses (reported among the warnings):
    /// istiod accepts the mesh config but its discovery filter keeps the selectors it had, so
    /// `config` holds the defaults' and the caller puts back those last in force.
    pub keeps_discovery_selectors: bool,
}

/// Reads a mesh config (the `mesh` key's YAML) over `defaults`; the first problem istiod would
/// refuse it for is the error.
pub fn parse(text: &str, defaults: &MeshConfig) -> Result<Parsed, MeshConfigError> {
    let fields = top_level_fields(text)?;
    let mut config = defaults.clone();
    let mut warnings = Vec::new();
    for (name, value) in fields {
        let Some(field) = fields::field(&name) else {
            warnings.push(problem(
                &name,
                "unknown field, ignored (as istiod ignores it)",
            ));
            continue;
        };
        // istiod's decoder leaves a field whose value is null as it was.
        if value.is_null() {
            continue;
        }
        field.shape.check(field.name, &value)?;
        let value = field.shape.by_name(value);
        if let Some(message) = field.warning(&value) {
            warnings.push(problem(field.name, message));
        }
        apply(&mut config, field.name, value)?;
    }
    validate(&config)?;
    warnings.extend(invalid_visibility_selectors(&config));
    let keeps_discovery_selectors = match invalid_discovery_selector(&config) {
        Some(error) => {
            warnings.push(error);
            config.discovery_selectors = defaults.discovery_selectors.clone();
            true
        }
        None => false,
    };
    Ok(Parsed {
        config,
        warnings,
        keeps_discovery_selectors,
    })
}

/// The fields of the YAML mapping; empty text (or `{}`) is a mesh config of defaults.
fn top_level_fields(text: &str) -> Result<Map<String, Value>, MeshConfigError> {
    let documents = parse_documents(text).map_err(|error| problem("", error.to_string()))?;
    let mut documents = documents.into_iter();
    let value = documents.next().map(|document| document.value);
    if documents.next().is_some() {
        return Err(problem(
            "",
            "more than one YAML document; a mesh config is one mapping",
        ));
    }
    match value {
        None => Ok(Map::new()),
        Some(Value::Object(fields)) => Ok(fields),
        Some(_) => Err(problem("", "a mesh config is a mapping of field names")),
    }
}

/// Decodes one field's value, naming the nested field that does not fit.
fn typed<T: DeserializeOwned>(name: &str, value: Value) -> Result<T, MeshConfigError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." {
            name.to_string()
        } else {
            format!("{name}.{path}")
        };
        problem(field, error.into_inner().to_string())
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct OutboundTrafficPolicy {
    mode: Option<OutboundMode>,
}

/// istiod's enum; REGISTRY_ONLY is its zero value, so `outboundTrafficPolicy: {}` means it.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum OutboundMode {
    RegistryOnly,
    AllowAny,
    AllowAnyDynamicDns,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct InboundTrafficPolicy {
    mode: Option<InboundMode>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum InboundMode {
    Passthrough,
    Localhost,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum H2UpgradePolicy {
    DoNotUpgrade,
    Upgrade,
}

/// Sets one honoured field; fields rudder does not read were type-checked by the caller only.
fn apply(config: &mut MeshConfig, name: &str, value: Value) -> Result<(), MeshConfigError> {
    if telemetry::TELEMETRY_FIELDS.contains(&name) {
        return telemetry::apply(&mut config.telemetry, name, value);
    }
    match name {
        "rootNamespace" => config.root_namespace = typed(name, value)?,
        "outboundTrafficPolicy" => {
            let policy: OutboundTrafficPolicy = typed(name, value)?;
            config.outbound_traffic_policy = match policy.mode {
                None | Some(OutboundMode::RegistryOnly) => OutboundPolicy::RegistryOnly,
                // The dynamic DNS mode is reported as not carried out (see `fields`); unknown
                // destinations still pass, as they would with it.
                Some(OutboundMode::AllowAny | OutboundMode::AllowAnyDynamicDns) => {
                    OutboundPolicy::AllowAny
                }
            };
        }
        "inboundTrafficPolicy" => {
            let policy: InboundTrafficPolicy = typed(name, value)?;
            config.inbound_traffic_policy = match policy.mode {
                None | Some(InboundMode::Passthrough) => InboundPolicy::Passthrough,
                Some(InboundMode::Localhost) => InboundPolicy::Localhost,
            };
        }
        "defaultServiceExportTo" => config.default_service_export_to = typed(name, value)?,
        "defaultVirtualServiceExportTo" => {
            config.default_virtual_service_export_to = typed(name, value)?;
        }
        "defaultDestinationRuleExportTo" => {
            config.default_destination_rule_export_to = typed(name, value)?;
        }
        "connectTimeout" => config.connect_timeout = typed(name, value)?,
        "tcpKeepalive" => config.tcp_keepalive = Some(typed(name, value)?),
        "defaultHttpRetryPolicy" => config.default_http_retry_policy = Some(typed(name, value)?),
        "h2UpgradePolicy" => {
            config.h2_upgrade = typed::<H2UpgradePolicy>(name, value)? == H2UpgradePolicy::Upgrade;
        }
        "localityLbSetting" => config.locality_lb_setting = Some(typed(name, value)?),
        "dnsRefreshRate" => config.dns_refresh_rate = typed(name, value)?,
        "protocolDetectionTimeout" => config.protocol_detection_timeout = typed(name, value)?,
        "proxyListenPort" => config.proxy_listen_port = port(name, &value)?,
        "proxyInboundListenPort" => config.proxy_inbound_listen_port = port(name, &value)?,
        "defaultTrafficPolicy" => config.default_traffic_policy = typed(name, value)?,
        "tlsDefaults" => config.tls_defaults = typed(name, value)?,
        "outboundClusterStatName" => config.outbound_cluster_stat_name = typed(name, value)?,
        "inboundClusterStatName" => config.inbound_cluster_stat_name = typed(name, value)?,
        "discoverySelectors" => config.discovery_selectors = typed(name, value)?,
        "serviceEntryVisibility" => config.service_entry_visibility = Some(typed(name, value)?),
        "pathNormalization" => {
            #[derive(Deserialize, Default)]
            #[serde(default)]
            struct Paths {
                normalization: PathNormalization,
            }
            config.path_normalization = typed::<Paths>(name, value)?.normalization;
        }
        _ => {}
    }
    Ok(())
}

/// The first `discoverySelectors` entry Kubernetes' `labels.NewRequirement` refuses, as the
/// warning istiod's discovery filter logs for it (it then keeps the namespaces it had).
fn invalid_discovery_selector(config: &MeshConfig) -> Option<MeshConfigError> {
    config
        .discovery_selectors
        .iter()
        .enumerate()
        .find_map(|(index, selector)| {
            let (field, message) = discovery::validate(selector.as_ref()?).err()?;
            Some(problem(
                format!("discoverySelectors[{index}].{field}"),
                format!(
                    "{message}; invalid discovery selector, the namespaces discovered before \
                     stay discovered (as istiod keeps them)"
                ),
            ))
        })
}

/// The `serviceEntryVisibility` rules whose selector Kubernetes refuses: they match no
/// namespace (istiod logs them, and keeps the visibility config it had before, if any).
fn invalid_visibility_selectors(config: &MeshConfig) -> Vec<MeshConfigError> {
    let policies = config
        .service_entry_visibility
        .iter()
        .flat_map(|visibility| visibility.policies.iter().enumerate());
    let mut warnings = Vec::new();
    for (p, policy) in policies {
        for (r, rule) in policy.matching_rules.iter().enumerate() {
            let Some(selector) = &rule.namespace_selector else {
                continue;
            };
            if let Err((field, message)) = discovery::validate(selector) {
                warnings.push(problem(
                    format!(
                        "serviceEntryVisibility.policies[{p}].matchingRules[{r}].\
                         namespaceSelector.{field}"
                    ),
                    format!("{message}; the rule matches no namespace"),
                ));
            }
        }
    }
    warnings
}

/// A listener port: istiod's `ValidatePort` range, 1 to 65535 (istiod checks only
/// `proxyListenPort`; 0 for the inbound one would give a listener Envoy refuses).
fn port(name: &str, value: &Value) -> Result<u16, MeshConfigError> {
    let number = fields::integer(value).ok_or_else(|| problem(name, "must be an integer"))?;
    u16::try_from(number)
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| {
            problem(
                name,
                format!("port number {number} must be in the range 1..65535"),
            )
        })
}

/// What istiod's `ValidateMeshConfig` refuses among the fields rudder reads, and what Envoy
/// would refuse of them.
fn validate(config: &MeshConfig) -> Result<(), MeshConfigError> {
    let timeout = config.connect_timeout.0;
    if timeout < std::time::Duration::from_millis(1)
        || timeout > std::time::Duration::from_secs(3600)
    {
        return Err(problem(
            "connectTimeout",
            format!(
                "{config_timeout} must be from 1ms to 1h",
                config_timeout = config.connect_timeout
            ),
        ));
    }
    for (name, duration) in [
        ("connectTimeout", config.connect_timeout),
        (
            "protocolDetectionTimeout",
            config.protocol_detection_timeout,
        ),
    ] {
        if duration.0.subsec_nanos() % 1_000_000 != 0 {
            return Err(problem(
                name,
                "only durations to ms precision are supported",
            ));
        }
    }
    if config.dns_refresh_rate.0 < std::time::Duration::from_millis(1) {
        return Err(problem(
            "dnsRefreshRate",
            "must be at least 1ms (Envoy refuses a zero refresh rate)",
        ));
    }
    let field_error = |error: crate::inputs::FieldError| problem(error.field, error.message);
    if let Some(setting) = &config.locality_lb_setting {
        crate::model::validate_locality_lb_setting(setting, "localityLbSetting")
            .map_err(field_error)?;
    }
    if let Some(retries) = &config.default_http_retry_policy {
        crate::model::validate_retries(retries, "defaultHttpRetryPolicy").map_err(field_error)?;
    }
    if let Some(keepalive) = &config.tcp_keepalive {
        for (name, duration) in [("time", keepalive.time), ("interval", keepalive.interval)] {
            if duration.is_some_and(|d| d.0 < std::time::Duration::from_millis(1)) {
                return Err(problem(
                    format!("tcpKeepalive.{name}"),
                    "duration must be greater than 1ms",
                ));
            }
        }
    }
    let baseline = &config.default_traffic_policy;
    if let Some(pool) = &baseline.connection_pool {
        if pool.http.is_none() && pool.tcp.is_none() {
            return Err(problem(
                "defaultTrafficPolicy.connectionPool",
                "connection pool must have at least one field",
            ));
        }
        crate::model::validate_connection_pool(pool, "defaultTrafficPolicy.connectionPool")
            .map_err(field_error)?;
    }
    if let Some(outlier) = &baseline.outlier_detection {
        crate::model::validate_outlier_detection(outlier, "defaultTrafficPolicy.outlierDetection")
            .map_err(field_error)?;
    }
    Ok(())
}

/// meshNetworks (the `meshNetworks` key): the networks of a multi-network mesh. rudder serves
/// one network, so it only checks the text is what istiod accepts (a mapping whose `networks`
/// is a mapping) and warns when networks are declared.
pub fn parse_networks(text: &str) -> Result<Vec<MeshConfigError>, MeshConfigError> {
    let fields = top_level_fields(text)?;
    let mut warnings = Vec::new();
    for (name, value) in fields {
        match (name.as_str(), &value) {
            (_, Value::Null) => {}
            ("networks", Value::Object(networks)) if networks.is_empty() => {}
            ("networks", Value::Object(_)) => warnings.push(problem(
                "networks",
                "not carried out: rudder serves one network (see docs/mesh-config.md)",
            )),
            ("networks", _) => return Err(problem("networks", "must be a mapping")),
            _ => warnings.push(problem(
                name,
                "unknown field, ignored (as istiod ignores it)",
            )),
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests;

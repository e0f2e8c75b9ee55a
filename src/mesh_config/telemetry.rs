//! The meshConfig fields that shape access logs and tracing: `accessLogFile`, `accessLogFormat`,
//! `accessLogEncoding`, `enableEnvoyAccessLogService`, `disableEnvoyListenerLog`,
//! `enableTracing`, `extensionProviders`, `defaultProviders` and the tracing part of
//! `defaultConfig` (istiod reads a stock Envoy's ProxyConfig from there, as it has no
//! `PROXY_CONFIG` metadata).
//!
//! Parsing only, over istiod's defaults (`mesh.DefaultMeshConfig`): `extensionProviders` is
//! merged by name into the built-in providers (`prometheus`, `stackdriver`, `envoy`) and
//! `defaultProviders` into the defaults, as istiod's `ApplyMeshConfig` does. What a proxy gets
//! from these settings is resolved in `model::telemetry`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{MeshConfigError, problem, typed};
use crate::duration::Duration;

/// The telemetry fields, with istiod's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    pub enable_tracing: bool,
    /// Empty: no access log (unless `defaultProviders.accessLogging` names one).
    pub access_log_file: String,
    /// Empty: istiod's default format for the encoding.
    pub access_log_format: String,
    pub access_log_encoding: AccessLogEncoding,
    pub enable_envoy_access_log_service: bool,
    /// No listener-level access log (connections no filter chain takes).
    pub disable_envoy_listener_log: bool,
    /// In istiod's order: the built-in ones first, then the mesh config's new ones.
    pub extension_providers: Vec<ExtensionProvider>,
    pub default_providers: DefaultProviders,
    /// `defaultConfig.tracing`: sampling and tags of HCM tracing.
    pub proxy_tracing: ProxyTracing,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        let builtin = |name: &str, kind: Provider| ExtensionProvider {
            name: name.to_string(),
            kind,
        };
        TelemetryConfig {
            enable_tracing: true,
            access_log_file: String::new(),
            access_log_format: String::new(),
            access_log_encoding: AccessLogEncoding::Text,
            enable_envoy_access_log_service: false,
            disable_envoy_listener_log: false,
            extension_providers: vec![
                builtin("prometheus", Provider::Other("prometheus".to_string())),
                builtin("stackdriver", Provider::Other("stackdriver".to_string())),
                builtin(
                    "envoy",
                    Provider::EnvoyFileAccessLog(FileAccessLogProvider {
                        path: "/dev/stdout".to_string(),
                        ..Default::default()
                    }),
                ),
            ],
            default_providers: DefaultProviders::default(),
            proxy_tracing: ProxyTracing::default(),
        }
    }
}

/// `accessLogEncoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessLogEncoding {
    #[default]
    Text,
    Json,
}

/// `defaultProviders`: the providers used where no Telemetry names one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DefaultProviders {
    pub access_logging: Vec<String>,
    pub tracing: Vec<String>,
    /// Telemetry metrics (Wasm/stats filters a stock Envoy lacks): type-checked only.
    pub metrics: Vec<String>,
}

/// One of `extensionProviders`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtensionProvider {
    pub name: String,
    pub kind: Provider,
}

/// What an extension provider is: the kinds rudder carries out, and the others by their field
/// name (`envoyHttpAls`, `datadog`, ...).
#[derive(Debug, Clone, PartialEq)]
pub enum Provider {
    EnvoyFileAccessLog(FileAccessLogProvider),
    Zipkin(ZipkinProvider),
    OpenTelemetry(OpenTelemetryProvider),
    Other(String),
}

/// `envoyFileAccessLog`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FileAccessLogProvider {
    pub path: String,
    pub log_format: Option<LogFormat>,
    pub omit_empty_values: bool,
}

/// `envoyFileAccessLog.logFormat`: text, or JSON labels.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LogFormat {
    pub text: Option<String>,
    pub labels: Option<Map<String, Value>>,
}

/// `zipkin`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ZipkinProvider {
    pub service: String,
    pub port: u32,
    pub max_tag_length: u32,
    #[serde(rename = "enable64bitTraceId")]
    pub enable_64bit_trace_id: bool,
    pub path: String,
    pub timeout: Option<Duration>,
    pub headers: Vec<HttpHeader>,
}

/// `opentelemetry` (tracing).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OpenTelemetryProvider {
    pub service: String,
    pub port: u32,
    pub max_tag_length: u32,
    /// OTLP over HTTP; without it, over gRPC.
    pub http: Option<OtlpHttp>,
    pub grpc: Option<OtlpGrpc>,
    // `resourceDetectors`, `dynatraceSampler` and `serviceAttributeEnrichment` are not carried
    // out (reported by `mesh_config::fields`).
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OtlpHttp {
    pub path: String,
    pub timeout: Option<Duration>,
    pub headers: Vec<HttpHeader>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OtlpGrpc {
    pub timeout: Option<Duration>,
    pub initial_metadata: Vec<HttpHeader>,
}

/// A header a provider sends: a value, or (istiod only) one read from istiod's environment.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpHeader {
    pub name: String,
    pub value: Option<String>,
    pub env_name: Option<String>,
}

/// `defaultConfig.tracing`, the parts istiod puts in the connection manager.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyTracing {
    /// Percent of requests sampled; 0 (unset): istiod's `PILOT_TRACE_SAMPLING`, 1.
    pub sampling: f64,
    pub max_path_tag_length: u32,
    pub custom_tags: BTreeMap<String, CustomTag>,
    pub enable_istio_tags: Option<bool>,
}

/// A custom tag: one of a literal, an environment variable or a request header.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CustomTag {
    pub literal: Option<TagLiteral>,
    pub environment: Option<TagSource>,
    pub header: Option<TagSource>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TagLiteral {
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TagSource {
    pub name: String,
    pub default_value: String,
}

/// The provider kinds of istio.io/api's `ExtensionProvider` oneof.
const PROVIDER_KINDS: &[&str] = &[
    "envoyExtAuthzHttp",
    "envoyExtAuthzGrpc",
    "zipkin",
    "lightstep",
    "datadog",
    "stackdriver",
    "opencensus",
    "skywalking",
    "opentelemetry",
    "prometheus",
    "envoyFileAccessLog",
    "envoyHttpAls",
    "envoyTcpAls",
    "envoyOtelAls",
    "sds",
];

/// The fields [`apply`] sets.
pub(super) const TELEMETRY_FIELDS: &[&str] = &[
    "enableTracing",
    "accessLogFile",
    "accessLogFormat",
    "accessLogEncoding",
    "enableEnvoyAccessLogService",
    "disableEnvoyListenerLog",
    "defaultProviders",
    "extensionProviders",
    "defaultConfig",
];

/// Sets one of [`TELEMETRY_FIELDS`].
pub(super) fn apply(
    config: &mut TelemetryConfig,
    name: &str,
    value: Value,
) -> Result<(), MeshConfigError> {
    match name {
        "enableTracing" => config.enable_tracing = typed(name, value)?,
        "accessLogFile" => config.access_log_file = typed(name, value)?,
        "accessLogFormat" => config.access_log_format = typed(name, value)?,
        "accessLogEncoding" => config.access_log_encoding = typed(name, value)?,
        "enableEnvoyAccessLogService" => {
            config.enable_envoy_access_log_service = typed(name, value)?;
        }
        "disableEnvoyListenerLog" => config.disable_envoy_listener_log = typed(name, value)?,
        // istiod merges it into its default, which is empty.
        "defaultProviders" => config.default_providers = typed(name, value)?,
        "extensionProviders" => {
            let Value::Array(items) = value else {
                return Err(problem(name, "must be a list"));
            };
            for (index, item) in items.into_iter().enumerate() {
                let field = format!("{name}[{index}]");
                let provider = extension_provider(&field, item)?;
                // A provider named like an earlier one replaces its kind, as in istiod.
                match config
                    .extension_providers
                    .iter_mut()
                    .find(|known| known.name == provider.name)
                {
                    Some(known) => known.kind = provider.kind,
                    None => config.extension_providers.push(provider),
                }
            }
        }
        "defaultConfig" => {
            #[derive(Deserialize, Default)]
            #[serde(default)]
            struct ProxyConfig {
                tracing: Option<ProxyTracing>,
            }
            if let Some(tracing) = typed::<ProxyConfig>(name, value)?.tracing {
                config.proxy_tracing = tracing;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One `extensionProviders` entry: its name and the one provider field it sets.
fn extension_provider(field: &str, value: Value) -> Result<ExtensionProvider, MeshConfigError> {
    let Value::Object(mut fields) = value else {
        return Err(problem(field, "must be a mapping"));
    };
    let name = match fields.remove("name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(name)) => name,
        Some(other) => {
            return Err(problem(
                format!("{field}.name"),
                format!("{other} is not a string"),
            ));
        }
    };
    let mut kind = Provider::Other(String::new());
    for (key, value) in fields {
        if value.is_null() {
            continue;
        }
        let Some(known) = PROVIDER_KINDS.iter().find(|k| **k == key) else {
            // istiod's decoder ignores unknown fields (its lenient retry).
            continue;
        };
        if !matches!(&kind, Provider::Other(k) if k.is_empty()) {
            return Err(problem(
                field,
                "sets more than one provider (they are a oneof)",
            ));
        }
        let at = format!("{field}.{key}");
        kind = match *known {
            "envoyFileAccessLog" => Provider::EnvoyFileAccessLog(typed(&at, value)?),
            "zipkin" => Provider::Zipkin(typed(&at, value)?),
            "opentelemetry" => Provider::OpenTelemetry(typed(&at, value)?),
            other => {
                if !value.is_object() {
                    return Err(problem(at, "must be a mapping"));
                }
                Provider::Other(other.to_string())
            }
        };
    }
    Ok(ExtensionProvider { name, kind })
}

impl TelemetryConfig {
    /// The provider named `name` (istiod compares names ignoring case).
    pub fn provider(&self, name: &str) -> Option<&ExtensionProvider> {
        self.extension_providers
            .iter()
            .find(|provider| provider.name.eq_ignore_ascii_case(name))
    }
}

//! Telemetry as a proxy gets it: which access logs its listeners write and how its connection
//! managers trace, resolved from the mesh config the way istiod's `Telemetries.AccessLogging`
//! and `Tracing` resolve them when no Telemetry object applies (`defaultProviders` first, then
//! the legacy fields `accessLogFile` and `enableTracing`), with the tracing providers' services
//! looked up in the registry (istiod's `LookupCluster`).
//!
//! Plain values, no Envoy types: `translate::telemetry` turns them into Envoy config. The
//! Telemetry kind, once translated, refines these per workload; translation asks
//! [`Telemetry::for_proxy`] so that it does not need to change then.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::Service;
use crate::duration::Duration;
use crate::mesh_config::telemetry::{
    AccessLogEncoding, CustomTag, HttpHeader, Provider, TelemetryConfig,
};
use crate::proxy::Proxy;

/// istiod's text format when neither `accessLogFormat` nor a provider's format says otherwise
/// (`model.EnvoyTextLogFormat`).
pub const DEFAULT_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% \
    %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% \
    %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \
    \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% \
    %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \
    \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% \
    %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% \
    %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// istiod's JSON labels when `accessLogFormat` (JSON encoding) or a provider's labels are empty
/// (`model.EnvoyJSONLogFormatIstio`).
pub const DEFAULT_JSON_LABELS: &[(&str, &str)] = &[
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
];

/// Access logs and tracing for every proxy (the mesh config's); see [`Telemetry::for_proxy`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Telemetry {
    /// Written by every connection manager and TCP proxy, in this order.
    pub access_logs: Vec<AccessLog>,
    /// Also log to the gRPC access log service of the bootstrap (`enableEnvoyAccessLogService`,
    /// which istiod honours only when no default provider logs).
    pub access_log_service: bool,
    /// The same logs also on the virtual listeners, inbound and gateway listeners, for
    /// connections no filter chain takes (`disableEnvoyListenerLog: false`).
    pub listener_access_logs: bool,
    /// `None`: connection managers do not trace.
    pub tracing: Option<Tracing>,
}

/// A file access log.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLog {
    pub path: String,
    pub format: LogFormat,
    pub omit_empty_values: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LogFormat {
    /// A format string ending in a newline.
    Text(String),
    /// Labels to format operators (or nested values).
    Json(Map<String, Value>),
}

/// How connection managers trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// Percent of requests traced.
    pub random_sampling: f64,
    /// `istio.canonical_service` and the other tags istiod adds about the proxy.
    pub istio_tags: bool,
    pub custom_tags: BTreeMap<String, CustomTag>,
    pub max_path_tag_length: Option<u32>,
    /// `None`: Envoy's bootstrap tracer, if any (istio-agent writes one; a stock Envoy has
    /// none, so spans go nowhere).
    pub provider: Option<TracingProvider>,
}

/// Where spans go: a provider of `extensionProviders` whose service was found.
#[derive(Debug, Clone, PartialEq)]
pub struct TracingProvider {
    /// The service's host name (the zipkin URI's host, the gRPC authority).
    pub hostname: String,
    /// `outbound|PORT||HOST`.
    pub cluster: String,
    pub max_tag_length: u32,
    pub kind: TracerKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TracerKind {
    Zipkin {
        path: String,
        trace_id_128bit: bool,
        timeout: Option<Duration>,
        headers: Vec<(String, String)>,
    },
    OpenTelemetryHttp {
        path: String,
        timeout: Option<Duration>,
        headers: Vec<(String, String)>,
    },
    OpenTelemetryGrpc {
        timeout: Option<Duration>,
        initial_metadata: Vec<(String, String)>,
    },
}

impl Telemetry {
    /// What `proxy` gets. The mesh config's settings for every proxy until Telemetry objects
    /// (which select workloads) are read.
    pub fn for_proxy(&self, _proxy: &Proxy) -> &Telemetry {
        self
    }
}

/// Resolves the mesh config's telemetry against the registry's services.
pub fn resolve(config: &TelemetryConfig, services: &BTreeMap<String, Service>) -> Telemetry {
    let from_providers = provider_access_logs(config);
    let legacy = from_providers.is_empty();
    Telemetry {
        access_logs: if legacy {
            mesh_config_logs(config)
        } else {
            from_providers
        },
        access_log_service: legacy && config.enable_envoy_access_log_service,
        listener_access_logs: !config.disable_envoy_listener_log,
        tracing: tracing(config, services),
    }
}

/// istiod's `AccessLogging`: the default providers that are file access logs, by name (gRPC
/// and OpenTelemetry access log providers are not carried out, see `mesh_config::fields`).
fn provider_access_logs(config: &TelemetryConfig) -> Vec<AccessLog> {
    let mut named: Vec<(&str, AccessLog)> = Vec::new();
    for name in &config.default_providers.access_logging {
        let Some(provider) = config.provider(name) else {
            continue;
        };
        if named.iter().any(|(known, _)| *known == provider.name) {
            continue;
        }
        if let Provider::EnvoyFileAccessLog(file) = &provider.kind {
            let log = match &file.log_format {
                // The built-in `envoy` provider without a format of its own takes the mesh
                // config's (istiod's `telemetryAccessLog`).
                None if provider.name == "envoy" && !file.omit_empty_values => {
                    mesh_config_log(&file.path, config)
                }
                format => AccessLog {
                    path: if file.path.is_empty() {
                        "/dev/stdout".to_string()
                    } else {
                        file.path.clone()
                    },
                    format: match format.as_ref().map(|f| (&f.text, &f.labels)) {
                        Some((None, Some(labels))) if !labels.is_empty() => {
                            LogFormat::Json(labels.clone())
                        }
                        Some((None, Some(_))) => LogFormat::Json(default_json_labels()),
                        Some((Some(text), _)) => LogFormat::Text(text_format(text)),
                        _ => LogFormat::Text(text_format("")),
                    },
                    omit_empty_values: file.omit_empty_values,
                },
            };
            named.push((&provider.name, log));
        }
    }
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, log)| log).collect()
}

/// Without default providers: `accessLogFile`, if set.
fn mesh_config_logs(config: &TelemetryConfig) -> Vec<AccessLog> {
    if config.access_log_file.is_empty() {
        return Vec::new();
    }
    vec![mesh_config_log(&config.access_log_file, config)]
}

/// istiod's `FileAccessLogFromMeshConfig`: `accessLogFormat` in `accessLogEncoding`. A JSON
/// format that does not parse as an object falls back to the default labels, as in istiod.
fn mesh_config_log(path: &str, config: &TelemetryConfig) -> AccessLog {
    let format = match config.access_log_encoding {
        AccessLogEncoding::Text => LogFormat::Text(text_format(&config.access_log_format)),
        AccessLogEncoding::Json => LogFormat::Json(
            serde_json::from_str::<Map<String, Value>>(&config.access_log_format)
                .ok()
                .filter(|_| !config.access_log_format.is_empty())
                .unwrap_or_else(default_json_labels),
        ),
    };
    AccessLog {
        path: path.to_string(),
        format,
        omit_empty_values: false,
    }
}

/// A text format as istiod writes it: the default when empty, ending in a newline.
fn text_format(format: &str) -> String {
    if format.is_empty() {
        DEFAULT_TEXT_FORMAT.to_string()
    } else if format.ends_with('\n') {
        format.to_string()
    } else {
        format!("{format}\n")
    }
}

fn default_json_labels() -> Map<String, Value> {
    DEFAULT_JSON_LABELS
        .iter()
        .map(|(label, operator)| (label.to_string(), Value::String(operator.to_string())))
        .collect()
}

/// istiod's `configureTracingFromTelemetry` without Telemetry objects: with a default tracing
/// provider, that provider (no tracing when it is missing, cannot trace or its service is not
/// found); without one, `enableTracing` with the bootstrap's tracer.
fn tracing(config: &TelemetryConfig, services: &BTreeMap<String, Service>) -> Option<Tracing> {
    let proxy = &config.proxy_tracing;
    let mut tracing = Tracing {
        // istiod's PILOT_TRACE_SAMPLING default, unless defaultConfig.tracing.sampling is set
        // (more than 100 means 1).
        random_sampling: match proxy.sampling {
            s if s == 0.0 || s > 100.0 => 1.0,
            s => s,
        },
        istio_tags: proxy.enable_istio_tags.unwrap_or(true),
        custom_tags: proxy.custom_tags.clone(),
        max_path_tag_length: (proxy.max_path_tag_length != 0).then_some(proxy.max_path_tag_length),
        provider: None,
    };
    // istiod uses the first default provider only.
    let Some(name) = config.default_providers.tracing.first() else {
        return config.enable_tracing.then_some(tracing);
    };
    let provider = config.provider(name)?;
    let (service, port, max_tag_length, kind) = match &provider.kind {
        Provider::Zipkin(zipkin) => (
            &zipkin.service,
            zipkin.port,
            zipkin.max_tag_length,
            TracerKind::Zipkin {
                path: if zipkin.path.is_empty() {
                    "/api/v2/spans".to_string()
                } else {
                    zipkin.path.clone()
                },
                trace_id_128bit: !zipkin.enable_64bit_trace_id,
                timeout: zipkin.timeout,
                headers: header_values(&zipkin.headers),
            },
        ),
        Provider::OpenTelemetry(otel) => (
            &otel.service,
            otel.port,
            otel.max_tag_length,
            match &otel.http {
                Some(http) => TracerKind::OpenTelemetryHttp {
                    path: http.path.clone(),
                    timeout: http.timeout,
                    headers: header_values(&http.headers),
                },
                None => TracerKind::OpenTelemetryGrpc {
                    timeout: otel.grpc.as_ref().and_then(|grpc| grpc.timeout),
                    initial_metadata: otel
                        .grpc
                        .as_ref()
                        .map(|grpc| header_values(&grpc.initial_metadata))
                        .unwrap_or_default(),
                },
            },
        ),
        // Providers that cannot trace (or that rudder does not carry out): istiod warns and
        // leaves tracing out.
        _ => return None,
    };
    let hostname = lookup_service(services, service)?;
    let port = u16::try_from(port).unwrap_or(0);
    tracing.provider = Some(TracingProvider {
        cluster: crate::translate::outbound_cluster_name(port, "", &hostname),
        hostname,
        max_tag_length,
        kind,
    });
    Some(tracing)
}

/// istiod's header values; those read from istiod's environment (`envName`) are empty here, as
/// rudder's environment is not istiod's.
fn header_values(headers: &[HttpHeader]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|header| {
            (
                header.name.clone(),
                header.value.clone().unwrap_or_default(),
            )
        })
        .collect()
}

/// istiod's `LookupCluster`: `NAMESPACE/HOST`, or a host that exactly one namespace has.
fn lookup_service(services: &BTreeMap<String, Service>, service: &str) -> Option<String> {
    let (namespace, host) = match service.split_once('/') {
        Some((namespace, host)) => (Some(namespace), host),
        None => (None, service),
    };
    let found = services.get(host)?;
    namespace
        .is_none_or(|namespace| found.namespace == namespace)
        .then(|| found.hostname.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::Origin;
    use crate::inputs::{MeshConfigText, from_test_yaml};
    use crate::model::{LastGood, build};

    const ZIPKIN: &str = "apiVersion: v1\nkind: Service\n\
                          metadata: {name: zipkin, namespace: istio-system}\n\
                          spec: {clusterIP: 10.96.0.9, ports: [{name: http, port: 9411}]}\n";

    fn resolved(mesh: &str) -> Telemetry {
        let mut inputs = from_test_yaml(ZIPKIN);
        inputs.mesh_config = Some(MeshConfigText {
            origin: Origin::Kubernetes,
            holder: "ConfigMap istio-system/istio".to_string(),
            mesh: Some(mesh.to_string()),
            networks: None,
        });
        let built = build(&inputs, &LastGood::default());
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        (*built.model.telemetry).clone()
    }

    #[test]
    fn istiods_defaults_trace_without_a_provider_and_log_nothing() {
        let telemetry = resolved("");
        assert!(telemetry.access_logs.is_empty());
        assert!(telemetry.listener_access_logs);
        let tracing = telemetry.tracing.expect("enableTracing is true by default");
        assert_eq!(tracing.random_sampling, 1.0);
        assert!(tracing.istio_tags && tracing.provider.is_none());
        assert!(resolved("enableTracing: false").tracing.is_none());
    }

    #[test]
    fn access_log_file_takes_istiods_default_formats() {
        let text = resolved("accessLogFile: /dev/stdout");
        assert_eq!(
            text.access_logs,
            [AccessLog {
                path: "/dev/stdout".to_string(),
                format: LogFormat::Text(DEFAULT_TEXT_FORMAT.to_string()),
                omit_empty_values: false,
            }]
        );
        let json = resolved("accessLogFile: /x\naccessLogEncoding: JSON\naccessLogFormat: 'no'");
        let LogFormat::Json(labels) = &json.access_logs[0].format else {
            panic!("{json:?}");
        };
        assert_eq!(labels.len(), DEFAULT_JSON_LABELS.len());
        let custom = resolved("accessLogFile: /x\naccessLogFormat: '%RESPONSE_CODE%'");
        assert_eq!(
            custom.access_logs[0].format,
            LogFormat::Text("%RESPONSE_CODE%\n".to_string())
        );
    }

    #[test]
    fn default_providers_come_before_the_legacy_fields() {
        // A default provider that is not defined leaves the legacy field in force.
        let missing = resolved("accessLogFile: /a\ndefaultProviders: {accessLogging: [nope]}");
        assert_eq!(missing.access_logs[0].path, "/a");
        let named = resolved(
            "accessLogFile: /a\ndefaultProviders: {accessLogging: [envoy]}\n\
             disableEnvoyListenerLog: true",
        );
        assert_eq!(named.access_logs.len(), 1);
        assert_eq!(named.access_logs[0].path, "/dev/stdout");
        assert!(!named.listener_access_logs);

        let zipkin = "extensionProviders: [{name: z, zipkin: {service: SERVICE, port: 9411}}]\n\
                      defaultProviders: {tracing: [z]}\nenableTracing: false\n";
        let found = resolved(&zipkin.replace("SERVICE", "zipkin.istio-system.svc.cluster.local"));
        let provider = found.tracing.and_then(|t| t.provider).expect("a provider");
        assert_eq!(
            provider.cluster,
            "outbound|9411||zipkin.istio-system.svc.cluster.local"
        );
        let namespaced = resolved(&zipkin.replace(
            "SERVICE",
            "istio-system/zipkin.istio-system.svc.cluster.local",
        ));
        assert!(namespaced.tracing.is_some());
        // Not in the registry (or in another namespace): istiod leaves tracing out.
        assert!(
            resolved(&zipkin.replace("SERVICE", "zipkin.other"))
                .tracing
                .is_none()
        );
        assert!(
            resolved(&zipkin.replace("SERVICE", "default/zipkin.istio-system.svc.cluster.local"))
                .tracing
                .is_none()
        );
    }
}

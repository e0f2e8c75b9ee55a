//! Access logs and tracing in a proxy's listeners, from the model's resolved
//! [`Telemetry`](crate::model::telemetry::Telemetry), where istiod's `AccessLogBuilder` and
//! `configureTracing` put them:
//! - every HTTP connection manager: `access_log` and `tracing` (its UUID request ID extension,
//!   which istiod always sets, comes with it from `lds::connection_manager`);
//! - every TCP proxy but those of the loop-guard chains `virtualOutbound-blackhole` and
//!   `virtualInbound-blackhole` (istiod builds those without access logs);
//! - listener-level `access_log`, for connections no filter chain takes (response flag `NR`), on
//!   `virtualOutbound`, the inbound listeners and every gateway listener; not on outbound
//!   service listeners (istiod's `setListenerAccessLog` callers), and not at all with
//!   `disableEnvoyListenerLog`.
//!
//! Applied to the listeners once built ([`apply`]), so that the listener builders stay free of
//! telemetry. It decides nothing about which logs or providers apply (that is
//! `model::telemetry`).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::accesslog::v3::{
    AccessLog as EnvoyAccessLog, AccessLogFilter, ResponseFlagFilter, access_log, access_log_filter,
};
use envoy_types::pb::envoy::config::core::v3::{
    ApiVersion, DataSource, GrpcService, HeaderValue, HeaderValueOption, HttpService, HttpUri,
    JsonFormatOptions, SubstitutionFormatString, TypedExtensionConfig, data_source, grpc_service,
    header_value_option, http_uri, substitution_format_string,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::trace::v3::{
    OpenTelemetryConfig, ZipkinConfig, tracing, zipkin_config,
};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::{
    FileAccessLog, file_access_log,
};
use envoy_types::pb::envoy::extensions::access_loggers::grpc::v3::{
    CommonGrpcAccessLogConfig, HttpGrpcAccessLogConfig, TcpGrpcAccessLogConfig,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::envoy::extensions::formatter::req_without_query::v3::ReqWithoutQuery;
use envoy_types::pb::envoy::r#type::metadata::v3::{
    MetadataKey, MetadataKind, metadata_key, metadata_kind,
};
use envoy_types::pb::envoy::r#type::tracing::v3::{CustomTag, custom_tag};
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::pb::google::protobuf::{
    BoolValue, ListValue, Struct, UInt32Value, Value as ProtoValue, value,
};
use prost::Message;
use serde_json::Value;

use super::{any, proto_duration};
use crate::bootstrap::ACCESS_LOG_SERVICE_CLUSTER;
use crate::mesh_config::telemetry::CustomTag as MeshCustomTag;
use crate::model::telemetry::{AccessLog, LogFormat, Telemetry, TracerKind, Tracing};
use crate::proxy::{Proxy, ProxyKind};

const HCM: &str = "envoy.filters.network.http_connection_manager";
const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
const FILE_ACCESS_LOG: &str = "envoy.access_loggers.file";
/// The chains istiod builds without access logs: connections to the virtual listeners' own
/// ports, which would loop.
const LOOP_GUARD_CHAINS: &[&str] = &["virtualOutbound-blackhole", "virtualInbound-blackhole"];
const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
const TCP_LOG_NAME: &str = "tcp_envoy_accesslog";
const LISTENER_LOG_NAME: &str = "listener_envoy_accesslog";
/// The filter state istiod's access log service loggers send (the peers' metadata, old and new
/// keys).
const PEER_STATE: &[&str] = &[
    "upstream_peer",
    "downstream_peer",
    "wasm.upstream_peer",
    "wasm.upstream_peer_id",
    "wasm.downstream_peer",
    "wasm.downstream_peer_id",
];

/// Adds the proxy's access logs and tracing to its listeners.
pub(super) fn apply(
    listeners: &mut BTreeMap<String, Listener>,
    telemetry: &Telemetry,
    proxy: &Proxy,
) {
    let telemetry = telemetry.for_proxy(proxy);
    let files: Vec<EnvoyAccessLog> = telemetry.access_logs.iter().map(access_log).collect();
    let with_service = |service: Option<EnvoyAccessLog>| {
        let mut logs = files.clone();
        logs.extend(service.filter(|_| telemetry.access_log_service));
        logs
    };
    let http_logs = with_service(Some(http_grpc_log()));
    let tcp_logs = with_service(Some(tcp_grpc_log(TCP_LOG_NAME)));
    let listener_logs: Vec<EnvoyAccessLog> = with_service(Some(tcp_grpc_log(LISTENER_LOG_NAME)))
        .into_iter()
        .map(|mut log| {
            log.filter = Some(no_route_filter());
            log
        })
        .collect();
    let hcm_tracing = telemetry.tracing.as_ref().map(|t| hcm_tracing(t, proxy));
    for listener in listeners.values_mut() {
        let chains = listener
            .filter_chains
            .iter_mut()
            .chain(listener.default_filter_chain.as_mut());
        for chain in chains {
            apply_to_chain(chain, &http_logs, &tcp_logs, hcm_tracing.as_ref());
        }
        let listener_level = proxy.kind == ProxyKind::Router
            || listener.name == VIRTUAL_OUTBOUND
            || listener.traffic_direction
                == envoy_types::pb::envoy::config::core::v3::TrafficDirection::Inbound as i32;
        if telemetry.listener_access_logs && listener_level {
            listener.access_log.clone_from(&listener_logs);
        }
    }
}

fn apply_to_chain(
    chain: &mut FilterChain,
    http_logs: &[EnvoyAccessLog],
    tcp_logs: &[EnvoyAccessLog],
    tracing: Option<&http_connection_manager::Tracing>,
) {
    let loop_guard = LOOP_GUARD_CHAINS.contains(&chain.name.as_str());
    for filter in &mut chain.filters {
        match filter.name.as_str() {
            HCM => rewrite(filter, |manager: &mut HttpConnectionManager| {
                manager.access_log.extend(http_logs.iter().cloned());
                manager.tracing = tracing.cloned();
            }),
            TCP_PROXY if !loop_guard && !tcp_logs.is_empty() => {
                rewrite(filter, |proxy: &mut TcpProxy| {
                    proxy.access_log.extend(tcp_logs.iter().cloned());
                });
            }
            _ => {}
        }
    }
}

/// Decodes a filter's typed config, changes it and encodes it again; a config that does not
/// decode (never one rudder built) is left as it is.
fn rewrite<M: Message + prost::Name + Default>(filter: &mut Filter, change: impl FnOnce(&mut M)) {
    let Some(filter::ConfigType::TypedConfig(typed)) = &filter.config_type else {
        return;
    };
    let Ok(mut message) = M::decode(typed.value.as_slice()) else {
        return;
    };
    change(&mut message);
    filter.config_type = Some(filter::ConfigType::TypedConfig(any(&message)));
}

/// What istiod's access log service loggers share: the bootstrap's service cluster.
fn grpc_common(log_name: &str) -> CommonGrpcAccessLogConfig {
    CommonGrpcAccessLogConfig {
        log_name: log_name.to_string(),
        grpc_service: Some(GrpcService {
            target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                grpc_service::EnvoyGrpc {
                    cluster_name: ACCESS_LOG_SERVICE_CLUSTER.to_string(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        transport_api_version: ApiVersion::V3 as i32,
        filter_state_objects_to_log: PEER_STATE.iter().map(ToString::to_string).collect(),
        ..Default::default()
    }
}

fn http_grpc_log() -> EnvoyAccessLog {
    let config = HttpGrpcAccessLogConfig {
        common_config: Some(grpc_common("http_envoy_accesslog")),
        ..Default::default()
    };
    EnvoyAccessLog {
        name: "envoy.access_loggers.http_grpc".to_string(),
        config_type: Some(access_log::ConfigType::TypedConfig(any(&config))),
        ..Default::default()
    }
}

fn tcp_grpc_log(log_name: &str) -> EnvoyAccessLog {
    let config = TcpGrpcAccessLogConfig {
        common_config: Some(grpc_common(log_name)),
    };
    EnvoyAccessLog {
        name: "envoy.tcp_grpc_access_log".to_string(),
        config_type: Some(access_log::ConfigType::TypedConfig(any(&config))),
        ..Default::default()
    }
}

/// istiod's listener access log filter: only connections no filter chain took.
fn no_route_filter() -> AccessLogFilter {
    AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::ResponseFlagFilter(
            ResponseFlagFilter {
                flags: vec!["NR".to_string()],
            },
        )),
    }
}

/// The formatter extensions a format needs: `%REQ_WITHOUT_QUERY%` is one (istiod's
/// `accessLogTextFormatters` and `accessLogJSONFormatters`, which look at top-level labels).
fn formatters(format: &LogFormat) -> Vec<TypedExtensionConfig> {
    let uses = |text: &str| text.contains("%REQ_WITHOUT_QUERY");
    let needed = match format {
        LogFormat::Text(text) => uses(text),
        LogFormat::Json(labels) => labels.values().any(|v| v.as_str().is_some_and(uses)),
    };
    if !needed {
        return Vec::new();
    }
    vec![TypedExtensionConfig {
        name: "envoy.formatter.req_without_query".to_string(),
        typed_config: Some(any(&ReqWithoutQuery::default())),
    }]
}

/// A file access log as istiod writes it (`FileAccessLogFromMeshConfig`).
fn access_log(log: &AccessLog) -> EnvoyAccessLog {
    let mut format = match &log.format {
        LogFormat::Text(text) => SubstitutionFormatString {
            format: Some(substitution_format_string::Format::TextFormatSource(
                DataSource {
                    specifier: Some(data_source::Specifier::InlineString(text.clone())),
                    ..Default::default()
                },
            )),
            omit_empty_values: log.omit_empty_values,
            ..Default::default()
        },
        LogFormat::Json(labels) => SubstitutionFormatString {
            format: Some(substitution_format_string::Format::JsonFormat(Struct {
                fields: labels
                    .iter()
                    .map(|(label, value)| (label.clone(), proto_value(value)))
                    .collect(),
            })),
            // istiod sets the options (not sorting properties, the default).
            json_format_options: Some(JsonFormatOptions::default()),
            omit_empty_values: log.omit_empty_values,
            ..Default::default()
        },
    };
    format.formatters = formatters(&log.format);
    let file = FileAccessLog {
        path: log.path.clone(),
        access_log_format: Some(file_access_log::AccessLogFormat::LogFormat(format)),
    };
    EnvoyAccessLog {
        name: FILE_ACCESS_LOG.to_string(),
        config_type: Some(access_log::ConfigType::TypedConfig(any(&file))),
        ..Default::default()
    }
}

fn proto_value(json: &Value) -> ProtoValue {
    let kind = match json {
        Value::Null => value::Kind::NullValue(0),
        Value::Bool(b) => value::Kind::BoolValue(*b),
        Value::Number(n) => value::Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => value::Kind::StringValue(s.clone()),
        Value::Array(items) => value::Kind::ListValue(ListValue {
            values: items.iter().map(proto_value).collect(),
        }),
        Value::Object(fields) => value::Kind::StructValue(Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), proto_value(v)))
                .collect(),
        }),
    };
    ProtoValue { kind: Some(kind) }
}

/// The connection manager's `tracing`: sampling, tags and the provider.
fn hcm_tracing(tracing: &Tracing, proxy: &Proxy) -> http_connection_manager::Tracing {
    let percent = |value: f64| Some(Percent { value });
    let mut tags: Vec<CustomTag> = Vec::new();
    if tracing.istio_tags {
        tags.extend(istio_tags(proxy));
    }
    tags.extend(
        tracing
            .custom_tags
            .iter()
            .filter_map(|(name, tag)| custom_tag(name, tag)),
    );
    tags.sort_by(|a, b| a.tag.cmp(&b.tag));
    let mut max_path_tag_length = tracing.max_path_tag_length;
    let provider = tracing.provider.as_ref().map(|provider| {
        if provider.max_tag_length != 0 {
            max_path_tag_length = Some(provider.max_tag_length);
        }
        provider_config(provider, proxy)
    });
    http_connection_manager::Tracing {
        client_sampling: percent(100.0),
        random_sampling: percent(tracing.random_sampling),
        overall_sampling: percent(100.0),
        custom_tags: tags,
        max_path_tag_length: max_path_tag_length.map(|value| UInt32Value { value }),
        // istiod starts a child span per upstream request on gateways only.
        spawn_upstream_span: (provider.is_some() && proxy.kind == ProxyKind::Router)
            .then_some(BoolValue { value: true }),
        provider,
        ..Default::default()
    }
}

fn literal(tag: &str, value: &str) -> CustomTag {
    CustomTag {
        tag: tag.to_string(),
        r#type: Some(custom_tag::Type::Literal(custom_tag::Literal {
            value: value.to_string(),
        })),
    }
}

/// istiod's `buildServiceTags` and `optionalPolicyTags`: who the proxy is (a stock Envoy sends
/// no `MESH_ID` nor `CLUSTER_ID`, hence `unknown`), and the dry-run authorization results.
fn istio_tags(proxy: &Proxy) -> Vec<CustomTag> {
    let label = |key: &str, default: &str| {
        proxy
            .labels
            .get(key)
            .filter(|value| !value.is_empty())
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let namespace = if proxy.namespace.is_empty() {
        "default"
    } else {
        &proxy.namespace
    };
    let mut tags = vec![
        literal(
            "istio.canonical_revision",
            &label("service.istio.io/canonical-revision", "latest"),
        ),
        literal(
            "istio.canonical_service",
            &label("service.istio.io/canonical-name", "unknown"),
        ),
        literal("istio.mesh_id", "unknown"),
        literal("istio.namespace", namespace),
        literal("istio.cluster_id", "unknown"),
    ];
    for (verdict, prefix) in [
        ("allow", "istio_dry_run_allow_"),
        ("deny", "istio_dry_run_deny_"),
    ] {
        for (what, key) in [
            ("name", "shadow_effective_policy_id"),
            ("result", "shadow_engine_result"),
        ] {
            tags.push(CustomTag {
                tag: format!("istio.authorization.dry_run.{verdict}_policy.{what}"),
                r#type: Some(custom_tag::Type::Metadata(custom_tag::Metadata {
                    kind: Some(MetadataKind {
                        kind: Some(metadata_kind::Kind::Request(
                            metadata_kind::Request::default(),
                        )),
                    }),
                    metadata_key: Some(MetadataKey {
                        key: "envoy.filters.http.rbac".to_string(),
                        path: vec![metadata_key::PathSegment {
                            segment: Some(metadata_key::path_segment::Segment::Key(format!(
                                "{prefix}{key}"
                            ))),
                        }],
                    }),
                    default_value: String::new(),
                })),
            });
        }
    }
    tags
}

/// A `defaultConfig.tracing.customTags` entry; one that sets none of its kinds is left out, as
/// istiod does.
fn custom_tag(name: &str, tag: &MeshCustomTag) -> Option<CustomTag> {
    let kind = if let Some(literal) = &tag.literal {
        custom_tag::Type::Literal(custom_tag::Literal {
            value: literal.value.clone(),
        })
    } else if let Some(environment) = &tag.environment {
        custom_tag::Type::Environment(custom_tag::Environment {
            name: environment.name.clone(),
            default_value: environment.default_value.clone(),
        })
    } else {
        let header = tag.header.as_ref()?;
        custom_tag::Type::RequestHeader(custom_tag::Header {
            name: header.name.clone(),
            default_value: header.default_value.clone(),
        })
    };
    Some(CustomTag {
        tag: name.to_string(),
        r#type: Some(kind),
    })
}

fn headers_to_add(headers: &[(String, String)]) -> Vec<HeaderValueOption> {
    headers
        .iter()
        .map(|(key, value)| HeaderValueOption {
            header: Some(HeaderValue {
                key: key.clone(),
                value: value.clone(),
                ..Default::default()
            }),
            append_action: header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        })
        .collect()
}

/// The tracer: zipkin in istiod's form for current proxies (a collector `HttpService`, 5s
/// timeout by default), or OpenTelemetry over HTTP or gRPC.
fn provider_config(
    provider: &crate::model::telemetry::TracingProvider,
    proxy: &Proxy,
) -> envoy_types::pb::envoy::config::trace::v3::tracing::Http {
    let http_service = |uri: String, timeout, headers: &[(String, String)]| HttpService {
        http_uri: Some(HttpUri {
            uri,
            timeout,
            http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(
                provider.cluster.clone(),
            )),
        }),
        request_headers_to_add: headers_to_add(headers),
        ..Default::default()
    };
    let (name, config) = match &provider.kind {
        TracerKind::Zipkin {
            path,
            trace_id_128bit,
            timeout,
            headers,
        } => {
            let timeout = timeout.map_or(std::time::Duration::from_secs(5), |t| t.0);
            let zipkin = ZipkinConfig {
                collector_endpoint_version: zipkin_config::CollectorEndpointVersion::HttpJson
                    as i32,
                trace_id_128bit: *trace_id_128bit,
                shared_span_context: Some(BoolValue { value: false }),
                collector_service: Some(http_service(
                    format!("http://{}{path}", provider.hostname),
                    Some(proto_duration(timeout)),
                    headers,
                )),
                ..Default::default()
            };
            ("envoy.tracers.zipkin", any(&zipkin))
        }
        TracerKind::OpenTelemetryHttp {
            path,
            timeout,
            headers,
        } => {
            let otel = OpenTelemetryConfig {
                service_name: service_cluster(proxy),
                http_service: Some(http_service(
                    join_path(&provider.hostname, path),
                    timeout.map(|t| proto_duration(t.0)),
                    headers,
                )),
                ..Default::default()
            };
            ("envoy.tracers.opentelemetry", any(&otel))
        }
        TracerKind::OpenTelemetryGrpc {
            timeout,
            initial_metadata,
        } => {
            let otel = OpenTelemetryConfig {
                service_name: service_cluster(proxy),
                grpc_service: Some(GrpcService {
                    target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                        grpc_service::EnvoyGrpc {
                            cluster_name: provider.cluster.clone(),
                            authority: provider.hostname.clone(),
                            ..Default::default()
                        },
                    )),
                    timeout: timeout.map(|t| proto_duration(t.0)),
                    initial_metadata: initial_metadata
                        .iter()
                        .map(|(key, value)| HeaderValue {
                            key: key.clone(),
                            value: value.clone(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            ("envoy.tracers.opentelemetry", any(&otel))
        }
    };
    tracing::Http {
        name: name.to_string(),
        config_type: Some(tracing::http::ConfigType::TypedConfig(config)),
    }
}

/// Go's `url.JoinPath(host, path)` as istiod uses it for the OTLP/HTTP endpoint: the host, a
/// slash, the path without its leading slashes.
fn join_path(host: &str, path: &str) -> String {
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        host.to_string()
    } else {
        format!("{host}/{path}")
    }
}

/// The span service name istiod uses: the node's cluster, which `rudder bootstrap` (like
/// istio-agent) sets to `APP.NAMESPACE`, or else to the node id's `POD.NAMESPACE`.
fn service_cluster(proxy: &Proxy) -> String {
    match proxy.labels.get("app") {
        Some(app) if !proxy.namespace.is_empty() => format!("{app}.{}", proxy.namespace),
        Some(app) => app.clone(),
        None => proxy.id.split('~').nth(2).unwrap_or_default().to_string(),
    }
}

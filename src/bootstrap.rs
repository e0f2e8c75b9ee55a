//! The Envoy bootstrap `rudder bootstrap` prints: node identity, ADS (state of the world or delta)
//! to rudder, and nothing else a stock Envoy needs to be configured by rudder. Built as Envoy's own
//! Bootstrap message so that it is always a bootstrap Envoy accepts.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::bootstrap::v3::bootstrap::{DynamicResources, StaticResources};
use envoy_types::pb::envoy::config::bootstrap::v3::runtime_layer::LayerSpecifier;
use envoy_types::pb::envoy::config::bootstrap::v3::{
    Admin, Bootstrap, LayeredRuntime, RuntimeLayer,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::api_config_source::ApiType;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::grpc_service::{EnvoyGrpc, TargetSpecifier};
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiConfigSource, ApiVersion, ConfigSource, DataSource,
    GrpcService, Http2ProtocolOptions, Node, SocketAddress, TransportSocket, address, data_source,
    transport_socket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, TlsCertificate,
    UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::{Duration, ListValue, Struct, Value, value::Kind};
use serde_json::Value as Json;

use crate::envoy_json::{self, JsonError};
use crate::translate::any;

/// The static cluster through which Envoy reaches rudder.
pub const XDS_CLUSTER: &str = "xds-grpc";

/// What a bootstrap is made of.
#[derive(Debug, Clone)]
pub struct BootstrapOptions {
    pub node_id: String,
    /// rudder's xDS address: `host:port`; a host name is resolved by Envoy (STRICT_DNS).
    pub xds_address: String,
    /// Node metadata (`NAMESPACE`, `LABELS`, `INTERCEPTION_MODE`, ...), a JSON object.
    pub metadata: Json,
    /// Envoy's own admin interface.
    pub admin_address: SocketAddr,
    /// Which ADS protocol Envoy speaks to rudder; rudder serves both on the same address.
    pub api_type: AdsApiType,
    /// Reach rudder over TLS (`rudder serve --xds-tls-cert`); `None`: plaintext.
    pub xds_tls: Option<XdsClientTls>,
    /// An Envoy access log service (gRPC, `HOST:PORT`) for the cluster
    /// [`ACCESS_LOG_SERVICE_CLUSTER`], which the mesh config's `enableEnvoyAccessLogService`
    /// loggers name (istio-agent adds it from ProxyConfig `envoyAccessLogService`).
    pub access_log_service: Option<String>,
}

/// The static cluster of the access log service, named as istio-agent names it.
pub const ACCESS_LOG_SERVICE_CLUSTER: &str = "envoy_accesslog_service";

/// How Envoy's xDS cluster speaks TLS to rudder: an `UpstreamTlsContext` reading these files
/// (paths as Envoy sees them, read when Envoy starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsClientTls {
    /// CA certificates (PEM) that rudder's server certificate must chain to.
    pub ca_file: String,
    /// Envoy's client certificate and key (PEM), for rudder's mutual TLS.
    pub client_certificate: Option<ClientCertificate>,
    /// The name rudder's certificate must carry as a DNS SAN, also sent as SNI; `None`: the host
    /// of the xDS address when it is a name, else any name the CA signed is accepted.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    pub certificate_file: String,
    pub private_key_file: String,
}

/// The ADS protocol of a bootstrap (`dynamic_resources.ads_config.api_type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AdsApiType {
    /// State of the world (`GRPC`): every response carries the full set of its type.
    #[default]
    Grpc,
    /// Delta (`DELTA_GRPC`, Istio's default since 1.22): responses carry only what changed.
    DeltaGrpc,
}

impl AdsApiType {
    fn envoy(self) -> ApiType {
        match self {
            AdsApiType::Grpc => ApiType::Grpc,
            AdsApiType::DeltaGrpc => ApiType::DeltaGrpc,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("xDS address {0:?} is not HOST:PORT")]
    BadXdsAddress(String),
    #[error("access log service address {0:?} is not HOST:PORT")]
    BadAccessLogServiceAddress(String),
    #[error("metadata must be a JSON object, got {0}")]
    BadMetadata(String),
    #[error("label {0:?} is not KEY=VALUE")]
    BadLabel(String),
    #[error("metadata LABELS must be a JSON object, got {0}")]
    BadLabels(String),
    #[error(transparent)]
    Json(#[from] JsonError),
}

/// Parses a `KEY=VALUE` label (`--label istio=ingressgateway`).
pub fn parse_label(label: &str) -> Result<(String, String), BootstrapError> {
    label
        .split_once('=')
        .filter(|(key, _)| !key.is_empty())
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .ok_or_else(|| BootstrapError::BadLabel(label.to_string()))
}

/// Node metadata: `metadata` (a JSON object, or null for none) with `NAMESPACE` set to
/// `namespace` and `labels` added to `LABELS`, where given. Gateways are picked by their labels,
/// so flags spare writing them as JSON; what the flags say wins over the JSON.
pub fn node_metadata(
    metadata: Json,
    namespace: Option<&str>,
    labels: &[(String, String)],
) -> Result<Json, BootstrapError> {
    let mut fields = match metadata {
        Json::Null => serde_json::Map::new(),
        Json::Object(fields) => fields,
        other => return Err(BootstrapError::BadMetadata(other.to_string())),
    };
    if let Some(namespace) = namespace {
        fields.insert("NAMESPACE".to_string(), Json::from(namespace));
    }
    if !labels.is_empty() {
        let merged = match fields.remove("LABELS") {
            None | Some(Json::Null) => serde_json::Map::new(),
            Some(Json::Object(existing)) => existing,
            Some(other) => return Err(BootstrapError::BadLabels(other.to_string())),
        };
        let merged = labels.iter().fold(merged, |mut merged, (key, value)| {
            merged.insert(key.clone(), Json::from(value.as_str()));
            merged
        });
        fields.insert("LABELS".to_string(), Json::Object(merged));
    }
    Ok(if fields.is_empty() {
        Json::Null
    } else {
        Json::Object(fields)
    })
}

/// The bootstrap as Envoy's JSON (which Envoy also reads as YAML).
pub fn bootstrap_json(options: &BootstrapOptions) -> Result<Json, BootstrapError> {
    envoy_json::to_json(&bootstrap(options)?).map_err(Into::into)
}

pub fn bootstrap(options: &BootstrapOptions) -> Result<Bootstrap, BootstrapError> {
    let (host, port) = host_port(&options.xds_address)
        .ok_or_else(|| BootstrapError::BadXdsAddress(options.xds_address.clone()))?;
    let mut clusters = vec![grpc_cluster(
        XDS_CLUSTER,
        host,
        port,
        options.xds_tls.as_ref(),
    )];
    if let Some(address) = &options.access_log_service {
        let (host, port) = host_port(address)
            .ok_or_else(|| BootstrapError::BadAccessLogServiceAddress(address.clone()))?;
        clusters.push(grpc_cluster(ACCESS_LOG_SERVICE_CLUSTER, host, port, None));
    }
    let metadata = match &options.metadata {
        Json::Null => Struct::default(),
        Json::Object(fields) => Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), proto_value(v)))
                .collect(),
        },
        other => return Err(BootstrapError::BadMetadata(other.to_string())),
    };
    let ads = ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        initial_fetch_timeout: Some(Duration::default()),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    };
    Ok(Bootstrap {
        node: Some(Node {
            id: options.node_id.clone(),
            cluster: node_cluster(&options.node_id, &options.metadata),
            metadata: Some(metadata),
            ..Default::default()
        }),
        dynamic_resources: Some(DynamicResources {
            ads_config: Some(ApiConfigSource {
                api_type: options.api_type.envoy() as i32,
                transport_api_version: ApiVersion::V3 as i32,
                set_node_on_first_message_only: true,
                grpc_services: vec![GrpcService {
                    target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                        cluster_name: XDS_CLUSTER.to_string(),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            cds_config: Some(ads.clone()),
            lds_config: Some(ads),
            ..Default::default()
        }),
        static_resources: Some(StaticResources {
            clusters,
            ..Default::default()
        }),
        admin: Some(Admin {
            address: Some(socket_address(
                &options.admin_address.ip().to_string(),
                u32::from(options.admin_address.port()),
            )),
            ..Default::default()
        }),
        layered_runtime: Some(runtime()),
        ..Default::default()
    })
}

/// `node.cluster`: the workload's `app` label and namespace, as Istio's service cluster.
fn node_cluster(node_id: &str, metadata: &Json) -> String {
    let app = metadata.pointer("/LABELS/app").and_then(Json::as_str);
    let namespace = metadata.get("NAMESPACE").and_then(Json::as_str);
    match (app, namespace) {
        (Some(app), Some(namespace)) => format!("{app}.{namespace}"),
        (Some(app), None) => app.to_string(),
        _ => node_id.split('~').nth(2).unwrap_or("rudder").to_string(),
    }
}

/// `HOST:PORT` (the host may be a bracketed IPv6 address).
fn host_port(address: &str) -> Option<(&str, u32)> {
    address
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.trim_matches(['[', ']']), port.parse::<u32>().ok()?)))
        .filter(|(host, _)| !host.is_empty())
}

/// A static cluster speaking gRPC (HTTP/2) to `host:port`: rudder's xDS, or the access log
/// service.
fn grpc_cluster(name: &str, host: &str, port: u32, tls: Option<&XdsClientTls>) -> Cluster {
    let discovery = if host.parse::<std::net::IpAddr>().is_ok() {
        DiscoveryType::Static
    } else {
        DiscoveryType::StrictDns
    };
    let http2 = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    };
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(discovery as i32)),
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 0,
        }),
        typed_extension_protocol_options: [(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            any(&http2),
        )]
        .into_iter()
        .collect(),
        transport_socket: tls.map(|tls| tls_transport_socket(host, tls)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                        address: Some(socket_address(host, port)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Istio's xDS TLS: the server certificate checked against the CA and, when a name is known,
/// its DNS SAN; `h2` offered by ALPN, as gRPC needs.
fn tls_transport_socket(host: &str, tls: &XdsClientTls) -> TransportSocket {
    let file = |path: &str| DataSource {
        specifier: Some(data_source::Specifier::Filename(path.to_string())),
        ..Default::default()
    };
    let server_name = tls
        .server_name
        .clone()
        .or_else(|| (host.parse::<std::net::IpAddr>().is_err()).then(|| host.to_string()));
    let validation = CertificateValidationContext {
        trusted_ca: Some(file(&tls.ca_file)),
        match_typed_subject_alt_names: server_name
            .iter()
            .map(|name| SubjectAltNameMatcher {
                san_type: SanType::Dns as i32,
                matcher: Some(StringMatcher {
                    match_pattern: Some(string_matcher::MatchPattern::Exact(name.clone())),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let context = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            alpn_protocols: vec!["h2".to_string()],
            tls_certificates: tls
                .client_certificate
                .iter()
                .map(|client| TlsCertificate {
                    certificate_chain: Some(file(&client.certificate_file)),
                    private_key: Some(file(&client.private_key_file)),
                    ..Default::default()
                })
                .collect(),
            validation_context_type: Some(ValidationContextType::ValidationContext(validation)),
            ..Default::default()
        }),
        sni: server_name.unwrap_or_default(),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&context))),
    }
}

fn socket_address(host: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: host.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

/// The largest RE2 program (in instructions) Envoy compiles under rudder's bootstrap; VirtualService
/// validation refuses bigger regexes, since Envoy would refuse the whole route configuration.
pub const RE2_MAX_PROGRAM_SIZE: u32 = 32768;

/// Envoy refuses regexes whose RE2 program is larger than 100 by default; Istio raises the
/// limit the same way so that VirtualService regexes behave as they do under istiod.
fn runtime() -> LayeredRuntime {
    let fields = [
        (
            "re2.max_program_size.error_level",
            f64::from(RE2_MAX_PROGRAM_SIZE),
        ),
        ("re2.max_program_size.warn_level", 1024.0),
    ];
    LayeredRuntime {
        layers: vec![RuntimeLayer {
            name: "rudder".to_string(),
            layer_specifier: Some(LayerSpecifier::StaticLayer(Struct {
                fields: fields
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k.to_string(),
                            Value {
                                kind: Some(Kind::NumberValue(v)),
                            },
                        )
                    })
                    .collect(),
            })),
        }],
    }
}

/// A JSON value as a protobuf `Value`.
fn proto_value(value: &Json) -> Value {
    let kind = match value {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(proto_value).collect(),
        }),
        Json::Object(fields) => Kind::StructValue(Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), proto_value(v)))
                .collect(),
        }),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(api_type: AdsApiType) -> BootstrapOptions {
        BootstrapOptions {
            node_id: "sidecar~10.0.0.1~app.default~default.svc.cluster.local".to_string(),
            xds_address: "127.0.0.1:15010".to_string(),
            metadata: Json::Null,
            admin_address: "127.0.0.1:15000".parse().unwrap(),
            api_type,
            xds_tls: None,
            access_log_service: None,
        }
    }

    #[test]
    fn namespace_and_label_flags_are_laid_over_the_metadata() {
        let labels = [
            parse_label("istio=ingressgateway").unwrap(),
            parse_label("app=").unwrap(),
        ];
        let metadata = serde_json::json!({"NAMESPACE": "a", "LABELS": {"istio": "old", "x": "y"}});
        assert_eq!(
            node_metadata(metadata, Some("istio-system"), &labels).unwrap(),
            serde_json::json!({
                "NAMESPACE": "istio-system",
                "LABELS": {"istio": "ingressgateway", "x": "y", "app": ""},
            })
        );
        assert_eq!(node_metadata(Json::Null, None, &[]).unwrap(), Json::Null);
        assert_eq!(
            node_metadata(Json::Null, None, &labels[..1]).unwrap(),
            serde_json::json!({"LABELS": {"istio": "ingressgateway"}})
        );
    }

    #[test]
    fn bad_labels_are_refused() {
        for bad in ["istio", "=ingressgateway", ""] {
            assert!(
                matches!(parse_label(bad), Err(BootstrapError::BadLabel(_))),
                "{bad}"
            );
        }
        let labels = [parse_label("istio=ingressgateway").unwrap()];
        let metadata = serde_json::json!({"LABELS": "istio=ingressgateway"});
        assert!(matches!(
            node_metadata(metadata, None, &labels),
            Err(BootstrapError::BadLabels(_))
        ));
        assert!(matches!(
            node_metadata(serde_json::json!([1]), None, &[]),
            Err(BootstrapError::BadMetadata(_))
        ));
    }

    #[test]
    fn an_access_log_service_gets_istio_agents_cluster() {
        let json = bootstrap_json(&BootstrapOptions {
            access_log_service: Some("als.istio-system:15000".to_string()),
            ..options(AdsApiType::Grpc)
        })
        .unwrap();
        let cluster = &json["static_resources"]["clusters"][1];
        assert_eq!(cluster["name"], ACCESS_LOG_SERVICE_CLUSTER);
        assert_eq!(cluster["type"], "STRICT_DNS");
        assert_eq!(
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            15000
        );
        assert!(matches!(
            bootstrap(&BootstrapOptions {
                access_log_service: Some("als".to_string()),
                ..options(AdsApiType::Grpc)
            }),
            Err(BootstrapError::BadAccessLogServiceAddress(_))
        ));
    }

    #[test]
    fn xds_tls_checks_the_server_name_and_presents_the_client_certificate() {
        let tls = XdsClientTls {
            ca_file: "/etc/rudder/ca.pem".to_string(),
            client_certificate: Some(ClientCertificate {
                certificate_file: "/etc/envoy/cert.pem".to_string(),
                private_key_file: "/etc/envoy/key.pem".to_string(),
            }),
            server_name: None,
        };
        let socket = |xds_address: &str, tls: &XdsClientTls| {
            let json = bootstrap_json(&BootstrapOptions {
                xds_address: xds_address.to_string(),
                xds_tls: Some(tls.clone()),
                ..options(AdsApiType::Grpc)
            })
            .unwrap();
            json["static_resources"]["clusters"][0]["transport_socket"]["typed_config"].clone()
        };
        let named = socket("istiod.istio-system.svc:15012", &tls);
        assert_eq!(named["sni"], "istiod.istio-system.svc");
        let common = &named["common_tls_context"];
        assert_eq!(common["alpn_protocols"], serde_json::json!(["h2"]));
        assert_eq!(
            common["validation_context"]["trusted_ca"]["filename"],
            "/etc/rudder/ca.pem"
        );
        assert_eq!(
            common["validation_context"]["match_typed_subject_alt_names"][0]["matcher"]["exact"],
            "istiod.istio-system.svc"
        );
        assert_eq!(
            common["tls_certificates"][0]["private_key"]["filename"],
            "/etc/envoy/key.pem"
        );
        // An IP address is no name to check; an explicit name is.
        let by_ip = socket("10.0.0.1:15012", &tls);
        assert!(by_ip.get("sni").is_none(), "{by_ip}");
        let explicit = XdsClientTls {
            server_name: Some("rudder.example".to_string()),
            ..tls
        };
        assert_eq!(socket("10.0.0.1:15012", &explicit)["sni"], "rudder.example");
        let plain = bootstrap_json(&options(AdsApiType::Grpc)).unwrap();
        assert!(
            plain["static_resources"]["clusters"][0]
                .get("transport_socket")
                .is_none()
        );
    }

    #[test]
    fn api_type_selects_the_ads_protocol() {
        let api_type = |api_type| {
            let json = bootstrap_json(&options(api_type)).unwrap();
            json["dynamic_resources"]["ads_config"]["api_type"].clone()
        };
        assert_eq!(AdsApiType::default(), AdsApiType::Grpc);
        assert_eq!(api_type(AdsApiType::Grpc), "GRPC");
        assert_eq!(api_type(AdsApiType::DeltaGrpc), "DELTA_GRPC");
    }
}

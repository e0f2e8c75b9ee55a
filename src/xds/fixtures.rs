//! Small resources for the state machines' unit tests.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::secret::Type;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, TlsCertificate};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::rpc::Status;
use prost::Message;

use super::wire::EncodedAny;
use crate::translate::{ResourceType, Resources};

pub const A: &str = "outbound|80||a.default.svc.cluster.local";
pub const B: &str = "outbound|80||b.default.svc.cluster.local";

/// An EDS cluster.
pub fn cluster(name: &str, stat: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        alt_stat_name: stat.to_string(),
        ..Default::default()
    }
}

pub fn cla(name: &str, priority: u32) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            priority,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn listener(name: &str, stat: &str) -> Listener {
    Listener {
        name: name.to_string(),
        stat_prefix: stat.to_string(),
        ..Default::default()
    }
}

pub fn route(name: &str, validate: bool) -> RouteConfiguration {
    RouteConfiguration {
        name: name.to_string(),
        validate_clusters: Some(BoolValue { value: validate }),
        ..Default::default()
    }
}

/// A gateway credential (fake material: the state machines never read it).
pub fn secret(name: &str, key: &str) -> Secret {
    Secret {
        name: name.to_string(),
        r#type: Some(Type::TlsCertificate(TlsCertificate {
            private_key: Some(DataSource {
                specifier: Some(Specifier::InlineString(key.to_string())),
                ..Default::default()
            }),
            ..Default::default()
        })),
    }
}

pub const CREDENTIAL: &str = "kubernetes://cred";

/// Clusters and endpoints A and B, listener `0.0.0.0_80`, routes `80` and `9080`, secret
/// [`CREDENTIAL`].
pub fn resources() -> Resources {
    Resources {
        clusters: [(A, cluster(A, "")), (B, cluster(B, ""))]
            .map(|(name, c)| (name.to_string(), c.into()))
            .into(),
        endpoints: [(A, cla(A, 0)), (B, cla(B, 0))]
            .map(|(name, c)| (name.to_string(), c.into()))
            .into(),
        listeners: [("0.0.0.0_80", listener("0.0.0.0_80", ""))]
            .map(|(name, l)| (name.to_string(), l))
            .into(),
        routes: [("80", route("80", false)), ("9080", route("9080", false))]
            .map(|(name, r)| (name.to_string(), r.into()))
            .into(),
        secrets: [(CREDENTIAL.to_string(), secret(CREDENTIAL, "k1"))].into(),
    }
}

/// An Envoy rejection.
pub fn error(message: &str) -> Option<Status> {
    Some(Status {
        code: 3,
        message: message.to_string(),
        details: Vec::new(),
    })
}

/// The name inside an encoded resource.
pub fn name_of(encoded: &EncodedAny) -> String {
    let any = encoded.decode();
    match ResourceType::from_type_url(&any.type_url) {
        Some(ResourceType::Endpoint) => {
            ClusterLoadAssignment::decode(any.value.as_slice())
                .unwrap()
                .cluster_name
        }
        Some(ResourceType::Cluster) => Cluster::decode(any.value.as_slice()).unwrap().name,
        Some(ResourceType::Route) => {
            RouteConfiguration::decode(any.value.as_slice())
                .unwrap()
                .name
        }
        Some(ResourceType::Listener) => Listener::decode(any.value.as_slice()).unwrap().name,
        Some(ResourceType::Secret) => Secret::decode(any.value.as_slice()).unwrap().name,
        None => panic!("unexpected type {}", any.type_url),
    }
}

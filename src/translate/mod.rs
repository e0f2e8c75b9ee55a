//! Translation: Model + Proxy -> the Envoy resources that proxy gets, as istiod would shape them
//! (names, defaults, precedence). One module per xDS type; all of it pure and deterministic.

mod addresses;
mod cds;
mod cluster_policy;
mod eds;
mod gateway;
mod inbound;
mod lds;
mod locality;
mod memo;
mod metadata;
mod rds;
pub mod scope;
pub mod sds;
mod telemetry;

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::{AggregatedConfigSource, ApiVersion, ConfigSource};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::google::protobuf::{Any, Duration as ProtoDuration};
use prost::{Message, Name};

pub use addresses::{AddressKey, AddressReads};
pub use inbound::{INBOUND_PASSTHROUGH_CLUSTER, inbound_cluster_name};
pub use memo::Memo;
pub use scope::ProxyView;
pub use sds::redact_secret;

use crate::model::Model;
use crate::proxy::{Proxy, ProxyKind};

/// The xDS resource types rudder serves, in the order ADS sends them (CDS, EDS, LDS, RDS, then
/// SDS as istiod does), so nothing refers to a resource Envoy has not received yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Listener,
    Route,
    /// Gateway TLS credentials (SDS over ADS).
    Secret,
}

impl ResourceType {
    pub const ALL: [ResourceType; 5] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
        ResourceType::Secret,
    ];

    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            ResourceType::Secret => {
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
            }
        }
    }

    pub fn from_type_url(type_url: &str) -> Option<ResourceType> {
        Self::ALL.into_iter().find(|ty| ty.type_url() == type_url)
    }

    /// LDS and CDS always send the full set; EDS, RDS and SDS send the names asked for.
    pub fn is_wildcard(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }

    /// SDS resources are sent only to a subscription that names them: a wildcard subscription
    /// (delta `*`) would hand a gateway every credential of its namespace, including those no
    /// listener of it refers to. istiod answers a wildcard SDS subscription with nothing too.
    pub fn by_name_only(self) -> bool {
        self == ResourceType::Secret
    }

    /// A short name for logs and metrics: `cds`, `eds`, `lds`, `rds`, `sds`.
    pub fn short_name(self) -> &'static str {
        match self {
            ResourceType::Cluster => "cds",
            ResourceType::Endpoint => "eds",
            ResourceType::Listener => "lds",
            ResourceType::Route => "rds",
            ResourceType::Secret => "sds",
        }
    }
}

/// Everything one proxy gets, by resource name. Clusters, assignments and route configurations
/// are shared with other proxies' translations where they are the same for them ([`Memo`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub clusters: BTreeMap<String, Arc<Cluster>>,
    pub endpoints: BTreeMap<String, Arc<ClusterLoadAssignment>>,
    pub listeners: BTreeMap<String, Listener>,
    pub routes: BTreeMap<String, Arc<RouteConfiguration>>,
    /// Gateway credentials; they hold private keys, so anything that prints resources redacts
    /// them (see [`redact_secret`]).
    pub secrets: BTreeMap<String, Secret>,
}

impl Resources {
    /// The resources of one type, encoded for the wire, by name.
    pub fn encode(&self, ty: ResourceType) -> BTreeMap<String, Any> {
        match ty {
            ResourceType::Cluster => encode_all::<Cluster>(&self.clusters),
            ResourceType::Endpoint => encode_all::<ClusterLoadAssignment>(&self.endpoints),
            ResourceType::Listener => encode_all(&self.listeners),
            ResourceType::Route => encode_all::<RouteConfiguration>(&self.routes),
            ResourceType::Secret => encode_all(&self.secrets),
        }
    }
}

fn encode_all<M: Message + Name>(
    resources: &BTreeMap<String, impl std::borrow::Borrow<M>>,
) -> BTreeMap<String, Any> {
    resources
        .iter()
        .map(|(name, resource)| (name.clone(), any(resource.borrow())))
        .collect()
}

/// Packs a message into `Any` with its type URL.
pub fn any<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

/// `outbound|PORT|SUBSET|HOST`, Istio's name for an outbound cluster (subset empty for the whole
/// service).
pub fn outbound_cluster_name(port: u16, subset: &str, host: &str) -> String {
    format!("outbound|{port}|{subset}|{host}")
}

/// The `server` header inbound and gateway connection managers answer with (istiod's
/// `EnvoyServerName`; outbound ones keep Envoy's `envoy`).
const ISTIO_SERVER_NAME: &str = "istio-envoy";

pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";

/// Resources Envoy fetches over the same ADS stream, with no initial fetch timeout: Envoy waits
/// for them rather than starting half-configured.
fn ads_config_source() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        initial_fetch_timeout: Some(proto_duration(std::time::Duration::ZERO)),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

fn proto_duration(duration: std::time::Duration) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

/// An extension's typed config, named by its canonical filter name.
fn typed_config<M: Message + Name>(message: &M) -> Option<Any> {
    Some(any(message))
}

/// All resources for one proxy, from what its scope (Sidecar, `exportTo`) lets it see.
pub fn translate(model: &Model, proxy: &Proxy) -> Resources {
    translate_with_view(model, proxy, &Memo::default()).0
}

/// [`translate`], sharing with earlier translations what `memo` holds, with the view its
/// endpoints were made from: what [`update_endpoints`] starts from when only endpoints change.
pub fn translate_with_view(model: &Model, proxy: &Proxy, memo: &Memo) -> (Resources, ProxyView) {
    let scope = scope::scope(model, proxy);
    let mut clusters = cds::clusters(scope.view(), proxy, memo);
    let endpoints = eds::endpoints(scope.view(), proxy, &clusters, memo);
    let (mut listeners, routes) = if proxy.kind == ProxyKind::Router {
        let merged = crate::model::gateway::merged_for_proxy(model, proxy);
        let (listeners, route_names) = gateway::listeners(model, &scope, proxy, &merged);
        let routes = gateway::routes(model, &scope, proxy, &merged, &route_names);
        let routes = routes.into_iter().map(|(n, r)| (n, Arc::new(r))).collect();
        (listeners, routes)
    } else {
        let (listeners, route_names) = lds::listeners(&scope, proxy);
        (listeners, rds::routes(&scope, proxy, &route_names, memo))
    };
    // The inbound side serves the proxy's own workload, which no Sidecar egress scope narrows.
    for cluster in inbound::clusters(model, proxy) {
        clusters.insert(cluster.name.clone(), Arc::new(cluster));
    }
    for listener in inbound::listeners(model, proxy) {
        listeners.insert(listener.name.clone(), listener);
    }
    telemetry::apply(&mut listeners, &model.telemetry, proxy);
    let resources = Resources {
        clusters,
        endpoints,
        listeners,
        routes,
        // From the whole model: a Sidecar scope says nothing about a gateway's own Secrets.
        secrets: sds::secrets(model, proxy),
    };
    (resources, scope.into_view())
}

/// After a model change that changed only the endpoints of `hosts` (`model::endpoint_update`),
/// the proxy's new ClusterLoadAssignments among `assignments` (the names it has) and the view
/// they were made from. Exactly what [`translate_with_view`] would give for those names on the
/// new model: the rest of a translation depends on no endpoint of those hosts (the update only
/// takes services whose endpoints reach proxies over EDS alone).
pub fn update_endpoints<'a>(
    view: &ProxyView,
    model: &Model,
    proxy: &Proxy,
    hosts: &std::collections::BTreeSet<String>,
    assignments: impl Iterator<Item = &'a str>,
    memo: &Memo,
) -> (BTreeMap<String, Arc<ClusterLoadAssignment>>, ProxyView) {
    let view = view.with_endpoints_of(model, hosts);
    let updated = assignments
        .filter(|name| {
            cluster_policy::parse_outbound_cluster_name(name)
                .is_some_and(|(_, _, host)| hosts.contains(host))
        })
        .map(|name| {
            let assignment = eds::shared_load_assignment(&view, proxy, name, memo);
            (name.to_string(), assignment)
        })
        .collect();
    (updated, view)
}

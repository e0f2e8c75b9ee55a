//! EDS: one ClusterLoadAssignment for every EDS cluster CDS produced, empty when the service has
//! no ready endpoints (Envoy keeps a cluster warming until its assignment arrives). A subset's
//! assignment keeps the endpoints whose labels contain all of the subset's labels. Endpoints are
//! grouped by locality (sorted by `region/zone/subzone`), and the DestinationRule's locality load
//! balancing sets the groups' priorities or weights relative to the proxy (see `locality`).

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{
    Address, Locality as EnvoyLocality, Pipe, SocketAddress, address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::cluster_policy::{cluster_policy, parse_outbound_cluster_name};
use super::locality::{self, Group};
use super::memo::{Memo, Source};
use crate::model::{Endpoint, EndpointAddress};
use crate::proxy::Proxy;
use crate::translate::scope::ProxyView;

pub fn endpoints(
    model: &ProxyView,
    proxy: &Proxy,
    clusters: &BTreeMap<String, Arc<Cluster>>,
    memo: &Memo,
) -> BTreeMap<String, Arc<ClusterLoadAssignment>> {
    clusters
        .values()
        .filter_map(|cluster| cluster.eds_cluster_config.as_ref())
        .map(|eds| {
            let name = eds.service_name.clone();
            let assignment = shared_load_assignment(model, proxy, &name, memo);
            (name, assignment)
        })
        .collect()
}

/// [`load_assignment`], from `memo` unless locality load balancing makes it read the proxy's
/// locality (and labels): to weigh localities, or to order them for failover.
pub(super) fn shared_load_assignment(
    model: &ProxyView,
    proxy: &Proxy,
    cluster_name: &str,
    memo: &Memo,
) -> Arc<ClusterLoadAssignment> {
    let build = || load_assignment(model, proxy, cluster_name);
    let Some((port, subset, host)) = parse_outbound_cluster_name(cluster_name) else {
        return Arc::new(build());
    };
    let Some(service) = model.services.get(host) else {
        return Arc::new(build());
    };
    let rule = model.destination_rules.get(host);
    let policy = cluster_policy(rule.map(AsRef::as_ref), port, subset).with_mesh(&model.mesh);
    let failover = policy.outlier_detection.is_some();
    if let Some(setting) = policy.locality_lb_setting()
        && locality::reads_proxy(setting, failover)
    {
        return Arc::new(build());
    }
    memo.assignment(Source::of(model, service, port, subset), build)
}

/// The endpoints of one `outbound|PORT|SUBSET|HOST` cluster, grouped by locality: served over
/// EDS, or inline in DNS clusters.
pub(super) fn load_assignment(
    model: &ProxyView,
    proxy: &Proxy,
    cluster_name: &str,
) -> ClusterLoadAssignment {
    let mut assignment = ClusterLoadAssignment {
        cluster_name: cluster_name.to_string(),
        ..Default::default()
    };
    let Some((port, subset, host)) = parse_outbound_cluster_name(cluster_name) else {
        return assignment;
    };
    let rule = model.destination_rules.get(host).map(AsRef::as_ref);
    let groups = locality_groups(selected_endpoints(model, host, port, subset));
    if groups.is_empty() {
        return assignment;
    }
    let policy = cluster_policy(rule, port, subset).with_mesh(&model.mesh);
    assignment.endpoints = match policy.locality_lb_setting() {
        Some(setting) => {
            locality::apply(groups, proxy, setting, policy.outlier_detection.is_some())
        }
        None => groups.into_iter().map(|group| group.envoy).collect(),
    };
    assignment
}

/// The endpoints an `outbound|PORT|SUBSET|HOST` cluster stands for.
fn selected_endpoints<'m>(
    model: &'m ProxyView,
    host: &str,
    port: u16,
    subset: &str,
) -> Vec<&'m Endpoint> {
    let Some(service) = model.services.get(host) else {
        return Vec::new();
    };
    let subset_labels = model
        .destination_rules
        .get(host)
        .and_then(|rule| rule.subset(subset))
        .map(|subset| &subset.labels);
    service
        .endpoints
        .iter()
        .filter(|endpoint| endpoint.service_port == port)
        .filter(|endpoint| {
            subset_labels.is_none_or(|labels| {
                labels
                    .iter()
                    .all(|(k, v)| endpoint.labels.get(k) == Some(v))
            })
        })
        .collect()
}

/// One group per locality, in the order of their `region/zone/subzone` labels, each weighted
/// by the sum of its endpoints' weights. Endpoints without a locality share a group that
/// carries none.
fn locality_groups(endpoints: Vec<&Endpoint>) -> Vec<Group<'_>> {
    let mut by_locality: BTreeMap<String, Vec<&Endpoint>> = BTreeMap::new();
    for endpoint in endpoints {
        by_locality
            .entry(endpoint.locality.label())
            .or_default()
            .push(endpoint);
    }
    by_locality
        .into_values()
        .map(|endpoints| {
            let locality = endpoints[0].locality.clone();
            let lb_endpoints: Vec<LbEndpoint> = endpoints.iter().map(|e| lb_endpoint(e)).collect();
            let weight = endpoints
                .iter()
                .map(|endpoint| endpoint.weight)
                .fold(0, u32::saturating_add);
            Group {
                envoy: LocalityLbEndpoints {
                    locality: (!locality.is_empty()).then(|| EnvoyLocality {
                        region: locality.region.clone(),
                        zone: locality.zone.clone(),
                        sub_zone: locality.subzone.clone(),
                    }),
                    lb_endpoints,
                    load_balancing_weight: Some(UInt32Value { value: weight }),
                    ..Default::default()
                },
                locality,
                endpoints,
            }
        })
        .collect()
}

fn lb_endpoint(endpoint: &Endpoint) -> LbEndpoint {
    let address = match &endpoint.address {
        // A socket has no port (istiod writes its path as Envoy's pipe address).
        EndpointAddress::Unix(path) => Address {
            address: Some(address::Address::Pipe(Pipe {
                path: path.clone(),
                ..Default::default()
            })),
        },
        other => socket_address(other.to_string(), endpoint.port),
    };
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
            address: Some(address),
            ..Default::default()
        })),
        load_balancing_weight: Some(UInt32Value {
            value: endpoint.weight,
        }),
        ..Default::default()
    }
}

/// A TCP socket address.
pub(super) fn socket_address(ip: String, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip,
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

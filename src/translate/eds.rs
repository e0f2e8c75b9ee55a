//! EDS: one ClusterLoadAssignment for every EDS cluster CDS produced, empty when the service has
//! no ready endpoints (Envoy keeps a cluster warming until its assignment arrives). A subset's
//! assignment keeps the endpoints whose labels contain all of the subset's labels.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use crate::model::{Endpoint, Model};
use crate::proxy::Proxy;

pub fn endpoints(
    model: &Model,
    _proxy: &Proxy,
    clusters: &BTreeMap<String, Cluster>,
) -> BTreeMap<String, ClusterLoadAssignment> {
    clusters
        .values()
        .filter_map(|cluster| cluster.eds_cluster_config.as_ref())
        .map(|eds| {
            let name = eds.service_name.clone();
            let endpoints = selected_endpoints(model, &name);
            (name.clone(), load_assignment(name, &endpoints))
        })
        .collect()
}

/// The endpoints an `outbound|PORT|SUBSET|HOST` cluster stands for.
fn selected_endpoints<'m>(model: &'m Model, cluster_name: &str) -> Vec<&'m Endpoint> {
    let mut parts = cluster_name.splitn(4, '|');
    let (Some("outbound"), Some(port), Some(subset), Some(host)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Vec::new();
    };
    let Some(service) = model.services.get(host) else {
        return Vec::new();
    };
    let port: u16 = port.parse().unwrap_or_default();
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

fn load_assignment(cluster_name: String, endpoints: &[&Endpoint]) -> ClusterLoadAssignment {
    let lb_endpoints: Vec<LbEndpoint> = endpoints
        .iter()
        .map(|endpoint| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
                address: Some(socket_address(endpoint.address.to_string(), endpoint.port)),
                ..Default::default()
            })),
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            ..Default::default()
        })
        .collect();
    let locality_weight = u32::try_from(lb_endpoints.len()).unwrap_or(u32::MAX);
    let localities = if lb_endpoints.is_empty() {
        Vec::new()
    } else {
        vec![LocalityLbEndpoints {
            lb_endpoints,
            load_balancing_weight: Some(UInt32Value {
                value: locality_weight,
            }),
            ..Default::default()
        }]
    };
    ClusterLoadAssignment {
        cluster_name,
        endpoints: localities,
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

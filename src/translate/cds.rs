//! CDS: one `outbound|PORT||HOST` cluster per service port, one `outbound|PORT|SUBSET|HOST` per
//! DestinationRule subset, and the `BlackHoleCluster` and `PassthroughCluster` every sidecar has.
//! Cluster defaults are istiod's: 10s connect timeout, LEAST_REQUEST, circuit breakers wide open,
//! HTTP/2 upstream for http2 and grpc ports; the DestinationRule's traffic policy for the port and
//! subset applies on top (see `cluster_policy`).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy,
};
use envoy_types::pb::envoy::config::cluster::v3::{CircuitBreakers, Cluster};
use envoy_types::pb::envoy::config::core::v3::{Http1ProtocolOptions, Http2ProtocolOptions};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    UpstreamProtocolOptions, UseDownstreamHttpConfig,
};

use super::cluster_policy::{
    ClusterBuilder, HTTP_PROTOCOL_OPTIONS, apply_traffic_policy, cluster_policy, default_thresholds,
};
use super::{
    BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER, ads_config_source, any, outbound_cluster_name,
    proto_duration,
};
use crate::model::{DestinationRule, Model, Protocol, Service, ServicePort};
use crate::proxy::Proxy;

pub(super) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

pub fn clusters(model: &Model, proxy: &Proxy) -> BTreeMap<String, Cluster> {
    let mut clusters = BTreeMap::new();
    for service in model.services.values() {
        let rule = model.destination_rules.get(&service.hostname);
        let subsets = rule.map(|rule| rule.subsets.as_slice()).unwrap_or_default();
        for port in &service.ports {
            let subset_names =
                std::iter::once("").chain(subsets.iter().map(|subset| subset.name.as_str()));
            for subset in subset_names {
                let cluster = outbound_cluster(service, port, subset, rule);
                clusters.insert(cluster.name.clone(), cluster);
            }
        }
    }
    let inbound = super::inbound::clusters(model, proxy);
    for cluster in [blackhole_cluster(), passthrough_cluster()]
        .into_iter()
        .chain(inbound)
    {
        clusters.insert(cluster.name.clone(), cluster);
    }
    clusters
}

fn outbound_cluster(
    service: &Service,
    port: &ServicePort,
    subset: &str,
    rule: Option<&DestinationRule>,
) -> Cluster {
    let name = outbound_cluster_name(port.port, subset, &service.hostname);
    let mut builder = ClusterBuilder {
        cluster: Cluster {
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            eds_cluster_config: Some(EdsClusterConfig {
                eds_config: Some(ads_config_source()),
                service_name: name.clone(),
            }),
            name,
            connect_timeout: Some(proto_duration(CONNECT_TIMEOUT)),
            lb_policy: LbPolicy::LeastRequest as i32,
            circuit_breakers: Some(wide_open_circuit_breakers()),
            ..Default::default()
        },
        http_options: None,
    };
    if matches!(port.protocol, Protocol::Http2 | Protocol::Grpc) {
        builder.set_http2();
    }
    let policy = cluster_policy(rule, port.port, subset);
    apply_traffic_policy(&mut builder, &policy);
    builder.build()
}

/// istiod leaves limits to DestinationRules: by default every threshold is the maximum.
pub(super) fn wide_open_circuit_breakers() -> CircuitBreakers {
    CircuitBreakers {
        thresholds: vec![default_thresholds()],
        ..Default::default()
    }
}

/// Traffic with nowhere to go: a static cluster without endpoints.
fn blackhole_cluster() -> Cluster {
    Cluster {
        name: BLACKHOLE_CLUSTER.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(proto_duration(CONNECT_TIMEOUT)),
        ..Default::default()
    }
}

/// Traffic to destinations outside the registry: forwarded to the address the client dialled.
pub(super) fn passthrough_cluster() -> Cluster {
    Cluster {
        name: PASSTHROUGH_CLUSTER.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        connect_timeout: Some(proto_duration(CONNECT_TIMEOUT)),
        lb_policy: LbPolicy::ClusterProvided as i32,
        circuit_breakers: Some(wide_open_circuit_breakers()),
        typed_extension_protocol_options: [(
            HTTP_PROTOCOL_OPTIONS.to_string(),
            any(&use_downstream_protocol()),
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

/// Upstream HTTP in whichever version the client spoke (istiod's `setUseDownstreamProtocol`),
/// for traffic whose protocol was sniffed rather than declared.
pub(super) fn use_downstream_protocol() -> HttpProtocolOptions {
    HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(
            UseDownstreamHttpConfig {
                http_protocol_options: Some(Http1ProtocolOptions::default()),
                http2_protocol_options: Some(Http2ProtocolOptions::default()),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

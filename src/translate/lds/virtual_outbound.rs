//! `virtualOutbound`, the listener iptables redirects a sidecar's outbound connections to, as
//! istiod builds it (`buildVirtualOutboundListener`). It only exists under interception; the
//! per-port listeners are the parent's business.

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch, Listener};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use super::{
    MAX_CONNECTIONS_PER_ACCEPT, VIRTUAL_OUTBOUND, WILDCARD, catch_all_filter, tcp_proxy_filter,
};
use crate::model::sidecar::OutboundPolicy;
use crate::proxy::{InterceptionMode, Proxy};
use crate::translate::BLACKHOLE_CLUSTER;
use crate::translate::eds::socket_address;

/// Receives every redirected outbound connection and hands it to the listener for its original
/// destination (`use_original_dst`); what no listener claims passes through (ALLOW_ANY) or goes
/// to the black hole (REGISTRY_ONLY) by `virtualOutbound-catchall-tcp`, whatever the policy.
/// Connections to its own `port` (the mesh config's `proxyListenPort`, 15001) would loop, so
/// they go to the black hole. Under TPROXY it accepts connections for any address.
pub(super) fn virtual_outbound(policy: OutboundPolicy, port: u16, proxy: &Proxy) -> Listener {
    let blackhole = FilterChain {
        name: format!("{VIRTUAL_OUTBOUND}-blackhole"),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(UInt32Value {
                value: u32::from(port),
            }),
            ..Default::default()
        }),
        filters: vec![tcp_proxy_filter(BLACKHOLE_CLUSTER)],
        ..Default::default()
    };
    let catch_all = FilterChain {
        name: format!("{VIRTUAL_OUTBOUND}-catchall-tcp"),
        filters: vec![catch_all_filter(policy)],
        ..Default::default()
    };
    let tproxy = proxy.interception == InterceptionMode::Tproxy;
    Listener {
        name: VIRTUAL_OUTBOUND.to_string(),
        address: Some(socket_address(WILDCARD.to_string(), port)),
        filter_chains: vec![blackhole, catch_all],
        use_original_dst: Some(BoolValue { value: true }),
        transparent: tproxy.then_some(BoolValue { value: true }),
        traffic_direction: TrafficDirection::Outbound as i32,
        max_connections_to_accept_per_socket_event: Some(MAX_CONNECTIONS_PER_ACCEPT),
        ..Default::default()
    }
}

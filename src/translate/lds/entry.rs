//! What istiod's `buildListenerFromEntry` does to every outbound listener of a sidecar once its
//! chains are known: the chain that matches everything becomes the default chain (or the only
//! chain), a listener without one gets `PassthroughFilterChain` as its default, so that traffic
//! no chain claims goes where the outbound traffic policy says rather than being dropped, and the
//! listener-wide settings istiod always writes. It decides no chain's content or match; the
//! virtual listeners and gateways are not its business.

use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::{HTTP_INSPECTOR, tcp_proxy_filter};
use crate::mesh_config::MeshConfig;
use crate::model::sidecar::OutboundPolicy;
use crate::translate::{BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER, proto_duration};

/// How long a TLS handshake on a chain may take before Envoy closes the connection (istiod's
/// `GATEWAY_TRANSPORT_SOCKET_CONNECT_TIMEOUT`, written on sidecar chains as well), against slow
/// handshakes holding connections open.
pub(in crate::translate) const TRANSPORT_SOCKET_CONNECT_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(15);
/// How many connections a listener that binds accepts per wake-up (istiod's
/// `MAX_CONNECTIONS_TO_ACCEPT_PER_SOCKET_EVENT`), so that a burst spreads over Envoy's workers.
pub(in crate::translate) const MAX_CONNECTIONS_PER_ACCEPT: UInt32Value = UInt32Value { value: 1 };
/// The default chain's name on listeners without a chain that matches everything.
const PASSTHROUGH_FILTER_CHAIN: &str = "PassthroughFilterChain";

/// The chain for connections nothing else matches: to the original destination under
/// ALLOW_ANY, to the black hole under REGISTRY_ONLY (istiod's
/// `buildOutboundCatchAllNetworkFiltersOnly`).
pub(super) fn catch_all_filter(policy: OutboundPolicy) -> Filter {
    tcp_proxy_filter(match policy {
        OutboundPolicy::AllowAny => PASSTHROUGH_CLUSTER,
        OutboundPolicy::RegistryOnly => BLACKHOLE_CLUSTER,
    })
}

/// Whether a chain matches every connection.
fn matches_all(chain: &FilterChain) -> bool {
    chain
        .filter_chain_match
        .as_ref()
        .is_none_or(|m| *m == FilterChainMatch::default())
}

/// Shapes an outbound listener as istiod finishes it (see the module doc).
pub(super) fn finish(
    mut listener: Listener,
    policy: OutboundPolicy,
    mesh: &MeshConfig,
) -> Listener {
    let mut default = listener.default_filter_chain.take();
    for mut chain in std::mem::take(&mut listener.filter_chains) {
        chain.transport_socket_connect_timeout =
            Some(proto_duration(TRANSPORT_SOCKET_CONNECT_TIMEOUT));
        if matches_all(&chain) {
            chain.filter_chain_match = None;
            default = Some(chain);
        } else {
            listener.filter_chains.push(chain);
        }
    }
    if listener.filter_chains.is_empty() {
        listener.filter_chains.extend(default);
    } else {
        listener.default_filter_chain = Some(default.unwrap_or_else(|| FilterChain {
            name: PASSTHROUGH_FILTER_CHAIN.to_string(),
            filter_chain_match: Some(FilterChainMatch::default()),
            filters: vec![catch_all_filter(policy)],
            ..Default::default()
        }));
    }
    // Protocol detection may wait as the mesh config says; other inspectors (TLS) as long as
    // the client takes, and a connection they gave up on still gets a chain.
    let sniffs = listener
        .listener_filters
        .iter()
        .any(|filter| filter.name == HTTP_INSPECTOR);
    let timeout = if sniffs {
        mesh.protocol_detection_timeout.0
    } else {
        std::time::Duration::ZERO
    };
    listener.listener_filters_timeout = Some(proto_duration(timeout));
    listener.continue_on_listener_filters_timeout = true;
    let binds = listener.bind_to_port.as_ref().is_none_or(|bind| bind.value);
    if binds {
        listener.max_connections_to_accept_per_socket_event = Some(MAX_CONNECTIONS_PER_ACCEPT);
    }
    listener
}

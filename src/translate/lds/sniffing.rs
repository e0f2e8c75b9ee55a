//! Outbound protocol sniffing: the listener istiod builds for a service port without a declared
//! protocol on the service's own address, and for an HTTP port on the wildcard address (where
//! traffic to destinations outside the registry arrives too). Which ports get one is the
//! parent's decision; this module only shapes the listener's chains and inspector
//! (`entry::finish` adds the default chain).

use envoy_types::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;

use super::{HTTP_INSPECTOR, listener, rds_connection_manager};
use crate::translate::typed_config;

/// What the HTTP inspector reports for plaintext HTTP that istiod's HTTP chains take (HTTP/1.0
/// only when istiod's `PILOT_HTTP10` is set, which rudder does not read; HTTP/1.0 goes on as
/// TCP).
pub(in crate::translate) const PLAINTEXT_HTTP_PROTOCOLS: [&str; 2] = ["http/1.1", "h2c"];
/// The transport protocol of connections no TLS inspector found to be TLS.
pub(in crate::translate) const RAW_BUFFER: &str = "raw_buffer";

/// istiod's outbound listener for sniffed traffic (`ListenerProtocolAuto`, or HTTP on the
/// wildcard address): the TCP chains first (the one that matches everything becomes the default
/// chain), then an HTTP chain for connections the HTTP inspector finds to be plaintext HTTP,
/// with the route configuration `route_name`. `bind`: it binds for real (no interception).
pub(super) fn sniffed_listener(
    address: &str,
    port: u16,
    tcp_chains: Vec<FilterChain>,
    route_name: &str,
    bind: bool,
    mesh: &crate::mesh_config::MeshConfig,
) -> Listener {
    let mut filter_chains = tcp_chains;
    filter_chains.push(FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            application_protocols: PLAINTEXT_HTTP_PROTOCOLS
                .iter()
                .map(ToString::to_string)
                .collect(),
            transport_protocol: RAW_BUFFER.to_string(),
            ..Default::default()
        }),
        filters: vec![rds_connection_manager(address, port, route_name, mesh)],
        ..Default::default()
    });
    let mut sniffed = listener(address, port, filter_chains, bind);
    sniffed.listener_filters = vec![ListenerFilter {
        name: HTTP_INSPECTOR.to_string(),
        config_type: typed_config(&HttpInspector::default())
            .map(listener_filter::ConfigType::TypedConfig),
        ..Default::default()
    }];
    sniffed
}

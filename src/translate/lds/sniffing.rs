//! Outbound protocol sniffing: the listener istiod builds for a service port without a declared
//! protocol on the service's own address. Which ports get one is the parent's decision; this
//! module only shapes the listener.

use envoy_types::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::google::protobuf::Any;

use super::{TLS_INSPECTOR, listener, rds_connection_manager};
use crate::translate::{proto_duration, typed_config};

/// What the HTTP inspector reports for plaintext HTTP that istiod's outbound HTTP chain takes
/// (HTTP/1.0 only when istiod's `PILOT_HTTP10` is set, which rudder does not read).
const SNIFFED_HTTP_PROTOCOLS: [&str; 2] = ["http/1.1", "h2c"];

/// istiod's outbound listener for a port without a declared protocol (`ListenerProtocolAuto`):
/// the TCP chains, whose catch-all becomes the default chain, and an HTTP chain for connections
/// the HTTP inspector finds to be plaintext HTTP, with the service's own route configuration
/// `HOST:PORT`. The TLS inspector runs first so that the HTTP chain's `raw_buffer` match holds.
pub(super) fn sniffed_listener(
    address: &str,
    port: u16,
    tcp_chains: Vec<FilterChain>,
    route_name: &str,
    mesh: &crate::mesh_config::MeshConfig,
) -> Listener {
    let (catch_all, mut filter_chains): (Vec<FilterChain>, Vec<FilterChain>) = tcp_chains
        .into_iter()
        .partition(|chain| chain.filter_chain_match.is_none());
    filter_chains.push(FilterChain {
        filter_chain_match: Some(FilterChainMatch {
            application_protocols: SNIFFED_HTTP_PROTOCOLS
                .iter()
                .map(ToString::to_string)
                .collect(),
            transport_protocol: "raw_buffer".to_string(),
            ..Default::default()
        }),
        filters: vec![rds_connection_manager(address, port, route_name, mesh)],
        ..Default::default()
    });
    let inspector = |name: &str, config: Option<Any>| ListenerFilter {
        name: name.to_string(),
        config_type: config.map(listener_filter::ConfigType::TypedConfig),
        ..Default::default()
    };
    let mut sniffed = listener(address, port, filter_chains, false);
    sniffed.default_filter_chain = catch_all.into_iter().next();
    sniffed.listener_filters = vec![
        inspector(TLS_INSPECTOR, typed_config(&TlsInspector::default())),
        inspector(
            "envoy.filters.listener.http_inspector",
            typed_config(&HttpInspector::default()),
        ),
    ];
    // The mesh config's protocolDetectionTimeout (0 by default: none); a connection whose
    // protocol is not detected in time goes on as TCP.
    sniffed.listener_filters_timeout = Some(proto_duration(mesh.protocol_detection_timeout.0));
    sniffed.continue_on_listener_filters_timeout = true;
    sniffed
}

//! LDS: outbound listeners, laid out as istiod does for a sidecar.
//! - HTTP service ports share one listener per port (`0.0.0.0_PORT`) whose connection manager
//!   fetches route config `"PORT"` over RDS.
//! - Other TCP ports get a TCP proxy listener per service address (`CLUSTERIP_PORT`).
//! - Under iptables interception these listeners do not bind; `virtualOutbound` (15001) receives
//!   the redirected connections and hands them over by original destination. With
//!   `INTERCEPTION_MODE: NONE` the per-port listeners bind for real on 127.0.0.1 (named
//!   `127.0.0.1_PORT`) and no virtual listeners exist.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::{
    PathWithEscapedSlashesAction, RouteSpecifier, UpgradeConfig,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use super::eds::socket_address;
use super::{
    BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER, ads_config_source, outbound_cluster_name, typed_config,
};
use crate::model::Model;
use crate::proxy::{InterceptionMode, Proxy, ProxyKind};

const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
const VIRTUAL_OUTBOUND_PORT: u16 = 15001;

/// The listeners, and the names of the route configurations they refer to.
pub fn listeners(model: &Model, proxy: &Proxy) -> (BTreeMap<String, Listener>, BTreeSet<String>) {
    // A gateway listens only where Gateway resources say; until rudder reads them, nowhere.
    if proxy.kind == ProxyKind::Router {
        return (BTreeMap::new(), BTreeSet::new());
    }
    let bind = proxy.interception == InterceptionMode::None;
    let wildcard = if bind { "127.0.0.1" } else { "0.0.0.0" };
    let mut listeners = BTreeMap::new();
    let mut routes = BTreeSet::new();

    // Under interception 15001 is virtualOutbound's own port; a service listener there would
    // duplicate its address, which Envoy rejects.
    let usable = |port: u16| bind || port != VIRTUAL_OUTBOUND_PORT;
    let http_ports: BTreeSet<u16> = model
        .services
        .values()
        .flat_map(|service| &service.ports)
        .filter(|port| port.protocol.is_http() && usable(port.port))
        .map(|port| port.port)
        .collect();
    for &port in &http_ports {
        let route_name = port.to_string();
        let listener = http_listener(wildcard, port, &route_name, bind);
        listeners.insert(listener.name.clone(), listener);
        routes.insert(route_name);
    }

    for service in model.services.values() {
        for port in service
            .ports
            .iter()
            .filter(|port| !port.protocol.is_http() && usable(port.port))
        {
            let cluster = outbound_cluster_name(port.port, "", &service.hostname);
            // Bound listeners all share loopback; headless services have no address of their own.
            let addresses: Vec<String> = if bind || service.cluster_ips.is_empty() {
                vec![wildcard.to_string()]
            } else {
                service
                    .cluster_ips
                    .iter()
                    .map(ToString::to_string)
                    .collect()
            };
            for address in addresses {
                let name = listener_name(&address, port.port);
                // The first service (by host name) keeps a contested address, as a port can
                // carry one protocol and one destination per address.
                if http_ports.contains(&port.port) && address == wildcard
                    || listeners.contains_key(&name)
                {
                    continue;
                }
                let chain = FilterChain {
                    filters: vec![tcp_proxy_filter(&cluster)],
                    ..Default::default()
                };
                let listener = listener(&address, port.port, vec![chain], bind);
                listeners.insert(listener.name.clone(), listener);
            }
        }
    }

    if !bind {
        let listener = virtual_outbound();
        listeners.insert(listener.name.clone(), listener);
    }
    (listeners, routes)
}

fn listener_name(address: &str, port: u16) -> String {
    format!("{address}_{port}")
}

fn listener(address: &str, port: u16, filter_chains: Vec<FilterChain>, bind: bool) -> Listener {
    Listener {
        name: listener_name(address, port),
        address: Some(socket_address(address.to_string(), port)),
        filter_chains,
        traffic_direction: TrafficDirection::Outbound as i32,
        bind_to_port: (!bind).then_some(BoolValue { value: false }),
        ..Default::default()
    }
}

fn http_listener(address: &str, port: u16, route_name: &str, bind: bool) -> Listener {
    let stat_prefix = format!("outbound_{}", listener_name(address, port));
    let chain = FilterChain {
        filters: vec![http_connection_manager(stat_prefix, route_name)],
        ..Default::default()
    };
    listener(address, port, vec![chain], bind)
}

fn http_connection_manager(stat_prefix: String, route_name: &str) -> Filter {
    let http_filters = vec![
        http_filter(
            "envoy.filters.http.fault",
            typed_config(&HttpFault::default()),
        ),
        http_filter("envoy.filters.http.cors", typed_config(&Cors::default())),
        http_filter(
            "envoy.filters.http.router",
            typed_config(&Router::default()),
        ),
    ];
    let manager = HttpConnectionManager {
        stat_prefix,
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: route_name.to_string(),
        })),
        http_filters,
        use_remote_address: Some(BoolValue { value: false }),
        normalize_path: Some(BoolValue { value: true }),
        path_with_escaped_slashes_action: PathWithEscapedSlashesAction::KeepUnchanged as i32,
        upgrade_configs: vec![UpgradeConfig {
            upgrade_type: "websocket".to_string(),
            ..Default::default()
        }],
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.http_connection_manager".to_string(),
        config_type: typed_config(&manager).map(filter::ConfigType::TypedConfig),
    }
}

fn http_filter(name: &str, config: Option<envoy_types::pb::google::protobuf::Any>) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: config.map(http_filter::ConfigType::TypedConfig),
        ..Default::default()
    }
}

fn tcp_proxy_filter(cluster: &str) -> Filter {
    let proxy = TcpProxy {
        stat_prefix: cluster.to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string())),
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.tcp_proxy".to_string(),
        config_type: typed_config(&proxy).map(filter::ConfigType::TypedConfig),
    }
}

/// Receives every redirected outbound connection and hands it to the listener for its original
/// destination; what no listener claims passes through. Connections to 15001 itself would loop,
/// so they go to the black hole.
fn virtual_outbound() -> Listener {
    let blackhole = FilterChain {
        name: "virtualOutbound-blackhole".to_string(),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(UInt32Value {
                value: u32::from(VIRTUAL_OUTBOUND_PORT),
            }),
            ..Default::default()
        }),
        filters: vec![tcp_proxy_filter(BLACKHOLE_CLUSTER)],
        ..Default::default()
    };
    let passthrough = FilterChain {
        name: "PassthroughFilterChain".to_string(),
        filters: vec![tcp_proxy_filter(PASSTHROUGH_CLUSTER)],
        ..Default::default()
    };
    Listener {
        name: VIRTUAL_OUTBOUND.to_string(),
        address: Some(socket_address("0.0.0.0".to_string(), VIRTUAL_OUTBOUND_PORT)),
        filter_chains: vec![blackhole],
        default_filter_chain: Some(passthrough),
        use_original_dst: Some(BoolValue { value: true }),
        listener_filters: vec![ListenerFilter {
            name: "envoy.filters.listener.original_dst".to_string(),
            config_type: typed_config(&OriginalDst::default())
                .map(listener_filter::ConfigType::TypedConfig),
            ..Default::default()
        }],
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Default::default()
    }
}

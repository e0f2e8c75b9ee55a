//! LDS: outbound listeners, laid out as istiod does for a sidecar.
//! - HTTP service ports share one listener per port (`0.0.0.0_PORT`) whose connection manager
//!   fetches route config `"PORT"` over RDS.
//! - Other TCP ports get a TCP proxy listener per service address (`CLUSTERIP_PORT`). Its filter
//!   chains come from the `tcp` routes (TCP ports) or `tls` routes (TLS and HTTPS ports) of the
//!   VirtualServices the proxy sees whose hosts cover the service, as istiod's
//!   `buildSidecarOutboundTCPTLSFilterChainOpts` builds them: `destinationSubnets` become
//!   `prefix_ranges`, `sniHosts` become `server_names` (with a TLS inspector on the listener), and
//!   the service's own cluster is the default when no rule catches everything.
//! - A port without a declared protocol on a service's own address is sniffed, as istiod does:
//!   the TCP chains (their catch-all as the default chain) and an HTTP chain for what the HTTP
//!   inspector finds to be plaintext HTTP, whose routes are the service's own route
//!   configuration `HOST:PORT`. So are such ports on the 127.0.0.1 listeners of
//!   `INTERCEPTION_MODE: NONE`, and on the wildcard address, where the HTTP chain takes the port's
//!   shared route configuration `PORT` (istiod names the route after the service unless the
//!   address is 0.0.0.0).
//! - Services without an address of their own (headless services, ServiceEntries without
//!   `addresses`) listen on the wildcard address, except the TCP ports of passthrough ones under
//!   interception, which get a listener per endpoint address (`passthrough`, as istiod), and none
//!   for a headless Service without endpoints; a ServiceEntry's CIDR blocks too, with its
//!   chains matching the blocks. Services on one address share its listener when their chains
//!   match different server names or blocks (TLS entries on 443, told apart by SNI); otherwise
//!   the first service by host name keeps it.
//! - Under iptables interception these listeners do not bind; `virtualOutbound` (15001) receives
//!   the redirected connections and hands them over by original destination. With
//!   `INTERCEPTION_MODE: NONE` the per-port listeners bind for real on 127.0.0.1 (named
//!   `127.0.0.1_PORT`) and no virtual listeners exist.
//! - Each Sidecar egress listener of the proxy's scope gets its own listeners, on its `bind`
//!   address and, with `captureMode: NONE`, bound for real; an address one egress listener took
//!   is not built again by a later one (the catch-all comes last).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::{CidrRange, TrafficDirection};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::grpc_stats::v3::FilterConfig as GrpcStats;
use envoy_types::pb::envoy::extensions::filters::http::grpc_stats::v3::filter_config::PerMethodStatSpecifier;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::{
    PathWithEscapedSlashesAction, RouteSpecifier, UpgradeConfig,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, RequestIdExtension, http_filter,
};
use envoy_types::pb::envoy::extensions::request_id::uuid::v3::UuidRequestIdConfig;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

mod entry;
mod passthrough;
mod sniffing;
mod virtual_outbound;

use super::cds::tcp_stat_prefix;
use super::eds::socket_address;
use super::rds::{destination_cluster, split_weights};
use super::scope::{ListenerScope, Scope};
use super::{ads_config_source, outbound_cluster_name, proto_duration, typed_config};
use crate::istio;
use crate::mesh_config::{MeshConfig, PathNormalization};
use crate::model::virtual_service::{for_sidecar, hosts_match};
use crate::model::{MESH_GATEWAY, Protocol, Service, ServicePort, VirtualService};
use crate::proxy::{InterceptionMode, Proxy};
use crate::translate::scope::ProxyView;
pub(in crate::translate) use entry::{
    MAX_CONNECTIONS_PER_ACCEPT, TRANSPORT_SOCKET_CONNECT_TIMEOUT,
};
use entry::{catch_all_filter, finish};
use passthrough::endpoint_listener_addresses;
use sniffing::sniffed_listener;
pub(in crate::translate) use sniffing::{PLAINTEXT_HTTP_PROTOCOLS, RAW_BUFFER};
use virtual_outbound::virtual_outbound;

const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";
/// How much of a connection's first bytes the TLS inspector reads for the ClientHello (istiod's;
/// Envoy's default is 64 KiB).
const TLS_INSPECTOR_READ_BUFFER: u32 = 512;
/// The address an outbound listener without a bind of its own listens on.
const WILDCARD: &str = "0.0.0.0";

/// The listeners, and the names of the route configurations they refer to.
pub fn listeners(scope: &Scope, proxy: &Proxy) -> (BTreeMap<String, Listener>, BTreeSet<String>) {
    let mut built = Built::default();
    // A listener address taken by an earlier egress listener stays with it, as in istiod.
    for listener in &scope.listeners {
        egress_listeners(listener, proxy, &mut built);
    }
    let mesh = &scope.view().mesh;
    let mut listeners: BTreeMap<String, Listener> = built
        .listeners
        .into_iter()
        .map(|(name, listener)| (name, finish(listener, scope.outbound_policy, mesh)))
        .collect();
    if proxy.interception != InterceptionMode::None {
        let listener = virtual_outbound(scope.outbound_policy, mesh.proxy_listen_port, proxy);
        listeners.insert(listener.name.clone(), listener);
    }
    (listeners, built.routes)
}

#[derive(Default)]
struct Built {
    listeners: BTreeMap<String, Listener>,
    routes: BTreeSet<String>,
}

/// The listeners of one Sidecar egress listener (or of everything the proxy sees): one per HTTP
/// port, one per TCP service address and port. They listen on its `bind` address when it has
/// one, else on 127.0.0.1 when they bind for real, else on 0.0.0.0 (HTTP) or the service's
/// addresses (TCP).
fn egress_listeners(scope: &ListenerScope, proxy: &Proxy, built: &mut Built) {
    let model = &scope.view;
    let bind = scope.bind_to_port;
    let wildcard = scope
        .bind
        .as_deref()
        .unwrap_or(if bind { "127.0.0.1" } else { WILDCARD });

    // Under interception virtualOutbound and virtualInbound have their own ports (the mesh
    // config's, 15001 and 15006); a service listener there would duplicate their address, which
    // Envoy rejects (istiod's `conflictWithReservedListener` leaves it out too).
    let usable = |port: u16| {
        bind || (port != model.mesh.proxy_listen_port
            && port != model.mesh.proxy_inbound_listen_port)
    };
    let http_ports: BTreeSet<u16> = model
        .services
        .values()
        .flat_map(|service| &service.ports)
        .filter(|port| port.protocol.is_http() && usable(port.port))
        .map(|port| port.port)
        .collect();
    for &port in &http_ports {
        let route_name = port.to_string();
        let listener = http_listener(wildcard, port, &route_name, bind, &model.mesh);
        if built.listeners.contains_key(&listener.name) {
            continue;
        }
        built.listeners.insert(listener.name.clone(), listener);
        built.routes.insert(route_name);
    }

    let taken: BTreeSet<String> = built.listeners.keys().cloned().collect();
    let sidecar_rules = for_sidecar(&model.virtual_services, &proxy.namespace);
    let rule_index = RuleIndex::new(&sidecar_rules);
    for service in model.services.values() {
        for port in service
            .ports
            .iter()
            .filter(|port| !port.protocol.is_http() && usable(port.port))
        {
            let cluster = outbound_cluster_name(port.port, "", &service.hostname);
            // Bound listeners all share one address; services without an address of their own
            // (headless services, entries without addresses) and entries' CIDR blocks take the
            // wildcard address, as in istiod, but for passthrough TCP ports (per endpoint).
            let shared_address = bind || scope.bind.is_some();
            let mut addresses: Vec<String> = Vec::new();
            if !shared_address {
                addresses.extend(service.cluster_ips.iter().map(ToString::to_string));
            }
            if !shared_address
                && let Some(endpoints) = endpoint_listener_addresses(service, port.port, proxy)
            {
                addresses = endpoints;
            } else if shared_address || addresses.is_empty() || !service.address_blocks.is_empty() {
                addresses.push(wildcard.to_string());
            }
            let rules = rules_for_host(&sidecar_rules, &rule_index, &service.hostname);
            for address in addresses {
                let name = listener_name(&address, port.port);
                // An address an earlier egress listener took stays with it, as in istiod.
                if http_ports.contains(&port.port) && address == wildcard || taken.contains(&name) {
                    continue;
                }
                let mut chains = if matches!(port.protocol, Protocol::Tls | Protocol::Https) {
                    let on_wildcard = address == WILDCARD;
                    tls_filter_chains(model, proxy, service, port, &cluster, &rules, on_wildcard)
                } else {
                    tcp_filter_chains(model, proxy, service, port, &cluster, &rules)
                };
                if address == wildcard && !bind && !service.address_blocks.is_empty() {
                    restrict_to_blocks(&mut chains, &service.address_blocks);
                }
                let listener = match built.listeners.remove(&name) {
                    // Services sharing an address share its listener when Envoy can tell their
                    // chains apart (server names, destination blocks); otherwise the first
                    // service (by host name) keeps it.
                    Some(mut shared) => {
                        add_distinct_chains(&mut shared, chains);
                        shared
                    }
                    // A port without a declared protocol: HTTP or not is told per connection,
                    // on every address, as istiod does.
                    None if port.protocol == Protocol::Unspecified => {
                        // The service's own route configuration, but on the real wildcard,
                        // where it shares the port's with the HTTP services.
                        let route_name = if address == WILDCARD {
                            port.port.to_string()
                        } else {
                            format!("{}:{}", service.hostname, port.port)
                        };
                        let listener = sniffed_listener(
                            &address,
                            port.port,
                            chains,
                            &route_name,
                            bind,
                            &model.mesh,
                        );
                        built.routes.insert(route_name);
                        listener
                    }
                    None => listener(&address, port.port, chains, bind),
                };
                built
                    .listeners
                    .insert(listener.name.clone(), with_tls_inspector(listener));
            }
        }
    }
}

/// Adds a TLS inspector to a listener that matches server names, once.
fn with_tls_inspector(mut listener: Listener) -> Listener {
    let sni = listener.filter_chains.iter().any(|chain| {
        chain
            .filter_chain_match
            .as_ref()
            .is_some_and(|m| !m.server_names.is_empty())
    });
    let present = listener
        .listener_filters
        .iter()
        .any(|filter| filter.name == TLS_INSPECTOR);
    if sni && !present {
        // Before the HTTP inspector, as istiod orders them.
        listener.listener_filters.insert(0, tls_inspector());
    }
    listener
}

/// The listener filter that reads SNI (and ALPN) for filter chain matching.
pub(super) fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: TLS_INSPECTOR.to_string(),
        config_type: typed_config(&TlsInspector {
            initial_read_buffer_size: Some(UInt32Value {
                value: TLS_INSPECTOR_READ_BUFFER,
            }),
            ..Default::default()
        })
        .map(listener_filter::ConfigType::TypedConfig),
        ..Default::default()
    }
}

/// `ADDRESS/LENGTH`, how a destination block is written and compared.
fn range_label(range: &CidrRange) -> String {
    format!(
        "{}/{}",
        range.address_prefix,
        range.prefix_len.unwrap_or_default().value
    )
}

/// The (destination block, server name) pairs a chain matches; empty strings for "any".
fn chain_keys(chain: &FilterChain) -> Vec<(String, String)> {
    let matching = chain.filter_chain_match.clone().unwrap_or_default();
    let ranges: Vec<String> = if matching.prefix_ranges.is_empty() {
        vec![String::new()]
    } else {
        matching.prefix_ranges.iter().map(range_label).collect()
    };
    let names = if matching.server_names.is_empty() {
        vec![String::new()]
    } else {
        matching.server_names
    };
    ranges
        .iter()
        .flat_map(|range| names.iter().map(move |name| (range.clone(), name.clone())))
        .collect()
}

/// Appends the chains that match particular server names or blocks no chain of the listener
/// claims yet (Envoy refuses two chains with the same match). A later service's catch-all chain
/// is never added: what the first service does not match stays unmatched, as before sharing.
fn add_distinct_chains(listener: &mut Listener, chains: Vec<FilterChain>) {
    let mut claimed: BTreeSet<(String, String)> =
        listener.filter_chains.iter().flat_map(chain_keys).collect();
    for chain in chains {
        let keys = chain_keys(&chain);
        let catch_all = keys
            .iter()
            .any(|(range, name)| range.is_empty() && name.is_empty());
        if catch_all || keys.iter().any(|key| claimed.contains(key)) {
            continue;
        }
        claimed.extend(keys);
        listener.filter_chains.push(chain);
    }
}

/// istiod's handling of a ServiceEntry's CIDR addresses: the listener binds the wildcard address
/// and the service's chains match connections to the blocks.
fn restrict_to_blocks(chains: &mut [FilterChain], blocks: &[String]) {
    let ranges: Vec<CidrRange> = blocks.iter().filter_map(|b| cidr_range(b)).collect();
    for chain in chains {
        let matching = chain
            .filter_chain_match
            .get_or_insert_with(Default::default);
        if matching.prefix_ranges.is_empty() {
            matching.prefix_ranges = ranges.clone();
        }
    }
}

pub(super) fn listener_name(address: &str, port: u16) -> String {
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

/// The listener of an HTTP port. On the wildcard address it sniffs, as istiod's does: traffic to
/// that port for destinations outside the registry arrives there too, and what is not plaintext
/// HTTP goes on as TCP by the default chain (see `entry`).
fn http_listener(
    address: &str,
    port: u16,
    route_name: &str,
    bind: bool,
    mesh: &MeshConfig,
) -> Listener {
    if address == WILDCARD && !bind {
        return sniffed_listener(address, port, Vec::new(), route_name, bind, mesh);
    }
    let chain = FilterChain {
        filters: vec![rds_connection_manager(address, port, route_name, mesh)],
        ..Default::default()
    };
    listener(address, port, vec![chain], bind)
}

/// The connection manager of an outbound HTTP chain, its routes over RDS.
fn rds_connection_manager(address: &str, port: u16, route_name: &str, mesh: &MeshConfig) -> Filter {
    http_connection_manager(
        mesh.path_normalization,
        format!("outbound_{}", listener_name(address, port)),
        RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: route_name.to_string(),
        }),
    )
}

/// An HTTP connection manager with istiod's filters and defaults, its routes from `routes`
/// (RDS outbound, inline inbound).
pub(super) fn http_connection_manager(
    paths: PathNormalization,
    stat_prefix: String,
    routes: RouteSpecifier,
) -> Filter {
    connection_manager_filter(&connection_manager(paths, stat_prefix, routes))
}

pub(super) fn connection_manager_filter(manager: &HttpConnectionManager) -> Filter {
    Filter {
        name: "envoy.filters.network.http_connection_manager".to_string(),
        config_type: typed_config(manager).map(filter::ConfigType::TypedConfig),
    }
}

/// The connection manager [`http_connection_manager`] wraps, for callers that adjust it.
/// `paths` is the mesh config's path normalization (istiod's `buildHTTPConnectionManager`).
/// What istiod sets on every connection manager: no stream idle timeout (requests wait on slow
/// upstreams as long as their route allows), upstream `100 Continue` forwarded, UUID request IDs
/// that also decide trace sampling, and the stat prefix ended by `;` (istiod's
/// `DelimitedStatsPrefix`). Inbound and gateway managers add their headers on top.
pub(super) fn connection_manager(
    paths: PathNormalization,
    stat_prefix: String,
    routes: RouteSpecifier,
) -> HttpConnectionManager {
    let grpc_stats = GrpcStats {
        emit_filter_state: true,
        per_method_stat_specifier: Some(PerMethodStatSpecifier::StatsForAllMethods(BoolValue {
            value: false,
        })),
        ..Default::default()
    };
    let http_filters = vec![
        http_filter("envoy.filters.http.grpc_stats", typed_config(&grpc_stats)),
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
    HttpConnectionManager {
        stat_prefix: format!("{stat_prefix};"),
        route_specifier: Some(routes),
        http_filters,
        use_remote_address: Some(BoolValue { value: false }),
        stream_idle_timeout: Some(proto_duration(std::time::Duration::ZERO)),
        proxy_100_continue: true,
        request_id_extension: Some(RequestIdExtension {
            typed_config: typed_config(&UuidRequestIdConfig {
                use_request_id_for_trace_sampling: Some(BoolValue { value: true }),
                ..Default::default()
            }),
        }),
        normalize_path: Some(BoolValue {
            value: paths != PathNormalization::None,
        }),
        merge_slashes: matches!(
            paths,
            PathNormalization::MergeSlashes | PathNormalization::DecodeAndMergeSlashes
        ),
        path_with_escaped_slashes_action: if paths == PathNormalization::DecodeAndMergeSlashes {
            PathWithEscapedSlashesAction::UnescapeAndForward
        } else {
            PathWithEscapedSlashesAction::KeepUnchanged
        } as i32,
        upgrade_configs: vec![UpgradeConfig {
            upgrade_type: "websocket".to_string(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn http_filter(name: &str, config: Option<envoy_types::pb::google::protobuf::Any>) -> HttpFilter {
    HttpFilter {
        name: name.to_string(),
        config_type: config.map(http_filter::ConfigType::TypedConfig),
        ..Default::default()
    }
}

pub(super) fn tcp_proxy_filter(cluster: &str) -> Filter {
    tcp_proxy_filter_named(cluster, cluster)
}

/// A TCP proxy to `cluster` whose stats go under `stat_prefix`.
pub(super) fn tcp_proxy_filter_named(stat_prefix: &str, cluster: &str) -> Filter {
    tcp_proxy(
        stat_prefix,
        tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string()),
    )
}

fn tcp_proxy(stat_prefix: &str, cluster_specifier: tcp_proxy::ClusterSpecifier) -> Filter {
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(cluster_specifier),
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.tcp_proxy".to_string(),
        config_type: typed_config(&proxy).map(filter::ConfigType::TypedConfig),
    }
}

/// A TCP proxy to a route's destinations (istiod's `buildOutboundNetworkFilters`): one cluster
/// (stats as [`tcp_stat_prefix`] says, with the listener's port), or weighted clusters under the
/// VirtualService's `name.namespace`.
pub(super) fn route_tcp_proxy(
    vs: &VirtualService,
    destinations: &[istio::RouteDestination],
    model: &ProxyView,
    listener_port: (u16, &str),
) -> Filter {
    let port = listener_port.0;
    if let [destination] = destinations {
        let destination = &destination.destination;
        let cluster = destination_cluster(destination, model, port);
        let subset = destination.subset.as_deref().unwrap_or_default();
        let prefix = tcp_stat_prefix(model, &cluster, &destination.host, subset, listener_port);
        return tcp_proxy_filter_named(&prefix, &cluster);
    }
    let weights = split_weights(destinations.iter().map(|d| d.weight));
    let clusters = destinations
        .iter()
        .zip(weights)
        .filter(|(_, weight)| *weight > 0)
        .map(
            |(destination, weight)| tcp_proxy::weighted_cluster::ClusterWeight {
                name: destination_cluster(&destination.destination, model, port),
                weight,
                ..Default::default()
            },
        )
        .collect();
    tcp_proxy(
        &format!("{}.{}", vs.name, vs.namespace),
        tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster { clusters }),
    )
}

/// The VirtualServices (positions in the sidecar's list) by exact host, and those with wildcard
/// hosts, so that finding a service's rules does not scan every rule.
struct RuleIndex<'m> {
    exact: BTreeMap<&'m str, Vec<usize>>,
    wildcards: Vec<(&'m str, usize)>,
}

impl<'m> RuleIndex<'m> {
    fn new(rules: &[&'m VirtualService]) -> Self {
        let mut index = RuleIndex {
            exact: BTreeMap::new(),
            wildcards: Vec::new(),
        };
        for (position, vs) in rules.iter().enumerate() {
            for host in &vs.hosts {
                if host.starts_with('*') {
                    index.wildcards.push((host.as_str(), position));
                } else {
                    index.exact.entry(host.as_str()).or_default().push(position);
                }
            }
        }
        index
    }
}

/// The rules whose hosts cover `host` (istiod's `getConfigsForHost`), in the sidecar's order.
fn rules_for_host<'m>(
    rules: &[&'m VirtualService],
    index: &RuleIndex<'_>,
    host: &str,
) -> Vec<&'m VirtualService> {
    let mut positions: BTreeSet<usize> = index
        .exact
        .get(host)
        .into_iter()
        .flatten()
        .copied()
        .collect();
    positions.extend(
        index
            .wildcards
            .iter()
            .filter(|(wildcard, _)| hosts_match(wildcard, host))
            .map(|(_, position)| *position),
    );
    positions
        .into_iter()
        .map(|position| rules[position])
        .collect()
}

/// istiod's `matchTCP` and `matchTLS`: what decides, while generating, whether an L4 match entry
/// applies to this proxy on this port.
fn l4_match_applies(
    proxy: &Proxy,
    port: u16,
    gateways: &[String],
    source_labels: &BTreeMap<String, String>,
    source_namespace: Option<&str>,
    match_port: Option<u32>,
) -> bool {
    let gateway_ok = gateways.is_empty() || gateways.iter().any(|g| g == MESH_GATEWAY);
    let labels_ok = source_labels
        .iter()
        .all(|(k, v)| proxy.labels.get(k) == Some(v));
    let port_ok = match_port.is_none_or(|p| p == 0 || p == u32::from(port));
    let namespace_ok = source_namespace.is_none_or(|ns| ns.is_empty() || ns == proxy.namespace);
    gateway_ok && labels_ok && port_ok && namespace_ok
}

/// A CIDR block as Envoy matches it, with the host bits masked (Envoy keys its filter chain
/// matches that way, and refuses two chains with the same key).
fn cidr_range(subnet: &str) -> Option<CidrRange> {
    let (address, length) = match subnet.split_once('/') {
        Some((address, length)) => (address, Some(length.parse::<u32>().ok()?)),
        None => (subnet, None),
    };
    let address: IpAddr = address.parse().ok()?;
    let (masked, length) = match address {
        IpAddr::V4(v4) => {
            let length = length.unwrap_or(32).min(32);
            let mask = u32::MAX.checked_shl(32 - length).unwrap_or(0);
            (IpAddr::V4((u32::from(v4) & mask).into()), length)
        }
        IpAddr::V6(v6) => {
            let length = length.unwrap_or(128).min(128);
            let mask = u128::MAX.checked_shl(128 - length).unwrap_or(0);
            (IpAddr::V6((u128::from(v6) & mask).into()), length)
        }
    };
    Some(CidrRange {
        address_prefix: masked.to_string(),
        prefix_len: Some(UInt32Value { value: length }),
    })
}

/// Filter chains whose matches Envoy could tell apart: a later chain loses the (destination
/// block, server name) pairs an earlier one already claims, and is left out when nothing is left.
/// Rules repeating an earlier rule's match never apply anyway; istiod would send chains Envoy
/// rejects as duplicates.
#[derive(Default)]
struct ChainSet {
    claimed: BTreeSet<(String, String)>,
    chains: Vec<FilterChain>,
}

impl ChainSet {
    /// Adds a chain for connections to `subnets` (any destination when empty) with
    /// `server_names` (any when empty), without the (block, name) pairs already taken: the names
    /// that collide are dropped, or else the blocks that do, whichever keeps more.
    fn push(&mut self, subnets: &[String], server_names: &[String], filter: Filter) {
        let ranges: Vec<CidrRange> = subnets.iter().filter_map(|s| cidr_range(s)).collect();
        let range_keys: Vec<String> = if ranges.is_empty() {
            vec![String::new()]
        } else {
            ranges
                .iter()
                .map(|r| {
                    let length = r.prefix_len.unwrap_or_default().value;
                    format!("{}/{length}", r.address_prefix)
                })
                .collect()
        };
        let names: Vec<String> = if server_names.is_empty() {
            vec![String::new()]
        } else {
            server_names.to_vec()
        };
        let free =
            |key: &String, name: &String| !self.claimed.contains(&(key.clone(), name.clone()));
        let free_names: Vec<String> = names
            .iter()
            .filter(|name| range_keys.iter().all(|key| free(key, name)))
            .cloned()
            .collect();
        let free_ranges: Vec<usize> = (0..range_keys.len())
            .filter(|&i| names.iter().all(|name| free(&range_keys[i], name)))
            .collect();
        let (kept_ranges, kept_names): (Vec<usize>, Vec<String>) =
            if free_names.len() * range_keys.len() >= free_ranges.len() * names.len() {
                ((0..range_keys.len()).collect(), free_names)
            } else {
                (free_ranges, names)
            };
        if kept_ranges.is_empty() || kept_names.is_empty() {
            return;
        }
        for &i in &kept_ranges {
            for name in &kept_names {
                self.claimed.insert((range_keys[i].clone(), name.clone()));
            }
        }
        let prefix_ranges: Vec<CidrRange> = ranges
            .into_iter()
            .enumerate()
            .filter(|(i, _)| kept_ranges.contains(i))
            .map(|(_, range)| range)
            .collect();
        let server_names: Vec<String> = kept_names.into_iter().filter(|n| !n.is_empty()).collect();
        let filter_chain_match =
            (!prefix_ranges.is_empty() || !server_names.is_empty()).then(|| FilterChainMatch {
                prefix_ranges,
                server_names,
                ..Default::default()
            });
        self.chains.push(FilterChain {
            filter_chain_match,
            filters: vec![filter],
            ..Default::default()
        });
    }
}

/// istiod's `buildSidecarOutboundTCPFilterChainOpts`: the `tcp` rules in order; a rule without
/// matches, or a match entry without `destinationSubnets`, catches everything and ends the list;
/// entries with subnets gather into one chain per rule. The service's own cluster takes what no
/// rule catches.
fn tcp_filter_chains(
    model: &ProxyView,
    proxy: &Proxy,
    service: &Service,
    service_port: &ServicePort,
    cluster: &str,
    rules: &[&VirtualService],
) -> Vec<FilterChain> {
    let port = service_port.port;
    let listener_port = (port, service_port.name.as_str());
    let mut chains = ChainSet::default();
    for vs in rules {
        for tcp in &vs.tcp {
            let filter = || route_tcp_proxy(vs, &tcp.route, model, listener_port);
            if tcp.matches.is_empty() {
                chains.push(&[], &[], filter());
                return chains.chains;
            }
            let mut subnets = Vec::new();
            for request in &tcp.matches {
                let applies = l4_match_applies(
                    proxy,
                    port,
                    &request.gateways,
                    &request.source_labels,
                    request.source_namespace.as_deref(),
                    request.port,
                );
                if !applies {
                    continue;
                }
                if request.destination_subnets.is_empty() {
                    chains.push(&[], &[], filter());
                    return chains.chains;
                }
                subnets.extend(request.destination_subnets.iter().cloned());
            }
            if !subnets.is_empty() {
                chains.push(&subnets, &[], filter());
            }
        }
    }
    // istiod names the service's own chain's stats after a port without a name.
    let prefix = tcp_stat_prefix(model, cluster, &service.hostname, "", (port, ""));
    chains.push(&[], &[], tcp_proxy_filter_named(&prefix, cluster));
    chains.chains
}

/// istiod's `buildSidecarOutboundTLSFilterChainOpts`: a chain per applicable `tls` match entry,
/// matched by its `sniHosts` (and `destinationSubnets`); without any, the service's own cluster,
/// matched by its host name only where nothing else tells services apart: on the wildcard
/// address (`on_wildcard`), for a service without an address of its own or with CIDR blocks. A
/// listener bound to one address (127.0.0.1 without interception) takes any connection for it.
fn tls_filter_chains(
    model: &ProxyView,
    proxy: &Proxy,
    service: &Service,
    service_port: &ServicePort,
    cluster: &str,
    rules: &[&VirtualService],
    on_wildcard: bool,
) -> Vec<FilterChain> {
    let port = service_port.port;
    let listener_port = (port, service_port.name.as_str());
    let mut chains = ChainSet::default();
    let mut matched = false;
    for vs in rules {
        for tls in &vs.tls {
            for request in &tls.matches {
                let applies = l4_match_applies(
                    proxy,
                    port,
                    &request.gateways,
                    &request.source_labels,
                    request.source_namespace.as_deref(),
                    request.port,
                );
                if applies {
                    let filter = route_tcp_proxy(vs, &tls.route, model, listener_port);
                    chains.push(&request.destination_subnets, &request.sni_hosts, filter);
                    matched = true;
                }
            }
        }
    }
    if !matched {
        let tells_apart_by_name =
            service.cluster_ips.is_empty() || !service.address_blocks.is_empty();
        let server_names = if on_wildcard && tells_apart_by_name {
            vec![service.hostname.clone()]
        } else {
            Vec::new()
        };
        let prefix = tcp_stat_prefix(model, cluster, &service.hostname, "", (port, ""));
        chains.push(&[], &server_names, tcp_proxy_filter_named(&prefix, cluster));
    }
    chains.chains
}

#[cfg(test)]
mod tests;

//! Inbound: what a sidecar does with connections to its own workload, laid out as istiod's
//! `listener_inbound.go` and `cluster_builder.go` do it. Which ports exist, and how each is
//! reached, is `ports`' business (Services selecting the workload, ServiceEntry endpoints at
//! the proxy's address, or the Sidecar's `ingress`).
//! - `virtualInbound` (0.0.0.0:15006) receives every redirected inbound connection and picks a
//!   filter chain by original destination port: `BIND_PORT` for each inbound port (an HTTP
//!   connection manager with an inline route config `inbound|PORT||`, or a TCP proxy),
//!   `virtualInbound-catchall-http` and `virtualInbound` for other ports (to
//!   `InboundPassthroughCluster`), and `virtualInbound-blackhole` for 15006 itself, which would
//!   loop. It exists only under interception.
//! - A port that binds for real (a Sidecar ingress listener with `captureMode: NONE`, or any
//!   under `INTERCEPTION_MODE: NONE`) gets a listener `BIND_PORT` of its own with the same chains.
//! - Ports without a declared protocol are sniffed (`http_inspector`): HTTP goes through the
//!   HTTP chain, anything else through the TCP one.
//! - `inbound|PORT||` clusters go to the original destination on the target port, bound to
//!   127.0.0.6 so that iptables lets Envoy's own connections to the application through; a
//!   Sidecar ingress `defaultEndpoint` makes them STATIC to loopback, the workload's address or a
//!   Unix domain socket instead.
//!
//! This module does not decide outbound layout (see `lds`) nor mTLS (rudder has none).

mod ports;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, CommonLbConfig, DiscoveryType, LbConfig, LbPolicy, OriginalDstLbConfig,
};
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{
    Address, BindConfig, ExtraSourceAddress, Pipe, SocketAddress, TrafficDirection, address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::listener_filter_chain_match_predicate::{
    MatchSet, Rule,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
    ListenerFilterChainMatchPredicate, listener_filter,
};
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use envoy_types::pb::envoy::config::route::v3::{
    Decorator, RetryPolicy, Route, RouteAction, RouteConfiguration, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::listener::original_src::v3::OriginalSrc;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::{
    ForwardClientCertDetails, RouteSpecifier, SetCurrentClientCertDetails,
};
use envoy_types::pb::envoy::r#type::v3::Int32Range;
use envoy_types::pb::google::protobuf::{BoolValue, Duration as ProtoDuration, UInt32Value};

use super::cds::{
    StatNames, alt_stat_name, passthrough_cluster, stat_prefix, use_downstream_protocol,
    wide_open_circuit_breakers,
};
use super::cluster_policy::ClusterBuilder;
use super::eds::socket_address;
use super::lds::{
    MAX_CONNECTIONS_PER_ACCEPT, PLAINTEXT_HTTP_PROTOCOLS, RAW_BUFFER, connection_manager,
    connection_manager_filter, tcp_proxy_filter, tcp_proxy_filter_named,
};
use super::rds::{prefix_match, route_action_defaults};
use super::{BLACKHOLE_CLUSTER, ISTIO_SERVER_NAME, proto_duration, typed_config};
use crate::mesh_config::{MeshConfig, PathNormalization};
use crate::model::sidecar::IngressEndpoint;
use crate::model::{Model, Protocol};
use crate::proxy::{InterceptionMode, Proxy, ProxyKind};
use ports::{InboundPort, WILDCARD, inbound_ports, intercepted};

const VIRTUAL_INBOUND: &str = "virtualInbound";
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
/// The source addresses of Envoy's connections to its own workload; istio-init's rules let
/// traffic from them through instead of redirecting it back to Envoy.
const PASSTHROUGH_BIND_V4: &str = "127.0.0.6";
const PASSTHROUGH_BIND_V6: &str = "::6";
/// The mark TPROXY interception routes back to Envoy (istio-init's default).
const TPROXY_MARK: u32 = 1337;
/// istiod never cleans up inbound ORIGINAL_DST hosts: the only host is the workload itself. Its
/// "never" is the longest duration in whole seconds a Go `time.Duration` holds (about 292 years).
const NEVER_CLEAN_UP: ProtoDuration = ProtoDuration {
    seconds: (i64::MAX - 999_999_999) / 1_000_000_000,
    nanos: 0,
};

/// `inbound|PORT||`, Istio's name for the cluster to the application's port.
pub fn inbound_cluster_name(port: u16) -> String {
    format!("inbound|{port}||")
}

/// The inbound listeners of a sidecar: `virtualInbound` under interception, and one listener per
/// port that binds for real.
pub(super) fn listeners(model: &Model, proxy: &Proxy) -> Vec<Listener> {
    let ports = inbound_ports(model, proxy);
    let (bound, redirected): (BTreeMap<u16, InboundPort>, BTreeMap<u16, InboundPort>) =
        ports.into_iter().partition(|(_, port)| port.bind_to_port);
    let mut listeners: Vec<Listener> = bound
        .values()
        .map(|port| bound_listener(port, &model.mesh))
        .collect();
    if proxy.kind == ProxyKind::Sidecar && intercepted(proxy) {
        listeners.push(virtual_inbound(proxy, &redirected, &model.mesh));
    }
    listeners
}

/// A port's own listener, on its bind address: no original destination to read, and sniffing
/// only when the port's protocol is not declared.
fn bound_listener(port: &InboundPort, mesh: &MeshConfig) -> Listener {
    let mut listener_filters = Vec::new();
    if port.protocol == Protocol::Unspecified {
        listener_filters.push(listener_filter(
            "envoy.filters.listener.http_inspector",
            typed_config(&HttpInspector::default()),
        ));
    }
    Listener {
        name: chain_name(port),
        address: Some(socket_address(port.bind.clone(), port.port)),
        filter_chains: port_chains(port, mesh),
        listener_filters,
        continue_on_listener_filters_timeout: true,
        traffic_direction: TrafficDirection::Inbound as i32,
        max_connections_to_accept_per_socket_event: Some(MAX_CONNECTIONS_PER_ACCEPT),
        ..Default::default()
    }
}

/// `virtualInbound`, with the chains of the ports that do not bind for real, after its own
/// catch-all chains (istiod's order).
fn virtual_inbound(
    proxy: &Proxy,
    ports: &BTreeMap<u16, InboundPort>,
    mesh: &MeshConfig,
) -> Listener {
    let virtual_inbound_port = mesh.proxy_inbound_listen_port;
    let mut filter_chains = vec![FilterChain {
        name: format!("{VIRTUAL_INBOUND}-blackhole"),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(UInt32Value {
                value: u32::from(virtual_inbound_port),
            }),
            ..Default::default()
        }),
        filters: vec![tcp_proxy_filter(BLACKHOLE_CLUSTER)],
        ..Default::default()
    }];
    filter_chains.push(FilterChain {
        name: format!("{VIRTUAL_INBOUND}-catchall-http"),
        filter_chain_match: Some(http_match(None)),
        filters: vec![http_filter(
            mesh.path_normalization,
            INBOUND_PASSTHROUGH_CLUSTER.to_string(),
            passthrough_route_config(),
        )],
        ..Default::default()
    });
    // istiod names the passthrough chain's stats as a port 0 named after the listener, of no
    // service.
    let passthrough_stats = match mesh.inbound_cluster_stat_name.as_str() {
        "" => INBOUND_PASSTHROUGH_CLUSTER.to_string(),
        pattern => stat_prefix(
            pattern,
            &StatNames::host(""),
            "",
            (0, VIRTUAL_INBOUND),
            None,
        ),
    };
    filter_chains.push(FilterChain {
        name: VIRTUAL_INBOUND.to_string(),
        filter_chain_match: Some(FilterChainMatch {
            transport_protocol: RAW_BUFFER.to_string(),
            ..Default::default()
        }),
        filters: vec![tcp_proxy_filter_named(
            &passthrough_stats,
            INBOUND_PASSTHROUGH_CLUSTER,
        )],
        ..Default::default()
    });
    for port in ports.values() {
        filter_chains.extend(port_chains(port, mesh));
    }

    let mut listener_filters = vec![listener_filter(
        "envoy.filters.listener.original_dst",
        typed_config(&OriginalDst::default()),
    )];
    let tproxy = proxy.interception == InterceptionMode::Tproxy;
    if tproxy {
        // The application sees the real client address, as it would without a sidecar.
        listener_filters.push(listener_filter(
            "envoy.filters.listener.original_src",
            typed_config(&OriginalSrc {
                mark: TPROXY_MARK,
                ..Default::default()
            }),
        ));
    }
    let mut inspector = listener_filter(
        "envoy.filters.listener.http_inspector",
        typed_config(&HttpInspector::default()),
    );
    // Ports with a declared protocol need no sniffing, and server-first protocols on them would
    // otherwise wait for the inspector's timeout.
    inspector.filter_disabled = declared_ports_predicate(ports, virtual_inbound_port);
    listener_filters.push(inspector);

    Listener {
        name: VIRTUAL_INBOUND.to_string(),
        address: Some(socket_address(WILDCARD.to_string(), virtual_inbound_port)),
        filter_chains,
        listener_filters,
        // istiod's: how long sniffing may wait (0, the default, waits as long as it takes).
        listener_filters_timeout: Some(proto_duration(mesh.protocol_detection_timeout.0)),
        continue_on_listener_filters_timeout: true,
        transparent: tproxy.then_some(BoolValue { value: true }),
        traffic_direction: TrafficDirection::Inbound as i32,
        max_connections_to_accept_per_socket_event: Some(MAX_CONNECTIONS_PER_ACCEPT),
        ..Default::default()
    }
}

/// `BIND_PORT`: a port's chain and listener name, as istiod's `getListenerName`.
fn chain_name(port: &InboundPort) -> String {
    format!("{}_{}", port.bind, port.port)
}

fn listener_filter(
    name: &str,
    config: Option<envoy_types::pb::google::protobuf::Any>,
) -> ListenerFilter {
    ListenerFilter {
        name: name.to_string(),
        config_type: config.map(listener_filter::ConfigType::TypedConfig),
        ..Default::default()
    }
}

/// Matches connections to any of the ports with a declared protocol, and to `own_port` (whose
/// connections go to the black hole whatever they speak), as istiod's predicate does.
fn declared_ports_predicate(
    ports: &BTreeMap<u16, InboundPort>,
    own_port: u16,
) -> Option<ListenerFilterChainMatchPredicate> {
    let declared: std::collections::BTreeSet<u16> = ports
        .values()
        .filter(|port| port.protocol != Protocol::Unspecified)
        .map(|port| port.port)
        .chain(std::iter::once(own_port))
        .collect();
    let mut rules: Vec<ListenerFilterChainMatchPredicate> = declared
        .into_iter()
        .map(|port| ListenerFilterChainMatchPredicate {
            rule: Some(Rule::DestinationPortRange(Int32Range {
                start: i32::from(port),
                end: i32::from(port) + 1,
            })),
        })
        .collect();
    match rules.len() {
        0 => None,
        1 => rules.pop(),
        _ => Some(ListenerFilterChainMatchPredicate {
            rule: Some(Rule::OrMatch(MatchSet { rules })),
        }),
    }
}

/// The chains of one inbound port: HTTP, TCP, or both told apart by sniffing.
fn port_chains(port: &InboundPort, mesh: &MeshConfig) -> Vec<FilterChain> {
    let paths = mesh.path_normalization;
    let name = chain_name(port);
    let cluster = inbound_cluster_name(port.port);
    let http = || FilterChain {
        name: name.clone(),
        filter_chain_match: Some(http_match(Some(port.port))),
        filters: vec![http_filter(
            paths,
            format!("inbound_{name}"),
            inbound_route_config(port),
        )],
        ..Default::default()
    };
    let tcp = || FilterChain {
        name: name.clone(),
        filter_chain_match: Some(port_match(port.port)),
        filters: vec![tcp_proxy_filter_named(
            &inbound_tcp_stat_prefix(port, mesh, &cluster),
            &cluster,
        )],
        ..Default::default()
    };
    match port.protocol {
        Protocol::Http | Protocol::Http2 | Protocol::Grpc => {
            let mut chain = http();
            chain.filter_chain_match = Some(port_match(port.port));
            vec![chain]
        }
        Protocol::Unspecified => vec![http(), tcp()],
        Protocol::Https | Protocol::Tls | Protocol::Tcp => vec![tcp()],
    }
}

/// An inbound TCP proxy's stat prefix: its cluster's name, or `inboundClusterStatName` filled in
/// as istiod's `BuildInboundStatPrefix` does (which leaves `%TARGET_PORT%` alone).
fn inbound_tcp_stat_prefix(port: &InboundPort, mesh: &MeshConfig, cluster: &str) -> String {
    let pattern = &mesh.inbound_cluster_stat_name;
    if pattern.is_empty() {
        return cluster.to_string();
    }
    let service_port = (port.service_port, port.service_port_name.as_str());
    stat_prefix(pattern, &port.chain_names, "", service_port, None)
}

/// Plaintext connections to `port` (inbound mutual TLS, which rudder does not build, would be
/// told apart by transport protocol).
fn port_match(port: u16) -> FilterChainMatch {
    FilterChainMatch {
        destination_port: Some(UInt32Value {
            value: u32::from(port),
        }),
        transport_protocol: RAW_BUFFER.to_string(),
        ..Default::default()
    }
}

/// Connections the HTTP inspector found to be plaintext HTTP (to `port`, or any port).
fn http_match(port: Option<u16>) -> FilterChainMatch {
    FilterChainMatch {
        destination_port: port.map(|port| UInt32Value {
            value: u32::from(port),
        }),
        transport_protocol: RAW_BUFFER.to_string(),
        application_protocols: PLAINTEXT_HTTP_PROTOCOLS
            .iter()
            .map(ToString::to_string)
            .collect(),
        ..Default::default()
    }
}

/// An inbound connection manager: istiod's, which names itself `istio-envoy` in the `server`
/// header and appends the client certificate's details to `x-forwarded-client-cert` (only a
/// mutual TLS client has one).
fn http_filter(
    paths: PathNormalization,
    stat_prefix: String,
    routes: RouteConfiguration,
) -> Filter {
    let mut manager = connection_manager(paths, stat_prefix, RouteSpecifier::RouteConfig(routes));
    manager.server_name = ISTIO_SERVER_NAME.to_string();
    manager.forward_client_cert_details = ForwardClientCertDetails::AppendForward as i32;
    manager.set_current_client_cert_details = Some(SetCurrentClientCertDetails {
        subject: Some(BoolValue { value: true }),
        dns: true,
        uri: true,
        ..Default::default()
    });
    connection_manager_filter(&manager)
}

/// istiod's `BuildDefaultHTTPInboundRoute`: everything to the application, no timeout, and
/// only the retries of requests whose connection was reset before they were sent (not for gRPC,
/// whose streams that breaks). The virtual host is named after the service port.
fn inbound_route_config(port: &InboundPort) -> RouteConfiguration {
    let cluster = inbound_cluster_name(port.port);
    let operation = format!("{}:{}/*", port.service, port.service_port);
    let retry = port.protocol != Protocol::Grpc;
    route_config(
        cluster,
        format!("inbound|http|{}", port.service_port),
        operation,
        retry,
    )
}

/// The catch-all HTTP chain's routes; istiod names their operation after no service (`:0`).
fn passthrough_route_config() -> RouteConfiguration {
    route_config(
        INBOUND_PASSTHROUGH_CLUSTER.to_string(),
        "inbound|http|0".to_string(),
        ":0/*".to_string(),
        true,
    )
}

fn route_config(
    cluster: String,
    virtual_host: String,
    operation: String,
    retry: bool,
) -> RouteConfiguration {
    let retry_policy = retry.then(|| RetryPolicy {
        retry_on: "reset-before-request".to_string(),
        num_retries: Some(UInt32Value { value: 2 }),
        ..Default::default()
    });
    let route = Route {
        name: "default".to_string(),
        r#match: Some(prefix_match("/")),
        action: Some(Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.clone())),
            ..route_action_defaults(None, retry_policy)
        })),
        decorator: Some(Decorator {
            operation,
            ..Default::default()
        }),
        ..Default::default()
    };
    RouteConfiguration {
        name: cluster,
        virtual_hosts: vec![VirtualHost {
            name: virtual_host,
            domains: vec!["*".to_string()],
            routes: vec![route],
            ..Default::default()
        }],
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// `inbound|PORT||` for every inbound port, and `InboundPassthroughCluster`, for a sidecar
/// (istiod sends the latter whatever the interception mode).
pub(super) fn clusters(model: &Model, proxy: &Proxy) -> Vec<Cluster> {
    if proxy.kind != ProxyKind::Sidecar {
        return Vec::new();
    }
    let bind = passthrough_bind(proxy);
    let mut clusters: Vec<Cluster> = inbound_ports(model, proxy)
        .values()
        .map(|port| inbound_cluster(port, proxy, &bind, &model.mesh))
        .collect();
    let mut passthrough = passthrough_cluster(&model.mesh);
    passthrough.name = INBOUND_PASSTHROUGH_CLUSTER.to_string();
    passthrough.upstream_bind_config = Some(bind);
    clusters.push(passthrough);
    clusters
}

/// To the application: at the original destination on the target port, or where the Sidecar's
/// `defaultEndpoint` says.
fn inbound_cluster(
    port: &InboundPort,
    proxy: &Proxy,
    bind: &BindConfig,
    mesh: &MeshConfig,
) -> Cluster {
    let name = inbound_cluster_name(port.port);
    let mut cluster = Cluster {
        name: name.clone(),
        connect_timeout: Some(proto_duration(mesh.connect_timeout.0)),
        circuit_breakers: Some(wide_open_circuit_breakers()),
        alt_stat_name: alt_stat_name(name.as_str()),
        // istiod's (empty): panic mode stays Envoy's, the workload being the only host.
        common_lb_config: Some(CommonLbConfig::default()),
        ..Default::default()
    };
    let (static_address, needs_bind) = match &port.endpoint {
        IngressEndpoint::OriginalDestination { port: target } => {
            cluster.lb_policy = LbPolicy::ClusterProvided as i32;
            // Only a port other than the one connected to is written, as istiod does.
            cluster.lb_config = (*target != port.port).then(|| {
                LbConfig::OriginalDstLbConfig(OriginalDstLbConfig {
                    upstream_port_override: Some(UInt32Value {
                        value: u32::from(*target),
                    }),
                    ..Default::default()
                })
            });
            cluster.cleanup_interval = Some(NEVER_CLEAN_UP);
            (None, true)
        }
        // Connections to loopback never meet the redirect rules, so they need no source address.
        IngressEndpoint::Loopback { ipv6, port } => (
            Some(socket_address(loopback(proxy, *ipv6).to_string(), *port)),
            false,
        ),
        IngressEndpoint::WorkloadAddress { ipv6, port } => {
            let own = proxy
                .ips
                .iter()
                .find(|ip| ip.is_ipv6() == *ipv6)
                .map(ToString::to_string)
                .unwrap_or_else(|| loopback(proxy, *ipv6).to_string());
            (Some(socket_address(own, *port)), true)
        }
        // istiod binds these to 127.0.0.6 too, which a Unix domain socket cannot take.
        IngressEndpoint::Unix(path) => (
            Some(Address {
                address: Some(address::Address::Pipe(Pipe {
                    path: path.clone(),
                    ..Default::default()
                })),
            }),
            false,
        ),
    };
    match static_address {
        None => {
            cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(
                DiscoveryType::OriginalDst as i32,
            ));
        }
        Some(address) => {
            cluster.cluster_discovery_type =
                Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
            // No load balancer policy: istiod applies none to inbound clusters (ROUND_ROBIN).
            cluster.load_assignment = Some(ClusterLoadAssignment {
                cluster_name: name,
                endpoints: vec![LocalityLbEndpoints {
                    lb_endpoints: vec![LbEndpoint {
                        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                            address: Some(address),
                            ..Default::default()
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
    }
    if needs_bind {
        cluster.upstream_bind_config = Some(bind.clone());
    }
    let mut builder = ClusterBuilder {
        cluster,
        http_options: None,
    };
    match port.protocol {
        Protocol::Http2 | Protocol::Grpc => builder.set_http2(),
        // A sniffed port speaks to the application in the protocol the client used.
        Protocol::Unspecified => builder.http_options = Some(use_downstream_protocol()),
        Protocol::Http | Protocol::Https | Protocol::Tls | Protocol::Tcp => {}
    }
    let pattern = &mesh.inbound_cluster_stat_name;
    if !pattern.is_empty() {
        // istiod's `buildInboundCluster`: the service port, and the cluster's port as the target.
        let service_port = (port.service_port, port.service_port_name.as_str());
        let prefix = stat_prefix(
            pattern,
            &port.cluster_names,
            "",
            service_port,
            Some(port.port),
        );
        builder.cluster.alt_stat_name = alt_stat_name(prefix);
    }
    builder.build()
}

/// The loopback address of the family asked for, unless the proxy has addresses of the other
/// family only (istiod's preference among the proxy's local hosts).
fn loopback(proxy: &Proxy, ipv6: bool) -> &'static str {
    let has_v4 = proxy.ips.iter().any(std::net::IpAddr::is_ipv4);
    let has_v6 = proxy.ips.iter().any(std::net::IpAddr::is_ipv6);
    let only_other_family = if ipv6 {
        has_v4 && !has_v6
    } else {
        has_v6 && !has_v4
    };
    if ipv6 != only_other_family {
        "::1"
    } else {
        "127.0.0.1"
    }
}

/// 127.0.0.6 (and ::6 when the proxy has IPv6 addresses too; ::6 alone when it has only those).
fn passthrough_bind(proxy: &Proxy) -> BindConfig {
    let has_v4 = proxy.ips.iter().any(std::net::IpAddr::is_ipv4);
    let has_v6 = proxy.ips.iter().any(std::net::IpAddr::is_ipv6);
    let address = |ip: &str| SocketAddress {
        address: ip.to_string(),
        port_specifier: Some(PortSpecifier::PortValue(0)),
        ..Default::default()
    };
    let primary = if has_v4 || !has_v6 {
        PASSTHROUGH_BIND_V4
    } else {
        PASSTHROUGH_BIND_V6
    };
    let extra = (has_v4 && has_v6).then(|| ExtraSourceAddress {
        address: Some(address(PASSTHROUGH_BIND_V6)),
        ..Default::default()
    });
    BindConfig {
        source_address: Some(address(primary)),
        extra_source_addresses: extra.into_iter().collect(),
        ..Default::default()
    }
}

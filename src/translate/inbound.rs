//! Inbound: what a sidecar under iptables interception does with connections to its own
//! workload, laid out as istiod's `listener_inbound.go` and `cluster_builder.go` do it.
//! - `virtualInbound` (0.0.0.0:15006) receives every redirected inbound connection and picks a
//!   filter chain by original destination port: `0.0.0.0_PORT` for each target port a Service
//!   selecting the proxy's workload sends traffic to (an HTTP connection manager with an inline
//!   route config `inbound|PORT||`, or a TCP proxy), `virtualInbound-catchall-http` and
//!   `virtualInbound` for ports no Service declares (to `InboundPassthroughCluster`), and
//!   `virtualInbound-blackhole` for 15006 itself, which would loop.
//! - Ports without a declared protocol are sniffed (`http_inspector`): HTTP goes through the
//!   HTTP chain, anything else through the TCP one.
//! - `inbound|PORT||` clusters are ORIGINAL_DST to the target port, bound to 127.0.0.6 so that
//!   iptables lets Envoy's own connections to the application through.
//!
//! The proxy's workload is the Pod with one of the proxy's IPs; any other kind of workload (a
//! WorkloadEntry) only has to appear in `Model::workloads` to get the same treatment. This module
//! does not decide outbound layout (see `lds`) nor mTLS (rudder has none).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy, OriginalDstLbConfig,
};
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{
    BindConfig, ExtraSourceAddress, SocketAddress, TrafficDirection,
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
    Decorator, Route, RouteAction, RouteConfiguration, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::listener::original_src::v3::OriginalSrc;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::r#type::v3::Int32Range;
use envoy_types::pb::google::protobuf::{BoolValue, Duration as ProtoDuration, UInt32Value};

use super::cds::{
    CONNECT_TIMEOUT, passthrough_cluster, use_downstream_protocol, wide_open_circuit_breakers,
};
use super::cluster_policy::ClusterBuilder;
use super::eds::socket_address;
use super::lds::{http_connection_manager, tcp_proxy_filter};
use super::rds::{prefix_match, route_action_defaults};
use super::{BLACKHOLE_CLUSTER, proto_duration, typed_config};
use crate::model::{Model, Protocol, Workload};
use crate::proxy::{InterceptionMode, Proxy, ProxyKind};

const VIRTUAL_INBOUND: &str = "virtualInbound";
pub(super) const VIRTUAL_INBOUND_PORT: u16 = 15006;
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
/// The source addresses of Envoy's connections to its own workload; istio-init's rules let
/// traffic from them through instead of redirecting it back to Envoy.
const PASSTHROUGH_BIND_V4: &str = "127.0.0.6";
const PASSTHROUGH_BIND_V6: &str = "::6";
/// The mark TPROXY interception routes back to Envoy (istio-init's default).
const TPROXY_MARK: u32 = 1337;
/// What `http_inspector` reports for plaintext HTTP.
const HTTP_APPLICATION_PROTOCOLS: [&str; 3] = ["http/1.0", "http/1.1", "h2c"];
/// istiod never cleans up inbound ORIGINAL_DST hosts: the only host is the workload itself.
const NEVER_CLEAN_UP: ProtoDuration = ProtoDuration {
    seconds: i32::MAX as i64,
    nanos: 0,
};

/// A port of the proxy's own workload that some Service sends traffic to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InboundPort {
    /// Where the application listens (the Service's target port on this workload).
    port: u16,
    protocol: Protocol,
    /// The Service (host name and port) that declared it, for route decorators.
    service: String,
    service_port: u16,
}

/// Whether the proxy receives its workload's traffic through iptables (and so has inbound
/// listeners and clusters at all).
fn intercepted(proxy: &Proxy) -> bool {
    proxy.kind == ProxyKind::Sidecar && proxy.interception != InterceptionMode::None
}

/// The workload this proxy fronts: the one registered under one of its IPs.
fn proxy_workload<'m>(model: &'m Model, proxy: &Proxy) -> Option<&'m Workload> {
    proxy.ips.iter().find_map(|ip| model.workloads.get(ip))
}

/// The target ports of the Services (in the workload's namespace) whose selector matches the
/// workload, by port. Where Services disagree on a port, the first by host name wins, as one
/// port carries one protocol. Ports Envoy itself listens on are left out.
fn inbound_ports(model: &Model, proxy: &Proxy) -> BTreeMap<u16, InboundPort> {
    let mut ports = BTreeMap::new();
    let Some(workload) = proxy_workload(model, proxy) else {
        return ports;
    };
    let selecting = model
        .services
        .values()
        .filter(|service| service.namespace == workload.namespace)
        .filter(|service| service.selects(&workload.labels));
    for service in selecting {
        for service_port in &service.ports {
            let Some(port) = workload.target_port(service_port) else {
                continue;
            };
            if port == VIRTUAL_INBOUND_PORT {
                continue;
            }
            ports.entry(port).or_insert_with(|| InboundPort {
                port,
                protocol: service_port.protocol,
                service: service.hostname.clone(),
                service_port: service_port.port,
            });
        }
    }
    ports
}

/// `inbound|PORT||`, Istio's name for the cluster to the application's port.
pub fn inbound_cluster_name(port: u16) -> String {
    format!("inbound|{port}||")
}

/// The `virtualInbound` listener, for a sidecar under interception.
pub(super) fn virtual_inbound(model: &Model, proxy: &Proxy) -> Option<Listener> {
    if !intercepted(proxy) {
        return None;
    }
    let ports = inbound_ports(model, proxy);
    let mut filter_chains = vec![FilterChain {
        name: format!("{VIRTUAL_INBOUND}-blackhole"),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(UInt32Value {
                value: u32::from(VIRTUAL_INBOUND_PORT),
            }),
            ..Default::default()
        }),
        filters: vec![tcp_proxy_filter(BLACKHOLE_CLUSTER)],
        ..Default::default()
    }];
    for port in ports.values() {
        filter_chains.extend(port_chains(port));
    }
    filter_chains.push(FilterChain {
        name: format!("{VIRTUAL_INBOUND}-catchall-http"),
        filter_chain_match: Some(http_match(None)),
        filters: vec![http_filter(
            INBOUND_PASSTHROUGH_CLUSTER.to_string(),
            passthrough_route_config(),
        )],
        ..Default::default()
    });
    filter_chains.push(FilterChain {
        name: VIRTUAL_INBOUND.to_string(),
        filters: vec![tcp_proxy_filter(INBOUND_PASSTHROUGH_CLUSTER)],
        ..Default::default()
    });

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
    inspector.filter_disabled = declared_ports_predicate(&ports);
    listener_filters.push(inspector);

    Some(Listener {
        name: VIRTUAL_INBOUND.to_string(),
        address: Some(socket_address("0.0.0.0".to_string(), VIRTUAL_INBOUND_PORT)),
        filter_chains,
        listener_filters,
        continue_on_listener_filters_timeout: true,
        transparent: tproxy.then_some(BoolValue { value: true }),
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Default::default()
    })
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

/// Matches connections to any of the ports with a declared protocol, or none.
fn declared_ports_predicate(
    ports: &BTreeMap<u16, InboundPort>,
) -> Option<ListenerFilterChainMatchPredicate> {
    let mut rules: Vec<ListenerFilterChainMatchPredicate> = ports
        .values()
        .filter(|port| port.protocol != Protocol::Unspecified)
        .map(|port| ListenerFilterChainMatchPredicate {
            rule: Some(Rule::DestinationPortRange(Int32Range {
                start: i32::from(port.port),
                end: i32::from(port.port) + 1,
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
fn port_chains(port: &InboundPort) -> Vec<FilterChain> {
    let name = format!("0.0.0.0_{}", port.port);
    let cluster = inbound_cluster_name(port.port);
    let http = || FilterChain {
        name: name.clone(),
        filter_chain_match: Some(http_match(Some(port.port))),
        filters: vec![http_filter(
            format!("inbound_0.0.0.0_{}", port.port),
            inbound_route_config(port),
        )],
        ..Default::default()
    };
    let tcp = || FilterChain {
        name: name.clone(),
        filter_chain_match: Some(port_match(port.port)),
        filters: vec![tcp_proxy_filter(&cluster)],
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

fn port_match(port: u16) -> FilterChainMatch {
    FilterChainMatch {
        destination_port: Some(UInt32Value {
            value: u32::from(port),
        }),
        ..Default::default()
    }
}

/// Connections the HTTP inspector found to be plaintext HTTP (to `port`, or any port).
fn http_match(port: Option<u16>) -> FilterChainMatch {
    FilterChainMatch {
        destination_port: port.map(|port| UInt32Value {
            value: u32::from(port),
        }),
        application_protocols: HTTP_APPLICATION_PROTOCOLS
            .iter()
            .map(ToString::to_string)
            .collect(),
        ..Default::default()
    }
}

fn http_filter(stat_prefix: String, routes: RouteConfiguration) -> Filter {
    http_connection_manager(stat_prefix, RouteSpecifier::RouteConfig(routes))
}

/// istiod's `BuildDefaultHTTPInboundRoute`: everything to the application, no timeout and no
/// retries (the caller's sidecar retries).
fn inbound_route_config(port: &InboundPort) -> RouteConfiguration {
    let cluster = inbound_cluster_name(port.port);
    let operation = format!("{}:{}/*", port.service, port.service_port);
    route_config(cluster, format!("inbound|http|{}", port.port), operation)
}

fn passthrough_route_config() -> RouteConfiguration {
    route_config(
        INBOUND_PASSTHROUGH_CLUSTER.to_string(),
        "inbound|http|0".to_string(),
        format!("{INBOUND_PASSTHROUGH_CLUSTER}/*"),
    )
}

fn route_config(cluster: String, virtual_host: String, operation: String) -> RouteConfiguration {
    let route = Route {
        name: "default".to_string(),
        r#match: Some(prefix_match("/")),
        action: Some(Action::Route(RouteAction {
            cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.clone())),
            ..route_action_defaults(None, None)
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
/// under interception.
pub(super) fn clusters(model: &Model, proxy: &Proxy) -> Vec<Cluster> {
    if !intercepted(proxy) {
        return Vec::new();
    }
    let bind = passthrough_bind(proxy);
    let mut clusters: Vec<Cluster> = inbound_ports(model, proxy)
        .values()
        .map(|port| inbound_cluster(port, bind.clone()))
        .collect();
    let mut passthrough = passthrough_cluster();
    passthrough.name = INBOUND_PASSTHROUGH_CLUSTER.to_string();
    passthrough.upstream_bind_config = Some(bind);
    clusters.push(passthrough);
    clusters
}

/// To the application at the original destination's address, on its target port.
fn inbound_cluster(port: &InboundPort, bind: BindConfig) -> Cluster {
    let mut builder = ClusterBuilder {
        cluster: Cluster {
            name: inbound_cluster_name(port.port),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(
                DiscoveryType::OriginalDst as i32,
            )),
            connect_timeout: Some(proto_duration(CONNECT_TIMEOUT)),
            lb_policy: LbPolicy::ClusterProvided as i32,
            lb_config: Some(LbConfig::OriginalDstLbConfig(OriginalDstLbConfig {
                upstream_port_override: Some(UInt32Value {
                    value: u32::from(port.port),
                }),
                ..Default::default()
            })),
            cleanup_interval: Some(NEVER_CLEAN_UP),
            circuit_breakers: Some(wide_open_circuit_breakers()),
            upstream_bind_config: Some(bind),
            ..Default::default()
        },
        http_options: None,
    };
    match port.protocol {
        Protocol::Http2 | Protocol::Grpc => builder.set_http2(),
        // A sniffed port speaks to the application in the protocol the client used.
        Protocol::Unspecified => builder.http_options = Some(use_downstream_protocol()),
        Protocol::Http | Protocol::Https | Protocol::Tls | Protocol::Tcp => {}
    }
    builder.build()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExportTo, Registry, Resolution, Service, ServicePort, TargetPort};

    fn service(name: &str, namespace: &str, app: &str, ports: &[(u16, TargetPort)]) -> Service {
        Service {
            hostname: format!("{name}.{namespace}.svc.cluster.local"),
            name: name.to_string(),
            namespace: namespace.to_string(),
            cluster_ips: Vec::new(),
            ports: ports
                .iter()
                .map(|(port, target_port)| ServicePort {
                    name: "http".to_string(),
                    port: *port,
                    protocol: Protocol::Http,
                    target_port: target_port.clone(),
                })
                .collect(),
            endpoints: Vec::new(),
            selector: Some([("app".to_string(), app.to_string())].into()),
            address_blocks: Vec::new(),
            registry: Registry::Kubernetes,
            resolution: Resolution::ClientSideLb,
            mesh_external: false,
            passthrough_target_ports: BTreeMap::new(),
            export_to: ExportTo::Public,
        }
    }

    #[test]
    fn inbound_ports_come_from_the_services_selecting_the_proxys_pod() {
        let mut model = Model::default();
        model.workloads.insert(
            "10.0.0.5".parse().unwrap(),
            Workload {
                name: "web-1".into(),
                namespace: "shop".into(),
                labels: [("app".to_string(), "web".to_string())].into(),
                locality: Default::default(),
                node_name: String::new(),
                named_ports: [("api".to_string(), 8081)].into(),
            },
        );
        let services = [
            service(
                "web",
                "shop",
                "web",
                &[
                    (80, TargetPort::Number(8080)),
                    (81, TargetPort::Name("api".into())),
                    // A container port the Pod does not have, and Envoy's own inbound port.
                    (82, TargetPort::Name("missing".into())),
                    (83, TargetPort::Number(VIRTUAL_INBOUND_PORT)),
                ],
            ),
            // Same labels, other namespace: selectors do not cross namespaces.
            service("web", "other", "web", &[(90, TargetPort::Number(9090))]),
            service("db", "shop", "db", &[(5432, TargetPort::Number(5432))]),
        ];
        for service in services {
            model.services.insert(service.hostname.clone(), service);
        }
        let proxy = Proxy::parse(
            "sidecar~10.0.0.5~web-1.shop~shop.svc.cluster.local",
            &serde_json::Value::Null,
        )
        .unwrap();
        let ports: Vec<(u16, u16)> = inbound_ports(&model, &proxy)
            .values()
            .map(|port| (port.port, port.service_port))
            .collect();
        assert_eq!(ports, [(8080, 80), (8081, 81)]);

        let unknown = Proxy::parse(
            "sidecar~10.0.0.6~x.shop~shop.svc.cluster.local",
            &serde_json::Value::Null,
        )
        .unwrap();
        assert!(inbound_ports(&model, &unknown).is_empty());
    }
}

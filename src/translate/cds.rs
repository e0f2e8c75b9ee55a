//! CDS: one `outbound|PORT||HOST` cluster per service port, one `outbound|PORT|SUBSET|HOST` per
//! DestinationRule subset, and the `BlackHoleCluster` and `PassthroughCluster` every sidecar has.
//! Cluster defaults are istiod's: the mesh config's connect timeout (10s), LEAST_REQUEST, circuit breakers wide open,
//! HTTP/2 upstream for http2 and grpc ports; the DestinationRule's traffic policy for the port and
//! subset applies on top (see `cluster_policy`).
//!
//! The discovery type follows the service's resolution, as in istiod's `buildOutboundClusters`:
//! EDS for Kubernetes services and STATIC entries; STRICT_DNS (DNS) and LOGICAL_DNS
//! (DNS_ROUND_ROBIN) with the endpoints inline, left out when a (subset) cluster has none;
//! ORIGINAL_DST for NONE, with the entry's `targetPort` as the upstream port override.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, EdsClusterConfig, LbConfig, LbPolicy,
    OriginalDstLbConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::{CircuitBreakers, Cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions as CommonHttpProtocolOptions,
    TypedExtensionConfig,
};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::extensions::network::dns_resolver::cares::v3::CaresDnsResolverConfig;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    UpstreamProtocolOptions, UseDownstreamHttpConfig,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::cluster_policy::{
    ClusterBuilder, HTTP_PROTOCOL_OPTIONS, apply_mesh_connection_pool, apply_traffic_policy,
    cluster_policy, default_thresholds,
};
use super::eds::load_assignment;
use super::memo::{Memo, Source};
use super::metadata::cluster_metadata;
use super::{
    BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER, ads_config_source, any, outbound_cluster_name,
    proto_duration,
};
use crate::istio::ClientTlsMode;
use crate::mesh_config::MeshConfig;
use crate::model::{DestinationRule, Protocol, Registry, Resolution, Service, ServicePort};
use crate::proxy::{Proxy, ProxyKind};
use crate::translate::scope::ProxyView;

/// The outbound clusters of the services `model` imports (from `memo` where a cluster reads no
/// more of the proxy than its kind), and the clusters every proxy of the kind has.
pub fn clusters(model: &ProxyView, proxy: &Proxy, memo: &Memo) -> BTreeMap<String, Arc<Cluster>> {
    let mut clusters = BTreeMap::new();
    for service in model.services.values() {
        let rule = model.destination_rules.get(&service.hostname);
        let subsets = rule.map(|rule| rule.subsets.as_slice()).unwrap_or_default();
        for (port_index, port) in service.ports.iter().enumerate() {
            let subset_names =
                std::iter::once("").chain(subsets.iter().map(|subset| subset.name.as_str()));
            for subset in subset_names {
                let target = Target {
                    service,
                    port,
                    subset,
                    rule: rule.map(AsRef::as_ref),
                };
                let build = || outbound_cluster(model, proxy, &target);
                let cluster = if reads_proxy_beyond_kind(service) {
                    build().map(Arc::new)
                } else {
                    let source = Source::of(model, service, port.port, subset);
                    memo.cluster(source, port_index, proxy.kind, build)
                };
                if let Some(cluster) = cluster {
                    clusters.insert(cluster.name.clone(), cluster);
                }
            }
        }
    }
    let blackhole = blackhole_cluster(&model.mesh);
    clusters.insert(blackhole.name.clone(), Arc::new(blackhole));
    // Gateways forward only what their routes name; istiod gives them no passthrough.
    if proxy.kind == ProxyKind::Sidecar {
        let passthrough = outbound_passthrough_cluster(&model.mesh);
        clusters.insert(passthrough.name.clone(), Arc::new(passthrough));
    }
    clusters
}

/// DNS clusters carry their endpoints, grouped relative to the proxy's locality, and look them
/// up in the proxy's address family; every other outbound cluster reads only the proxy's kind.
fn reads_proxy_beyond_kind(service: &Service) -> bool {
    matches!(
        service.resolution,
        Resolution::Dns | Resolution::DnsRoundRobin
    )
}

/// What one outbound cluster stands for.
struct Target<'m> {
    service: &'m Service,
    port: &'m ServicePort,
    subset: &'m str,
    rule: Option<&'m DestinationRule>,
}

/// The cluster for a service port (and subset); none for a DNS cluster without endpoints, which
/// istiod leaves out too.
fn outbound_cluster(model: &ProxyView, proxy: &Proxy, target: &Target<'_>) -> Option<Cluster> {
    let Target {
        service,
        port,
        subset,
        rule,
    } = *target;
    let name = outbound_cluster_name(port.port, subset, &service.hostname);
    let mut cluster = Cluster {
        connect_timeout: Some(proto_duration(model.mesh.connect_timeout.0)),
        lb_policy: LbPolicy::LeastRequest as i32,
        circuit_breakers: Some(wide_open_circuit_breakers()),
        ..Default::default()
    };
    let discovery_type = match service.resolution {
        Resolution::ClientSideLb => {
            cluster.eds_cluster_config = Some(EdsClusterConfig {
                eds_config: Some(ads_config_source()),
                service_name: name.clone(),
            });
            DiscoveryType::Eds
        }
        Resolution::Dns | Resolution::DnsRoundRobin => {
            let mut assignment = load_assignment(model, proxy, &name);
            if service.resolution == Resolution::DnsRoundRobin {
                keep_first_endpoint(&mut assignment);
            }
            if assignment
                .endpoints
                .iter()
                .all(|l| l.lb_endpoints.is_empty())
            {
                return None;
            }
            cluster.load_assignment = Some(assignment);
            set_dns_options(&mut cluster, proxy, &model.mesh);
            if service.resolution == Resolution::Dns {
                DiscoveryType::StrictDns
            } else {
                DiscoveryType::LogicalDns
            }
        }
        Resolution::Passthrough => {
            cluster.lb_config = service
                .passthrough_target_ports
                .get(&port.port)
                .map(|target| {
                    LbConfig::OriginalDstLbConfig(OriginalDstLbConfig {
                        upstream_port_override: Some(UInt32Value {
                            value: u32::from(*target),
                        }),
                        ..Default::default()
                    })
                });
            DiscoveryType::OriginalDst
        }
    };
    cluster.name = name;
    cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(discovery_type as i32));
    let mut builder = ClusterBuilder {
        cluster,
        http_options: None,
    };
    if matches!(port.protocol, Protocol::Http2 | Protocol::Grpc) {
        builder.set_http2();
    } else if port.protocol == Protocol::Unspecified && proxy.kind == ProxyKind::Sidecar {
        // Sniffed traffic goes upstream in the protocol the client spoke (istiod's
        // `setUpstreamProtocol`; gateways do not sniff).
        builder.use_downstream_protocol();
    }
    let policy = cluster_policy(rule, port.port, subset).with_mesh(&model.mesh);
    apply_traffic_policy(&mut builder, &policy, port.protocol);
    // Envoy's stats of the cluster go under this name: the cluster's own, or the mesh config's
    // pattern filled in, ended by `;` (istiod's `DelimitedStatsPrefix`).
    let pattern = &model.mesh.outbound_cluster_stat_name;
    let prefix = if pattern.is_empty() {
        builder.cluster.name.clone()
    } else {
        stat_prefix(
            pattern,
            &StatNames::of(service),
            subset,
            (port.port, &port.name),
            Some(0),
        )
    };
    builder.cluster.alt_stat_name = alt_stat_name(prefix);
    // istiod marks clusters that originate TLS for its ALPN filter, whatever the certificates.
    let originates_tls = matches!(
        policy.tls.and_then(|tls| tls.mode),
        Some(ClientTlsMode::Simple | ClientTlsMode::Mutual)
    );
    builder.cluster.metadata = Some(cluster_metadata(service, subset, rule, originates_tls));
    Some(builder.build())
}

/// What istiod's stat name patterns (`outboundClusterStatName`, `inboundClusterStatName`) call
/// a service: Kubernetes services `name.namespace` (`%SERVICE%`) and `name` (`%SERVICE_NAME%`),
/// others their host for both; `%SERVICE_FQDN%` is the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StatNames {
    short: String,
    name: String,
    fqdn: String,
}

impl StatNames {
    pub(super) fn of(service: &Service) -> StatNames {
        match service.registry {
            Registry::Kubernetes => StatNames {
                short: format!("{}.{}", service.name, service.namespace),
                name: service.name.clone(),
                fqdn: service.hostname.clone(),
            },
            Registry::ServiceEntry => StatNames::host(&service.hostname),
        }
    }

    /// A name that is only a host (a Sidecar's synthetic `SIDECAR.NAMESPACE`, say).
    pub(super) fn host(host: &str) -> StatNames {
        StatNames {
            short: host.to_string(),
            name: host.to_string(),
            fqdn: host.to_string(),
        }
    }
}

/// istiod's `BuildStatPrefix`: `pattern` with the service's names, the subset and the port
/// filled in. `target_port` is `None` where istiod fills it in nowhere (`BuildInboundStatPrefix`,
/// for inbound TCP proxies), which leaves `%TARGET_PORT%` as written.
pub(super) fn stat_prefix(
    pattern: &str,
    names: &StatNames,
    subset: &str,
    (port, port_name): (u16, &str),
    target_port: Option<u16>,
) -> String {
    let prefix = pattern
        .replace("%SERVICE%", &names.short)
        .replace("%SERVICE_NAME%", &names.name)
        .replace("%SERVICE_FQDN%", &names.fqdn)
        .replace("%SUBSET_NAME%", subset);
    let prefix = match target_port {
        Some(target) => prefix.replace("%TARGET_PORT%", &target.to_string()),
        None => prefix,
    };
    prefix
        .replace("%SERVICE_PORT%", &port.to_string())
        .replace("%SERVICE_PORT_NAME%", port_name)
}

/// istiod's `DelimitedStatsPrefix`: Envoy's stats of a cluster go under this name, ended by
/// `;`, which Istio's stats tag extraction splits on (cluster names hold dots).
pub(super) fn alt_stat_name(prefix: impl Into<String>) -> String {
    prefix.into() + ";"
}

/// The stat prefix of an outbound TCP proxy to `cluster` (istiod's
/// `buildOutboundNetworkFilters`): the cluster's name, or with `outboundClusterStatName` set and
/// `host` a known service, the pattern filled in for it, with the listener's port.
pub(super) fn tcp_stat_prefix(
    model: &ProxyView,
    cluster: &str,
    host: &str,
    subset: &str,
    listener_port: (u16, &str),
) -> String {
    let pattern = &model.mesh.outbound_cluster_stat_name;
    match model.services.get(host) {
        Some(service) if !pattern.is_empty() => stat_prefix(
            pattern,
            &StatNames::of(service),
            subset,
            listener_port,
            Some(0),
        ),
        _ => cluster.to_string(),
    }
}

/// LOGICAL_DNS clusters take exactly one endpoint (Envoy refuses more): the first.
fn keep_first_endpoint(assignment: &mut ClusterLoadAssignment) {
    let first = assignment
        .endpoints
        .iter_mut()
        .find(|locality| !locality.lb_endpoints.is_empty())
        .map(|locality| {
            locality.lb_endpoints.truncate(1);
            locality.load_balancing_weight = locality.lb_endpoints[0].load_balancing_weight;
            locality.clone()
        });
    assignment.endpoints = first.into_iter().collect();
}

/// istiod's DNS settings: lookup family, the mesh's refresh rate, the records' TTL honoured,
/// refreshes spread by up to 100 ms of jitter (`PILOT_DNS_JITTER_DURATION`), and c-ares with at
/// most 100 queries per UDP socket before it opens another (`PILOT_DNS_CARES_UDP_MAX_QUERIES`),
/// so that a resolver that balances by source port sees more than one. They are the cluster
/// fields istiod sets, deprecated in favour of a DNS cluster extension that Envoy still reads
/// them from.
#[allow(deprecated)]
fn set_dns_options(cluster: &mut Cluster, proxy: &Proxy, mesh: &MeshConfig) {
    cluster.dns_lookup_family = dns_lookup_family(proxy) as i32;
    cluster.dns_refresh_rate = Some(proto_duration(mesh.dns_refresh_rate.0));
    cluster.respect_dns_ttl = true;
    cluster.dns_jitter = Some(proto_duration(DNS_JITTER));
    cluster.typed_dns_resolver_config = Some(TypedExtensionConfig {
        name: "envoy.network.dns_resolver.cares".to_string(),
        typed_config: Some(any(&CaresDnsResolverConfig {
            udp_max_queries: Some(UInt32Value {
                value: DNS_UDP_MAX_QUERIES,
            }),
            ..Default::default()
        })),
    });
}

const DNS_JITTER: std::time::Duration = std::time::Duration::from_millis(100);
const DNS_UDP_MAX_QUERIES: u32 = 100;

/// istiod's choice: IPv6 lookups only for a proxy whose addresses are all IPv6 (dual-stack
/// lookups are behind a feature flag that is off by default).
fn dns_lookup_family(proxy: &Proxy) -> DnsLookupFamily {
    if !proxy.ips.is_empty() && proxy.ips.iter().all(std::net::IpAddr::is_ipv6) {
        DnsLookupFamily::V6Only
    } else {
        DnsLookupFamily::V4Only
    }
}

/// istiod leaves limits to DestinationRules: by default every threshold is the maximum.
pub(super) fn wide_open_circuit_breakers() -> CircuitBreakers {
    CircuitBreakers {
        thresholds: vec![default_thresholds()],
        ..Default::default()
    }
}

/// Traffic with nowhere to go: a static cluster without endpoints.
fn blackhole_cluster(mesh: &MeshConfig) -> Cluster {
    Cluster {
        name: BLACKHOLE_CLUSTER.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(proto_duration(mesh.connect_timeout.0)),
        alt_stat_name: alt_stat_name(BLACKHOLE_CLUSTER),
        ..Default::default()
    }
}

/// Traffic to destinations outside the registry: forwarded to the address the client dialled.
/// Its stats go under `PassthroughCluster;` whatever it is called (istiod renames this cluster
/// for the inbound side and keeps the stat name).
pub(super) fn passthrough_cluster(mesh: &MeshConfig) -> Cluster {
    Cluster {
        name: PASSTHROUGH_CLUSTER.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        connect_timeout: Some(proto_duration(mesh.connect_timeout.0)),
        lb_policy: LbPolicy::ClusterProvided as i32,
        circuit_breakers: Some(wide_open_circuit_breakers()),
        alt_stat_name: alt_stat_name(PASSTHROUGH_CLUSTER),
        typed_extension_protocol_options: [(
            HTTP_PROTOCOL_OPTIONS.to_string(),
            any(&passthrough_protocol_options()),
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

/// How long a passthrough HTTP connection may stay idle upstream (istiod's
/// `passthroughHttpProtocolOptions`; Envoy's default is an hour).
const PASSTHROUGH_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// The client's HTTP version upstream, and connections closed after five idle minutes.
fn passthrough_protocol_options() -> HttpProtocolOptions {
    HttpProtocolOptions {
        common_http_protocol_options: Some(CommonHttpProtocolOptions {
            idle_timeout: Some(proto_duration(PASSTHROUGH_IDLE_TIMEOUT)),
            ..Default::default()
        }),
        ..use_downstream_protocol()
    }
}

/// `PassthroughCluster` as the outbound side has it: capped by the mesh config's baseline
/// connection pool (and its TCP keepalive), as istiod's `buildDefaultPassthroughCluster` does;
/// the baseline outlier detection does not apply to a cluster with no pool of hosts.
fn outbound_passthrough_cluster(mesh: &MeshConfig) -> Cluster {
    let mut cluster = passthrough_cluster(mesh);
    cluster
        .typed_extension_protocol_options
        .remove(HTTP_PROTOCOL_OPTIONS);
    let mut builder = ClusterBuilder {
        cluster,
        http_options: Some(passthrough_protocol_options()),
    };
    apply_mesh_connection_pool(&mut builder, mesh);
    builder.build()
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

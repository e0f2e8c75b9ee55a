//! RDS: one route configuration per HTTP port (named `"PORT"`), laid out as istiod's
//! `BuildSidecarOutboundVirtualHosts` does for a sidecar:
//! - The VirtualServices the proxy sees (bound to `mesh`, exported to its namespace; private ones
//!   first, then those exported to it by name, then public ones, each in precedence order) are
//!   tried in turn. On ports other than 80 only those naming a service on the port are.
//! - A VirtualService's hosts that are services on the port get a virtual host per service
//!   (`HOST:PORT`, with Istio's domains); a service named by several VirtualServices takes the
//!   first, except that a VirtualService naming it exactly wins over wildcards, and a more
//!   specific wildcard over a broader one. Other hosts (`bookinfo.example.com`, and, as in istiod,
//!   services without this port) get a virtual host of their own with that one domain, on the
//!   ports of the VirtualService's services, or on port 80 when it has none there.
//! - A VirtualService that yields no route for this proxy on this port (matches for other ports
//!   or other clients) is passed over, and its services get istiod's default route.
//! - Services without a VirtualService get the default route; a virtual host name or domain that
//!   is already taken is not used again. Virtual hosts are sorted by name, and a last catch-all
//!   host passes unknown destinations through (ALLOW_ANY) or answers 502 (REGISTRY_ONLY).
//!
//! Route matching lives in `matching`, route actions and per-route filter configs in `actions`.

mod actions;
mod matching;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::{
    Decorator, DirectResponseAction, Route, RouteConfiguration, VirtualHost,
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

pub(super) use actions::route_action_defaults;
pub(crate) use actions::{destination_cluster, split_weights};
pub(super) use matching::{is_catch_all, prefix_match};

use super::memo::{Identity, Memo, RouteSource};
use super::scope::Scope;
use super::{PASSTHROUGH_CLUSTER, outbound_cluster_name};
use crate::istio;
use crate::model::sidecar::OutboundPolicy;
use crate::model::virtual_service::{MAX_DIRECT_RESPONSE_BODY, for_sidecar, hosts_match};
use crate::model::{MESH_GATEWAY, Protocol, Registry, Resolution, Service, VirtualService};
use crate::proxy::Proxy;
use crate::translate::scope::ProxyView;

/// The port on which VirtualServices without any service on it still get virtual hosts (istiod's
/// own "gross hack").
const PLAIN_HOSTS_PORT: u16 = 80;

/// Route configuration `"PORT"` comes from the egress listener for that port (else the
/// catch-all) of the proxy's scope; `"HOST:PORT"`, for a sniffed port, likewise but with that
/// service's virtual host alone, for any name, and no catch-all.
pub fn routes(
    scope: &Scope,
    proxy: &Proxy,
    names: &BTreeSet<String>,
    memo: &Memo,
) -> BTreeMap<String, Arc<RouteConfiguration>> {
    names
        .iter()
        .filter_map(|name| {
            let (sniffed_host, port) = match name.rsplit_once(':') {
                Some((host, port)) => (Some(host), port.parse().ok()?),
                None => (None, name.parse().ok()?),
            };
            let model = &scope.listener_for_routes(port)?.view;
            let target = RouteTarget {
                name,
                port,
                sniffed_host,
            };
            let source = route_source(name, model, proxy, scope.outbound_policy);
            let build =
                || sidecar_route_configuration(model, proxy, &target, scope.outbound_policy);
            Some((name.clone(), memo.route(source, build)))
        })
        .collect()
}

/// Everything [`sidecar_route_configuration`] reads: keep in step with it.
fn route_source(
    name: &str,
    model: &ProxyView,
    proxy: &Proxy,
    outbound_policy: OutboundPolicy,
) -> RouteSource {
    let source_labels: BTreeSet<&String> = model
        .virtual_services
        .iter()
        .flat_map(|vs| &vs.http)
        .flat_map(|http| &http.matches)
        .flat_map(|request| request.source_labels.keys())
        .collect();
    RouteSource {
        name: name.to_string(),
        services: model
            .services
            .values()
            .map(|service| {
                let rule = model.destination_rules.get(&service.hostname);
                (Identity::of(service), rule.map(Identity::of))
            })
            .collect(),
        virtual_services: model.virtual_services.iter().map(Identity::of).collect(),
        mesh: Identity::of(&model.mesh),
        namespace: proxy.namespace.clone(),
        dns_domain: proxy.dns_domain.clone(),
        source_labels: source_labels
            .into_iter()
            .map(|key| (key.clone(), proxy.labels.get(key).cloned()))
            .collect(),
        outbound_policy,
    }
}

/// A sidecar's route configuration `target` from the view of its port.
fn sidecar_route_configuration(
    model: &ProxyView,
    proxy: &Proxy,
    target: &RouteTarget<'_>,
    outbound_policy: OutboundPolicy,
) -> RouteConfiguration {
    let rules = for_sidecar(&model.virtual_services, &proxy.namespace);
    let mut configuration = route_configuration(model, proxy, &rules, target);
    match target.sniffed_host {
        // istiod's `getVirtualHostsForSniffedServicePort`: only the virtual host of the sniffed
        // service (by its host, with or without the port), answering any name when it is the
        // only one, and no catch-all: what is not that service's HTTP was told apart by the
        // listener already.
        Some(host) => {
            let hosts = &mut configuration.virtual_hosts;
            hosts.retain(|vh| vh.domains.iter().any(|d| d == target.name || d == host));
            if let [only] = hosts.as_mut_slice() {
                only.domains = vec!["*".to_string()];
            }
        }
        None => configuration
            .virtual_hosts
            .push(unknown_host(outbound_policy)),
    }
    configuration
}

/// The virtual hosts one VirtualService (or one service's default route) yields on a port.
struct Wrapper<'m> {
    /// VirtualService hosts that are not services on this port.
    plain_hosts: Vec<&'m str>,
    services: Vec<&'m Service>,
    routes: Vec<Route>,
}

/// The route configuration asked for: a port's, or one sniffed service's on a port.
struct RouteTarget<'n> {
    name: &'n str,
    port: u16,
    sniffed_host: Option<&'n str>,
}

fn route_configuration(
    model: &ProxyView,
    proxy: &Proxy,
    rules: &[&VirtualService],
    target: &RouteTarget<'_>,
) -> RouteConfiguration {
    let RouteTarget {
        name,
        port,
        sniffed_host,
    } = *target;
    let on_port: BTreeMap<&str, &Service> = model
        .services
        .values()
        .filter(|service| service.port(port).is_some())
        .filter(|service| sniffed_host.is_none_or(|host| service.hostname == host))
        .map(|service| (service.hostname.as_str(), &**service))
        .collect();
    // istiod's `IsHTTPOrSniffed`: a port without a declared protocol may carry HTTP.
    let is_http = |service: &Service| {
        service
            .port(port)
            .is_some_and(|p| p.protocol.is_http() || p.protocol == Protocol::Unspecified)
    };
    // Hosts that are no service on the port only go on the shared port-80 configuration.
    let plain_hosts_port = sniffed_host.is_none() && port == PLAIN_HOSTS_PORT;
    let owners = service_owners(rules, model.services.values().map(Arc::as_ref));
    let mut wrappers = Vec::new();
    for (index, vs) in rules.iter().enumerate() {
        let names_a_service = vs.hosts.iter().any(|host| {
            if host.starts_with('*') {
                on_port.keys().any(|service| hosts_match(host, service))
            } else {
                on_port.contains_key(host.as_str())
            }
        });
        if !plain_hosts_port && !names_a_service {
            continue;
        }
        let routes = virtual_service_routes(vs, model, proxy, port, MESH_GATEWAY);
        if routes.is_empty() {
            continue;
        }
        let (plain_hosts, services) = separate_hosts(vs, index, &on_port, &owners);
        let services: Vec<&Service> = services.into_iter().filter(|s| is_http(s)).collect();
        if services.is_empty() && !plain_hosts_port {
            continue;
        }
        wrappers.push(Wrapper {
            plain_hosts,
            services,
            routes,
        });
    }
    let routed: BTreeSet<&str> = wrappers
        .iter()
        .flat_map(|wrapper| wrapper.services.iter().map(|s| s.hostname.as_str()))
        .collect();
    for service in on_port.values().filter(|service| is_http(service)) {
        if routed.contains(service.hostname.as_str()) {
            continue;
        }
        let cluster = outbound_cluster_name(port, "", &service.hostname);
        wrappers.push(Wrapper {
            plain_hosts: Vec::new(),
            services: vec![service],
            routes: vec![default_route(
                cluster,
                service,
                port,
                model.mesh.default_http_retry_policy.as_ref(),
            )],
        });
    }

    // DestinationRule consistent hashing: `hash_policy` on the routes to hashed clusters.
    let routes = wrappers.iter_mut().flat_map(|wrapper| &mut wrapper.routes);
    super::cluster_policy::add_hash_policies(model, routes);

    // istiod's `knownFQDN`: an alternative name that is another service's host stays that
    // service's.
    let known_hosts: BTreeSet<String> = wrappers
        .iter()
        .flat_map(|wrapper| &wrapper.services)
        .flat_map(|service| {
            [
                service.hostname.clone(),
                format!("{}:{port}", service.hostname),
            ]
        })
        .collect();
    let mut names = BTreeSet::new();
    let mut used_domains = BTreeSet::new();
    let mut virtual_hosts = Vec::new();
    for wrapper in wrappers {
        let first = virtual_hosts.len();
        let hosts = wrapper
            .plain_hosts
            .iter()
            .map(|host| (*host, (vec![host.to_string()], Vec::new())))
            .chain(
                wrapper
                    .services
                    .iter()
                    .map(|service| (service.hostname.as_str(), domains(service, proxy))),
            );
        for (host, (domains, alternatives)) in hosts {
            let name = format!("{host}:{port}");
            if !names.insert(name.clone()) {
                continue;
            }
            let domains: Vec<String> = domains
                .into_iter()
                .filter(|domain| !(alternatives.contains(domain) && known_hosts.contains(domain)))
                .filter(|domain| used_domains.insert(domain.to_ascii_lowercase()))
                .collect();
            if domains.is_empty() {
                continue;
            }
            virtual_hosts.push(VirtualHost {
                name,
                domains,
                include_request_attempt_count: true,
                ..Default::default()
            });
        }
        // Every virtual host of the wrapper has its routes; the last one takes them over.
        if let Some((last, others)) = virtual_hosts[first..].split_last_mut() {
            for virtual_host in others {
                virtual_host.routes = wrapper.routes.clone();
            }
            last.routes = wrapper.routes;
        }
    }
    virtual_hosts.sort_by(|a, b| a.name.cmp(&b.name));
    configuration(name, virtual_hosts)
}

/// A route configuration with istiod's settings: clusters not validated (a route to a cluster
/// not sent yet must not reject the whole configuration), ports ignored in host matching.
pub(super) fn configuration(name: &str, virtual_hosts: Vec<VirtualHost>) -> RouteConfiguration {
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        max_direct_response_body_size_bytes: Some(UInt32Value {
            value: u32::try_from(MAX_DIRECT_RESPONSE_BODY).unwrap_or(u32::MAX),
        }),
        ignore_port_in_host_matching: true,
        ..Default::default()
    }
}

/// For every service a VirtualService names, the one that owns it (as an index into `rules`):
/// the first naming it exactly, else the first with the most specific wildcard covering it
/// (istiod's `MostSpecificWildcardVirtualServiceIndex`).
fn service_owners<'m>(
    rules: &[&'m VirtualService],
    services: impl Iterator<Item = &'m Service>,
) -> BTreeMap<&'m str, usize> {
    let mut exact: BTreeMap<&str, usize> = BTreeMap::new();
    let mut wildcards: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, vs) in rules.iter().enumerate() {
        for host in &vs.hosts {
            let index_for = if host.starts_with('*') {
                &mut wildcards
            } else {
                &mut exact
            };
            index_for.entry(host.as_str()).or_insert(index);
        }
    }
    let mut owners = BTreeMap::new();
    for service in services {
        let host = service.hostname.as_str();
        let owner = exact.get(host).copied().or_else(|| {
            wildcards
                .iter()
                .filter(|(wildcard, _)| host.ends_with(&wildcard[1..]))
                .max_by_key(|(wildcard, index)| (wildcard.len(), std::cmp::Reverse(**index)))
                .map(|(_, index)| *index)
        });
        if let Some(owner) = owner {
            owners.insert(host, owner);
        }
    }
    owners
}

/// istiod's `separateVSHostsAndServices`: the VirtualService's hosts that are services on this
/// port (wildcards: the services they cover and own), and the other hosts.
fn separate_hosts<'m>(
    vs: &'m VirtualService,
    index: usize,
    on_port: &BTreeMap<&'m str, &'m Service>,
    owners: &BTreeMap<&str, usize>,
) -> (Vec<&'m str>, Vec<&'m Service>) {
    let mut plain_hosts = Vec::new();
    let mut services = Vec::new();
    for host in vs.hosts.iter().filter(|host| !host.starts_with('*')) {
        match on_port.get(host.as_str()) {
            Some(service) => services.push(*service),
            None => plain_hosts.push(host.as_str()),
        }
    }
    for host in vs.hosts.iter().filter(|host| host.starts_with('*')) {
        let covered: Vec<&&Service> = on_port
            .iter()
            .filter(|(name, _)| hosts_match(name, host))
            .map(|(_, service)| service)
            .collect();
        if covered.is_empty() {
            plain_hosts.push(host.as_str());
        }
        services.extend(
            covered
                .into_iter()
                .filter(|service| owners.get(service.hostname.as_str()) == Some(&index))
                .copied(),
        );
    }
    (plain_hosts, services)
}

/// The names a service answers to, in istiod's order (`generateVirtualHostDomains`): its host,
/// then the other forms of it (`alternatives`), then, for a headless Kubernetes service, each of
/// those under a `*.` wildcard, then its cluster IPs. The alternative forms are returned apart
/// too: one that is the host of another service on the port is not used.
fn domains(service: &Service, proxy: &Proxy) -> (Vec<String>, Vec<String>) {
    let alternatives = alternative_hosts(&service.hostname, proxy);
    let mut domains = vec![service.hostname.clone()];
    domains.extend(alternatives.iter().cloned());
    if service.resolution == Resolution::Passthrough && service.registry == Registry::Kubernetes {
        let wildcards: Vec<String> = domains.iter().map(|d| format!("*.{d}")).collect();
        domains.extend(wildcards);
    }
    domains.extend(
        service
            .cluster_ips
            .iter()
            .filter(|ip| !ip.is_unspecified())
            .map(ToString::to_string),
    );
    (domains, alternatives)
}

/// istiod's `GenerateAltVirtualHosts` for a sidecar (ports ignored in host matching): the
/// absolute name (`host.`; istiod's `PILOT_ENABLE_ABSOLUTE_FQDN_VHOST_DOMAIN`, on by default),
/// then, for a host `NAME.NAMESPACE.svc.DOMAIN` under the proxy's DNS domain, `NAME` (from the
/// proxy's own namespace only), `NAME.NAMESPACE.svc` and `NAME.NAMESPACE`; from another
/// namespace `NAME.NAMESPACE` then `NAME.NAMESPACE.svc`. Other hosts have no shorter forms.
fn alternative_hosts(host: &str, proxy: &Proxy) -> Vec<String> {
    let mut hosts = Vec::new();
    if host.parse::<std::net::IpAddr>().is_err() {
        hosts.push(format!("{host}."));
    }
    if !host.ends_with(&format!(".svc.{}", proxy.dns_domain)) {
        return hosts;
    }
    // `NAME.NAMESPACE` and `NAME`, cut at the first `.svc.` and the first dot, as istiod cuts.
    let Some(service_and_namespace) = host.find(".svc.").map(|end| &host[..end]) else {
        return hosts;
    };
    let Some((name, namespace)) = service_and_namespace.split_once('.') else {
        return hosts;
    };
    if namespace == proxy.namespace {
        hosts.push(name.to_string());
        hosts.push(format!("{service_and_namespace}.svc"));
        hosts.push(service_and_namespace.to_string());
    } else {
        hosts.push(service_and_namespace.to_string());
        hosts.push(format!("{service_and_namespace}.svc"));
    }
    hosts
}

/// The last, catch-all virtual host: unknown destinations pass through (`allow_any`) or get a
/// 502 (`block_all`), as istiod names them.
fn unknown_host(policy: OutboundPolicy) -> VirtualHost {
    let (name, route) = match policy {
        OutboundPolicy::AllowAny => (
            "allow_any",
            Route {
                r#match: Some(matching::prefix_match("/")),
                action: Some(Action::Route(
                    envoy_types::pb::envoy::config::route::v3::RouteAction {
                        cluster_specifier: Some(ClusterSpecifier::Cluster(
                            PASSTHROUGH_CLUSTER.to_string(),
                        )),
                        ..actions::outbound_route_action(None, None)
                    },
                )),
                ..Default::default()
            },
        ),
        OutboundPolicy::RegistryOnly => (
            "block_all",
            Route {
                r#match: Some(matching::prefix_match("/")),
                action: Some(Action::DirectResponse(DirectResponseAction {
                    status: 502,
                    ..Default::default()
                })),
                ..Default::default()
            },
        ),
    };
    VirtualHost {
        name: name.to_string(),
        domains: vec!["*".to_string()],
        routes: vec![Route {
            name: name.to_string(),
            ..route
        }],
        include_request_attempt_count: true,
        ..Default::default()
    }
}

/// istiod's route for a service without a VirtualService, with the mesh config's
/// `defaultHttpRetryPolicy` (`retries`; istiod's built-in policy when it is unset) and the
/// service's `HOST:PORT/*` as span name.
fn default_route(
    cluster: String,
    service: &Service,
    port: u16,
    retries: Option<&crate::istio::HttpRetry>,
) -> Route {
    Route {
        name: "default".to_string(),
        r#match: Some(matching::prefix_match("/")),
        decorator: Some(Decorator {
            operation: format!("{}:{port}/*", service.hostname),
            ..Default::default()
        }),
        action: Some(Action::Route(
            envoy_types::pb::envoy::config::route::v3::RouteAction {
                cluster_specifier: Some(ClusterSpecifier::Cluster(cluster)),
                ..actions::default_route_action(retries)
            },
        )),
        ..Default::default()
    }
}

/// The routes of one VirtualService as this proxy on this port sees them through `gateway`
/// (`mesh` for sidecars; istiod's `BuildHTTPRoutesForVirtualService`): each `match` entry is one
/// route, entries that do not apply to the proxy are left out, and generation stops after the
/// first route that matches everything.
pub(super) fn virtual_service_routes(
    vs: &VirtualService,
    model: &ProxyView,
    proxy: &Proxy,
    port: u16,
    gateway: &str,
) -> Vec<Route> {
    let destinations = actions::Destinations {
        model,
        listener_port: port,
        on_port_only: gateway == MESH_GATEWAY,
    };
    let mut routes = Vec::new();
    for http in &vs.http {
        if http.matches.is_empty() {
            routes.push(translate_route(vs, http, None, &destinations));
            return routes;
        }
        for request in http
            .matches
            .iter()
            .filter(|m| matching::applies(m, proxy, port, gateway))
        {
            let route = translate_route(vs, http, Some(request), &destinations);
            let catch_all = route.r#match.as_ref().is_some_and(matching::is_catch_all);
            routes.push(route);
            if catch_all {
                return routes;
            }
        }
    }
    routes
}

/// istiod's `translateRoute`: the route, with the VirtualService in its metadata and a
/// decorator naming it for traces.
fn translate_route(
    vs: &VirtualService,
    http: &istio::HttpRoute,
    request: Option<&istio::HttpMatchRequest>,
    destinations: &actions::Destinations<'_>,
) -> Route {
    let mut headers = actions::HeaderOperations::new(http.headers.as_ref());
    let authority = headers.authority.take();
    let action = actions::action(http, authority, &mut headers, destinations);
    let mut route = Route {
        name: route_name(http, request),
        r#match: Some(matching::route_match(request)),
        action: Some(action),
        request_headers_to_add: headers.request_to_add,
        request_headers_to_remove: headers.request_to_remove,
        response_headers_to_add: headers.response_to_add,
        response_headers_to_remove: headers.response_to_remove,
        typed_per_filter_config: actions::per_filter_config(http),
        stat_prefix: request
            .and_then(|r| r.stat_prefix.clone())
            .unwrap_or_default(),
        metadata: Some(super::metadata::route_metadata(vs)),
        ..Default::default()
    };
    route.decorator = Some(Decorator {
        operation: operation(&route, &vs.name, destinations.listener_port),
        ..Default::default()
    });
    route
}

/// istiod's `GetRouteOperation`, the span name of a route's requests: `HOST:PORT` of its one
/// destination cluster, else `VIRTUAL_SERVICE:LISTENER_PORT`, then the path it matches (`/*`
/// when it matches no path, `PREFIX*` for a prefix, the regex for a regex).
fn operation(route: &Route, vs_name: &str, listener_port: u16) -> String {
    let path = match route
        .r#match
        .as_ref()
        .and_then(|m| m.path_specifier.as_ref())
    {
        Some(PathSpecifier::Prefix(prefix)) => format!("{prefix}*"),
        Some(PathSpecifier::Path(path)) => path.clone(),
        Some(PathSpecifier::SafeRegex(regex)) => regex.regex.clone(),
        _ => "/*".to_string(),
    };
    let cluster = match &route.action {
        Some(Action::Route(action)) => match &action.cluster_specifier {
            Some(ClusterSpecifier::Cluster(cluster)) => Some(cluster.as_str()),
            _ => None,
        },
        _ => None,
    };
    // A cluster named `DIRECTION|PORT|SUBSET|HOST`.
    let host_port = cluster
        .map(|cluster| cluster.split('|').collect::<Vec<_>>())
        .and_then(|parts| match parts[..] {
            [_, port, _, host] => Some(format!("{host}:{port}")),
            _ => None,
        });
    let target = host_port.unwrap_or_else(|| format!("{vs_name}:{listener_port}"));
    format!("{target}{path}")
}

/// The route's name, then `.` and the match's name when it has one (as istiod joins them).
fn route_name(http: &istio::HttpRoute, request: Option<&istio::HttpMatchRequest>) -> String {
    let route = http.name.as_deref().unwrap_or_default();
    match request
        .and_then(|r| r.name.as_deref())
        .filter(|n| !n.is_empty())
    {
        Some(matched) => format!("{route}.{matched}"),
        None => route.to_string(),
    }
}

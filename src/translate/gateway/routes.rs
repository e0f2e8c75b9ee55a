//! Gateway route configurations (`http.PORT`, `https.PORT.PORTNAME.GATEWAY.NAMESPACE`), as
//! istiod's `buildGatewayHTTPRouteConfig` builds them:
//! - For each server behind the route name, the VirtualServices bound to its Gateway (and seen
//!   from the proxy's namespace) whose hosts meet the server's hosts for their namespace; the
//!   meeting hosts (the narrower of each matching pair) become virtual hosts `HOST:PORT` (the
//!   server's port as written) with that one domain, holding the VirtualService's routes as
//!   routes are built for that Gateway. A host met again adds its routes after the first's.
//! - `httpsRedirect` makes every virtual host of the server require TLS (a redirect to https),
//!   and server hosts no VirtualService meets still get such a virtual host.
//! - Catch-all routes go after the others within a virtual host; virtual hosts are sorted by
//!   name; a route configuration without any gets `blackhole:PORT`, which answers 404.
//!
//! Route and action building is `rds`'s, shared with sidecars.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::route::v3::virtual_host::TlsRequirementType;
use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};

use crate::model::gateway::{MergedGateway, MergedServer};
use crate::model::virtual_service::{bound_to, host_subset_of};
use crate::model::{Model, VirtualService};
use crate::proxy::Proxy;
use crate::translate::cluster_policy::add_hash_policies;
use crate::translate::rds::{configuration, is_catch_all, virtual_service_routes};
use crate::translate::scope::ProxyView;
use crate::translate::scope::Scope;

/// The route configurations named in `names`.
pub fn routes(
    model: &Model,
    scope: &Scope,
    proxy: &Proxy,
    merged: &MergedGateway<'_>,
    names: &BTreeSet<String>,
) -> BTreeMap<String, RouteConfiguration> {
    let by_route = merged.servers_by_route();
    names
        .iter()
        .filter_map(|name| {
            let servers = by_route.get(name.as_str())?;
            Some((
                name.clone(),
                route_configuration(model, scope, proxy, name, servers),
            ))
        })
        .collect()
}

/// istiod's `host.Names.Intersection`: for every pair that overlaps, the narrower name, once.
fn intersection<'a>(
    server_hosts: impl Iterator<Item = &'a str>,
    vs_hosts: &'a [String],
) -> Vec<String> {
    let mut result: Vec<String> = Vec::new();
    for server_host in server_hosts {
        for vs_host in vs_hosts {
            let narrower = if host_subset_of(server_host, vs_host) {
                server_host
            } else if host_subset_of(vs_host, server_host) {
                vs_host.as_str()
            } else {
                continue;
            };
            let narrower = narrower.to_ascii_lowercase();
            if !result.contains(&narrower) {
                result.push(narrower);
            }
        }
    }
    result
}

fn route_configuration(
    model: &Model,
    scope: &Scope,
    proxy: &Proxy,
    name: &str,
    servers: &[&MergedServer<'_>],
) -> RouteConfiguration {
    let services = scope.view();
    let mut virtual_hosts: BTreeMap<String, VirtualHost> = BTreeMap::new();
    // Routes per (gateway, VirtualService), built once as istiod caches them.
    let mut built: BTreeMap<(String, String, String), Vec<Route>> = BTreeMap::new();
    for merged in servers {
        let server = merged.server;
        let gateway = merged.gateway.qualified_name();
        let port = server.port;
        let redirect = server.tls.as_ref().is_some_and(|tls| tls.https_redirect);
        for vs in bound_to(&model.virtual_services, &proxy.namespace, &gateway) {
            let hosts = intersection(server.hosts_for_namespace(&vs.namespace), &vs.hosts);
            if hosts.is_empty() {
                continue;
            }
            let routes = built
                .entry((gateway.clone(), vs.namespace.clone(), vs.name.clone()))
                .or_insert_with(|| gateway_routes(vs, services, proxy, port, &gateway))
                .clone();
            for host in hosts {
                let virtual_host = virtual_hosts
                    .entry(host.clone())
                    .or_insert_with(|| virtual_host(&host, port));
                virtual_host.routes.extend(routes.iter().cloned());
                if redirect {
                    virtual_host.require_tls = TlsRequirementType::All as i32;
                }
            }
        }
        if redirect {
            for host in &server.hosts {
                virtual_hosts
                    .entry(host.host.clone())
                    .or_insert_with(|| virtual_host(&host.host, port))
                    .require_tls = TlsRequirementType::All as i32;
            }
        }
    }
    let mut virtual_hosts: Vec<VirtualHost> = virtual_hosts.into_values().collect();
    if virtual_hosts.is_empty() {
        let port = servers.first().map(|s| s.server.port).unwrap_or_default();
        virtual_hosts.push(VirtualHost {
            name: format!("blackhole:{port}"),
            domains: vec!["*".to_string()],
            ..Default::default()
        });
    }
    for virtual_host in &mut virtual_hosts {
        // istiod's `SortVHostRoutes`: catch-alls last, the rest in order.
        let (catch_alls, others): (Vec<Route>, Vec<Route>) =
            std::mem::take(&mut virtual_host.routes)
                .into_iter()
                .partition(|route| route.r#match.as_ref().is_some_and(is_catch_all));
        virtual_host.routes = others.into_iter().chain(catch_alls).collect();
    }
    virtual_hosts.sort_by(|a, b| a.name.cmp(&b.name));
    configuration(name, virtual_hosts)
}

fn virtual_host(host: &str, port: u16) -> VirtualHost {
    VirtualHost {
        name: format!("{host}:{port}"),
        domains: vec![host.to_string()],
        include_request_attempt_count: true,
        ..Default::default()
    }
}

/// One VirtualService's routes through `gateway`, with DestinationRule hash policies.
fn gateway_routes(
    vs: &VirtualService,
    services: &ProxyView,
    proxy: &Proxy,
    port: u16,
    gateway: &str,
) -> Vec<Route> {
    let mut routes = virtual_service_routes(vs, services, proxy, port, gateway);
    add_hash_policies(services, routes.iter_mut());
    routes
}

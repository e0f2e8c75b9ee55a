//! Gateways (`router` proxies): listeners from the merged Gateways that select the proxy, laid out
//! as istiod's `buildGatewayListeners` does (`pilot/pkg/networking/core/gateway.go`):
//! - One listener per merged port and bind, named `BIND_PORT` (`0.0.0.0_PORT` without a bind),
//!   bound for real on the port actually listened on (the gateway Service's `targetPort`).
//! - Plain-text HTTP servers share one HTTP connection manager fetching `http.PORT`. HTTPS servers
//!   that terminate TLS get a chain each, matched by their hosts as SNI (no match for `*`), with
//!   the server's TLS context and route configuration `https.PORT.PORTNAME.GATEWAY.NAMESPACE`.
//! - TCP servers, and TLS servers that terminate, forward with the `tcp` rules of the
//!   VirtualServices bound to their Gateway whose hosts meet the server's (the first applicable
//!   rule). PASSTHROUGH servers get a chain per applicable `tls` match entry, matched by its
//!   `sniHosts`; AUTO_PASSTHROUGH servers a chain per service port (and subset) under their hosts,
//!   matched by istiod's SNI `outbound_.PORT_.SUBSET_.HOST`.
//! - A server whose `credentialName` names no usable Secret is left out (the model reports it);
//!   a listener left without chains is not sent, as istiod does.
//!
//! Route configurations are `routes`; TLS contexts `tls`. Nothing here decides which Gateways
//! apply or how they merge (that is `model::gateway`).

mod routes;
mod tls;

pub use routes::routes;

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, TrafficDirection, TransportSocket, transport_socket,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, FilterChainMatch, Listener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::Rds;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::{
    ForwardClientCertDetails, RouteSpecifier, SetCurrentClientCertDetails,
};
use envoy_types::pb::google::protobuf::BoolValue;

use super::cds::tcp_stat_prefix;
use super::eds::socket_address;
use super::lds::{
    MAX_CONNECTIONS_PER_ACCEPT, TRANSPORT_SOCKET_CONNECT_TIMEOUT, connection_manager,
    connection_manager_filter, listener_name, route_tcp_proxy, tcp_proxy_filter_named,
    tls_inspector,
};
use super::scope::Scope;
use super::{ISTIO_SERVER_NAME, ads_config_source, any, outbound_cluster_name, proto_duration};
use crate::istio::ServerTlsMode;
use crate::mesh_config::MeshConfig;
use crate::model::gateway::{MergedGateway, MergedPort, MergedServer, Server, credential_problem};
use crate::model::virtual_service::{bound_to, hosts_match};
use crate::model::{Model, VirtualService};
use crate::proxy::Proxy;
use crate::translate::scope::ProxyView;

/// The address a gateway listener binds without a `bind`.
const WILDCARD: &str = "0.0.0.0";

/// The listeners, and the names of the route configurations they refer to.
pub fn listeners(
    model: &Model,
    scope: &Scope,
    proxy: &Proxy,
    merged: &MergedGateway<'_>,
) -> (BTreeMap<String, Listener>, BTreeSet<String>) {
    let mut listeners = BTreeMap::new();
    let mut route_names = BTreeSet::new();
    for port in &merged.ports {
        let address = port.key.bind.as_deref().unwrap_or(WILDCARD);
        let name = listener_name(address, port.key.port);
        let chains = filter_chains(model, scope, proxy, port, &name, &mut route_names);
        if chains.is_empty() {
            continue;
        }
        let needs_inspector = chains.iter().any(|chain| {
            chain.transport_socket.is_some()
                || chain
                    .filter_chain_match
                    .as_ref()
                    .is_some_and(|m| !m.server_names.is_empty())
        });
        // istiod's listener-wide settings for gateways: a bounded TLS handshake on every chain,
        // and connections accepted one per wake-up.
        let chains = chains
            .into_iter()
            .map(|chain| FilterChain {
                transport_socket_connect_timeout: Some(proto_duration(
                    TRANSPORT_SOCKET_CONNECT_TIMEOUT,
                )),
                ..chain
            })
            .collect();
        let listener = Listener {
            name: name.clone(),
            address: Some(socket_address(address.to_string(), port.key.port)),
            filter_chains: chains,
            max_connections_to_accept_per_socket_event: Some(MAX_CONNECTIONS_PER_ACCEPT),
            listener_filters: if needs_inspector {
                vec![tls_inspector()]
            } else {
                Vec::new()
            },
            traffic_direction: TrafficDirection::Outbound as i32,
            ..Default::default()
        };
        listeners.insert(name, listener);
    }
    (listeners, route_names)
}

fn filter_chains(
    model: &Model,
    scope: &Scope,
    proxy: &Proxy,
    port: &MergedPort<'_>,
    listener: &str,
    route_names: &mut BTreeSet<String>,
) -> Vec<FilterChain> {
    let default_stat_prefix = format!("outbound_{listener}");
    let Some(first) = port.servers.first() else {
        return Vec::new();
    };
    if port.plain_text && first.server.protocol.is_http() {
        let Some(route) = &first.route_name else {
            return Vec::new();
        };
        route_names.insert(route.clone());
        return vec![FilterChain {
            filters: vec![gateway_connection_manager(
                default_stat_prefix,
                route,
                model.mesh.path_normalization,
            )],
            ..Default::default()
        }];
    }
    let mut chains = Vec::new();
    // SNI names passthrough chains have taken on this listener (Envoy refuses duplicates).
    let mut passthrough_names = BTreeSet::new();
    for merged in &port.servers {
        let server = merged.server;
        if credential_problem(server, &proxy.namespace, &model.credentials).is_some() {
            continue;
        }
        if server.terminates_https() {
            let Some(route) = &merged.route_name else {
                continue;
            };
            route_names.insert(route.clone());
            let stat_prefix = server.name.clone().unwrap_or(default_stat_prefix.clone());
            chains.push(FilterChain {
                filter_chain_match: sni_match(server.sni_hosts()),
                transport_socket: terminating_socket(server, &model.mesh),
                filters: vec![gateway_connection_manager(
                    stat_prefix,
                    route,
                    model.mesh.path_normalization,
                )],
                ..Default::default()
            });
        } else if server.tls.is_none() || !server.is_passthrough() {
            let Some(filter) = tcp_route_filter(model, scope, proxy, merged) else {
                continue;
            };
            let terminating = server.tls.is_some();
            chains.push(FilterChain {
                filter_chain_match: if terminating {
                    sni_match(server.sni_hosts())
                } else {
                    None
                },
                transport_socket: if terminating {
                    terminating_socket(server, &model.mesh)
                } else {
                    None
                },
                filters: vec![filter],
                ..Default::default()
            });
        } else if server.tls_mode() == Some(ServerTlsMode::AutoPassthrough) {
            chains.extend(auto_passthrough_chains(scope.view(), server));
        } else {
            chains.extend(passthrough_chains(
                model,
                scope,
                proxy,
                merged,
                &mut passthrough_names,
            ));
        }
    }
    chains
}

/// Server names to match, unless the hosts include `*` (which matches any name, and so none).
fn sni_match(hosts: Vec<String>) -> Option<FilterChainMatch> {
    if hosts.is_empty() || hosts.iter().any(|host| host == "*") {
        return None;
    }
    Some(FilterChainMatch {
        server_names: hosts,
        ..Default::default()
    })
}

fn terminating_socket(server: &Server, mesh: &MeshConfig) -> Option<TransportSocket> {
    let context = tls::downstream_tls_context(server.tls.as_ref()?, &mesh.tls_defaults);
    Some(TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&context))),
    })
}

/// istiod's `buildGatewayConnectionManager`: the client address is the connection's, and client
/// certificate details are set afresh (`SANITIZE_SET`).
fn gateway_connection_manager(
    stat_prefix: String,
    route: &str,
    paths: crate::mesh_config::PathNormalization,
) -> Filter {
    let mut manager = connection_manager(
        paths,
        stat_prefix,
        RouteSpecifier::Rds(Rds {
            config_source: Some(ads_config_source()),
            route_config_name: route.to_string(),
        }),
    );
    manager.use_remote_address = Some(BoolValue { value: true });
    manager.server_name = ISTIO_SERVER_NAME.to_string();
    // istiod's (empty, HTTP/1.0 refused); set so that it reads the same.
    manager.http_protocol_options = Some(Http1ProtocolOptions::default());
    manager.forward_client_cert_details = ForwardClientCertDetails::SanitizeSet as i32;
    manager.set_current_client_cert_details = Some(SetCurrentClientCertDetails {
        subject: Some(BoolValue { value: true }),
        cert: true,
        dns: true,
        uri: true,
        ..Default::default()
    });
    connection_manager_filter(&manager)
}

/// The VirtualServices bound to the server's Gateway that proxies in the proxy's namespace see,
/// with a host meeting one of the server's (istiod's `pickMatchingGatewayHosts`).
fn rules_for_server<'m>(
    model: &'m Model,
    proxy: &Proxy,
    merged: &MergedServer<'_>,
) -> Vec<&'m VirtualService> {
    let gateway = merged.gateway.qualified_name();
    bound_to(&model.virtual_services, &proxy.namespace, &gateway)
        .into_iter()
        .filter(|vs| {
            vs.hosts.iter().any(|vs_host| {
                merged
                    .server
                    .hosts_for_namespace(&vs.namespace)
                    .any(|host| hosts_match(host, vs_host))
            })
        })
        .collect()
}

/// istiod's `l4SingleMatch` on a gateway: the match's port (if any) is the server's port as
/// written, and its gateways (if any) name the server's Gateway.
fn l4_match_on_gateway(
    port: Option<u32>,
    gateways: &[String],
    server: &Server,
    gateway: &str,
) -> bool {
    port.is_none_or(|p| p == 0 || p == u32::from(server.port))
        && (gateways.is_empty() || gateways.iter().any(|g| g == gateway))
}

/// istiod's `buildGatewayNetworkFiltersFromTCPRoutes`: the first `tcp` rule (of the first
/// VirtualService that has one) that applies to the server.
fn tcp_route_filter(
    model: &Model,
    scope: &Scope,
    proxy: &Proxy,
    merged: &MergedServer<'_>,
) -> Option<Filter> {
    let gateway = merged.gateway.qualified_name();
    let server = merged.server;
    for vs in rules_for_server(model, proxy, merged) {
        for tcp in vs.tcp.iter().filter(|tcp| !tcp.route.is_empty()) {
            let applies = tcp.matches.is_empty()
                || tcp
                    .matches
                    .iter()
                    .any(|m| l4_match_on_gateway(m.port, &m.gateways, server, &gateway));
            if applies {
                return Some(route_tcp_proxy(
                    vs,
                    &tcp.route,
                    scope.view(),
                    (server.port, &server.port_name),
                ));
            }
        }
    }
    None
}

/// istiod's `buildGatewayNetworkFiltersFromTLSRoutes`: a chain per applicable `tls` match entry,
/// matched by its SNI hosts; entries repeating a name already taken on the listener are skipped.
fn passthrough_chains(
    model: &Model,
    scope: &Scope,
    proxy: &Proxy,
    merged: &MergedServer<'_>,
    taken: &mut BTreeSet<String>,
) -> Vec<FilterChain> {
    let gateway = merged.gateway.qualified_name();
    let server = merged.server;
    let mut chains = Vec::new();
    for vs in rules_for_server(model, proxy, merged) {
        for tls in vs.tls.iter().filter(|tls| !tls.route.is_empty()) {
            for request in &tls.matches {
                if !l4_match_on_gateway(request.port, &request.gateways, server, &gateway) {
                    continue;
                }
                if request.sni_hosts.iter().any(|name| taken.contains(name)) {
                    continue;
                }
                taken.extend(request.sni_hosts.iter().cloned());
                chains.push(FilterChain {
                    filter_chain_match: sni_match(request.sni_hosts.clone()),
                    filters: vec![route_tcp_proxy(
                        vs,
                        &tls.route,
                        scope.view(),
                        (server.port, &server.port_name),
                    )],
                    ..Default::default()
                });
            }
        }
    }
    chains
}

/// istiod's `builtAutoPassthroughFilterChains`, without Istio's mTLS ALPN requirement (rudder
/// has no Istio CA): every port of every service the proxy sees under the server's hosts, and
/// each of its DestinationRule's subsets, reached by the SNI Istio clients send for it.
fn auto_passthrough_chains(model: &ProxyView, server: &Server) -> Vec<FilterChain> {
    let mut chains = Vec::new();
    for service in model.services.values().filter(|s| !s.mesh_external) {
        let covered = server.hosts.iter().any(|host| {
            crate::model::virtual_service::host_subset_of(&service.hostname, &host.host)
        });
        if !covered {
            continue;
        }
        let subsets: Vec<&str> = model
            .destination_rules
            .get(&service.hostname)
            .map(|rule| rule.subsets.iter().map(|s| s.name.as_str()).collect())
            .unwrap_or_default();
        for port in &service.ports {
            for subset in std::iter::once("").chain(subsets.iter().copied()) {
                let cluster = outbound_cluster_name(port.port, subset, &service.hostname);
                let listener_port = (port.port, port.name.as_str());
                let prefix =
                    tcp_stat_prefix(model, &cluster, &service.hostname, subset, listener_port);
                chains.push(FilterChain {
                    filter_chain_match: sni_match(vec![format!(
                        "outbound_.{}_.{subset}_.{}",
                        port.port, service.hostname
                    )]),
                    filters: vec![tcp_proxy_filter_named(&prefix, &cluster)],
                    ..Default::default()
                });
            }
        }
    }
    chains
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
    use prost::Message;

    use crate::inputs::from_test_yaml;
    use crate::model::credential::Credential;
    use crate::model::{LastGood, build};
    use crate::proxy::Proxy;
    use crate::translate::translate;

    const CREDENTIAL_CASE: &str =
        include_str!("../../../testdata/golden/gateway-credential-name/input/mesh.yaml");

    fn model(yaml: &str) -> crate::model::Model {
        build(&from_test_yaml(yaml), &LastGood::default()).model
    }

    fn credential(ca: bool) -> Credential {
        Credential {
            certificate_chain: "chain".to_string(),
            private_key: "key".to_string(),
            ca_certificate: ca.then(|| "ca".to_string()),
        }
    }

    /// Per chain: server names, certificate SDS names, and the CA's SDS name.
    fn tls_chains(
        yaml: &str,
        credentials: &[(&str, bool)],
    ) -> Vec<(Vec<String>, Vec<String>, Option<String>)> {
        let mut model = model(yaml);
        // Only the credentials given count, whatever Secrets the case holds.
        std::sync::Arc::make_mut(&mut model.credentials).clear();
        for (name, ca) in credentials {
            std::sync::Arc::make_mut(&mut model.credentials).insert(
                ("istio-system".to_string(), name.to_string()),
                credential(*ca),
            );
        }
        let proxy = Proxy::parse(
            "router~10.0.0.9~ingress-abc.istio-system~istio-system.svc.cluster.local",
            &serde_json::json!({"LABELS": {"istio": "ingressgateway"}}),
        )
        .expect("a node id");
        let resources = translate(&model, &proxy);
        let Some(listener) = resources.listeners.get("0.0.0.0_8443") else {
            return Vec::new();
        };
        listener
            .filter_chains
            .iter()
            .map(|chain| {
                let names = chain
                    .filter_chain_match
                    .clone()
                    .unwrap_or_default()
                    .server_names;
                let socket = chain.transport_socket.clone().unwrap_or_default();
                let Some(super::transport_socket::ConfigType::TypedConfig(any)) =
                    socket.config_type
                else {
                    return (names, Vec::new(), None);
                };
                let context = DownstreamTlsContext::decode(any.value.as_slice()).expect("decodes");
                let common = context.common_tls_context.unwrap_or_default();
                let certificates = common
                    .tls_certificate_sds_secret_configs
                    .iter()
                    .map(|sds| sds.name.clone())
                    .collect();
                let ca = match common.validation_context_type {
                    Some(ValidationContextType::CombinedValidationContext(combined)) => combined
                        .validation_context_sds_secret_config
                        .map(|sds| sds.name),
                    _ => None,
                };
                (names, certificates, ca)
            })
            .collect()
    }

    #[test]
    fn credential_servers_come_up_with_their_secrets() {
        assert!(tls_chains(CREDENTIAL_CASE, &[]).is_empty());
        let chains = tls_chains(
            CREDENTIAL_CASE,
            &[("bookinfo-cert", false), ("partners-cert", true)],
        );
        assert_eq!(
            chains,
            [
                (
                    vec!["bookinfo.example.com".to_string()],
                    vec!["kubernetes://bookinfo-cert".to_string()],
                    None
                ),
                (
                    vec!["partners.example.com".to_string()],
                    vec!["kubernetes://partners-cert".to_string()],
                    Some("kubernetes://partners-cert-cacert".to_string())
                ),
            ]
        );
    }
}

//! Gateway resources as the model holds them, and how istiod merges the Gateways that select one
//! `router` proxy into one logical gateway (`pilot/pkg/model/gateway.go`, `mergeGateways`):
//! - A Gateway selects the router proxies whose labels contain its `selector` (an empty selector
//!   selects every router), whatever their namespace.
//! - A server's port is looked up among the ports of the Services in the proxy's namespace that
//!   select the proxy: the first one with that number gives the port actually listened on (its
//!   `targetPort`); without one the port is used as written.
//! - Servers merge by (listened port, bind): plain-text HTTP servers share one route configuration
//!   `http.PORT`; TLS servers sit side by side, told apart by SNI; anything else on a taken port
//!   is a conflict and the later server is left out, as are TLS servers repeating a host already
//!   served on their port. HTTPS servers that terminate TLS get route configuration
//!   `https.PORT.PORTNAME.GATEWAY.NAMESPACE`.
//!
//! Owns resolving and merging; builds no Envoy resources (that is `translate::gateway`) and does
//! not read Secrets (that is `credential`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::build::in_precedence_order;
use super::credential::Credentials;
use super::{Model, Protocol, TargetPort, Workload};
use crate::inputs::{Kind, Object, ObjectKey};
use crate::istio::{self, ServerTlsMode};
use crate::proxy::{Proxy, ProxyKind};

/// A Gateway with its servers resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Gateway {
    pub name: String,
    pub namespace: String,
    pub selector: BTreeMap<String, String>,
    pub servers: Vec<Server>,
}

impl Gateway {
    /// `namespace/name`, as VirtualServices name it in `gateways`.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn selects(&self, proxy: &Proxy) -> bool {
        proxy.kind == ProxyKind::Router && labels_contain(&proxy.labels, &self.selector)
    }
}

pub(super) fn labels_contain(
    labels: &BTreeMap<String, String>,
    selector: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// One server of a Gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Its position in `spec.servers`, for error messages.
    pub index: usize,
    /// The port as written (route names and VirtualService `port` matches use it).
    pub port: u16,
    pub port_name: String,
    pub protocol: Protocol,
    pub bind: Option<String>,
    pub hosts: Vec<ServerHost>,
    pub tls: Option<istio::ServerTlsSettings>,
    pub name: Option<String>,
}

/// A server host: `namespace/host` with `.` resolved to the Gateway's namespace; None for any
/// namespace (`*/host`, or a host without a namespace).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerHost {
    pub namespace: Option<String>,
    pub host: String,
}

impl Server {
    /// The TLS mode; PASSTHROUGH when TLS settings give none (the API's default).
    pub fn tls_mode(&self) -> Option<ServerTlsMode> {
        self.tls
            .as_ref()
            .map(|tls| tls.mode.unwrap_or(ServerTlsMode::Passthrough))
    }

    /// PASSTHROUGH or AUTO_PASSTHROUGH: TLS goes through untouched, routed by SNI.
    pub fn is_passthrough(&self) -> bool {
        matches!(
            self.tls_mode(),
            Some(ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough)
        )
    }

    /// istiod's `IsTLSServer`: TLS settings on a port that is not HTTP.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some() && !self.protocol.is_http()
    }

    /// istiod's `IsHTTPServer`: plain HTTP, or HTTPS terminated here.
    pub fn is_http(&self) -> bool {
        self.protocol.is_http() || self.terminates_https()
    }

    /// An HTTPS server that terminates TLS (and then routes HTTP).
    pub fn terminates_https(&self) -> bool {
        self.protocol == Protocol::Https && self.tls.is_some() && !self.is_passthrough()
    }

    /// The SNI names of a TLS server: its hosts without namespaces, sorted and deduplicated.
    pub fn sni_hosts(&self) -> Vec<String> {
        let names: BTreeSet<&str> = self.hosts.iter().map(|h| h.host.as_str()).collect();
        names.into_iter().map(str::to_string).collect()
    }

    /// The hosts a VirtualService in `namespace` may bind to.
    pub fn hosts_for_namespace<'s>(&'s self, namespace: &'s str) -> impl Iterator<Item = &'s str> {
        self.hosts
            .iter()
            .filter(move |h| h.namespace.as_deref().is_none_or(|ns| ns == namespace))
            .map(|h| h.host.as_str())
    }
}

/// A server port's protocol as istiod's `protocol.Parse` reads it (case-insensitive); None when
/// unknown. MONGO, REDIS, MYSQL and UDP are opaque TCP here.
pub fn server_protocol(name: &str) -> Option<Protocol> {
    Some(match name.to_ascii_uppercase().as_str() {
        "HTTP" | "HTTP_PROXY" => Protocol::Http,
        "HTTP2" => Protocol::Http2,
        "GRPC" | "GRPC-WEB" => Protocol::Grpc,
        "HTTPS" => Protocol::Https,
        "TLS" => Protocol::Tls,
        "TCP" | "MONGO" | "REDIS" | "MYSQL" | "UDP" => Protocol::Tcp,
        _ => return None,
    })
}

/// Why a server's `credentialName` cannot be served from `namespace` (where its Secret must be),
/// if it cannot: no valid TLS Secret by that name, or, for MUTUAL, one without a CA to verify
/// clients with. None for servers that name no credential or whose mode uses none.
pub fn credential_problem(
    server: &Server,
    namespace: &str,
    credentials: &Credentials,
) -> Option<String> {
    let mode = server.tls_mode()?;
    if !matches!(mode, ServerTlsMode::Simple | ServerTlsMode::Mutual) {
        return None;
    }
    let name = server.tls.as_ref()?.credential_name.as_deref()?;
    let Some(credential) = credentials.get(&(namespace.to_string(), name.to_string())) else {
        return Some(format!(
            "no TLS Secret {namespace}/{name} (with tls.crt and tls.key) exists"
        ));
    };
    (mode == ServerTlsMode::Mutual && credential.ca_certificate.is_none()).then(|| {
        format!(
            "Secret {namespace}/{name} has no CA certificate (ca.crt, or a Secret {name}-cacert) to verify clients with for MUTUAL TLS"
        )
    })
}

/// [`credential_problem`] when no gateway workload is known: the Secret must be usable in some
/// namespace.
fn credential_problem_anywhere(server: &Server, credentials: &Credentials) -> Option<String> {
    let name = server.tls.as_ref()?.credential_name.as_deref()?;
    let mut first_problem = None;
    for (namespace, _) in credentials.keys().filter(|(_, secret)| secret == name) {
        match credential_problem(server, namespace, credentials) {
            None => return None,
            Some(problem) => {
                first_problem.get_or_insert(problem);
            }
        }
    }
    first_problem.or_else(|| {
        // Asked of a namespace that holds no Secret: whether this server needs one at all.
        credential_problem(server, "", credentials).map(|_| {
            format!("no TLS Secret {name} (with tls.crt and tls.key) exists in any namespace")
        })
    })
}

/// What valid Gateways' servers lose, as (Gateway, field, message) warnings: servers another
/// server's port or hosts conflict with, servers whose `credentialName` names no usable Secret
/// (yet), cipher suites left out as unknown. Warnings, so that the Gateway stays in force as
/// written: a Secret arriving later brings its server up without a new version of the Gateway.
///
/// A credential is looked for where the gateway workloads are, as SDS serves it: in the
/// namespaces of the Pods the Gateway selects, or, when none is known, in any namespace.
pub(super) fn server_warnings(
    gateways: &[Gateway],
    credentials: &Credentials,
    workloads: &BTreeMap<IpAddr, Workload>,
) -> Vec<(ObjectKey, String, String)> {
    let key = |namespace: &str, name: &str| ObjectKey::new(Kind::Gateway, namespace, name);
    let mut warnings = Vec::new();
    for conflict in conflicts(gateways) {
        let (namespace, name) = &conflict.gateway;
        warnings.push((
            key(namespace, name),
            format!("spec.servers[{}]", conflict.server),
            conflict.message,
        ));
    }
    for gateway in gateways {
        // Every build runs this; scan the Pods only for Gateways that name a credential.
        let names_credentials = gateway.servers.iter().any(|server| {
            server
                .tls
                .as_ref()
                .is_some_and(|tls| tls.credential_name.is_some())
        });
        let workload_namespaces: BTreeSet<&str> = if names_credentials {
            workloads
                .values()
                .filter(|workload| labels_contain(&workload.labels, &gateway.selector))
                .map(|workload| workload.namespace.as_str())
                .collect()
        } else {
            BTreeSet::new()
        };
        for server in &gateway.servers {
            let at = |field: &str| format!("spec.servers[{}].tls.{field}", server.index);
            let unknown: Vec<&str> = server
                .tls
                .iter()
                .flat_map(|tls| &tls.cipher_suites)
                .map(String::as_str)
                .filter(|suite| !is_known_cipher_suite(suite))
                .collect();
            if !unknown.is_empty() {
                warnings.push((
                    key(&gateway.namespace, &gateway.name),
                    at("cipherSuites"),
                    format!("ignoring invalid cipher suites: {}", unknown.join(", ")),
                ));
            }
            let problem = if workload_namespaces.is_empty() {
                credential_problem_anywhere(server, credentials)
            } else {
                workload_namespaces
                    .iter()
                    .find_map(|namespace| credential_problem(server, namespace, credentials))
            };
            if let Some(problem) = problem {
                warnings.push((
                    key(&gateway.namespace, &gateway.name),
                    at("credentialName"),
                    problem + "; the server is left out until it is",
                ));
            }
        }
    }
    warnings
}

/// The cipher suites istiod accepts (`security.IsValidCipherSuite`), as BoringSSL names them.
const CIPHER_SUITES: [&str; 15] = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

/// Whether Envoy knows the cipher suite; istiod drops (and warns about) the others, which Envoy
/// would reject.
pub fn is_known_cipher_suite(name: &str) -> bool {
    CIPHER_SUITES.contains(&name)
}

/// The model's Gateways, in precedence order, from admitted (valid) objects.
pub(super) fn gateways<'a>(objects: impl Iterator<Item = &'a Object>) -> Vec<Gateway> {
    let ordered = in_precedence_order(objects, |object| match object {
        Object::Gateway(gateway) => Some(gateway.as_ref()),
        _ => None,
    });
    ordered
        .into_iter()
        .map(|gateway| {
            let namespace = super::build::namespace_of(&gateway.metadata.namespace).to_string();
            let servers = gateway
                .spec
                .servers
                .iter()
                .enumerate()
                .filter_map(|(index, server)| resolve_server(index, server, &namespace))
                .collect();
            Gateway {
                name: gateway.metadata.name.clone(),
                namespace,
                selector: gateway.spec.selector.clone(),
                servers,
            }
        })
        .collect()
}

fn resolve_server(index: usize, server: &istio::Server, namespace: &str) -> Option<Server> {
    let mut hosts = Vec::new();
    for entry in &server.hosts {
        let host = match entry.split_once('/') {
            Some(("*", "*")) => {
                hosts = vec![ServerHost {
                    namespace: None,
                    host: "*".to_string(),
                }];
                break;
            }
            Some(("*", host)) => ServerHost {
                namespace: None,
                host: host.to_string(),
            },
            Some((".", host)) => ServerHost {
                namespace: Some(namespace.to_string()),
                host: host.to_string(),
            },
            Some((ns, host)) => ServerHost {
                namespace: Some(ns.to_string()),
                host: host.to_string(),
            },
            None => ServerHost {
                namespace: None,
                host: entry.clone(),
            },
        };
        hosts.push(ServerHost {
            host: host.host.to_ascii_lowercase(),
            ..host
        });
    }
    Some(Server {
        index,
        port: u16::try_from(server.port.number).ok()?,
        port_name: server.port.name.clone(),
        protocol: server_protocol(&server.port.protocol)?,
        bind: server.bind.clone().filter(|bind| !bind.is_empty()),
        hosts,
        tls: server.tls.clone(),
        name: server.name.clone().filter(|name| !name.is_empty()),
    })
}

/// Where a merged server listens: the port actually bound and the address (None: wildcard).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListenerKey {
    pub port: u16,
    pub bind: Option<String>,
}

/// A server taken into the merged gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedServer<'m> {
    pub gateway: &'m Gateway,
    pub server: &'m Server,
    /// The route configuration its HTTP connection manager fetches; None for TCP/TLS servers.
    pub route_name: Option<String>,
}

/// The servers on one listener.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedPort<'m> {
    pub key: ListenerKey,
    /// Whether the port holds plain-text servers (HTTP sharing one route configuration, or one
    /// TCP server) rather than TLS servers told apart by SNI.
    pub plain_text: bool,
    pub servers: Vec<MergedServer<'m>>,
}

/// A server left out of the merge, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Conflict {
    pub gateway: (String, String),
    pub server: usize,
    pub message: String,
}

/// The Gateways selecting one proxy, merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergedGateway<'m> {
    /// In the order the ports were first seen.
    pub ports: Vec<MergedPort<'m>>,
    pub conflicts: Vec<Conflict>,
}

impl<'m> MergedGateway<'m> {
    /// Every server with an HTTP route configuration, by route name.
    pub fn servers_by_route(&self) -> BTreeMap<&str, Vec<&MergedServer<'m>>> {
        let mut by_route: BTreeMap<&str, Vec<&MergedServer<'m>>> = BTreeMap::new();
        for server in self.ports.iter().flat_map(|port| &port.servers) {
            if let Some(route) = &server.route_name {
                by_route.entry(route.as_str()).or_default().push(server);
            }
        }
        by_route
    }
}

/// istiod's `gatewayRDSRouteName`: `http.PORT` (the port listened on) for HTTP servers,
/// `https.PORT.PORTNAME.GATEWAY.NAMESPACE` (the port as written) for HTTPS servers that terminate
/// TLS, each with `.BIND` when the server binds an address.
fn route_name(gateway: &Gateway, server: &Server, listened: u16) -> Option<String> {
    let bind = server
        .bind
        .as_ref()
        .map(|bind| format!(".{bind}"))
        .unwrap_or_default();
    if server.protocol.is_http() {
        Some(format!("http.{listened}{bind}"))
    } else if server.terminates_https() {
        Some(format!(
            "https.{}.{}.{}.{}{bind}",
            server.port, server.port_name, gateway.name, gateway.namespace
        ))
    } else {
        None
    }
}

/// The Gateways that select `proxy`, merged as istiod merges them for it.
pub fn merged_for_proxy<'m>(model: &'m Model, proxy: &Proxy) -> MergedGateway<'m> {
    let selected: Vec<&Gateway> = model.gateways.iter().filter(|g| g.selects(proxy)).collect();
    merge(&selected, |port| listened_port(model, proxy, port))
}

/// istiod's `resolvePorts` for selector-chosen gateways: the target port of the first Service
/// port with this number among the Services in the proxy's namespace that select it.
fn listened_port(model: &Model, proxy: &Proxy, port: u16) -> u16 {
    let workload = proxy.ips.iter().find_map(|ip| model.workloads.get(ip));
    model
        .services
        .values()
        .filter(|service| service.namespace == proxy.namespace && service.selects(&proxy.labels))
        .filter_map(|service| service.port(port))
        .find_map(|service_port| match &service_port.target_port {
            TargetPort::Number(number) => Some(*number),
            TargetPort::Name(name) => workload?.named_ports.get(name).copied(),
        })
        .unwrap_or(port)
}

/// A protocol as Gateways spell it (a server without one is TCP).
fn protocol_name(protocol: Protocol) -> &'static str {
    protocol.name().unwrap_or("TCP")
}

/// Whether a server of `protocol` may join plain-text servers of `current` (both HTTP).
fn can_merge(current: Protocol, protocol: Protocol) -> bool {
    (current.is_http() || current == protocol) && protocol.is_http()
}

/// istiod's `mergeGateways` over `gateways` (in precedence order).
pub fn merge<'m>(gateways: &[&'m Gateway], resolve: impl Fn(u16) -> u16) -> MergedGateway<'m> {
    let mut merged = MergedGateway::default();
    // Plain-text servers' port: the key and protocol of the first server there.
    let mut plain_text: BTreeMap<u16, (ListenerKey, Protocol)> = BTreeMap::new();
    let mut tls_binds: BTreeMap<u16, BTreeSet<Option<String>>> = BTreeMap::new();
    let mut tls_hosts: BTreeMap<u16, BTreeMap<String, Option<String>>> = BTreeMap::new();
    let mut routes: BTreeSet<String> = BTreeSet::new();
    for gateway in gateways {
        for server in &gateway.servers {
            let port = resolve(server.port);
            let route = route_name(gateway, server, port);
            let mut conflict = |message: String| {
                merged.conflicts.push(Conflict {
                    gateway: (gateway.namespace.clone(), gateway.name.clone()),
                    server: server.index,
                    message,
                });
            };
            if server.tls.is_some() {
                let known = tls_hosts.entry(port).or_default();
                let duplicates: Vec<&str> = server
                    .hosts
                    .iter()
                    .filter(|h| known.get(&h.host) == Some(&server.bind))
                    .map(|h| h.host.as_str())
                    .collect();
                if !duplicates.is_empty() {
                    conflict(format!(
                        "left out: host(s) {} already served with TLS on port {port}",
                        duplicates.join(", ")
                    ));
                    continue;
                }
                for host in &server.hosts {
                    known.insert(host.host.clone(), server.bind.clone());
                }
            }
            let key = ListenerKey {
                port,
                bind: server.bind.clone(),
            };
            let seen = merged.ports.iter().any(|p| p.key.port == port);
            if !seen {
                let is_plain = !server.is_tls();
                if is_plain {
                    plain_text.insert(port, (key.clone(), server.protocol));
                } else {
                    tls_binds.entry(port).or_default().insert(key.bind.clone());
                }
                if let Some(route) = &route {
                    routes.insert(route.clone());
                }
                merged.ports.push(MergedPort {
                    key,
                    plain_text: is_plain,
                    servers: vec![MergedServer {
                        gateway,
                        server,
                        route_name: route,
                    }],
                });
                continue;
            }
            if let Some((current, current_protocol)) = plain_text.get(&port).cloned() {
                let same_bind = current.bind == key.bind;
                if same_bind && !can_merge(current_protocol, server.protocol) {
                    conflict(format!(
                        "left out: port {port} already serves {} from another server, which {} cannot share",
                        protocol_name(current_protocol),
                        protocol_name(server.protocol)
                    ));
                    continue;
                }
                if same_bind && route.is_none() {
                    conflict(format!(
                        "left out: port {port} is already taken by another server"
                    ));
                    continue;
                }
                add_server(&mut merged, key, gateway, server, route.clone());
                if let Some(route) = route {
                    routes.insert(route);
                }
                continue;
            }
            if server.is_http() {
                let Some(route) = &route else { continue };
                if !routes.insert(route.clone()) {
                    conflict(format!(
                        "left out: route configuration {route} already exists (port names must differ)"
                    ));
                    continue;
                }
            }
            let new_bind = tls_binds.entry(port).or_default().insert(key.bind.clone());
            if server.tls.is_none() && !new_bind {
                conflict(format!(
                    "left out: port {port} serves TLS servers, and this server has no TLS settings"
                ));
                continue;
            }
            add_server(&mut merged, key, gateway, server, route);
        }
    }
    merged
}

/// Adds a server to the listener for `key`, or to a new one (another bind on a taken port).
fn add_server<'m>(
    merged: &mut MergedGateway<'m>,
    key: ListenerKey,
    gateway: &'m Gateway,
    server: &'m Server,
    route_name: Option<String>,
) {
    let entry = MergedServer {
        gateway,
        server,
        route_name,
    };
    match merged.ports.iter_mut().find(|port| port.key == key) {
        Some(port) => port.servers.push(entry),
        None => merged.ports.push(MergedPort {
            key,
            plain_text: !server.is_tls(),
            servers: vec![entry],
        }),
    }
}

/// Servers that some proxy's merge would leave out, found without a proxy: for every distinct
/// selector, the Gateways a proxy with exactly those labels would take, merged with ports as
/// written. Reported once per server.
pub fn conflicts(gateways: &[Gateway]) -> Vec<Conflict> {
    let selectors: BTreeSet<&BTreeMap<String, String>> =
        gateways.iter().map(|g| &g.selector).collect();
    let mut found = BTreeSet::new();
    for selector in selectors {
        let selected: Vec<&Gateway> = gateways
            .iter()
            .filter(|g| labels_contain(selector, &g.selector))
            .collect();
        found.extend(merge(&selected, |port| port).conflicts);
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(name: &str, servers: &str) -> Gateway {
        let spec: istio::Gateway = serde_saphyr::from_str(&format!(
            "selector: {{istio: ingress}}\nservers:\n{servers}"
        ))
        .expect("parses");
        Gateway {
            name: name.to_string(),
            namespace: "gw".to_string(),
            selector: spec.selector.clone(),
            servers: spec
                .servers
                .iter()
                .enumerate()
                .filter_map(|(i, s)| resolve_server(i, s, "gw"))
                .collect(),
        }
    }

    #[test]
    fn hosts_take_their_namespace() {
        let g = gateway(
            "a",
            "- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [./a.com, '*/b.com', ns1/C.com, d.com]\n",
        );
        let hosts: Vec<(Option<&str>, &str)> = g.servers[0]
            .hosts
            .iter()
            .map(|h| (h.namespace.as_deref(), h.host.as_str()))
            .collect();
        assert_eq!(
            hosts,
            [
                (Some("gw"), "a.com"),
                (None, "b.com"),
                (Some("ns1"), "c.com"),
                (None, "d.com")
            ]
        );
        let any = gateway(
            "b",
            "- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [./a.com, '*/*']\n",
        );
        assert_eq!(any.servers[0].hosts.len(), 1);
        assert_eq!(any.servers[0].hosts[0].host, "*");
    }

    #[test]
    fn servers_merge_by_port_and_conflicts_are_left_out() {
        let a = gateway(
            "a",
            "- port: {number: 80, name: http, protocol: HTTP}\n  hosts: [a.com]\n\
             - port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [a.com]\n  tls: {mode: SIMPLE, credentialName: a}\n",
        );
        let b = gateway(
            "b",
            "- port: {number: 80, name: web, protocol: HTTP2}\n  hosts: [b.com]\n\
             - port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [b.com]\n  tls: {mode: SIMPLE, credentialName: b}\n\
             - port: {number: 443, name: again, protocol: HTTPS}\n  hosts: [a.com]\n  tls: {mode: SIMPLE, credentialName: c}\n\
             - port: {number: 80, name: tcp, protocol: TCP}\n  hosts: ['*']\n",
        );
        let merged = merge(&[&a, &b], |port| if port == 80 { 8080 } else { port });
        let layout: Vec<(u16, bool, Vec<Option<String>>)> = merged
            .ports
            .iter()
            .map(|p| {
                (
                    p.key.port,
                    p.plain_text,
                    p.servers.iter().map(|s| s.route_name.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            layout,
            [
                (
                    8080,
                    true,
                    vec![Some("http.8080".into()), Some("http.8080".into())]
                ),
                (
                    443,
                    false,
                    vec![
                        Some("https.443.https.a.gw".into()),
                        Some("https.443.https.b.gw".into())
                    ]
                ),
            ]
        );
        let left_out: Vec<(String, usize)> = merged
            .conflicts
            .iter()
            .map(|c| (c.gateway.1.clone(), c.server))
            .collect();
        assert_eq!(left_out, [("b".to_string(), 2), ("b".to_string(), 3)]);
        assert_eq!(conflicts(&[a, b]).len(), 2);
    }

    #[test]
    fn another_bind_is_another_listener() {
        let a = gateway(
            "a",
            "- port: {number: 443, name: tls, protocol: TLS}\n  hosts: [a.com]\n  tls: {mode: PASSTHROUGH}\n\
             - port: {number: 443, name: http, protocol: HTTP}\n  bind: 10.0.0.2\n  hosts: [a.com]\n\
             - port: {number: 443, name: http-again, protocol: HTTP}\n  hosts: [b.com]\n",
        );
        let merged = merge(&[&a], |port| port);
        let layout: Vec<(Option<&str>, bool, Option<&str>)> = merged
            .ports
            .iter()
            .map(|p| {
                (
                    p.key.bind.as_deref(),
                    p.plain_text,
                    p.servers[0].route_name.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            layout,
            [
                (None, false, None),
                (Some("10.0.0.2"), true, Some("http.443.10.0.0.2")),
            ]
        );
        assert_eq!(merged.conflicts.len(), 1);
        assert_eq!(merged.conflicts[0].server, 2);
    }

    #[test]
    fn credentials_are_looked_for_where_the_gateway_workloads_run() {
        let g = gateway(
            "a",
            "- port: {number: 443, name: https, protocol: HTTPS}\n  hosts: [a.com]\n  tls: {mode: SIMPLE, credentialName: cert}\n",
        );
        let credential = crate::model::credential::Credential {
            certificate_chain: "chain".to_string(),
            private_key: "key".to_string(),
            ca_certificate: None,
        };
        let in_namespace = |namespace: &str| -> Credentials {
            [(
                (namespace.to_string(), "cert".to_string()),
                credential.clone(),
            )]
            .into()
        };
        let pod = Workload {
            name: "ingress-1".to_string(),
            namespace: "istio-system".to_string(),
            labels: [("istio".to_string(), "ingress".to_string())].into(),
            locality: Default::default(),
            node_name: String::new(),
            named_ports: BTreeMap::new(),
        };
        let pods: BTreeMap<IpAddr, Workload> = [([10, 0, 0, 1].into(), pod)].into();
        let warnings = |credentials: &Credentials, pods: &BTreeMap<IpAddr, Workload>| {
            server_warnings(std::slice::from_ref(&g), credentials, pods)
                .into_iter()
                .map(|(_, field, message)| format!("{field}: {message}"))
                .collect::<Vec<_>>()
        };
        // The Gateway lives in `gw`; its workload and the Secret in istio-system, as in Istio.
        assert!(warnings(&in_namespace("istio-system"), &pods).is_empty());
        let elsewhere = warnings(&in_namespace("gw"), &pods);
        assert_eq!(elsewhere.len(), 1);
        assert!(
            elsewhere[0].contains("istio-system/cert"),
            "{}",
            elsewhere[0]
        );
        // No workload known: any namespace's Secret will do; none at all is reported.
        assert!(warnings(&in_namespace("gw"), &BTreeMap::new()).is_empty());
        let nowhere = warnings(&Credentials::new(), &BTreeMap::new());
        assert!(nowhere[0].contains("in any namespace"), "{}", nowhere[0]);
    }
}

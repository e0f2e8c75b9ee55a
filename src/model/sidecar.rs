//! Sidecar resources as the model holds them: selector, egress listeners with their hosts parsed
//! into `namespace/host` pairs, and the outbound traffic policy, in istiod's precedence order
//! (oldest first). This module resolves what each object says; which Sidecar applies to which
//! proxy, and what that proxy then sees, is `translate::scope`'s business. Ingress listeners are
//! resolved here (port, bind, capture mode, where `defaultEndpoint` sends traffic); the inbound
//! layout built from them is `translate::inbound`'s. Ingress `tls` is not read (istiod ignores
//! it too unless `ENABLE_TLS_ON_SIDECAR_INGRESS` is set), nor are the connection pools.

use std::collections::BTreeMap;

use super::Protocol;
use super::kubernetes::protocol_of;
use crate::inputs::{IstioObject, Object};
use crate::istio::{self, CaptureMode, OutboundTrafficPolicyMode};

/// Where unknown destinations go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
pub enum OutboundPolicy {
    /// Passed through to the address the client dialled (the mesh-wide default).
    #[default]
    AllowAny,
    /// Refused: HTTP gets a 502, TCP goes to the black hole.
    RegistryOnly,
}

/// The namespace part of an egress host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostNamespace {
    /// `.`: the namespace of the proxy the Sidecar applies to (for a mesh-wide default Sidecar in
    /// the root namespace, the proxy's own namespace, as istiod reads it).
    Own,
    /// `*`: any namespace.
    Any,
    /// `~`: no namespace; the host imports nothing.
    Nothing,
    Named(String),
}

/// One `namespace/host` entry of an egress listener.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EgressHost {
    pub namespace: HostNamespace,
    /// `*`, an exact name or a `*.suffix` wildcard, taken as written (istiod does not expand
    /// short names here).
    pub host: String,
}

/// A port an egress listener is restricted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPort {
    pub number: u16,
    pub name: String,
    /// The listener's protocol, which decides its shape (HTTP connection manager or TCP proxy)
    /// whatever the services' ports say.
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressListener {
    /// None for the catch-all listener (every port of its hosts).
    pub port: Option<EgressPort>,
    /// The IP to listen on; validation guarantees an IP address.
    pub bind: Option<String>,
    /// `captureMode: NONE`: the listener binds for real even under iptables interception.
    pub capture_none: bool,
    pub hosts: Vec<EgressHost>,
}

/// Where an ingress listener sends the traffic it accepts (`defaultEndpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressEndpoint {
    /// Unset or `:PORT`: the address the client dialled, on `port` (ORIGINAL_DST).
    OriginalDestination { port: u16 },
    /// `127.0.0.1:PORT` or `[::1]:PORT`: the application on loopback.
    Loopback { ipv6: bool, port: u16 },
    /// `0.0.0.0:PORT` or `[::]:PORT`: the application on the workload's own address.
    WorkloadAddress { ipv6: bool, port: u16 },
    /// `unix://PATH`: the application's Unix domain socket.
    Unix(String),
}

/// One `ingress` listener: traffic to the workload on `port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressListener {
    pub port: u16,
    pub name: String,
    pub protocol: Protocol,
    /// The IP to listen on; validation guarantees an IP address.
    pub bind: Option<String>,
    /// `captureMode`: None (DEFAULT) leaves it to the proxy's interception mode.
    pub capture: Option<CaptureMode>,
    pub endpoint: IngressEndpoint,
}

impl IngressListener {
    /// Whether the listener binds for real rather than receiving redirected connections
    /// (istiod's `getBindToPort`).
    pub fn binds_to_port(&self, proxy_intercepted: bool) -> bool {
        match self.capture {
            None | Some(CaptureMode::Default) => !proxy_intercepted,
            Some(mode) => mode == CaptureMode::None,
        }
    }
}

/// Parses `defaultEndpoint`; `None` when it is malformed (validation reports it).
pub(crate) fn ingress_endpoint(value: Option<&str>, listener_port: u16) -> Option<IngressEndpoint> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Some(IngressEndpoint::OriginalDestination {
            port: listener_port,
        });
    };
    if let Some(path) = value.strip_prefix(super::validate::UNIX_PREFIX) {
        return (!path.is_empty()).then(|| IngressEndpoint::Unix(path.to_string()));
    }
    let (host, port) = value.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|port| *port != 0)?;
    match host {
        "" => Some(IngressEndpoint::OriginalDestination { port }),
        "127.0.0.1" => Some(IngressEndpoint::Loopback { ipv6: false, port }),
        "[::1]" => Some(IngressEndpoint::Loopback { ipv6: true, port }),
        "0.0.0.0" => Some(IngressEndpoint::WorkloadAddress { ipv6: false, port }),
        "[::]" => Some(IngressEndpoint::WorkloadAddress { ipv6: true, port }),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sidecar {
    pub name: String,
    pub namespace: String,
    /// `workloadSelector.labels`; None selects every workload of the namespace.
    pub selector: Option<BTreeMap<String, String>>,
    /// As written; when there are any, they replace the Services as the source of the inbound
    /// listeners of the workloads the Sidecar applies to.
    pub ingress: Vec<IngressListener>,
    /// Explicit-port listeners first (as written), the catch-all last.
    pub egress: Vec<EgressListener>,
    /// None leaves the mesh-wide default (ALLOW_ANY).
    pub outbound_policy: Option<OutboundPolicy>,
}

impl Sidecar {
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector
            .as_ref()
            .is_none_or(|selector| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
    }
}

/// Parses one egress host; `None` when it is not `namespace/host` (validation reports it).
pub(crate) fn egress_host(entry: &str) -> Option<EgressHost> {
    let (namespace, host) = entry.split_once('/')?;
    let namespace = match namespace {
        "." => HostNamespace::Own,
        "*" => HostNamespace::Any,
        "~" => HostNamespace::Nothing,
        "" => return None,
        name => HostNamespace::Named(name.to_string()),
    };
    Some(EgressHost {
        namespace,
        host: host.to_string(),
    })
}

fn sidecar(object: &IstioObject<istio::Sidecar>) -> Sidecar {
    let spec = &object.spec;
    let mut egress: Vec<EgressListener> = spec
        .egress
        .iter()
        .map(|listener| EgressListener {
            port: listener.port.as_ref().and_then(|port| {
                Some(EgressPort {
                    number: u16::try_from(port.number).ok().filter(|n| *n != 0)?,
                    name: port.name.clone(),
                    protocol: protocol_of(&port.protocol, None),
                })
            }),
            bind: listener.bind.clone().filter(|bind| !bind.is_empty()),
            capture_none: listener.capture_mode == Some(CaptureMode::None),
            hosts: listener
                .hosts
                .iter()
                .filter_map(|h| egress_host(h))
                .collect(),
        })
        .collect();
    let ingress = spec
        .ingress
        .iter()
        .filter_map(|listener| {
            let port = u16::try_from(listener.port.number)
                .ok()
                .filter(|n| *n != 0)?;
            Some(IngressListener {
                port,
                name: listener.port.name.clone(),
                protocol: protocol_of(&listener.port.protocol, None),
                bind: listener.bind.clone().filter(|bind| !bind.is_empty()),
                capture: listener.capture_mode,
                endpoint: ingress_endpoint(listener.default_endpoint.as_deref(), port)?,
            })
        })
        .collect();
    // Validation allows one catch-all; istiod treats it as the last listener.
    egress.sort_by_key(|listener| listener.port.is_none());
    let outbound_policy =
        spec.outbound_traffic_policy
            .as_ref()
            .and_then(|policy| match policy.mode {
                Some(OutboundTrafficPolicyMode::RegistryOnly) => Some(OutboundPolicy::RegistryOnly),
                Some(OutboundTrafficPolicyMode::AllowAny) => Some(OutboundPolicy::AllowAny),
                _ => None,
            });
    Sidecar {
        name: object.metadata.name.clone(),
        namespace: object
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        selector: spec
            .workload_selector
            .as_ref()
            .map(|selector| selector.labels.clone()),
        ingress,
        egress,
        outbound_policy,
    }
}

/// The admitted Sidecars, oldest first (then by namespace and name), as istiod orders them.
pub(crate) fn sidecars<'a>(objects: impl Iterator<Item = &'a Object>) -> Vec<Sidecar> {
    super::build::in_precedence_order(objects, |object| match object {
        Object::Sidecar(sidecar) => Some(sidecar.as_ref()),
        _ => None,
    })
    .into_iter()
    .map(sidecar)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_hosts_parse_into_namespace_and_host() {
        let parsed = |entry| egress_host(entry);
        assert_eq!(
            parsed("./*"),
            Some(EgressHost {
                namespace: HostNamespace::Own,
                host: "*".into()
            })
        );
        assert_eq!(
            parsed("*/reviews.bookinfo.svc.cluster.local").map(|h| h.namespace),
            Some(HostNamespace::Any)
        );
        assert_eq!(
            parsed("~/*").map(|h| h.namespace),
            Some(HostNamespace::Nothing)
        );
        assert_eq!(
            parsed("prod/*.example.com"),
            Some(EgressHost {
                namespace: HostNamespace::Named("prod".into()),
                host: "*.example.com".into()
            })
        );
        assert_eq!(parsed("reviews"), None);
        assert_eq!(parsed("/reviews"), None);
    }

    #[test]
    fn default_endpoints_parse_into_where_traffic_goes() {
        let parsed = |value| ingress_endpoint(value, 9080);
        assert_eq!(
            parsed(None),
            Some(IngressEndpoint::OriginalDestination { port: 9080 })
        );
        assert_eq!(
            parsed(Some(":8080")),
            Some(IngressEndpoint::OriginalDestination { port: 8080 })
        );
        assert_eq!(
            parsed(Some("127.0.0.1:8080")),
            Some(IngressEndpoint::Loopback {
                ipv6: false,
                port: 8080
            })
        );
        assert_eq!(
            parsed(Some("[::]:8080")),
            Some(IngressEndpoint::WorkloadAddress {
                ipv6: true,
                port: 8080
            })
        );
        assert_eq!(
            parsed(Some("unix:///var/run/app.sock")),
            Some(IngressEndpoint::Unix("/var/run/app.sock".into()))
        );
        assert_eq!(parsed(Some("10.0.0.1:8080")), None);
        assert_eq!(parsed(Some("127.0.0.1:0")), None);
        assert_eq!(parsed(Some("127.0.0.1")), None);
    }
}

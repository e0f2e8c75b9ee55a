//! The Model: the mesh as rudder understands it, resolved and validated, with no Kubernetes and no
//! Envoy types. Services are keyed by FQDN with their ports and ready endpoints (endpoint labels
//! from their Pods); DestinationRules and VirtualServices have their hosts resolved to FQDNs and
//! are known to be valid.
//!
//! [`build`] is a pure function from [`Inputs`] and the last good version of every object to a new
//! Model. An object whose current version is invalid is reported and its last good version is used
//! instead, so one bad object never removes what others configure.

mod build;
mod validate;

pub use build::{Built, LastGood, build};

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::istio;

/// A service port's application protocol, as Istio infers it from the port name or appProtocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    Https,
    Tls,
    Tcp,
}

impl Protocol {
    /// Traffic that gets an HTTP connection manager on outbound listeners.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2 | Protocol::Grpc)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
}

/// One ready endpoint of one service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// The service port this endpoint serves.
    pub service_port: u16,
    pub address: IpAddr,
    /// The port on the endpoint itself (the target port).
    pub port: u16,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `name.namespace.svc.DOMAIN`.
    pub hostname: String,
    pub name: String,
    pub namespace: String,
    pub cluster_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// Sorted by service port, then address.
    pub endpoints: Vec<Endpoint>,
}

impl Service {
    pub fn port(&self, number: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|port| port.port == number)
    }
}

/// A DestinationRule with its host resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRule {
    pub name: String,
    pub namespace: String,
    /// An FQDN (or a wildcard such as `*.example.com`).
    pub host: String,
    pub traffic_policy: Option<istio::TrafficPolicy>,
    pub subsets: Vec<istio::Subset>,
}

impl DestinationRule {
    pub fn subset(&self, name: &str) -> Option<&istio::Subset> {
        self.subsets.iter().find(|subset| subset.name == name)
    }
}

/// A VirtualService with hosts (its own and its destinations') resolved to FQDNs.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualService {
    pub name: String,
    pub namespace: String,
    pub hosts: Vec<String>,
    /// `namespace/name` of bound gateways; `mesh` for sidecars (the default when none is given).
    pub gateways: Vec<String>,
    pub http: Vec<istio::HttpRoute>,
}

impl VirtualService {
    pub fn applies_to_sidecars(&self) -> bool {
        self.gateways.iter().any(|gateway| gateway == MESH_GATEWAY)
    }
}

/// The implicit gateway that means "every sidecar".
pub const MESH_GATEWAY: &str = "mesh";

/// A Pod, as far as proxies and endpoints need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    /// The cluster DNS domain services live under (`cluster.local`).
    pub dns_domain: String,
    pub services: BTreeMap<String, Service>,
    /// By host; the one rule that applies to each host.
    pub destination_rules: BTreeMap<String, DestinationRule>,
    /// In istiod's precedence order: oldest first, then by namespace and name.
    pub virtual_services: Vec<VirtualService>,
    /// Pods by IP.
    pub workloads: BTreeMap<IpAddr, Workload>,
}

/// The DNS domain rudder assumes, as istiod does by default.
pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";

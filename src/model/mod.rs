//! The Model: the mesh as rudder understands it, resolved and validated, with no Kubernetes and no
//! Envoy types. Services are keyed by FQDN with their ports and ready endpoints (endpoint labels
//! from their Pods); DestinationRules and VirtualServices have their hosts resolved to FQDNs and
//! are known to be valid.
//!
//! [`build`] is a pure function from [`Inputs`] and the last good version of every object to a new
//! Model. An object whose current version is invalid is reported and its last good version is used
//! instead, so one bad object never removes what others configure.

mod build;
pub mod credential;
mod destination_rule;
pub mod discovery;
pub mod endpoint_update;
pub mod gateway;
mod kubernetes;
mod mesh;
mod references;
mod service_entry;
mod share;
pub mod sidecar;
pub mod telemetry;
mod validate;
pub mod virtual_service;
pub mod visibility;

pub(crate) use build::merged_by_host as merged_destination_rules;
pub use build::{Built, LastGood, Settings, build, build_with, has_registry};
pub(crate) use destination_rule::{
    validate_connection_pool, validate_locality_lb_setting, validate_outlier_detection,
};
pub use validate::UnknownReferences;
pub(crate) use validate::validate_retries;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

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
    /// Nothing declared (no known name prefix or appProtocol): istiod calls it "unsupported" and
    /// sniffs it on inbound (HTTP or not, per connection); outbound treats it as TCP.
    Unspecified,
}

impl Protocol {
    /// Traffic that gets an HTTP connection manager on outbound listeners.
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2 | Protocol::Grpc)
    }

    /// The protocol as Istio spells it; `None` for a port that declares none.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Protocol::Http => Some("HTTP"),
            Protocol::Http2 => Some("HTTP2"),
            Protocol::Grpc => Some("GRPC"),
            Protocol::Https => Some("HTTPS"),
            Protocol::Tls => Some("TLS"),
            Protocol::Tcp => Some("TCP"),
            Protocol::Unspecified => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: String,
    pub port: u16,
    pub protocol: Protocol,
    /// Where the workloads listen for this port; inbound listeners and clusters are keyed by it.
    pub target_port: TargetPort,
}

/// A Service port's `targetPort`: a number, or the name of a container port of the selected Pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

/// Where a workload runs, as Istio spells it: `region/zone/subzone`; unknown parts are empty.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub subzone: String,
}

/// Node labels that carry a locality (GA names first, then the deprecated beta ones).
pub const REGION_LABELS: [&str; 2] = [
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/region",
];
pub const ZONE_LABELS: [&str; 2] = [
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];
pub const SUBZONE_LABEL: &str = "topology.istio.io/subzone";
/// The Node a Pod runs on, as istiod adds it to workload labels.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Pod (or proxy) labels that override the locality: `region.zone.subzone` (dots, as Kubernetes
/// labels cannot hold `/`) or `region/zone/subzone`.
pub const LOCALITY_LABELS: [&str; 2] = ["topology.istio.io/locality", "istio-locality"];

impl Locality {
    /// Parses `region/zone/subzone` (any suffix may be missing).
    pub fn parse(label: &str) -> Locality {
        // As istiod's SplitLocalityLabel: parts past the third are dropped.
        let mut parts = label.split('/').map(str::to_string);
        Locality {
            region: parts.next().unwrap_or_default(),
            zone: parts.next().unwrap_or_default(),
            subzone: parts.next().unwrap_or_default(),
        }
    }

    /// The locality an override label gives (`topology.istio.io/locality`, then `istio-locality`),
    /// with dots read as slashes unless the value has slashes already.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Option<Locality> {
        let value = LOCALITY_LABELS
            .iter()
            .find_map(|name| labels.get(*name))
            .filter(|value| !value.is_empty())?;
        Some(if value.contains('/') {
            Locality::parse(value)
        } else {
            Locality::parse(&value.replace('.', "/"))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.region.is_empty() && self.zone.is_empty() && self.subzone.is_empty()
    }

    /// `region/zone/subzone`, the form localities are written in and sorted by.
    pub fn label(&self) -> String {
        if self.is_empty() {
            String::new()
        } else {
            format!("{}/{}/{}", self.region, self.zone, self.subzone)
        }
    }

    /// Istio's topology labels for this locality (what istiod adds to workload labels, so that
    /// subsets and `failoverPriority` can select on them); empty parts add nothing.
    pub fn add_topology_labels(&self, labels: &mut BTreeMap<String, String>) {
        let parts = [
            (REGION_LABELS[0], &self.region),
            (ZONE_LABELS[0], &self.zone),
            (SUBZONE_LABEL, &self.subzone),
        ];
        for (name, value) in parts {
            if !value.is_empty() {
                labels.insert(name.to_string(), value.clone());
            }
        }
    }
}

/// Where an endpoint is reached: an IP, (for DNS-resolved ServiceEntries only) a host name
/// Envoy resolves itself, or a unix domain socket (a `unix://` address: its path, or `@name` for
/// an abstract socket), which has no port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointAddress {
    Ip(IpAddr),
    Hostname(String),
    Unix(String),
}

/// How Istio writes a unix domain socket address.
pub const UNIX_PREFIX: &str = "unix://";

impl std::fmt::Display for EndpointAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointAddress::Ip(ip) => ip.fmt(f),
            EndpointAddress::Hostname(name) => f.write_str(name),
            EndpointAddress::Unix(path) => write!(f, "{UNIX_PREFIX}{path}"),
        }
    }
}

/// One ready endpoint of one service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    /// The service port this endpoint serves.
    pub service_port: u16,
    pub address: EndpointAddress,
    /// The port on the endpoint itself (the target port).
    pub port: u16,
    /// The workload's labels, with Istio's topology labels added from its locality and Node.
    pub labels: BTreeMap<String, String>,
    /// From the workload's locality (label or field), else its Node's topology labels; empty
    /// when unknown.
    pub locality: Locality,
    /// The load balancing weight (a WorkloadEntry's `weight`; 1 otherwise).
    pub weight: u32,
}

/// How a service's endpoints are found, as istiod's `Resolution` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resolution {
    /// Endpoints known by address, sent over EDS (Kubernetes services, STATIC entries).
    #[default]
    ClientSideLb,
    /// Envoy resolves the endpoints' names and uses every address (DNS entries).
    Dns,
    /// Envoy resolves one name and connects to the first address (DNS_ROUND_ROBIN entries).
    DnsRoundRobin,
    /// Connections go where the client sent them (NONE entries).
    Passthrough,
}

/// Which registry a service comes from; istiod treats names differently for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Registry {
    #[default]
    Kubernetes,
    ServiceEntry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// `name.namespace.svc.DOMAIN` for Kubernetes services; a ServiceEntry host as written
    /// (possibly a wildcard such as `*.example.com`).
    pub hostname: String,
    /// The Kubernetes Service's name; the host for ServiceEntries (as istiod names them).
    pub name: String,
    pub namespace: String,
    /// Virtual IPs: the cluster IPs, or a ServiceEntry's addresses that are single IPs.
    pub cluster_ips: Vec<IpAddr>,
    /// A ServiceEntry's addresses that are CIDR blocks (masked, `ADDRESS/LENGTH`).
    pub address_blocks: Vec<String>,
    pub ports: Vec<ServicePort>,
    /// Sorted by service port, then address.
    pub endpoints: Vec<Endpoint>,
    pub registry: Registry,
    pub resolution: Resolution,
    /// `location: MESH_EXTERNAL`.
    pub mesh_external: bool,
    /// For `resolution: NONE` entries: the `targetPort` of a service port, by service port,
    /// which connections go to instead of the port the client dialled.
    pub passthrough_target_ports: BTreeMap<u16, u16>,
    /// The namespaces that see the service.
    pub export_to: ExportTo,
    /// The Pod labels the Service selects; `None` for a Service without a selector, which
    /// selects no workload (its endpoints are managed by hand).
    pub selector: Option<BTreeMap<String, String>>,
}

impl Service {
    pub fn port(&self, number: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|port| port.port == number)
    }

    /// Whether the Service selects a workload with these labels (an empty selector selects
    /// nothing, as in Kubernetes).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.as_ref().is_some_and(|selector| {
            !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
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
    /// The namespaces whose proxies may use it.
    pub export_to: ExportTo,
}

impl DestinationRule {
    pub fn subset(&self, name: &str) -> Option<&istio::Subset> {
        self.subsets.iter().find(|subset| subset.name == name)
    }
}

/// A VirtualService with hosts (its own and its destinations', mirrors' and delegates') resolved
/// to FQDNs, and the routes of the delegate VirtualServices it names merged in (see
/// [`virtual_service`]). Delegates themselves (VirtualServices without hosts) are not listed.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualService {
    pub name: String,
    pub namespace: String,
    pub hosts: Vec<String>,
    /// `namespace/name` of bound gateways; `mesh` for sidecars (the default when none is given).
    pub gateways: Vec<String>,
    pub http: Vec<istio::HttpRoute>,
    pub tls: Vec<istio::TlsRoute>,
    pub tcp: Vec<istio::TcpRoute>,
    /// The namespaces that see it.
    pub export_to: ExportTo,
}

impl VirtualService {
    /// Whether proxies in `namespace` see this VirtualService, and with which preference: istiod
    /// lists the VirtualServices private to the proxy's namespace first (0), then those exported
    /// to it by name (1), then the public ones (2), each group in precedence order.
    pub fn visibility_rank(&self, namespace: &str) -> Option<u8> {
        match &self.export_to {
            ExportTo::Public => Some(2),
            ExportTo::Namespaces(namespaces) if namespaces.contains(namespace) => {
                Some(if namespace == self.namespace { 0 } else { 1 })
            }
            ExportTo::Namespaces(_) => None,
        }
    }
}

/// `exportTo` with `.` replaced by the object's own namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTo {
    /// `*`, or no `exportTo` at all (istiod's default).
    Public,
    /// The namespaces named; `~` (no one) names none.
    Namespaces(std::collections::BTreeSet<String>),
}

impl ExportTo {
    pub fn includes(&self, namespace: &str) -> bool {
        match self {
            ExportTo::Public => true,
            ExportTo::Namespaces(namespaces) => namespaces.contains(namespace),
        }
    }

    /// Whether only the object's own namespace sees it (istiod keeps such DestinationRules out
    /// of what other namespaces may import).
    pub fn is_private_to(&self, namespace: &str) -> bool {
        matches!(self, ExportTo::Namespaces(namespaces)
            if namespaces.iter().all(|n| n == namespace))
    }

    /// istiod's reading of `exportTo` entries: none given, or `*` among them, is public; `.` is
    /// `namespace`; `~` alone exports to no namespace.
    pub fn from_entries<S: AsRef<str>>(entries: &[S], namespace: &str) -> ExportTo {
        Self::from_entries_or(entries, &[] as &[&str], namespace)
    }

    /// [`ExportTo::from_entries`], with `default` (the mesh config's default for the object's
    /// kind, read the same way) standing in when the object gives no entries.
    pub fn from_entries_or<S: AsRef<str>, D: AsRef<str>>(
        entries: &[S],
        default: &[D],
        namespace: &str,
    ) -> ExportTo {
        if entries.is_empty() {
            return Self::read(default, namespace);
        }
        Self::read(entries, namespace)
    }

    fn read<S: AsRef<str>>(entries: &[S], namespace: &str) -> ExportTo {
        if entries.is_empty() || entries.iter().any(|entry| entry.as_ref() == "*") {
            return ExportTo::Public;
        }
        ExportTo::Namespaces(
            entries
                .iter()
                .filter(|entry| entry.as_ref() != "~")
                .map(|entry| match entry.as_ref() {
                    "." => namespace.to_string(),
                    other => other.to_string(),
                })
                .collect(),
        )
    }
}

/// The implicit gateway that means "every sidecar".
pub const MESH_GATEWAY: &str = "mesh";

/// A Pod, as far as proxies and endpoints need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub namespace: String,
    /// The Pod's own labels.
    pub labels: BTreeMap<String, String>,
    /// From the Pod's locality label, else its Node's topology labels; empty when unknown.
    pub locality: Locality,
    /// `spec.nodeName`; empty when not scheduled.
    pub node_name: String,
    /// Named container ports, which Service `targetPort` names refer to.
    pub named_ports: BTreeMap<String, u16>,
}

impl Workload {
    /// The labels istiod gives the workload's endpoints: its own plus the topology labels of its
    /// locality and Node.
    pub fn augmented_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        self.locality.add_topology_labels(&mut labels);
        if !self.node_name.is_empty() {
            labels.insert(HOSTNAME_LABEL.to_string(), self.node_name.clone());
        }
        labels
    }

    /// The port a Service port's traffic reaches on this workload: the target port's number,
    /// or the container port its name stands for.
    pub fn target_port(&self, port: &ServicePort) -> Option<u16> {
        match &port.target_port {
            TargetPort::Number(number) => Some(*number),
            TargetPort::Name(name) => self.named_ports.get(name).copied(),
        }
    }
}

/// Cloning a Model copies no service, rule or workload: every collection is shared (`Arc`), so
/// an incremental update (`endpoint_update`) replaces what changed and shares the rest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    /// The cluster DNS domain services live under (`cluster.local`).
    pub dns_domain: String,
    /// Shared with every proxy view that sees them, which copies no Service.
    pub services: BTreeMap<String, Arc<Service>>,
    /// By host; every rule for a host merged, whatever its namespace and `exportTo` (what
    /// validation checks subsets against). Not what a proxy uses: its view
    /// (`translate::scope::ProxyView`) holds the rule in force per service, chosen from
    /// `all_destination_rules` as istiod chooses it.
    pub destination_rules: Arc<BTreeMap<String, DestinationRule>>,
    /// Every admitted DestinationRule, in precedence order (oldest first).
    pub all_destination_rules: Arc<Vec<Arc<DestinationRule>>>,
    /// In istiod's precedence order: oldest first, then by name and namespace.
    pub virtual_services: Arc<Vec<Arc<VirtualService>>>,
    /// Pods by IP.
    pub workloads: Arc<BTreeMap<IpAddr, Workload>>,
    /// In precedence order: oldest first, then namespace and name.
    pub sidecars: Arc<Vec<sidecar::Sidecar>>,
    /// meshConfig.rootNamespace: its Sidecar without selector is the mesh-wide default, its
    /// exported DestinationRules apply mesh-wide.
    pub root_namespace: String,
    /// The mesh config in force (the last one accepted), which translation reads.
    pub mesh: Arc<crate::mesh_config::MeshConfig>,
    /// Access logs and tracing, resolved from the mesh config (ask it `for_proxy`).
    pub telemetry: Arc<telemetry::Telemetry>,
    /// TLS material of Secrets, for gateway servers' `credentialName`.
    pub credentials: Arc<credential::Credentials>,
    /// In precedence order: oldest first, then namespace and name.
    pub gateways: Arc<Vec<gateway::Gateway>>,
}

impl Model {
    /// The credential `name` in `namespace`, if a valid Secret provides it.
    pub fn credential(&self, namespace: &str, name: &str) -> Option<&credential::Credential> {
        self.credentials
            .get(&(namespace.to_string(), name.to_string()))
    }
}

/// istiod's default meshConfig.rootNamespace.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// The DNS domain rudder assumes, as istiod does by default.
pub const DEFAULT_DNS_DOMAIN: &str = "cluster.local";

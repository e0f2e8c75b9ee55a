//! ServiceEntries (and the WorkloadEntries and Pods they select) as model services, the way
//! istiod's ServiceEntry registry converts them: one service per host, with the entry's ports,
//! addresses, resolution, location and `exportTo`; endpoints from the inline `endpoints`, else
//! from the Pods and WorkloadEntries its `workloadSelector` picks in its namespace, else (DNS
//! resolution) the host itself. A Kubernetes Service keeps a host name it shares with an entry;
//! among entries the oldest keeps it, and later ones in the same namespace add their ports and
//! endpoints where istiod would merge them.
//!
//! This module trusts its input: entries reach it validated (see `validate::service_entry`).
//! It knows nothing of Envoy.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::build::{in_precedence_order, namespace_of};
use super::kubernetes::protocol_of;
use super::{
    Endpoint, EndpointAddress, ExportTo, Locality, Protocol, Registry, Resolution, Service,
    ServicePort, TargetPort, UNIX_PREFIX, Workload,
};
use crate::inputs::{IstioObject, Object};
use crate::istio::{self, Location, ServiceEntry, WorkloadEntry};

/// Adds the services of every admitted ServiceEntry to `services` (Kubernetes services only so
/// far). `workload_entries` are the admitted WorkloadEntries; `workloads` the Pods by IP.
pub(super) fn add_service_entries<'a>(
    services: &mut BTreeMap<String, Service>,
    entries: impl Iterator<Item = &'a Object>,
    workload_entries: &[&'a Object],
    workloads: &BTreeMap<IpAddr, Workload>,
    default_export_to: &[String],
) {
    let workload_entries: Vec<&IstioObject<WorkloadEntry>> = workload_entries
        .iter()
        .filter_map(|object| match object {
            Object::WorkloadEntry(entry) => Some(entry.as_ref()),
            _ => None,
        })
        .collect();
    let pods: Vec<(&IpAddr, &Workload)> = workloads.iter().collect();
    let selectable = Selectable::new(&pods, &workload_entries, default_export_to);
    let ordered = in_precedence_order(entries, |object| match object {
        Object::ServiceEntry(entry) => Some(entry.as_ref()),
        _ => None,
    });
    for entry in ordered {
        for service in entry_services(entry, &selectable) {
            match services.get_mut(&service.hostname) {
                None => {
                    services.insert(service.hostname.clone(), service);
                }
                Some(existing) => merge(existing, service),
            }
        }
    }
    for service in services.values_mut() {
        service.endpoints.sort();
        service.endpoints.dedup();
    }
}

/// The services of one entry as [`add_service_entries`] makes them before any merge, endpoints
/// sorted: what `endpoint_update` recomputes when only the workloads it may select changed.
/// `workload_entries` must hold every admitted WorkloadEntry of the entry's namespace.
pub(super) fn services_of_entry(
    entry: &IstioObject<ServiceEntry>,
    workload_entries: &[&IstioObject<WorkloadEntry>],
    workloads: &BTreeMap<IpAddr, Workload>,
) -> Vec<Service> {
    let namespace = namespace_of(&entry.metadata.namespace);
    let pods: Vec<(&IpAddr, &Workload)> = workloads
        .iter()
        .filter(|(_, pod)| pod.namespace == namespace)
        .collect();
    let selectable = Selectable::new(&pods, workload_entries, &[]);
    let mut services = entry_services(entry, &selectable);
    for service in &mut services {
        service.endpoints.sort();
        service.endpoints.dedup();
    }
    services
}

/// istiod's handling of a host defined twice (`appendSidecarServices`, and the endpoint index
/// keyed by host and namespace): the first definition stays; from the same namespace the later
/// one's endpoints join on the ports both define, and its new ports are added when the two could
/// be one service (same resolution and `exportTo`, both ServiceEntries).
fn merge(existing: &mut Service, later: Service) {
    if existing.namespace != later.namespace {
        return;
    }
    let same_port = |number: u16| {
        let ours = existing.port(number);
        let theirs = later.port(number);
        matches!((ours, theirs), (Some(a), Some(b)) if a.name == b.name)
    };
    let joining: Vec<Endpoint> = later
        .endpoints
        .iter()
        .filter(|endpoint| same_port(endpoint.service_port))
        .cloned()
        .collect();
    existing.endpoints.extend(joining);
    let mergeable = existing.registry == Registry::ServiceEntry
        && existing.resolution == later.resolution
        && existing.export_to == later.export_to;
    if !mergeable {
        return;
    }
    for port in &later.ports {
        if existing.port(port.port).is_none() {
            existing.ports.push(port.clone());
            existing.endpoints.extend(
                later
                    .endpoints
                    .iter()
                    .filter(|endpoint| endpoint.service_port == port.port)
                    .cloned(),
            );
        }
    }
}

/// What a `workloadSelector` can pick: the Pods (in IP order) and the WorkloadEntries, each
/// indexed so that a selector looks only at the candidates that carry one of its labels.
struct Selectable<'a> {
    pods: &'a [(&'a IpAddr, &'a Workload)],
    pod_index: LabelIndex<'a>,
    workload_entries: &'a [&'a IstioObject<WorkloadEntry>],
    entry_index: LabelIndex<'a>,
    /// meshConfig.defaultServiceExportTo, for entries without `exportTo`.
    default_export_to: &'a [String],
}

impl<'a> Selectable<'a> {
    fn new(
        pods: &'a [(&'a IpAddr, &'a Workload)],
        workload_entries: &'a [&'a IstioObject<WorkloadEntry>],
        default_export_to: &'a [String],
    ) -> Selectable<'a> {
        Selectable {
            pod_index: LabelIndex::new(pods.iter().map(|(_, pod)| (&*pod.namespace, &pod.labels))),
            entry_index: LabelIndex::new(
                workload_entries
                    .iter()
                    .map(|entry| (namespace_of(&entry.metadata.namespace), &entry.spec.labels)),
            ),
            pods,
            workload_entries,
            default_export_to,
        }
    }
}

/// Positions of labelled items by namespace, and by namespace, label key and value. Without it
/// every ServiceEntry would scan every Pod and WorkloadEntry: quadratic in the mesh's size.
#[derive(Default)]
struct LabelIndex<'a> {
    namespaces: HashMap<&'a str, NamespaceLabels<'a>>,
}

#[derive(Default)]
struct NamespaceLabels<'a> {
    all: Vec<usize>,
    by_label: HashMap<&'a str, HashMap<&'a str, Vec<usize>>>,
}

impl<'a> LabelIndex<'a> {
    fn new(items: impl Iterator<Item = (&'a str, &'a BTreeMap<String, String>)>) -> Self {
        let mut index = LabelIndex::default();
        for (position, (namespace, labels)) in items.enumerate() {
            let in_namespace = index.namespaces.entry(namespace).or_default();
            in_namespace.all.push(position);
            for (key, value) in labels {
                in_namespace
                    .by_label
                    .entry(key)
                    .or_default()
                    .entry(value)
                    .or_default()
                    .push(position);
            }
        }
        index
    }

    /// Ascending positions of the items in `namespace` that may match `selector`: those with
    /// its first label, or all of the namespace for an empty selector.
    fn candidates(&self, namespace: &str, selector: &BTreeMap<String, String>) -> &[usize] {
        let Some(in_namespace) = self.namespaces.get(namespace) else {
            return &[];
        };
        match selector.iter().next() {
            None => &in_namespace.all,
            Some((key, value)) => in_namespace
                .by_label
                .get(key.as_str())
                .and_then(|values| values.get(value.as_str()))
                .map_or(&[], Vec::as_slice),
        }
    }
}

/// One service per host of the entry.
fn entry_services(entry: &IstioObject<ServiceEntry>, selectable: &Selectable<'_>) -> Vec<Service> {
    let spec = &entry.spec;
    let namespace = namespace_of(&entry.metadata.namespace);
    // The API's defaults: NONE and MESH_EXTERNAL are the enums' zero values.
    let resolution = match spec.resolution.unwrap_or(istio::Resolution::None) {
        istio::Resolution::Static => Resolution::ClientSideLb,
        istio::Resolution::Dns => Resolution::Dns,
        istio::Resolution::DnsRoundRobin => Resolution::DnsRoundRobin,
        istio::Resolution::None | istio::Resolution::Unknown => Resolution::Passthrough,
    };
    let ports: Vec<(ServicePort, &istio::Port)> = spec
        .ports
        .iter()
        .filter_map(|port| {
            let number = u16::try_from(port.number).ok()?;
            let target = port
                .target_port
                .and_then(|target| u16::try_from(target).ok());
            let service_port = ServicePort {
                name: port.name.clone(),
                port: number,
                protocol: port_protocol(port)?,
                target_port: TargetPort::Number(target.unwrap_or(number)),
            };
            Some((service_port, port))
        })
        .collect();
    let passthrough_target_ports = if resolution == Resolution::Passthrough {
        ports
            .iter()
            .filter_map(|(service_port, port)| {
                let target = u16::try_from(port.target_port?).ok()?;
                Some((service_port.port, target))
            })
            .collect()
    } else {
        BTreeMap::new()
    };
    let (cluster_ips, address_blocks) = addresses(&spec.addresses);
    let workload_endpoints = workload_endpoints(spec, namespace, selectable);
    spec.hosts
        .iter()
        .map(|host| {
            let mut endpoints = Vec::new();
            for (service_port, port) in &ports {
                if workload_endpoints.is_empty()
                    && spec.workload_selector.is_none()
                    && matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin)
                {
                    // istiod's stand-in endpoint: the host itself, resolved by Envoy.
                    endpoints.push(Endpoint {
                        service_port: service_port.port,
                        address: EndpointAddress::Hostname(host.clone()),
                        port: default_target(port),
                        labels: BTreeMap::new(),
                        locality: Locality::default(),
                        weight: 1,
                    });
                    continue;
                }
                endpoints.extend(
                    workload_endpoints
                        .iter()
                        .filter(|workload| {
                            // EDS carries IPs and sockets only: a name there would be refused
                            // by Envoy.
                            resolution != Resolution::ClientSideLb
                                || !matches!(workload.address, EndpointAddress::Hostname(_))
                        })
                        .map(|workload| workload.endpoint(service_port, port)),
                );
            }
            Service {
                // Entries select workloads through `workloadSelector`, which the endpoints
                // above already carry; the inbound side reads Kubernetes selectors only.
                selector: None,
                hostname: host.clone(),
                name: host.clone(),
                namespace: namespace.to_string(),
                cluster_ips: cluster_ips.clone(),
                address_blocks: address_blocks.clone(),
                ports: ports.iter().map(|(port, _)| port.clone()).collect(),
                endpoints,
                registry: Registry::ServiceEntry,
                resolution,
                mesh_external: spec.location != Some(Location::MeshInternal),
                passthrough_target_ports: passthrough_target_ports.clone(),
                export_to: ExportTo::from_entries_or(
                    &spec.export_to,
                    selectable.default_export_to,
                    namespace,
                ),
            }
        })
        .collect()
}

/// An entry port's protocol: `protocol` as istiod parses it (case-insensitive; Mongo, Redis
/// and the like are TCP), else the port name's prefix. None for UDP, which sidecars do not
/// carry (as in istiod).
fn port_protocol(port: &istio::Port) -> Option<Protocol> {
    Some(match port.protocol.to_ascii_uppercase().as_str() {
        "" => protocol_of(&port.name, None),
        "HTTP" | "HTTP_PROXY" => Protocol::Http,
        "HTTP2" => Protocol::Http2,
        "GRPC" | "GRPC-WEB" => Protocol::Grpc,
        "HTTPS" => Protocol::Https,
        "TLS" => Protocol::Tls,
        "UDP" => return None,
        _ => Protocol::Tcp,
    })
}

/// The endpoint port when nothing names one: `targetPort`, else the port itself.
fn default_target(port: &istio::Port) -> u16 {
    port.target_port
        .filter(|target| *target > 0)
        .and_then(|target| u16::try_from(target).ok())
        .or_else(|| u16::try_from(port.number).ok())
        .unwrap_or_default()
}

/// The entry's addresses: single IPs (a CIDR of full length counts as one), and CIDR blocks
/// with their host bits cleared.
fn addresses(addresses: &[String]) -> (Vec<IpAddr>, Vec<String>) {
    let mut ips = Vec::new();
    let mut blocks = Vec::new();
    for address in addresses {
        match address.split_once('/') {
            None => ips.extend(address.parse::<IpAddr>().ok()),
            Some((ip, length)) => {
                let (Ok(ip), Ok(length)) = (ip.parse::<IpAddr>(), length.parse::<u32>()) else {
                    continue;
                };
                let full = if ip.is_ipv4() { 32 } else { 128 };
                if length >= full {
                    ips.push(ip);
                } else {
                    blocks.push(format!("{}/{length}", masked(ip, length)));
                }
            }
        }
    }
    ips.dedup();
    (ips, blocks)
}

fn masked(ip: IpAddr, length: u32) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - length.min(32)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - length.min(128)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// A workload behind an entry, before it is tied to a port.
struct WorkloadEndpoint {
    address: EndpointAddress,
    /// Endpoint ports by service port name (a WorkloadEntry's `ports`).
    ports: BTreeMap<String, u32>,
    labels: BTreeMap<String, String>,
    locality: Locality,
    weight: u32,
}

impl WorkloadEndpoint {
    /// istiod's `convertEndpoint`: the port the workload names for the service port, else the
    /// `targetPort`, else the service port.
    fn endpoint(&self, service_port: &ServicePort, port: &istio::Port) -> Endpoint {
        let named = self
            .ports
            .get(&service_port.name)
            .filter(|number| **number > 0)
            .and_then(|number| u16::try_from(*number).ok());
        Endpoint {
            service_port: service_port.port,
            address: self.address.clone(),
            port: named.unwrap_or_else(|| default_target(port)),
            labels: self.labels.clone(),
            locality: self.locality.clone(),
            weight: self.weight,
        }
    }
}

/// The inline endpoints, else the Pods and WorkloadEntries of the entry's namespace whose labels
/// contain the selector's.
fn workload_endpoints(
    spec: &ServiceEntry,
    namespace: &str,
    selectable: &Selectable<'_>,
) -> Vec<WorkloadEndpoint> {
    let Some(selector) = &spec.workload_selector else {
        return spec.endpoints.iter().map(from_workload_entry).collect();
    };
    let selects = |labels: &BTreeMap<String, String>| {
        selector
            .labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
    };
    let pods = selectable
        .pod_index
        .candidates(namespace, &selector.labels)
        .iter()
        .map(|&position| selectable.pods[position])
        .filter(|(_, pod)| selects(&pod.labels))
        .map(|(ip, pod)| WorkloadEndpoint {
            address: EndpointAddress::Ip(*ip),
            ports: BTreeMap::new(),
            labels: pod.augmented_labels(),
            locality: pod.locality.clone(),
            weight: 1,
        });
    let entries = selectable
        .entry_index
        .candidates(namespace, &selector.labels)
        .iter()
        .map(|&position| selectable.workload_entries[position])
        // An entry without an address is reached through its network's gateway, which rudder
        // does not build (validation warns).
        .filter(|entry| selects(&entry.spec.labels) && !entry.spec.address.is_empty())
        .map(|entry| from_workload_entry(&entry.spec));
    pods.chain(entries).collect()
}

/// A WorkloadEntry (inline or standalone): its locality from `locality`, else its locality
/// label; Istio's topology labels added; weight 0 (unset) counting as 1.
fn from_workload_entry(entry: &WorkloadEntry) -> WorkloadEndpoint {
    let locality = entry
        .locality
        .as_deref()
        .filter(|locality| !locality.is_empty())
        .map(Locality::parse)
        .or_else(|| Locality::from_labels(&entry.labels))
        .unwrap_or_default();
    let mut labels = entry.labels.clone();
    locality.add_topology_labels(&mut labels);
    let address = match entry.address.parse::<IpAddr>() {
        Ok(ip) => EndpointAddress::Ip(ip),
        Err(_) => match entry.address.strip_prefix(UNIX_PREFIX) {
            Some(path) => EndpointAddress::Unix(path.to_string()),
            None => EndpointAddress::Hostname(entry.address.clone()),
        },
    };
    WorkloadEndpoint {
        address,
        ports: entry.ports.clone(),
        labels,
        locality,
        weight: entry.weight.filter(|weight| *weight > 0).unwrap_or(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::Metadata;

    fn entry(namespace: &str, name: &str, yaml: &str) -> Object {
        Object::ServiceEntry(Box::new(IstioObject {
            metadata: Metadata {
                name: name.to_string(),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            spec: serde_saphyr::from_str(yaml).expect("a ServiceEntry spec"),
        }))
    }

    fn workload_entry(namespace: &str, name: &str, yaml: &str) -> Object {
        Object::WorkloadEntry(Box::new(IstioObject {
            metadata: Metadata {
                name: name.to_string(),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            spec: serde_saphyr::from_str(yaml).expect("a WorkloadEntry spec"),
        }))
    }

    fn convert(entries: &[Object], workload_entries: &[Object]) -> BTreeMap<String, Service> {
        let mut services = BTreeMap::new();
        let workload_entries: Vec<&Object> = workload_entries.iter().collect();
        let mut workloads = BTreeMap::new();
        workloads.insert(
            "10.1.0.1".parse().unwrap(),
            Workload {
                name: "legacy-pod".to_string(),
                namespace: "vms".to_string(),
                labels: [("app".to_string(), "legacy".to_string())].into(),
                locality: Locality::default(),
                node_name: String::new(),
                named_ports: BTreeMap::new(),
            },
        );
        add_service_entries(
            &mut services,
            entries.iter(),
            &workload_entries,
            &workloads,
            &[],
        );
        services
    }

    fn endpoints(service: &Service) -> Vec<(u16, String, u16, u32)> {
        service
            .endpoints
            .iter()
            .map(|e| (e.service_port, e.address.to_string(), e.port, e.weight))
            .collect()
    }

    #[test]
    fn static_entries_have_one_service_per_host_with_inline_endpoints() {
        let services = convert(
            &[entry(
                "ext",
                "mongo",
                "hosts: [a.example.com, b.example.com]\naddresses: [192.192.192.192/24, 10.9.9.9/32]\n\
                 ports:\n- {number: 27018, name: mongo, protocol: MONGO, targetPort: 27017}\n\
                 - {number: 80, name: web, protocol: http}\n\
                 resolution: STATIC\nlocation: MESH_INTERNAL\nexportTo: [.]\nendpoints:\n\
                 - {address: 2.2.2.2}\n\
                 - {address: 3.3.3.3, ports: {mongo: 27019}, weight: 10, locality: us/west, labels: {v: two}}\n",
            )],
            &[],
        );
        assert_eq!(
            services.keys().collect::<Vec<_>>(),
            ["a.example.com", "b.example.com"]
        );
        let service = &services["a.example.com"];
        assert_eq!(service.resolution, Resolution::ClientSideLb);
        assert!(!service.mesh_external);
        assert_eq!(service.registry, Registry::ServiceEntry);
        assert_eq!(service.cluster_ips, ["10.9.9.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(service.address_blocks, ["192.192.192.0/24"]);
        assert_eq!(
            service.export_to,
            ExportTo::Namespaces(["ext".to_string()].into())
        );
        assert_eq!(service.port(27018).unwrap().protocol, Protocol::Tcp);
        assert_eq!(service.port(80).unwrap().protocol, Protocol::Http);
        assert_eq!(
            endpoints(service),
            [
                (80, "2.2.2.2".to_string(), 80, 1),
                (80, "3.3.3.3".to_string(), 80, 10),
                (27018, "2.2.2.2".to_string(), 27017, 1),
                (27018, "3.3.3.3".to_string(), 27019, 10),
            ]
        );
        let labelled = &service.endpoints[1];
        assert_eq!(labelled.locality.label(), "us/west/");
        assert_eq!(labelled.labels["v"], "two");
        assert_eq!(labelled.labels["topology.kubernetes.io/region"], "us");
    }

    #[test]
    fn dns_entries_without_endpoints_resolve_their_hosts() {
        let services = convert(
            &[entry(
                "ext",
                "dns",
                "hosts: [api.example.com]\nports: [{number: 443, name: tls, protocol: TLS, targetPort: 8443}]\n\
                 resolution: DNS\n",
            )],
            &[],
        );
        let service = &services["api.example.com"];
        assert_eq!(service.resolution, Resolution::Dns);
        assert!(service.mesh_external);
        assert_eq!(service.export_to, ExportTo::Public);
        assert_eq!(
            endpoints(service),
            [(443, "api.example.com".to_string(), 8443, 1)]
        );
    }

    #[test]
    fn none_entries_keep_target_ports_for_passthrough() {
        let services = convert(
            &[entry(
                "ext",
                "none",
                "hosts: [db.example.com]\nports: [{number: 5432, name: tcp, targetPort: 6432}]\n",
            )],
            &[],
        );
        let service = &services["db.example.com"];
        assert_eq!(service.resolution, Resolution::Passthrough);
        assert_eq!(service.passthrough_target_ports, [(5432, 6432)].into());
        assert!(service.endpoints.is_empty());
    }

    #[test]
    fn a_selector_picks_pods_and_workload_entries_of_its_namespace() {
        let services = convert(
            &[entry(
                "vms",
                "legacy",
                "hosts: [legacy.example.com]\nports: [{number: 80, name: http, targetPort: 8080}]\n\
                 resolution: STATIC\nlocation: MESH_INTERNAL\nworkloadSelector: {labels: {app: legacy}}\n",
            )],
            &[
                workload_entry(
                    "vms",
                    "vm-1",
                    "address: 10.2.0.1\nlabels: {app: legacy}\nports: {http: 9090}\n",
                ),
                workload_entry("vms", "vm-2", "address: 10.2.0.2\nlabels: {app: other}\n"),
                workload_entry(
                    "elsewhere",
                    "vm-3",
                    "address: 10.2.0.3\nlabels: {app: legacy}\n",
                ),
                workload_entry(
                    "vms",
                    "by-name",
                    "address: vm.example.com\nlabels: {app: legacy}\n",
                ),
            ],
        );
        assert_eq!(
            endpoints(&services["legacy.example.com"]),
            [
                (80, "10.1.0.1".to_string(), 8080, 1),
                (80, "10.2.0.1".to_string(), 9090, 1),
            ]
        );
    }

    #[test]
    fn kubernetes_services_keep_their_hosts_and_entries_merge_in_one_namespace() {
        let mut services = BTreeMap::new();
        services.insert(
            "web.default.svc.cluster.local".to_string(),
            Service {
                hostname: "web.default.svc.cluster.local".to_string(),
                name: "web".to_string(),
                namespace: "default".to_string(),
                cluster_ips: Vec::new(),
                address_blocks: Vec::new(),
                ports: vec![ServicePort {
                    name: "http".to_string(),
                    port: 80,
                    protocol: Protocol::Http,
                    target_port: TargetPort::Number(80),
                }],
                endpoints: Vec::new(),
                selector: None,
                registry: Registry::Kubernetes,
                resolution: Resolution::ClientSideLb,
                mesh_external: false,
                passthrough_target_ports: BTreeMap::new(),
                export_to: ExportTo::Public,
            },
        );
        let entries = [
            entry(
                "default",
                "a-vm",
                "hosts: [web.default.svc.cluster.local]\nports: [{number: 80, name: http}, {number: 81, name: http-alt}]\n\
                 resolution: STATIC\nendpoints: [{address: 10.3.0.1}]\n",
            ),
            entry(
                "ext",
                "b-first",
                "hosts: [shared.example.com]\nports: [{number: 80, name: http}]\nresolution: STATIC\n\
                 endpoints: [{address: 10.4.0.1}]\n",
            ),
            entry(
                "ext",
                "c-second",
                "hosts: [shared.example.com]\nports: [{number: 80, name: http}, {number: 8080, name: http-alt}]\n\
                 resolution: STATIC\nendpoints: [{address: 10.4.0.2}]\n",
            ),
            entry(
                "other",
                "d-other",
                "hosts: [shared.example.com]\nports: [{number: 80, name: http}]\nresolution: STATIC\n\
                 endpoints: [{address: 10.4.0.3}]\n",
            ),
        ];
        let mut workloads = BTreeMap::new();
        workloads.clear();
        add_service_entries(&mut services, entries.iter(), &[], &workloads, &[]);

        let web = &services["web.default.svc.cluster.local"];
        assert_eq!(web.registry, Registry::Kubernetes);
        assert_eq!(web.ports.len(), 1);
        assert_eq!(endpoints(web), [(80, "10.3.0.1".to_string(), 80, 1)]);

        let shared = &services["shared.example.com"];
        assert_eq!(shared.namespace, "ext");
        assert_eq!(
            shared.ports.iter().map(|p| p.port).collect::<Vec<_>>(),
            [80, 8080]
        );
        assert_eq!(
            endpoints(shared),
            [
                (80, "10.4.0.1".to_string(), 80, 1),
                (80, "10.4.0.2".to_string(), 80, 1),
                (8080, "10.4.0.2".to_string(), 8080, 1),
            ]
        );
    }
}

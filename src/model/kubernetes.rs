//! The Kubernetes service registry in the model's terms: Services, EndpointSlices, Pods and Nodes
//! become services with ports and endpoints, and workloads with their labels and localities, as
//! istiod's Kubernetes controller reads them. It must not see Istio objects; ServiceEntries and
//! WorkloadEntries join the registry in `service_entry`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Service as KubeService};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::build::namespace_of;
use super::{
    Endpoint, EndpointAddress, ExportTo, Locality, Protocol, REGION_LABELS, Registry, Resolution,
    SUBZONE_LABEL, Service, ServicePort, TargetPort, Workload, ZONE_LABELS,
};
use crate::inputs::Object;

/// The locality of every Node, by name, from its topology labels (as istiod reads them: GA
/// labels first, then the deprecated beta ones, and Istio's subzone label).
pub(super) fn node_localities<'a>(
    nodes: impl Iterator<Item = &'a Object>,
) -> BTreeMap<String, Locality> {
    nodes
        .filter_map(|object| match object {
            Object::Node(node) => {
                let labels = node.metadata.labels.as_ref();
                let first = |names: &[&str]| {
                    names
                        .iter()
                        .find_map(|name| labels.and_then(|labels| labels.get(*name)))
                        .cloned()
                        .unwrap_or_default()
                };
                let locality = Locality {
                    region: first(&REGION_LABELS),
                    zone: first(&ZONE_LABELS),
                    subzone: first(&[SUBZONE_LABEL]),
                };
                Some((node.metadata.name.clone()?, locality))
            }
            _ => None,
        })
        .collect()
}

/// A Pod as a workload: its labels, and its locality from its locality label, else its Node's.
pub(super) fn workload(pod: &Pod, nodes: &BTreeMap<String, Locality>) -> Workload {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|spec| spec.node_name.clone())
        .unwrap_or_default();
    let locality = Locality::from_labels(&labels)
        .or_else(|| nodes.get(&node_name).cloned())
        .unwrap_or_default();
    let named_ports = pod
        .spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .flat_map(|container| container.ports.iter().flatten())
        .filter_map(|port| {
            let name = port.name.clone()?;
            Some((name, u16::try_from(port.container_port).ok()?))
        })
        .collect();
    Workload {
        name: pod.metadata.name.clone().unwrap_or_default(),
        namespace: namespace_of(&pod.metadata.namespace).to_string(),
        labels,
        locality,
        node_name,
        named_ports,
    }
}

pub(super) fn workloads<'a>(
    pods: impl Iterator<Item = &'a Object>,
    nodes: &BTreeMap<String, Locality>,
) -> BTreeMap<IpAddr, Workload> {
    let mut workloads = BTreeMap::new();
    for object in pods {
        let Object::Pod(pod) = object else { continue };
        let workload = workload(pod, nodes);
        for ip in pod_ips(pod) {
            workloads.entry(ip).or_insert_with(|| workload.clone());
        }
    }
    workloads
}

pub(super) fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let listed = status.pod_ips.iter().flatten().map(|ip| ip.ip.as_str());
    let mut ips: Vec<IpAddr> = status
        .pod_ip
        .as_deref()
        .into_iter()
        .chain(listed)
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.dedup();
    ips
}

/// Istio's protocol selection: `appProtocol` first, then the port name's prefix.
pub(crate) fn protocol_of(name: &str, app_protocol: Option<&str>) -> Protocol {
    let from_name = |name: &str| {
        let prefix = name
            .split('-')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match prefix.as_str() {
            "http" => Some(Protocol::Http),
            "http2" | "h2c" | "kubernetes.io/h2c" => Some(Protocol::Http2),
            "grpc" => Some(Protocol::Grpc),
            "https" => Some(Protocol::Https),
            "tls" => Some(Protocol::Tls),
            "tcp" => Some(Protocol::Tcp),
            _ => None,
        }
    };
    app_protocol
        .and_then(from_name)
        .or_else(|| from_name(name))
        .unwrap_or(Protocol::Unspecified)
}

/// Pods by namespace and name.
pub(super) type PodsByName<'a> = BTreeMap<(&'a str, &'a str), Workload>;

/// Where endpoint labels and localities come from: the Pod an endpoint names, else the Pod with
/// its IP.
pub(super) struct Pods<'a> {
    pub(super) by_ip: &'a BTreeMap<IpAddr, Workload>,
    pub(super) by_name: &'a PodsByName<'a>,
}

pub(super) fn services<'a>(
    services: impl Iterator<Item = &'a Object>,
    slices: impl Iterator<Item = &'a Object>,
    pods: &Pods<'_>,
    dns_domain: &str,
    default_export_to: &[String],
) -> BTreeMap<String, Service> {
    let mut by_host = BTreeMap::new();
    for object in services {
        let Object::Service(service) = object else {
            continue;
        };
        // istiod makes an ExternalName Service an alias of the name it points to (resolution
        // Alias): no cluster, listener or route of its own.
        if service.spec.as_ref().and_then(|spec| spec.type_.as_deref()) == Some("ExternalName") {
            continue;
        }
        let service = service_model(service, dns_domain, default_export_to);
        by_host.insert(service.hostname.clone(), service);
    }
    for object in slices {
        let Object::EndpointSlice(slice) = object else {
            continue;
        };
        let labels = slice.metadata.labels.as_ref();
        let Some(service_name) = labels.and_then(|labels| labels.get("kubernetes.io/service-name"))
        else {
            continue;
        };
        let namespace = namespace_of(&slice.metadata.namespace);
        let host = format!("{service_name}.{namespace}.svc.{dns_domain}");
        if let Some(service) = by_host.get_mut(&host) {
            service
                .endpoints
                .extend(slice_endpoints(slice, service, pods));
        }
    }
    for service in by_host.values_mut() {
        service.endpoints.sort();
        service.endpoints.dedup();
    }
    by_host
}

/// The Service annotation that sets a Kubernetes Service's `exportTo` (comma-separated).
const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";

fn service_model(service: &KubeService, dns_domain: &str, default_export_to: &[String]) -> Service {
    let name = service.metadata.name.clone().unwrap_or_default();
    let namespace = namespace_of(&service.metadata.namespace).to_string();
    let spec = service.spec.clone().unwrap_or_default();
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let cluster_ips = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ip.parse().ok())
        .fold(Vec::new(), |mut ips, ip| {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
            ips
        });
    let ports = spec
        .ports
        .iter()
        .flatten()
        // Sidecars carry TCP (and protocols on top of it) only, as in Istio.
        .filter(|port| port.protocol.as_deref().unwrap_or("TCP") == "TCP")
        .filter_map(|port| {
            let number = u16::try_from(port.port).ok()?;
            let name = port.name.clone().unwrap_or_default();
            // Kubernetes defaults the target port to the port itself.
            let target_port = match &port.target_port {
                Some(IntOrString::Int(target)) => TargetPort::Number(u16::try_from(*target).ok()?),
                Some(IntOrString::String(target)) => TargetPort::Name(target.clone()),
                None => TargetPort::Number(number),
            };
            Some(ServicePort {
                protocol: protocol_of(&name, port.app_protocol.as_deref()),
                name,
                port: number,
                target_port,
            })
        })
        .collect();
    let export_to = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(EXPORT_TO_ANNOTATION))
        .map_or_else(
            || ExportTo::from_entries_or(&[] as &[&str], default_export_to, &namespace),
            |value| {
                let entries: Vec<&str> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|entry| !entry.is_empty())
                    .collect();
                ExportTo::from_entries_or(&entries, default_export_to, &namespace)
            },
        );
    Service {
        hostname: format!("{name}.{namespace}.svc.{dns_domain}"),
        name,
        namespace,
        cluster_ips,
        address_blocks: Vec::new(),
        ports,
        endpoints: Vec::new(),
        registry: Registry::Kubernetes,
        // A headless Service is not load balanced: connections go where the client sent them.
        resolution: if headless {
            Resolution::Passthrough
        } else {
            Resolution::ClientSideLb
        },
        mesh_external: false,
        passthrough_target_ports: BTreeMap::new(),
        export_to,
        selector: spec.selector,
    }
}

/// Ready endpoints of one slice, one per address and service port; labels and locality come from
/// the Pod the endpoint names, else from the Pod with that IP.
pub(super) fn slice_endpoints(
    slice: &EndpointSlice,
    service: &Service,
    pods: &Pods<'_>,
) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    let slice_ports = slice.ports.iter().flatten();
    for endpoint in slice.endpoints.iter().flatten() {
        // Kubernetes asks consumers to treat an unknown readiness as ready.
        let ready = endpoint
            .conditions
            .as_ref()
            .and_then(|c| c.ready)
            .unwrap_or(true);
        if !ready {
            continue;
        }
        let target = endpoint
            .target_ref
            .as_ref()
            .filter(|target| target.kind.as_deref() == Some("Pod"))
            .and_then(|target| {
                let namespace = target.namespace.as_deref().unwrap_or(&service.namespace);
                let name = target.name.as_deref()?;
                pods.by_name.get(&(namespace, name))
            });
        for address in endpoint
            .addresses
            .iter()
            .filter_map(|a| a.parse::<IpAddr>().ok())
        {
            let pod = target.or_else(|| pods.by_ip.get(&address));
            let labels = pod.map(Workload::augmented_labels).unwrap_or_default();
            let locality = pod.map(|pod| pod.locality.clone()).unwrap_or_default();
            for slice_port in slice_ports.clone() {
                let slice_port_name = slice_port.name.as_deref().unwrap_or_default();
                let Some(port) = slice_port.port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                for service_port in service.ports.iter().filter(|p| p.name == slice_port_name) {
                    endpoints.push(Endpoint {
                        service_port: service_port.port,
                        address: EndpointAddress::Ip(address),
                        port,
                        labels: labels.clone(),
                        locality: locality.clone(),
                        weight: 1,
                    });
                }
            }
        }
    }
    endpoints
}

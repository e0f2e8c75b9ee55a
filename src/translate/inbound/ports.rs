//! Which inbound ports a sidecar serves, as istiod's `buildInboundChainConfigs` decides: the
//! Sidecar's `ingress` listeners when the Sidecar applying to the proxy has any, else the target
//! ports of the Services selecting the proxy's Pod and the ports of ServiceEntry endpoints
//! (WorkloadEntries) at the proxy's address (none at all with `INTERCEPTION_MODE:
//! NONE`, where binding them would take the application's own ports). For each port: how it is
//! reached (bound for real, or a chain of `virtualInbound`) and where its cluster sends traffic.
//! This module builds no Envoy resources.

use std::collections::BTreeMap;

use crate::mesh_config::InboundPolicy;
use crate::model::sidecar::IngressEndpoint;
use crate::model::{EndpointAddress, Model, Protocol, Registry, Service, ServicePort, Workload};
use crate::proxy::{InterceptionMode, Proxy, ProxyKind};
use crate::translate::cds::StatNames;
use crate::translate::scope::sidecar_for;

/// The wildcard address inbound listeners and chains are named after.
pub(super) const WILDCARD: &str = "0.0.0.0";
/// Ports of Envoy's own health and Prometheus listeners.
const AGENT_PORTS: [u16; 2] = [15021, 15090];

/// Whether a wildcard-bound inbound port would clash with a listener of Envoy's own
/// (virtualOutbound and virtualInbound at the mesh config's ports, health, Prometheus), as
/// istiod's `conflictWithReservedListener` says.
fn reserved(model: &Model, port: u16) -> bool {
    port == model.mesh.proxy_listen_port
        || port == model.mesh.proxy_inbound_listen_port
        || AGENT_PORTS.contains(&port)
}

/// A port of the proxy's own workload that receives traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InboundPort {
    /// The port clients connect to; it names the chain and the `inbound|PORT||` cluster.
    pub port: u16,
    pub protocol: Protocol,
    /// The Service (or, for a Sidecar ingress listener, `SIDECAR.NAMESPACE`) and port that
    /// declared it, for route decorators.
    pub service: String,
    pub service_port: u16,
    /// The name of that port, for `inboundClusterStatName`.
    pub service_port_name: String,
    /// What `inboundClusterStatName` calls the service in the cluster's stat name: the Service
    /// whose target port this is (for a Sidecar ingress listener too, when there is one), else
    /// the synthetic `SIDECAR.NAMESPACE`.
    pub cluster_names: StatNames,
    /// ... and in the TCP proxy's stat prefix, where istiod names a Sidecar ingress listener's
    /// chain after the Sidecar always.
    pub chain_names: StatNames,
    /// The address the chain or listener is named after, and a bound listener listens on.
    pub bind: String,
    /// A listener of its own that binds for real, rather than a chain of `virtualInbound`.
    pub bind_to_port: bool,
    /// Where the cluster sends the traffic.
    pub endpoint: IngressEndpoint,
}

/// Whether the proxy receives its workload's traffic through iptables.
pub(super) fn intercepted(proxy: &Proxy) -> bool {
    proxy.interception != InterceptionMode::None
}

/// The workload this proxy fronts: the one registered under one of its IPs.
fn proxy_workload<'m>(model: &'m Model, proxy: &Proxy) -> Option<&'m Workload> {
    proxy.ips.iter().find_map(|ip| model.workloads.get(ip))
}

/// The inbound ports of a sidecar, by port.
pub(super) fn inbound_ports(model: &Model, proxy: &Proxy) -> BTreeMap<u16, InboundPort> {
    if proxy.kind != ProxyKind::Sidecar {
        return BTreeMap::new();
    }
    match sidecar_for(model, proxy) {
        Some(sidecar) if !sidecar.ingress.is_empty() => {
            let synthetic_service = format!("{}.{}", sidecar.name, sidecar.namespace);
            let synthetic_names = StatNames::host(&synthetic_service);
            // istiod's `findOrCreateService`: the Service of the same target port, if any.
            let services = service_ports(model, proxy);
            let mut ports = BTreeMap::new();
            for listener in &sidecar.ingress {
                let bind = listener
                    .bind
                    .clone()
                    .unwrap_or_else(|| WILDCARD.to_string());
                if bind == WILDCARD && reserved(model, listener.port) {
                    continue;
                }
                ports.entry(listener.port).or_insert_with(|| InboundPort {
                    port: listener.port,
                    protocol: listener.protocol,
                    service: synthetic_service.clone(),
                    service_port: listener.port,
                    service_port_name: listener.name.clone(),
                    cluster_names: services.get(&listener.port).map_or_else(
                        || synthetic_names.clone(),
                        |port| port.cluster_names.clone(),
                    ),
                    chain_names: synthetic_names.clone(),
                    bind,
                    bind_to_port: listener.binds_to_port(intercepted(proxy)),
                    endpoint: listener.endpoint.clone(),
                });
            }
            ports
        }
        _ if intercepted(proxy) => service_ports(model, proxy),
        _ => BTreeMap::new(),
    }
}

/// The ports of the services the proxy's workload serves (istiod's service targets): the target
/// ports of the Services whose selector matches its Pod, then the ports of ServiceEntry
/// endpoints at the proxy's address (inline endpoints and selected WorkloadEntries, in the
/// proxy's namespace), by port. Where services disagree on a port, the first wins (Services,
/// then entries, each by host name), as one port carries one protocol.
fn service_ports(model: &Model, proxy: &Proxy) -> BTreeMap<u16, InboundPort> {
    let mut ports = pod_service_ports(model, proxy);
    entry_ports(model, proxy, &mut ports);
    ports
}

/// The ServiceEntry endpoints at one of the proxy's addresses in its namespace (istiod's
/// `ServiceInstancesByIP` lookup): a VM or other workload a WorkloadEntry stands for.
fn entry_ports(model: &Model, proxy: &Proxy, ports: &mut BTreeMap<u16, InboundPort>) {
    let entries = model
        .services
        .values()
        .filter(|service| service.registry == Registry::ServiceEntry)
        .filter(|service| service.namespace == proxy.namespace);
    for service in entries {
        let own = service.endpoints.iter().filter(|endpoint| {
            matches!(&endpoint.address, EndpointAddress::Ip(ip) if proxy.ips.contains(ip))
        });
        for endpoint in own {
            let Some(service_port) = service.port(endpoint.service_port) else {
                continue;
            };
            if reserved(model, endpoint.port) {
                continue;
            }
            ports.entry(endpoint.port).or_insert_with(|| {
                service_target(service, service_port, endpoint.port, model, proxy)
            });
        }
    }
}

/// The target ports of the Services (in the workload's namespace) whose selector matches the
/// proxy's Pod, by port.
fn pod_service_ports(model: &Model, proxy: &Proxy) -> BTreeMap<u16, InboundPort> {
    let mut ports = BTreeMap::new();
    let Some(workload) = proxy_workload(model, proxy) else {
        return ports;
    };
    let selecting = model
        .services
        .values()
        .filter(|service| service.namespace == workload.namespace)
        .filter(|service| service.selects(&workload.labels));
    for service in selecting {
        for service_port in &service.ports {
            let Some(port) = workload.target_port(service_port) else {
                continue;
            };
            if reserved(model, port) {
                continue;
            }
            ports
                .entry(port)
                .or_insert_with(|| service_target(service, service_port, port, model, proxy));
        }
    }
    ports
}

/// The chain of a service's port whose traffic arrives on `port` (its target port), on the
/// wildcard address of `virtualInbound`.
fn service_target(
    service: &Service,
    service_port: &ServicePort,
    port: u16,
    model: &Model,
    proxy: &Proxy,
) -> InboundPort {
    InboundPort {
        port,
        protocol: service_port.protocol,
        service: service.hostname.clone(),
        service_port: service_port.port,
        service_port_name: service_port.name.clone(),
        cluster_names: StatNames::of(service),
        chain_names: StatNames::of(service),
        bind: WILDCARD.to_string(),
        bind_to_port: false,
        endpoint: service_endpoint(model, proxy, port),
    }
}

/// Where a Service port's traffic goes: to the address it was sent to, or with
/// `inboundTrafficPolicy: LOCALHOST` to the application on loopback (`::1` for an IPv6-only
/// proxy, as istiod's `getWildcardsAndLocalHost`).
fn service_endpoint(model: &Model, proxy: &Proxy, port: u16) -> IngressEndpoint {
    match model.mesh.inbound_traffic_policy {
        InboundPolicy::Passthrough => IngressEndpoint::OriginalDestination { port },
        InboundPolicy::Localhost => IngressEndpoint::Loopback {
            ipv6: !proxy.ips.is_empty() && proxy.ips.iter().all(std::net::IpAddr::is_ipv6),
            port,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sidecar::{IngressListener, Sidecar};
    use crate::model::{ExportTo, Registry, Resolution, Service, ServicePort, TargetPort};

    fn service(name: &str, namespace: &str, app: &str, ports: &[(u16, TargetPort)]) -> Service {
        Service {
            hostname: format!("{name}.{namespace}.svc.cluster.local"),
            name: name.to_string(),
            namespace: namespace.to_string(),
            cluster_ips: Vec::new(),
            ports: ports
                .iter()
                .map(|(port, target_port)| ServicePort {
                    name: "http".to_string(),
                    port: *port,
                    protocol: Protocol::Http,
                    target_port: target_port.clone(),
                })
                .collect(),
            endpoints: Vec::new(),
            selector: Some([("app".to_string(), app.to_string())].into()),
            address_blocks: Vec::new(),
            registry: Registry::Kubernetes,
            resolution: Resolution::ClientSideLb,
            mesh_external: false,
            passthrough_target_ports: BTreeMap::new(),
            export_to: ExportTo::Public,
        }
    }

    fn web_model() -> Model {
        let mut model = Model::default();
        std::sync::Arc::make_mut(&mut model.workloads).insert(
            "10.0.0.5".parse().unwrap(),
            Workload {
                name: "web-1".into(),
                namespace: "shop".into(),
                labels: [("app".to_string(), "web".to_string())].into(),
                locality: Default::default(),
                node_name: String::new(),
                named_ports: [("api".to_string(), 8081)].into(),
            },
        );
        let services = [
            service(
                "web",
                "shop",
                "web",
                &[
                    (80, TargetPort::Number(8080)),
                    (81, TargetPort::Name("api".into())),
                    // A container port the Pod does not have, and Envoy's own inbound port.
                    (82, TargetPort::Name("missing".into())),
                    (83, TargetPort::Number(15006)),
                ],
            ),
            // Same labels, other namespace: selectors do not cross namespaces.
            service("web", "other", "web", &[(90, TargetPort::Number(9090))]),
            service("db", "shop", "db", &[(5432, TargetPort::Number(5432))]),
        ];
        for service in services {
            model
                .services
                .insert(service.hostname.clone(), std::sync::Arc::new(service));
        }
        model
    }

    fn proxy(id: &str, metadata: serde_json::Value) -> Proxy {
        Proxy::parse(id, &metadata).unwrap()
    }

    fn summary(ports: &BTreeMap<u16, InboundPort>) -> Vec<(u16, u16, bool)> {
        ports
            .values()
            .map(|port| (port.port, port.service_port, port.bind_to_port))
            .collect()
    }

    #[test]
    fn inbound_ports_come_from_the_services_selecting_the_proxys_pod() {
        let model = web_model();
        let web = proxy(
            "sidecar~10.0.0.5~web-1.shop~shop.svc.cluster.local",
            serde_json::Value::Null,
        );
        assert_eq!(
            summary(&inbound_ports(&model, &web)),
            [(8080, 80, false), (8081, 81, false)]
        );

        let unknown = proxy(
            "sidecar~10.0.0.6~x.shop~shop.svc.cluster.local",
            serde_json::Value::Null,
        );
        assert!(inbound_ports(&model, &unknown).is_empty());

        // Without interception, Services give no inbound ports: the application owns them.
        let none = proxy(
            "sidecar~10.0.0.5~web-1.shop~shop.svc.cluster.local",
            serde_json::json!({"INTERCEPTION_MODE": "NONE"}),
        );
        assert!(inbound_ports(&model, &none).is_empty());
    }

    #[test]
    fn sidecar_ingress_listeners_replace_the_services() {
        let mut model = web_model();
        let listener = |port, capture| IngressListener {
            port,
            name: String::new(),
            protocol: Protocol::Http,
            bind: None,
            capture,
            endpoint: IngressEndpoint::Loopback {
                ipv6: false,
                port: 8080,
            },
        };
        std::sync::Arc::make_mut(&mut model.sidecars).push(Sidecar {
            name: "web".into(),
            namespace: "shop".into(),
            selector: None,
            ingress: vec![
                listener(9080, None),
                listener(9081, Some(crate::istio::CaptureMode::None)),
                listener(15006, None),
            ],
            egress: Vec::new(),
            outbound_policy: None,
        });
        let web = proxy(
            "sidecar~10.0.0.5~web-1.shop~shop.svc.cluster.local",
            serde_json::Value::Null,
        );
        let ports = inbound_ports(&model, &web);
        assert_eq!(summary(&ports), [(9080, 9080, false), (9081, 9081, true)]);
        assert_eq!(ports[&9080].service, "web.shop");

        // Under NONE every ingress listener binds for real.
        let none = proxy(
            "sidecar~10.0.0.5~web-1.shop~shop.svc.cluster.local",
            serde_json::json!({"INTERCEPTION_MODE": "NONE"}),
        );
        assert_eq!(
            summary(&inbound_ports(&model, &none)),
            [(9080, 9080, true), (9081, 9081, true)]
        );
    }
}

//! The addresses of istiod's per-endpoint outbound listeners: a TCP port of a service that has
//! no address of its own and whose connections go where they were sent (a headless Kubernetes
//! Service, a ServiceEntry with resolution NONE) gets one listener per endpoint address instead of
//! one on the wildcard address, so that a statefulset's pods are told apart. Only says where;
//! building the listeners is `lds`'s.

use crate::model::{EndpointAddress, Registry, Resolution, Service};
use crate::proxy::Proxy;

/// The listener addresses for `port` of `service` (istiod's `buildSidecarOutboundListeners`): one
/// per endpoint address on that port, leaving out the proxy's own address (its traffic to itself
/// does not come this way) and endpoints that are not IPs. `None` where the wildcard listener stays: other services, and an entry with no
/// endpoint on the port (a Kubernetes Service without endpoints gets no listener at all).
pub(super) fn endpoint_listener_addresses(
    service: &Service,
    port: u16,
    proxy: &Proxy,
) -> Option<Vec<String>> {
    if service.resolution != Resolution::Passthrough
        || !service.cluster_ips.is_empty()
        || !service.address_blocks.is_empty()
    {
        return None;
    }
    let on_port: Vec<&EndpointAddress> = service
        .endpoints
        .iter()
        .filter(|endpoint| endpoint.service_port == port)
        .map(|endpoint| &endpoint.address)
        .collect();
    if service.registry != Registry::Kubernetes && on_port.is_empty() {
        return None;
    }
    let mut addresses = Vec::new();
    for address in on_port {
        if let EndpointAddress::Ip(ip) = address
            && proxy.ips.first() != Some(ip)
            && !addresses.contains(&ip.to_string())
        {
            addresses.push(ip.to_string());
        }
    }
    Some(addresses)
}

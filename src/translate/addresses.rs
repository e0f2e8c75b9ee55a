//! What a translation reads of a proxy's own addresses, so that proxies whose addresses differ
//! can share a translation where it does not depend on them, and only there.
//!
//! `translate` reads the addresses for: the workload registered at them (its labels, namespace
//! and named container ports shape the inbound side); their families (IPv4-only, IPv6-only or
//! dual-stack listeners and loopbacks, a DNS cluster's lookup family); and the addresses
//! themselves in three places: a headless service's per-endpoint listeners leave out the proxy's
//! own address, a ServiceEntry endpoint at the proxy's address gives it inbound ports, and a
//! Sidecar ingress listener with a `0.0.0.0` default endpoint sends to the workload's address.
//! [`AddressKey`] holds the families and the workload always, and the addresses themselves only
//! where one of those three applies. Must be kept in step with every read of `Proxy::ips` in
//! this module tree: a read left out here makes proxies get each other's config.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use crate::model::sidecar::IngressEndpoint;
use crate::model::{EndpointAddress, Model, Registry, Resolution};
use crate::proxy::Proxy;

/// The share of a proxy's translation its addresses decide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AddressKey {
    has_v4: bool,
    has_v6: bool,
    /// The workload at the proxy's addresses.
    workload: Option<WorkloadKey>,
    /// The addresses themselves, where the translation writes or compares them.
    exact: Option<Vec<IpAddr>>,
}

/// What the inbound side reads of the workload at a proxy's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct WorkloadKey {
    namespace: String,
    labels: BTreeMap<String, String>,
    named_ports: BTreeMap<String, u16>,
}

/// The addresses of one model that a translation compares a proxy's addresses with: computed
/// once per model, then [`AddressReads::key`] per proxy.
#[derive(Debug, Default)]
pub struct AddressReads {
    /// Endpoint addresses of headless services (resolution NONE without addresses of their own)
    /// and of ServiceEntries.
    compared: HashSet<IpAddr>,
}

impl AddressReads {
    pub fn of(model: &Model) -> AddressReads {
        let compared = model
            .services
            .values()
            .filter(|service| {
                service.registry == Registry::ServiceEntry
                    || service.resolution == Resolution::Passthrough
            })
            .flat_map(|service| &service.endpoints)
            .filter_map(|endpoint| match &endpoint.address {
                EndpointAddress::Ip(ip) => Some(*ip),
                _ => None,
            })
            .collect();
        AddressReads { compared }
    }

    /// The key of `proxy`'s addresses on `model`, the model these reads are of.
    pub fn key(&self, model: &Model, proxy: &Proxy) -> AddressKey {
        let workload = proxy
            .ips
            .iter()
            .find_map(|ip| model.workloads.get(ip))
            .map(|workload| WorkloadKey {
                namespace: workload.namespace.clone(),
                labels: workload.labels.clone(),
                named_ports: workload.named_ports.clone(),
            });
        let to_workload_address = super::scope::sidecar_for(model, proxy).is_some_and(|sidecar| {
            sidecar
                .ingress
                .iter()
                .any(|ingress| matches!(ingress.endpoint, IngressEndpoint::WorkloadAddress { .. }))
        });
        let exact = to_workload_address || proxy.ips.iter().any(|ip| self.compared.contains(ip));
        AddressKey {
            has_v4: proxy.ips.iter().any(IpAddr::is_ipv4),
            has_v6: proxy.ips.iter().any(IpAddr::is_ipv6),
            workload,
            exact: exact.then(|| proxy.ips.clone()),
        }
    }
}

#[cfg(test)]
mod tests;

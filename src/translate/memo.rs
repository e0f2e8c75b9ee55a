//! Translated resources shared across proxies and across models: an outbound cluster, an EDS
//! assignment or a sidecar's route configuration is built once for every proxy whose translation
//! would build it the same, whatever else differs between them (labels, addresses, names, the
//! rest of their scope).
//!
//! A key names exactly what the resource is made from: model objects (services, DestinationRules,
//! VirtualServices, the mesh config) by the identity of their `Arc` (the key holds the `Arc`, so
//! the identity cannot be reused while the entry lives; what an `Arc` points to never changes),
//! and the values it reads besides: the port, the subset and the proxy kind for a cluster; the
//! proxy's namespace, DNS domain, outbound policy and the labels VirtualServices match on for a
//! route configuration. Resources that read more of the proxy (DNS clusters: its address family
//! and locality; assignments under locality load balancing: its locality and labels) are built
//! per proxy and never memoized here.
//!
//! An entry lives while some translation holds its resource: [`Memo::sweep`] runs once per
//! model and drops the rest, so the memo holds little beyond what the proxies' current
//! translations hold anyway. A model change that leaves a service, its rule and the mesh config
//! untouched (the same `Arc`s) therefore rebuilds none of its resources, and one that replaces
//! them rebuilds only theirs; an endpoint-only change, which translates no cluster, keeps them
//! for the next full translation all the same.
//!
//! Must not: memoize anything whose key leaves out an input it is built from. `cds`, `eds` and
//! `rds` decide what is memoized; a new read of the proxy or the view there goes into the key or
//! out of the memo.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;

use crate::mesh_config::MeshConfig;
use crate::model::sidecar::OutboundPolicy;
use crate::model::{DestinationRule, Service, VirtualService};
use crate::proxy::ProxyKind;
use crate::translate::scope::ProxyView;

/// An `Arc` compared and hashed by the object it points to, not its content.
#[derive(Debug)]
pub(super) struct Identity<T>(Arc<T>);

impl<T> Identity<T> {
    pub(super) fn of(shared: &Arc<T>) -> Identity<T> {
        Identity(shared.clone())
    }
}

impl<T> PartialEq for Identity<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> Eq for Identity<T> {}

impl<T> Hash for Identity<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state);
    }
}

/// What an outbound cluster (or an EDS assignment) of a service port is made from, besides the
/// proxy.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct Source {
    mesh: Identity<MeshConfig>,
    service: Identity<Service>,
    rule: Option<Identity<DestinationRule>>,
    port: u16,
    subset: String,
}

impl Source {
    /// Port `port` and subset `subset` (empty for the whole service) of `service` as `view`
    /// sees it: with the DestinationRule in force for it there and the view's mesh config.
    pub(super) fn of(view: &ProxyView, service: &Arc<Service>, port: u16, subset: &str) -> Source {
        Source {
            mesh: Identity::of(&view.mesh),
            service: Identity::of(service),
            rule: view
                .destination_rules
                .get(&service.hostname)
                .map(Identity::of),
            port,
            subset: subset.to_string(),
        }
    }
}

/// What a sidecar's route configuration is made from: its name, the part of the proxy's view it
/// is built from (every service on it with the rule in force, the VirtualServices, the mesh
/// config), and what it reads of the proxy.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct RouteSource {
    pub name: String,
    pub services: Vec<(Identity<Service>, Option<Identity<DestinationRule>>)>,
    pub virtual_services: Vec<Identity<VirtualService>>,
    pub mesh: Identity<MeshConfig>,
    /// Which VirtualServices and short host names apply, and `sourceNamespace` matches.
    pub namespace: String,
    pub dns_domain: String,
    /// The proxy's value of each label some VirtualService's `sourceLabels` names (and of no
    /// other: proxies that differ only in labels nobody matches share the configuration).
    pub source_labels: Vec<(String, Option<String>)>,
    /// What the catch-all virtual host does.
    pub outbound_policy: OutboundPolicy,
}

/// A value of the memo, which may be held elsewhere too.
trait Shared {
    /// Whether anything besides the memo holds it.
    fn held_elsewhere(&self) -> bool;
}

impl<T> Shared for Arc<T> {
    fn held_elsewhere(&self) -> bool {
        Arc::strong_count(self) > 1
    }
}

impl<T> Shared for Option<Arc<T>> {
    fn held_elsewhere(&self) -> bool {
        self.as_ref().is_some_and(Shared::held_elsewhere)
    }
}

type Entries<K, V> = Mutex<HashMap<K, V>>;

/// A cluster's source, the place of its port among the service's ports (which tells apart ports
/// that share a number), and the proxy kind (sidecars sniff, gateways do not).
type ClusterKey = (Source, usize, ProxyKind);

/// The memo of one xDS server, shared by every translation it runs ([`super::translate_with_view`]).
#[derive(Debug, Default)]
pub struct Memo {
    /// `None` for a cluster translation leaves out.
    clusters: Entries<ClusterKey, Option<Arc<Cluster>>>,
    assignments: Entries<Source, Arc<ClusterLoadAssignment>>,
    routes: Entries<RouteSource, Arc<RouteConfiguration>>,
}

impl Memo {
    /// Forgets every resource nothing else holds: no translation a proxy may still be sent, or
    /// start an update from, has it.
    pub fn sweep(&self) {
        lock(&self.clusters).retain(|_, value| value.held_elsewhere());
        lock(&self.assignments).retain(|_, value| value.held_elsewhere());
        lock(&self.routes).retain(|_, value| value.held_elsewhere());
    }

    /// How many resources are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.clusters).len() + lock(&self.assignments).len() + lock(&self.routes).len()
    }

    /// The outbound cluster `source` (its port the `port_index`th of the service) gives a proxy
    /// of `kind`, built by `build` unless it is remembered.
    pub(super) fn cluster(
        &self,
        source: Source,
        port_index: usize,
        kind: ProxyKind,
        build: impl FnOnce() -> Option<Cluster>,
    ) -> Option<Arc<Cluster>> {
        get_or_insert(&self.clusters, (source, port_index, kind), || {
            build().map(Arc::new)
        })
    }

    /// The EDS assignment of `source`, built by `build` unless it is remembered.
    pub(super) fn assignment(
        &self,
        source: Source,
        build: impl FnOnce() -> ClusterLoadAssignment,
    ) -> Arc<ClusterLoadAssignment> {
        get_or_insert(&self.assignments, source, || Arc::new(build()))
    }

    /// The sidecar route configuration of `source`, built by `build` unless it is remembered.
    pub(super) fn route(
        &self,
        source: RouteSource,
        build: impl FnOnce() -> RouteConfiguration,
    ) -> Arc<RouteConfiguration> {
        get_or_insert(&self.routes, source, || Arc::new(build()))
    }
}

/// Building happens outside the lock, so translations for different proxies build in parallel;
/// when two build the same key, the first one in is kept and both share it.
fn get_or_insert<K: Eq + Hash, V: Clone>(
    memo: &Entries<K, V>,
    key: K,
    build: impl FnOnce() -> V,
) -> V {
    if let Some(value) = lock(memo).get(&key) {
        return value.clone();
    }
    let value = build();
    lock(memo).entry(key).or_insert(value).clone()
}

fn lock<K, V>(memo: &Entries<K, V>) -> MutexGuard<'_, HashMap<K, V>> {
    // Every change leaves the maps consistent, so a panic elsewhere does not poison them.
    memo.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;

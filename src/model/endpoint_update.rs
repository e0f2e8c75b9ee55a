//! Endpoint changes without a rebuild: when the only objects that changed are EndpointSlices,
//! WorkloadEntries and Pods, the new model is the previous one with the endpoints of the affected
//! services (and the workloads at the changed Pods' addresses) recomputed, every other collection
//! shared. The cost follows the change (the slices of one Service, the workloads one ServiceEntry
//! selects), not the mesh.
//!
//! [`EndpointIndex`] is the dependency index that makes this possible: which slices belong to
//! which Service and which Pods (by name or address) their endpoints name, which ServiceEntries
//! define a host and which select workloads in a namespace, and which Pods have an address. It
//! is made from a full build's accepted objects and kept current by every update.
//!
//! The contract is exactness: [`update`] returns what [`super::build_with`] would build from the
//! same inputs, or `None` when it cannot be sure of that cheaply (a changed object is refused or
//! was reported, a host is defined twice, endpoints that shape more than EDS: DNS or headless
//! services, discovery selectors, anything global), and the caller builds in full. The tests
//! check the two against each other over random edits.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::build::LastGood;
use super::gateway::labels_contain;
use super::kubernetes::{Pods, PodsByName, node_localities, pod_ips, slice_endpoints, workload};
use super::service_entry::services_of_entry;
use super::validate::{unset_address_warning, validate_endpoint_slice, validate_workload_entry};
use super::{EndpointAddress, Model, Registry, Resolution, Service, Workload};
use crate::coverage::unsupported_settings;
use crate::diagnostic::ConfigError;
use crate::inputs::{Changes, Inputs, IstioObject, Kind, Object, ObjectKey};
use crate::istio::{ServiceEntry, WorkloadEntry};
use k8s_openapi::api::core::v1::Pod;

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Which registry objects feed which service's endpoints.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointIndex {
    /// EndpointSlice names by namespace and Service name.
    slices: BTreeMap<(String, String), BTreeSet<String>>,
    /// The Services (namespace and name) whose slices name a Pod, by the Pod's namespace and
    /// name or by an address, with how many endpoints do.
    slices_naming: BTreeMap<PodRef, BTreeMap<(String, String), usize>>,
    /// The Pods with each address (the first in key order is the workload there).
    pods_by_ip: BTreeMap<IpAddr, BTreeSet<ObjectKey>>,
    /// The ServiceEntries that define each host (as written in `hosts`).
    entries_by_host: BTreeMap<String, BTreeSet<ObjectKey>>,
    /// ServiceEntries with a `workloadSelector`, by namespace, with the selector's labels.
    selecting: BTreeMap<String, BTreeMap<ObjectKey, BTreeMap<String, String>>>,
}

/// How an endpoint names the Pod behind it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum PodRef {
    Named(String, String),
    Address(IpAddr),
}

impl EndpointIndex {
    /// The index of a full build's accepted objects.
    pub fn new(accepted: &LastGood) -> EndpointIndex {
        let mut index = EndpointIndex::default();
        for (key, object) in accepted.objects_of(Kind::EndpointSlice) {
            index.move_slice(key, None, Some(object));
        }
        for (key, object) in accepted.objects_of(Kind::Pod) {
            index.move_pod(key, None, Some(object));
        }
        for (key, object) in accepted.objects_of(Kind::ServiceEntry) {
            let Object::ServiceEntry(entry) = object else {
                continue;
            };
            for host in &entry.spec.hosts {
                index
                    .entries_by_host
                    .entry(host.clone())
                    .or_default()
                    .insert(key.clone());
            }
            if let Some(selector) = &entry.spec.workload_selector {
                index
                    .selecting
                    .entry(key.namespace.clone())
                    .or_default()
                    .insert(key.clone(), selector.labels.clone());
            }
        }
        index
    }

    /// Moves the slice `key` from its `before` version to its `after` one.
    fn move_slice(&mut self, key: &ObjectKey, before: Option<&Object>, after: Option<&Object>) {
        if let Some(service) = before.and_then(slice_service) {
            let group = (key.namespace.clone(), service.to_string());
            if let Some(names) = self.slices.get_mut(&group) {
                names.remove(&key.name);
                if names.is_empty() {
                    self.slices.remove(&group);
                }
            }
            for pod in pods_named(before, &key.namespace) {
                let Some(groups) = self.slices_naming.get_mut(&pod) else {
                    continue;
                };
                if let Some(count) = groups.get_mut(&group) {
                    *count -= 1;
                    if *count == 0 {
                        groups.remove(&group);
                    }
                }
                if groups.is_empty() {
                    self.slices_naming.remove(&pod);
                }
            }
        }
        if let Some(service) = after.and_then(slice_service) {
            let group = (key.namespace.clone(), service.to_string());
            self.slices
                .entry(group.clone())
                .or_default()
                .insert(key.name.clone());
            for pod in pods_named(after, &key.namespace) {
                *self
                    .slices_naming
                    .entry(pod)
                    .or_default()
                    .entry(group.clone())
                    .or_default() += 1;
            }
        }
    }

    /// Moves the Pod `key` from its `before` version's addresses to its `after` one's.
    fn move_pod(&mut self, key: &ObjectKey, before: Option<&Object>, after: Option<&Object>) {
        for ip in before.map(object_ips).unwrap_or_default() {
            if let Some(keys) = self.pods_by_ip.get_mut(&ip) {
                keys.remove(key);
                if keys.is_empty() {
                    self.pods_by_ip.remove(&ip);
                }
            }
        }
        for ip in after.map(object_ips).unwrap_or_default() {
            self.pods_by_ip.entry(ip).or_default().insert(key.clone());
        }
    }

    /// The ServiceEntries in `namespace` whose selector picks a workload with `labels`.
    fn entries_selecting<'a>(
        &'a self,
        namespace: &str,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a ObjectKey> + 'a {
        self.selecting
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|(_, selector)| selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
            .map(|(key, _)| key)
    }
}

/// A model whose endpoints were brought up to date.
#[derive(Debug, Clone)]
pub struct EndpointUpdate {
    pub model: Model,
    /// The hosts whose endpoints changed (only those).
    pub hosts: BTreeSet<String>,
    /// Whether the workloads (Pods by address) changed.
    pub workloads_changed: bool,
    /// Addresses whose proxies need more than new endpoints: a Pod that came, went or changed
    /// there (its proxy's labels and inbound config), or ServiceEntry endpoints there (inbound
    /// config from them, istiod's `ServiceInstancesByIP`).
    pub addresses: BTreeSet<IpAddr>,
}

impl EndpointUpdate {
    /// Whether the model differs from the one updated.
    pub fn changed(&self) -> bool {
        !self.hosts.is_empty() || self.workloads_changed
    }
}

/// The model `inputs` would build, from `model` (built from the inputs before `changes`), when
/// only endpoints and workloads can differ; `accepted` and `index` move on with it. `None` (and
/// nothing touched) when the change needs a full build. `errors` are the previous build's, which
/// stay those of the new model.
pub fn update(
    model: &Model,
    accepted: &mut LastGood,
    index: &mut EndpointIndex,
    errors: &[ConfigError],
    inputs: &Inputs,
    changes: &Changes,
) -> Option<EndpointUpdate> {
    let plan = Plan::new(model, accepted, errors, inputs, changes)?;
    let affected = plan.affected(model, accepted, index)?;
    // Past every check: the accepted objects and the index move on.
    let mut pod_addresses = BTreeSet::new();
    for (key, object) in plan.objects {
        let before = accepted.set(key.clone(), object);
        let after = accepted.object(&key);
        match key.kind {
            Kind::EndpointSlice => index.move_slice(&key, before.as_ref(), after),
            Kind::Pod => {
                pod_addresses.extend(before.iter().chain(after).flat_map(object_ips));
                index.move_pod(&key, before.as_ref(), after);
            }
            _ => {}
        }
    }
    let workloads = if pod_addresses.is_empty() {
        model.workloads.clone()
    } else {
        let mut workloads = (*model.workloads).clone();
        for ip in &pod_addresses {
            // The first Pod (in key order) with the address is the workload there.
            let first = index.pods_by_ip.get(ip).and_then(|keys| keys.first());
            match first.and_then(|key| accepted.object(key)) {
                Some(Object::Pod(pod)) => {
                    workloads.insert(*ip, pod_workload(pod, accepted));
                }
                _ => {
                    workloads.remove(ip);
                }
            }
        }
        Arc::new(workloads)
    };
    let workloads_changed = workloads != model.workloads;
    let mut services = model.services.clone();
    let mut hosts = BTreeSet::new();
    let mut addresses = pod_addresses;
    for (host, endpoints) in affected.recompute(model, &workloads, accepted, index) {
        let Some(service) = services.get_mut(&host) else {
            continue;
        };
        if service.endpoints == endpoints {
            continue;
        }
        if service.registry == Registry::ServiceEntry {
            addresses.extend(
                service
                    .endpoints
                    .iter()
                    .chain(&endpoints)
                    .filter_map(|endpoint| match endpoint.address {
                        EndpointAddress::Ip(ip) => Some(ip),
                        _ => None,
                    }),
            );
        }
        *service = Arc::new(Service {
            endpoints,
            ..Service::clone(service)
        });
        hosts.insert(host);
    }
    Some(EndpointUpdate {
        model: Model {
            services,
            workloads,
            ..model.clone()
        },
        hosts,
        workloads_changed,
        addresses,
    })
}

/// The changed objects, each checked as the full build would admit it.
struct Plan {
    /// The accepted version of each changed object; `None`: gone.
    objects: Vec<(ObjectKey, Option<Object>)>,
}

impl Plan {
    fn new(
        model: &Model,
        accepted: &LastGood,
        errors: &[ConfigError],
        inputs: &Inputs,
        changes: &Changes,
    ) -> Option<Plan> {
        if changes.global || !model.mesh.discovery_selectors.is_empty() {
            return None;
        }
        // A reported object's report may change (or carries its line): the full build says.
        let reported = |key: &ObjectKey| errors.iter().any(|e| e.object.as_ref() == Some(key));
        if changes.objects.iter().chain(&changes.moved).any(reported) {
            return None;
        }
        let mut objects = Vec::new();
        for key in &changes.objects {
            if !matches!(
                key.kind,
                Kind::EndpointSlice | Kind::WorkloadEntry | Kind::Pod
            ) {
                return None;
            }
            let object = match inputs.entries.get(key) {
                None => None,
                Some(entry) => Some(admitted_cleanly(entry.object.as_ref().ok()?)?.clone()),
            };
            // A removed object that was never accepted changes nothing (and was reported).
            if object.is_none() && accepted.object(key).is_none() {
                return None;
            }
            objects.push((key.clone(), object));
        }
        Some(Plan { objects })
    }

    /// The services whose endpoints the changed objects feed, before or after the change.
    fn affected(
        &self,
        model: &Model,
        accepted: &LastGood,
        index: &EndpointIndex,
    ) -> Option<Affected> {
        let mut affected = Affected::default();
        for (key, object) in &self.objects {
            let versions = [accepted.object(key), object.as_ref()];
            match key.kind {
                Kind::EndpointSlice => {
                    for service in versions.into_iter().flatten().filter_map(slice_service) {
                        affected.add_service(model, index, &key.namespace, service)?;
                    }
                }
                Kind::Pod => {
                    for object in versions.into_iter().flatten() {
                        let Object::Pod(pod) = object else {
                            continue;
                        };
                        // The workload at the Pod's addresses may become another Pod that has
                        // them too: each of those is looked at as if it changed.
                        let own = pod.metadata.labels.clone().unwrap_or_default();
                        let sharing = pod_ips(pod)
                            .into_iter()
                            .filter_map(|ip| index.pods_by_ip.get(&ip))
                            .flatten()
                            .filter_map(|key| match accepted.object(key) {
                                Some(Object::Pod(pod)) => Some((
                                    key.namespace.as_str(),
                                    pod.metadata.labels.clone().unwrap_or_default(),
                                )),
                                _ => None,
                            });
                        let workloads: Vec<(&str, BTreeMap<String, String>)> =
                            std::iter::once((key.namespace.as_str(), own))
                                .chain(sharing)
                                .collect();
                        for (namespace, labels) in &workloads {
                            // Where a Gateway's workloads run decides what its servers are told.
                            let gateway_workload = model
                                .gateways
                                .iter()
                                .any(|gateway| labels_contain(labels, &gateway.selector));
                            if gateway_workload {
                                return None;
                            }
                            for selecting in index.entries_selecting(namespace, labels) {
                                affected.entries.insert(selecting.clone());
                            }
                        }
                        let named = PodRef::Named(key.namespace.clone(), key.name.clone());
                        let refs = std::iter::once(named)
                            .chain(pod_ips(pod).into_iter().map(PodRef::Address));
                        let groups: Vec<(String, String)> = refs
                            .filter_map(|pod| index.slices_naming.get(&pod))
                            .flat_map(|groups| groups.keys().cloned())
                            .collect();
                        for (namespace, service) in groups {
                            affected.add_service(model, index, &namespace, &service)?;
                        }
                    }
                }
                _ => {
                    for entry in versions.into_iter().flatten() {
                        let Object::WorkloadEntry(entry) = entry else {
                            continue;
                        };
                        for selecting in index.entries_selecting(&key.namespace, &entry.spec.labels)
                        {
                            affected.entries.insert(selecting.clone());
                        }
                    }
                }
            }
        }
        for key in &affected.entries {
            let Some(Object::ServiceEntry(entry)) = accepted.object(key) else {
                return None;
            };
            for host in &entry.spec.hosts {
                let alone = index
                    .entries_by_host
                    .get(host)
                    .is_some_and(|keys| keys.len() == 1);
                let defined = model.services.get(host)?;
                if !alone || defined.registry != Registry::ServiceEntry || !only_eds(defined) {
                    return None;
                }
            }
        }
        Some(affected)
    }
}

/// The services to recompute.
#[derive(Default)]
struct Affected {
    /// Kubernetes Services by namespace and name, with their host.
    kubernetes: BTreeMap<(String, String), String>,
    /// ServiceEntries whose selected WorkloadEntries changed.
    entries: BTreeSet<ObjectKey>,
}

impl Affected {
    /// Adds the Kubernetes Service `namespace/name`; `None` when its endpoints need the full
    /// build (a ServiceEntry defines its host too, or they shape more than EDS).
    fn add_service(
        &mut self,
        model: &Model,
        index: &EndpointIndex,
        namespace: &str,
        name: &str,
    ) -> Option<()> {
        let host = kubernetes_host(namespace, name, &model.dns_domain);
        let Some(defined) = model.services.get(&host) else {
            // No Service (or an ExternalName one): its slices feed nothing.
            return Some(());
        };
        if defined.registry == Registry::ServiceEntry {
            // The host is an entry's: slices never join it.
            return Some(());
        }
        if index.entries_by_host.contains_key(&host) || !only_eds(defined) {
            return None;
        }
        self.kubernetes
            .insert((namespace.to_string(), name.to_string()), host);
        Some(())
    }

    /// The new endpoints of every affected host, sorted as the full build sorts them, with the
    /// new `workloads`.
    fn recompute(
        &self,
        model: &Model,
        workloads: &BTreeMap<IpAddr, Workload>,
        accepted: &LastGood,
        index: &EndpointIndex,
    ) -> Vec<(String, Vec<super::Endpoint>)> {
        let mut recomputed = Vec::new();
        for ((namespace, name), host) in &self.kubernetes {
            let Some(service) = model.services.get(host) else {
                continue;
            };
            let slices: Vec<&Object> = index
                .slices
                .get(&(namespace.clone(), name.clone()))
                .into_iter()
                .flatten()
                .filter_map(|slice| {
                    accepted.object(&ObjectKey::new(Kind::EndpointSlice, namespace, slice))
                })
                .collect();
            let by_name = target_pods(&slices, namespace, accepted);
            let pods = Pods {
                by_ip: workloads,
                by_name: &by_name,
            };
            let mut endpoints: Vec<super::Endpoint> = slices
                .iter()
                .filter_map(|object| match object {
                    Object::EndpointSlice(slice) => Some(slice_endpoints(slice, service, &pods)),
                    _ => None,
                })
                .flatten()
                .collect();
            endpoints.sort();
            endpoints.dedup();
            recomputed.push((host.clone(), endpoints));
        }
        for key in &self.entries {
            let Some(Object::ServiceEntry(entry)) = accepted.object(key) else {
                continue;
            };
            let workload_entries: Vec<&IstioObject<WorkloadEntry>> = accepted
                .objects_in(Kind::WorkloadEntry, &key.namespace)
                .filter_map(|(_, object)| match object {
                    Object::WorkloadEntry(entry) => Some(entry.as_ref()),
                    _ => None,
                })
                .collect();
            let entry: &IstioObject<ServiceEntry> = entry;
            for service in services_of_entry(entry, &workload_entries, workloads) {
                recomputed.push((service.hostname, service.endpoints));
            }
        }
        recomputed
    }
}

/// The Pods the slices' endpoints name, as workloads by namespace and name.
fn target_pods<'a>(
    slices: &[&'a Object],
    namespace: &'a str,
    accepted: &LastGood,
) -> PodsByName<'a> {
    let mut pods = PodsByName::new();
    for object in slices {
        let Object::EndpointSlice(slice) = object else {
            continue;
        };
        let targets = slice
            .endpoints
            .iter()
            .flatten()
            .filter_map(|endpoint| endpoint.target_ref.as_ref())
            .filter(|target| target.kind.as_deref() == Some("Pod"));
        for target in targets {
            let pod_namespace = target.namespace.as_deref().unwrap_or(namespace);
            let Some(name) = target.name.as_deref() else {
                continue;
            };
            let key = ObjectKey::new(Kind::Pod, pod_namespace, name);
            let Some(Object::Pod(pod)) = accepted.object(&key) else {
                continue;
            };
            pods.insert((pod_namespace, name), pod_workload(pod, accepted));
        }
    }
    pods
}

/// A Pod as a workload, with its Node's locality.
fn pod_workload(pod: &Pod, accepted: &LastGood) -> Workload {
    let node = pod.spec.as_ref().and_then(|spec| spec.node_name.clone());
    let nodes = node_localities(
        node.iter()
            .filter_map(|node| accepted.object(&ObjectKey::new(Kind::Node, "", node))),
    );
    workload(pod, &nodes)
}

/// A Pod's addresses (none for other objects).
fn object_ips(object: &Object) -> Vec<IpAddr> {
    match object {
        Object::Pod(pod) => pod_ips(pod),
        _ => Vec::new(),
    }
}

/// The Pods a slice's endpoints name: by `targetRef` (its namespace defaulting to the slice's)
/// and by address, once per endpoint.
fn pods_named(object: Option<&Object>, namespace: &str) -> Vec<PodRef> {
    let Some(Object::EndpointSlice(slice)) = object else {
        return Vec::new();
    };
    let mut named = Vec::new();
    for endpoint in slice.endpoints.iter().flatten() {
        let target = endpoint
            .target_ref
            .as_ref()
            .filter(|target| target.kind.as_deref() == Some("Pod"));
        if let Some(target) = target
            && let Some(name) = &target.name
        {
            let pod_namespace = target.namespace.as_deref().unwrap_or(namespace);
            named.push(PodRef::Named(pod_namespace.to_string(), name.clone()));
        }
        named.extend(
            endpoint
                .addresses
                .iter()
                .filter_map(|address| address.parse().ok())
                .map(PodRef::Address),
        );
    }
    named
}

/// The object, if the full build would admit it without a word (no refusal, no warning).
fn admitted_cleanly(object: &Object) -> Option<&Object> {
    let clean = match object {
        Object::EndpointSlice(slice) => validate_endpoint_slice(slice).is_ok(),
        Object::WorkloadEntry(entry) => {
            validate_workload_entry(&entry.spec).is_ok()
                && unset_address_warning(&entry.spec).is_none()
        }
        // Pods are not validated, only decoded.
        Object::Pod(_) => true,
        _ => false,
    };
    (clean && unsupported_settings(object).is_empty()).then_some(object)
}

/// The Service a slice belongs to.
fn slice_service(object: &Object) -> Option<&str> {
    match object {
        Object::EndpointSlice(slice) => slice
            .metadata
            .labels
            .as_ref()?
            .get(SERVICE_NAME_LABEL)
            .map(String::as_str),
        _ => None,
    }
}

fn kubernetes_host(namespace: &str, name: &str, dns_domain: &str) -> String {
    format!("{name}.{namespace}.svc.{dns_domain}")
}

/// Whether a service's endpoints reach proxies over EDS alone: DNS clusters carry them inline
/// (CDS) and headless services get a listener per endpoint (LDS).
fn only_eds(service: &Service) -> bool {
    service.resolution == Resolution::ClientSideLb
}

#[cfg(test)]
mod tests;

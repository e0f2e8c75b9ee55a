//! Delta (incremental) ADS for one stream: per type, what the proxy subscribed to (by name, or
//! everything) and what it has, resource by resource, with the version of each. A response
//! carries only the resources whose version the proxy does not have, and the names of those it
//! has that are gone (`removed_resources`).
//!
//! - CDS and LDS are always wildcard, even when a reconnecting Envoy lists names; EDS and RDS are
//!   by name, `*` asking for everything.
//! - Per-resource versions are the content hashes ([`super::versions`]). On a reconnect, the
//!   first request of a type brings `initial_resource_versions`: only resources whose version
//!   differs are sent, and names the proxy has that no longer exist are removed.
//! - A name in `resource_names_subscribe` is always answered (its resource, or its removal if it
//!   does not exist), even if the proxy is believed to have it: it may have dropped it.
//!   `resource_names_unsubscribe` stops updates for those names.
//! - Subscription changes apply whatever the request's nonce: delta sends each change once, so
//!   ignoring one would lose it. Only the ACK or NACK of a stale nonce is ignored.
//! - Ordering is CDS, EDS, LDS, RDS. After a CDS response that adds or changes clusters, their
//!   endpoints are sent again even if unchanged, since Envoy warms those clusters until it gets
//!   them; if EDS is not subscribed yet (a reconnect sends CDS first), they go with its first
//!   response, whatever `initial_resource_versions` says.
//! - A NACK marks the versions of the rejected response's resources: they are not sent again
//!   (not even to follow CDS) until they change, or the proxy subscribes to them again.
//! - The names a stream keeps are its explicit subscriptions, all types together: a request that
//!   would take them past the stream's limit is refused. (What `initial_resource_versions` lists
//!   beyond them is dropped by the response to that same request.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use super::connection::{Acks, Answer, Nonces, Outcome, StateMachine, TypeStatus};
use super::versions::{Hash, Name, ResourceSet, TypeSet, parse_resource_version, resource_version};
use super::wire::{DeltaResource, DeltaResponse};
use crate::translate::ResourceType;
use known::Known;

/// The delta ADS state of one stream.
#[derive(Debug)]
pub struct DeltaConnection {
    resources: Arc<ResourceSet>,
    watches: BTreeMap<ResourceType, Watch>,
    /// The EDS names of clusters sent since their endpoints were: Envoy warms those clusters
    /// until it gets their endpoints, changed or not. They wait here if EDS is not subscribed
    /// yet (a reconnect's EDS request comes after its CDS response).
    warming: BTreeSet<String>,
    nonces: Nonces,
    /// The most names the watches may subscribe to together.
    max_names: usize,
}

/// Asks for every resource of a type, in `resource_names_subscribe`.
const WILDCARD: &str = "*";

#[derive(Debug, Default)]
struct Watch {
    /// Every resource of the type, whatever names are subscribed.
    wildcard: bool,
    /// Names subscribed explicitly.
    names: BTreeSet<Name>,
    /// What the proxy has, as far as this stream knows: the version of each resource it was
    /// sent, or said it had when it connected (`None`: a version that is not rudder's).
    known: Known,
    /// Names the proxy subscribed to since the last response: they get an answer even if it has
    /// them.
    pending: BTreeSet<Name>,
    /// The next push answers even if it has nothing to say: the first request of a type waits
    /// for a response.
    respond: bool,
    /// The resources of the last response, for its ACK or NACK.
    last_sent: BTreeMap<Name, Hash>,
    /// Versions the proxy rejected, by name.
    rejected: BTreeMap<Name, Hash>,
    acks: Acks,
}

impl Watch {
    fn first(ty: ResourceType, request: &DeltaDiscoveryRequest, resources: &TypeSet) -> Watch {
        let mut known = Known::default();
        for (name, version) in &request.initial_resource_versions {
            known.insert(resources.name(name), parse_resource_version(version));
        }
        Watch {
            wildcard: ty.is_wildcard(),
            known,
            respond: true,
            ..Watch::default()
        }
    }

    fn subscribe(
        &mut self,
        ty: ResourceType,
        request: &DeltaDiscoveryRequest,
        first: bool,
        resources: &TypeSet,
    ) {
        // CDS and LDS are wildcard whatever the names: a reconnecting Envoy lists the ones it has.
        if ty.is_wildcard() {
            return;
        }
        for name in &request.resource_names_subscribe {
            if name == WILDCARD {
                self.wildcard = !ty.by_name_only();
                continue;
            }
            let name = resources.name(name);
            // On the first request, a name the proxy says it has is sent only if its version
            // differs; any other subscription is answered.
            if !(first && self.known.contains(&name)) {
                self.pending.insert(name.clone());
            }
            self.names.insert(name);
        }
        for name in &request.resource_names_unsubscribe {
            if name == WILDCARD {
                self.wildcard = false;
                continue;
            }
            let name = name.as_str();
            self.names.remove(name);
            self.pending.remove(name);
            if !self.wildcard {
                // The proxy drops what it unsubscribes from.
                self.known.remove(name);
                self.rejected.remove(name);
            }
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// The set version of what the proxy has.
    fn version(&self) -> String {
        self.known.version()
    }
}

type Outgoing = Outcome<DeltaResponse>;

impl StateMachine for DeltaConnection {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaResponse;

    fn new(resources: Arc<ResourceSet>) -> DeltaConnection {
        DeltaConnection {
            resources,
            watches: BTreeMap::new(),
            warming: BTreeSet::new(),
            nonces: Nonces::default(),
            max_names: usize::MAX,
        }
    }

    fn limit_names(&mut self, limit: usize) {
        self.max_names = limit;
    }

    fn on_request(&mut self, request: &DeltaDiscoveryRequest) -> Outgoing {
        let mut outcome = Outcome::default();
        let Some(ty) = outcome.served_type(&request.type_url) else {
            return outcome;
        };
        let first = !self.watches.contains_key(&ty);
        let resources = self.resources.of(ty);
        let watch = self
            .watches
            .entry(ty)
            .or_insert_with(|| Watch::first(ty, request, resources));
        let answer = watch.acks.answer(
            ty,
            &request.response_nonce,
            request.error_detail.as_ref(),
            &mut outcome.events,
        );
        match answer {
            Answer::Nack => {
                let rejected = std::mem::take(&mut watch.last_sent);
                watch.rejected.extend(rejected);
            }
            Answer::Ack => {
                for name in std::mem::take(&mut watch.last_sent).keys() {
                    watch.rejected.remove(name);
                }
            }
            Answer::Stale | Answer::Unanswered => {}
        }
        watch.subscribe(ty, request, first, resources);
        let kept = self.watches.values().map(|watch| watch.names.len()).sum();
        if kept > self.max_names {
            return Outgoing::too_many_names(kept, self.max_names);
        }
        self.push(ty, &mut outcome);
        outcome
    }

    fn on_resources(&mut self, resources: Arc<ResourceSet>) -> Outgoing {
        self.resources = resources;
        let mut outcome = Outcome::default();
        for ty in ResourceType::ALL {
            self.push(ty, &mut outcome);
        }
        outcome
    }

    fn status(&self) -> BTreeMap<ResourceType, TypeStatus> {
        self.watches
            .iter()
            .map(|(ty, watch)| (*ty, watch.acks.status.clone()))
            .collect()
    }

    fn watched(&self) -> BTreeMap<ResourceType, Vec<Name>> {
        self.watches
            .iter()
            .map(|(ty, watch)| (*ty, watch.names.iter().cloned().collect()))
            .collect()
    }
}

impl DeltaConnection {
    /// Sends what `ty` has to say. After a CDS response that added or changed clusters, sends
    /// their endpoints too, changed or not (Envoy warms those clusters until it gets them).
    fn push(&mut self, ty: ResourceType, outcome: &mut Outgoing) {
        match ty {
            ResourceType::Cluster => {
                let updated = self.push_one(ty, &BTreeSet::new(), outcome);
                if !updated.is_empty() {
                    let resources = &self.resources;
                    let warming = updated.iter().filter_map(|c| resources.eds_name(c));
                    self.warming.extend(warming.map(str::to_string));
                    // Clusters deleted before their endpoints were subscribed warm no more.
                    let current = resources.of(ResourceType::Endpoint);
                    self.warming.retain(|name| current.contains(name));
                    self.push(ResourceType::Endpoint, outcome);
                }
            }
            ResourceType::Endpoint => {
                let warming = std::mem::take(&mut self.warming);
                let updated = self.push_one(ty, &warming, outcome);
                self.warming = warming
                    .into_iter()
                    .filter(|name| !updated.contains(name.as_str()))
                    .collect();
            }
            ResourceType::Listener | ResourceType::Route | ResourceType::Secret => {
                self.push_one(ty, &BTreeSet::new(), outcome);
            }
        }
    }

    /// Sends one response for `ty` if there is anything to send; returns the names it updated.
    /// `refresh` names are sent even if the proxy has them, unless it rejected that version.
    fn push_one(
        &mut self,
        ty: ResourceType,
        refresh: &BTreeSet<String>,
        outcome: &mut Outgoing,
    ) -> BTreeSet<Name> {
        let Some(watch) = self.watches.get_mut(&ty) else {
            return BTreeSet::new();
        };
        let current = self.resources.of(ty);
        let updated: BTreeMap<Name, Hash> = current
            .hashes()
            .filter(|(name, _)| watch.wants(name))
            .filter(|(name, hash)| {
                let rejected = watch.rejected.get(*name) == Some(*hash);
                let has = watch.known.get(name) == Some(Some(**hash));
                let refreshed = refresh.contains(&***name);
                watch.pending.contains(*name) || (!rejected && (!has || refreshed))
            })
            .map(|(name, hash)| (name.clone(), *hash))
            .collect();
        let gone = |name: &Name| !(watch.wants(name) && current.contains(name));
        // What the proxy has that it should not, and subscribed names that do not exist.
        let removed: BTreeSet<Name> = watch
            .known
            .names()
            .chain(&watch.pending)
            .filter(|name| gone(name))
            .cloned()
            .collect();
        watch.pending.clear();
        if updated.is_empty() && removed.is_empty() && !watch.respond {
            return BTreeSet::new();
        }
        watch.respond = false;

        let resources = updated
            .iter()
            .map(|(name, hash)| DeltaResource {
                name: name.to_string(),
                version: resource_version(*hash),
                resource: current.get(name).map(|resource| resource.any().clone()),
            })
            .collect();
        for (name, hash) in &updated {
            watch.known.insert(name.clone(), Some(*hash));
        }
        for name in &removed {
            watch.known.remove(name);
            watch.rejected.remove(name);
        }
        // Held as its differences from what was just sent: usually none.
        watch.known.rebase(current);
        let version = watch.version();
        let nonce = self.nonces.next();
        outcome.responses.push(DeltaResponse {
            system_version_info: version.clone(),
            resources,
            type_url: ty.type_url().to_string(),
            removed_resources: removed.iter().map(|name| name.to_string()).collect(),
            nonce: nonce.clone(),
        });
        watch.acks.sent(nonce, version);
        let names = updated.keys().cloned().collect();
        watch.last_sent = updated;
        names
    }
}

mod known;
#[cfg(test)]
mod tests;

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

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};

use super::connection::{Acks, Answer, Event, Nonces, Outcome, StateMachine, TypeStatus};
use super::versions::{Hash, Store, parse_resource_version, resource_version, set_version};
use crate::translate::{ResourceType, Resources};

/// The delta ADS state of one stream.
#[derive(Debug)]
pub struct DeltaConnection {
    store: Store,
    watches: BTreeMap<ResourceType, Watch>,
    /// The EDS names of clusters sent since their endpoints were: Envoy warms those clusters
    /// until it gets their endpoints, changed or not. They wait here if EDS is not subscribed
    /// yet (a reconnect's EDS request comes after its CDS response).
    warming: BTreeSet<String>,
    nonces: Nonces,
}

/// Asks for every resource of a type, in `resource_names_subscribe`.
const WILDCARD: &str = "*";

#[derive(Debug, Default)]
struct Watch {
    /// Every resource of the type, whatever names are subscribed.
    wildcard: bool,
    /// Names subscribed explicitly.
    names: BTreeSet<String>,
    /// What the proxy has, as far as this stream knows: the version of each resource it was
    /// sent, or said it had when it connected (`None`: a version that is not rudder's).
    known: BTreeMap<String, Option<Hash>>,
    /// Names the proxy subscribed to since the last response: they get an answer even if it has
    /// them.
    pending: BTreeSet<String>,
    /// The next push answers even if it has nothing to say: the first request of a type waits
    /// for a response.
    respond: bool,
    /// The resources of the last response, for its ACK or NACK.
    last_sent: BTreeMap<String, Hash>,
    /// Versions the proxy rejected, by name.
    rejected: BTreeMap<String, Hash>,
    acks: Acks,
}

impl Watch {
    fn first(ty: ResourceType, request: &DeltaDiscoveryRequest) -> Watch {
        let known = request
            .initial_resource_versions
            .iter()
            .map(|(name, version)| (name.clone(), parse_resource_version(version)))
            .collect();
        Watch {
            wildcard: ty.is_wildcard(),
            known,
            respond: true,
            ..Watch::default()
        }
    }

    fn subscribe(&mut self, ty: ResourceType, request: &DeltaDiscoveryRequest, first: bool) {
        // CDS and LDS are wildcard whatever the names: a reconnecting Envoy lists the ones it has.
        if ty.is_wildcard() {
            return;
        }
        for name in &request.resource_names_subscribe {
            if name == WILDCARD {
                self.wildcard = true;
                continue;
            }
            self.names.insert(name.clone());
            // On the first request, a name the proxy says it has is sent only if its version
            // differs; any other subscription is answered.
            if !(first && self.known.contains_key(name)) {
                self.pending.insert(name.clone());
            }
        }
        for name in &request.resource_names_unsubscribe {
            if name == WILDCARD {
                self.wildcard = false;
                continue;
            }
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
        set_version(
            self.known
                .iter()
                .filter_map(|(name, hash)| Some((name, hash.as_ref()?))),
        )
    }
}

type Outgoing = Outcome<DeltaDiscoveryResponse>;

impl StateMachine for DeltaConnection {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;

    fn new(resources: Resources) -> DeltaConnection {
        DeltaConnection {
            store: Store::new(resources),
            watches: BTreeMap::new(),
            warming: BTreeSet::new(),
            nonces: Nonces::default(),
        }
    }

    fn on_request(&mut self, request: &DeltaDiscoveryRequest) -> Outgoing {
        let mut outcome = Outcome::default();
        let Some(ty) = ResourceType::from_type_url(&request.type_url) else {
            outcome.events.push(Event::UnknownType {
                type_url: request.type_url.clone(),
            });
            return outcome;
        };
        let first = !self.watches.contains_key(&ty);
        let watch = self
            .watches
            .entry(ty)
            .or_insert_with(|| Watch::first(ty, request));
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
        watch.subscribe(ty, request, first);
        self.push(ty, &mut outcome);
        outcome
    }

    fn on_resources(&mut self, resources: Resources) -> Outgoing {
        self.store.update(resources);
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
}

impl DeltaConnection {
    /// Sends what `ty` has to say. After a CDS response that added or changed clusters, sends
    /// their endpoints too, changed or not (Envoy warms those clusters until it gets them).
    fn push(&mut self, ty: ResourceType, outcome: &mut Outgoing) {
        match ty {
            ResourceType::Cluster => {
                let updated = self.push_one(ty, &BTreeSet::new(), outcome);
                if !updated.is_empty() {
                    let store = &self.store;
                    let warming = updated.iter().filter_map(|c| store.eds_name(c));
                    self.warming.extend(warming.map(str::to_string));
                    // Clusters deleted before their endpoints were subscribed warm no more.
                    let current = store.hashes(ResourceType::Endpoint);
                    self.warming.retain(|name| current.contains_key(name));
                    self.push(ResourceType::Endpoint, outcome);
                }
            }
            ResourceType::Endpoint => {
                let warming = std::mem::take(&mut self.warming);
                let updated = self.push_one(ty, &warming, outcome);
                self.warming = warming
                    .into_iter()
                    .filter(|name| !updated.contains(name))
                    .collect();
            }
            ResourceType::Listener | ResourceType::Route => {
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
    ) -> BTreeSet<String> {
        let Some(watch) = self.watches.get_mut(&ty) else {
            return BTreeSet::new();
        };
        let current = self.store.hashes(ty);
        let updated: BTreeMap<String, Hash> = current
            .iter()
            .filter(|(name, _)| watch.wants(name))
            .filter(|(name, hash)| {
                let rejected = watch.rejected.get(*name) == Some(*hash);
                let has = watch.known.get(*name) == Some(&Some(**hash));
                watch.pending.contains(*name) || (!rejected && (!has || refresh.contains(*name)))
            })
            .map(|(name, hash)| (name.clone(), *hash))
            .collect();
        let gone = |name: &String| !(watch.wants(name) && current.contains_key(name));
        // What the proxy has that it should not, and subscribed names that do not exist.
        let removed: BTreeSet<String> = watch
            .known
            .keys()
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
            .map(|(name, hash)| Resource {
                name: name.clone(),
                version: resource_version(*hash),
                resource: self.store.encode(ty, name),
                ..Default::default()
            })
            .collect();
        for (name, hash) in &updated {
            watch.known.insert(name.clone(), Some(*hash));
        }
        for name in &removed {
            watch.known.remove(name);
            watch.rejected.remove(name);
        }
        let version = watch.version();
        let nonce = self.nonces.next();
        outcome.responses.push(DeltaDiscoveryResponse {
            system_version_info: version.clone(),
            resources,
            type_url: ty.type_url().to_string(),
            removed_resources: removed.into_iter().collect(),
            nonce: nonce.clone(),
            ..Default::default()
        });
        watch.acks.sent(nonce, version);
        let names = updated.keys().cloned().collect();
        watch.last_sent = updated;
        names
    }
}

#[cfg(test)]
mod tests;

//! State-of-the-world ADS for one stream: a CDS or LDS response carries every resource of its type;
//! an EDS or RDS response carries the requested resources under the set version of all of them. A
//! response goes out when that version differs from the last one sent (or the proxy asks without a
//! nonce, or EDS follows CDS).
//!
//! For EDS and RDS the protocol lets a server send only what changed: Envoy keeps each named
//! resource until a response names it again. Once the proxy has ACKed what it was sent, a change
//! sends only the resources whose content differs from what it holds, so one edited endpoint
//! costs one ClusterLoadAssignment, not all of them (as istiod's incremental EDS pushes).
//!
//! The names a stream keeps are those of its EDS and RDS subscriptions (CDS and LDS keep none):
//! a request that would take them past the stream's limit is refused. A stream that asks for a
//! whole set shares that set's list of names, and what it holds is the set last sent to it (an
//! `Arc`) rather than a copy of the hashes, so streams of one proxy shape keep one copy of both.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

use super::connection::{Acks, Answer, Event, Nonces, Outcome, StateMachine, TypeStatus};
use super::versions::{Hash, Name, Resource, ResourceSet, TypeSet, names_digest, set_version};
use super::wire::{EncodedAny, SotwResponse};
use crate::translate::ResourceType;

/// The state-of-the-world ADS state of one stream.
#[derive(Debug)]
pub struct SotwConnection {
    resources: Arc<ResourceSet>,
    watches: BTreeMap<ResourceType, Watch>,
    nonces: Nonces,
    /// The most names the watches may hold together.
    max_names: usize,
}

#[derive(Debug, Default)]
struct Watch {
    /// `None` for the wildcard types (CDS, LDS), which always get everything. Shared with the
    /// set when the proxy asks for all of it (Envoy's EDS and RDS names usually are), so
    /// streams of one proxy shape hold one copy.
    names: Option<Arc<BTreeSet<Name>>>,
    /// EDS and RDS: what the proxy holds, so a change sends only what differs.
    held: Option<Held>,
    /// A digest of the names of the last request that set them, in the order listed: an ACK
    /// listing the same names keeps the subscription as it is.
    names_digest: Option<Hash>,
    acks: Acks,
}

/// What a proxy holds of a named type after a response: every resource of `set` under `names`
/// (each response leaves it holding every subscribed resource of the set it came from). Both
/// are shared with the set and the other streams, so a stream keeps no copy of either; the
/// same set again, under the same names, has the version already sent, and a set derived
/// from it differs only in the names its derivation lists, so neither costs a pass over every
/// subscribed name.
#[derive(Debug)]
struct Held {
    set: Arc<TypeSet>,
    names: Arc<BTreeSet<Name>>,
    /// How many of `names` the set has.
    count: usize,
}

impl Held {
    /// Whether this is what `set` gives under `names`, by identity.
    fn is(&self, set: *const TypeSet, names: &Arc<BTreeSet<Name>>) -> bool {
        std::ptr::eq(Arc::as_ptr(&self.set), set) && Arc::ptr_eq(&self.names, names)
    }
}

/// Why a response might be sent; decides how much an unchanged version holds it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// A request without a nonce: the proxy waits for an answer, whatever it was sent before.
    Subscribed,
    /// Content or subscription may have changed: send only a version the proxy has not seen.
    Changed,
    /// EDS after CDS: Envoy keeps new clusters warming until it gets an EDS response, even an
    /// identical one.
    Refresh,
}

type Outgoing = Outcome<SotwResponse>;

impl StateMachine for SotwConnection {
    type Request = DiscoveryRequest;
    type Response = SotwResponse;

    fn new(resources: Arc<ResourceSet>) -> SotwConnection {
        SotwConnection {
            resources,
            watches: BTreeMap::new(),
            nonces: Nonces::default(),
            max_names: usize::MAX,
        }
    }

    fn limit_names(&mut self, limit: usize) {
        self.max_names = limit;
    }

    fn on_request(&mut self, request: &DiscoveryRequest) -> Outgoing {
        let mut outcome = Outcome::default();
        let Some(ty) = outcome.served_type(&request.type_url) else {
            return outcome;
        };
        let digest = (!ty.is_wildcard()).then(|| names_digest(&request.resource_names));
        // Envoy lists every subscribed name in each ACK: the same list is the same subscription.
        let same_names = digest.is_some()
            && self
                .watches
                .get(&ty)
                .is_some_and(|watch| watch.names.is_some() && watch.names_digest == digest);
        let names: Option<Arc<BTreeSet<Name>>> = (!ty.is_wildcard() && !same_names)
            .then(|| self.resources.of(ty).names(&request.resource_names));
        // The request's names replace the type's, whether or not it turns out stale.
        let count = match &names {
            Some(names) => names.len(),
            None if same_names => self.watches[&ty].names.as_ref().map_or(0, |n| n.len()),
            None => 0,
        };
        let kept = self.names_but(ty) + count;
        if kept > self.max_names {
            return Outcome::too_many_names(kept, self.max_names);
        }
        if !request.response_nonce.is_empty() && !self.watches.contains_key(&ty) {
            // An answer to a response this stream never sent.
            outcome.events.push(Event::Stale {
                ty,
                nonce: request.response_nonce.clone(),
            });
            return outcome;
        }
        let watch = self.watches.entry(ty).or_default();
        let answer = watch.acks.answer(
            ty,
            &request.response_nonce,
            request.error_detail.as_ref(),
            &mut outcome.events,
        );
        // A stale request's names are superseded too: the answer to the newer response will
        // carry the current ones.
        let reason = match answer {
            Answer::Stale => return outcome,
            Answer::Unanswered => Reason::Subscribed,
            Answer::Ack | Answer::Nack => Reason::Changed,
        };
        if !same_names {
            watch.names = names;
            watch.names_digest = digest;
        }
        self.push(ty, reason, &mut outcome);
        outcome
    }

    fn on_resources(&mut self, resources: Arc<ResourceSet>) -> Outgoing {
        self.resources = resources;
        let mut outcome = Outcome::default();
        for ty in ResourceType::ALL {
            self.push(ty, Reason::Changed, &mut outcome);
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
            .map(|(ty, watch)| {
                let names = watch.names.iter().flat_map(|names| names.iter());
                (*ty, names.cloned().collect())
            })
            .collect()
    }
}

impl SotwConnection {
    /// [`Self::push_one`] for a set derived from the one `held` came from, once the proxy ACKed
    /// it and subscribes to every resource of the set: only the derivation's names are looked
    /// at. `None` when that does not apply (the caller takes the general way); else whether a
    /// response went out.
    fn push_derived(
        watch: &mut Watch,
        all: &Arc<TypeSet>,
        nonces: &mut Nonces,
        outcome: &mut Outgoing,
        ty: ResourceType,
    ) -> Option<bool> {
        let derived = all.derived()?;
        let names = watch.names.as_ref()?;
        let held = watch.held.as_ref()?;
        let status = &watch.acks.status;
        let acked = status.acked.is_some() && status.acked == status.sent;
        if !acked || !held.is(derived.from.as_ptr(), names) {
            return None;
        }
        let updates: Vec<(&Name, Hash)> = derived
            .changed
            .iter()
            .filter(|name| names.contains(*name))
            .filter_map(|name| Some((name, all.get(name)?.hash)))
            .collect();
        // Under the same names, the proxy holds what the earlier set has.
        let held_hash = |name: &Name| held.set.get(name).map(|resource| resource.hash);
        let added = updates
            .iter()
            .filter(|(name, _)| held_hash(name).is_none())
            .count();
        // A subset's version is a hash over all its names: the general way computes it.
        let count = held.count + added;
        if count != all.len() {
            return None;
        }
        let version = all.version();
        let rejected = status.nack.as_ref().is_some_and(|n| n.version == version);
        if status.sent.as_deref() == Some(version) || rejected {
            return Some(false);
        }
        let resources = updates
            .iter()
            .filter(|(name, hash)| held_hash(name) != Some(*hash))
            .filter_map(|(name, _)| Some(all.get(name)?.any().clone()))
            .collect();
        watch.held = Some(Held {
            set: all.clone(),
            names: names.clone(),
            count,
        });
        respond(
            watch,
            nonces.next(),
            ty,
            version.to_string(),
            resources,
            outcome,
        );
        Some(true)
    }

    /// The names the watches of every type but `ty` hold.
    fn names_but(&self, ty: ResourceType) -> usize {
        let others = self.watches.iter().filter(|(watched, _)| **watched != ty);
        others
            .filter_map(|(_, watch)| watch.names.as_ref())
            .map(|names| names.len())
            .sum()
    }

    /// Sends `ty` if `reason` warrants it, then EDS if CDS went out.
    fn push(&mut self, ty: ResourceType, reason: Reason, outcome: &mut Outgoing) {
        if self.push_one(ty, reason, outcome) && ty == ResourceType::Cluster {
            self.push_one(ResourceType::Endpoint, Reason::Refresh, outcome);
        }
    }

    fn push_one(&mut self, ty: ResourceType, reason: Reason, outcome: &mut Outgoing) -> bool {
        let Some(watch) = self.watches.get_mut(&ty) else {
            return false;
        };
        let all = self.resources.of(ty);
        if watch.names.is_some() && reason == Reason::Changed {
            // Under the same names, the set the proxy holds has the version sent then.
            if let (Some(names), Some(held)) = (&watch.names, &watch.held)
                && held.is(Arc::as_ptr(all), names)
            {
                return false;
            }
            if let Some(sent) = Self::push_derived(watch, all, &mut self.nonces, outcome, ty) {
                return sent;
            }
        }
        // The subscribed resources that exist, by name; `None` for all of them.
        let selected: Option<Vec<(&Name, &Arc<Resource>)>> =
            watch.names.as_ref().map(|names| all.select(names));
        // Every stream sending a whole type shares the set's version, computed once.
        let version = match &selected {
            Some(selected) if selected.len() < all.len() => set_version(
                selected
                    .iter()
                    .map(|(name, resource)| (*name, &resource.hash)),
            ),
            _ => all.version().to_string(),
        };
        let status = &watch.acks.status;
        let already_sent = status.sent.as_deref() == Some(version.as_str());
        // Re-sending a rejected version would only be rejected again (go-control-plane#962);
        // wait for the content to change.
        let rejected = status
            .nack
            .as_ref()
            .is_some_and(|nack| nack.version == version);
        let send = match reason {
            Reason::Subscribed => true,
            Reason::Changed => !already_sent && !rejected,
            Reason::Refresh => !rejected,
        };
        if !send {
            // The same version is the same resources: the proxy holds this set's.
            if already_sent && let (Some(names), Some(selected)) = (&watch.names, &selected) {
                watch.held = Some(Held {
                    set: all.clone(),
                    names: names.clone(),
                    count: selected.len(),
                });
            }
            return false;
        }
        // After an ACK the proxy holds what it was sent; anything else (first answer, a NACK, a
        // cluster warming for EDS) gets the whole subscribed set.
        let acked = status.acked.is_some() && status.acked == status.sent;
        let only_changed = reason == Reason::Changed && acked;
        let nonce = self.nonces.next();
        let resources = match &selected {
            Some(selected) => {
                let previous = if only_changed {
                    watch.held.take()
                } else {
                    None
                };
                if let Some(names) = &watch.names {
                    watch.held = Some(Held {
                        set: all.clone(),
                        names: names.clone(),
                        count: selected.len(),
                    });
                }
                not_held(selected, previous.as_ref(), watch.names.as_ref())
            }
            None => all
                .iter()
                .map(|(_, resource)| resource.any().clone())
                .collect(),
        };
        respond(watch, nonce, ty, version, resources, outcome);
        true
    }
}

/// The resources of `selected` (in name order) that the proxy does not hold as they are: all
/// of them when it holds nothing; found in one pass over the set it holds.
fn not_held(
    selected: &[(&Name, &Arc<Resource>)],
    held: Option<&Held>,
    names: Option<&Arc<BTreeSet<Name>>>,
) -> Vec<EncodedAny> {
    let Some(held) = held else {
        return selected
            .iter()
            .map(|(_, resource)| resource.any().clone())
            .collect();
    };
    let same_names = names.is_some_and(|names| Arc::ptr_eq(names, &held.names));
    let mut cursor = held.set.cursor();
    selected
        .iter()
        .filter(|(name, resource)| {
            let holds = cursor
                .seek(name)
                .is_some_and(|(_, known)| known.hash == resource.hash);
            !(holds && (same_names || held.names.contains(*name)))
        })
        .map(|(_, resource)| resource.any().clone())
        .collect()
}

/// Sends `resources` as `version` of `ty`, and records it as sent on `watch`.
fn respond(
    watch: &mut Watch,
    nonce: String,
    ty: ResourceType,
    version: String,
    resources: Vec<super::wire::EncodedAny>,
    outcome: &mut Outgoing,
) {
    outcome.responses.push(SotwResponse {
        version_info: version.clone(),
        resources,
        type_url: ty.type_url().to_string(),
        nonce: nonce.clone(),
        control_plane: String::new(),
    });
    watch.acks.sent(nonce, version);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::connection::{Nack, Refused};
    use crate::xds::fixtures::{
        A, B, CREDENTIAL, cla, cluster, error, listener, name_of, resources, route, secret,
    };

    fn request(ty: ResourceType, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: ty.type_url().to_string(),
            resource_names: names.iter().map(|name| name.to_string()).collect(),
            version_info: version.to_string(),
            response_nonce: nonce.to_string(),
            ..Default::default()
        }
    }

    fn nack(
        ty: ResourceType,
        names: &[&str],
        version: &str,
        nonce: &str,
        message: &str,
    ) -> DiscoveryRequest {
        DiscoveryRequest {
            error_detail: error(message),
            ..request(ty, names, version, nonce)
        }
    }

    fn ack(ty: ResourceType, response: &SotwResponse) -> DiscoveryRequest {
        request(ty, &[], &response.version_info, &response.nonce)
    }

    /// EDS for both A and B, acknowledging `response`.
    fn endpoints_a_and_b(response: &SotwResponse) -> DiscoveryRequest {
        request(
            ResourceType::Endpoint,
            &[A, B],
            &response.version_info,
            &response.nonce,
        )
    }

    fn types(outcome: &Outgoing) -> Vec<ResourceType> {
        outcome
            .responses
            .iter()
            .filter_map(|response| ResourceType::from_type_url(&response.type_url))
            .collect()
    }

    fn names(response: &SotwResponse) -> Vec<String> {
        response.resources.iter().map(name_of).collect()
    }

    /// A connection subscribed to CDS and EDS (for A), with both ACKed.
    fn subscribed() -> (SotwConnection, SotwResponse, SotwResponse) {
        let mut conn = SotwConnection::new(resources().into());
        let cds = conn.on_request(&request(ResourceType::Cluster, &[], "", ""));
        let cds = cds.responses[0].clone();
        assert!(
            conn.on_request(&ack(ResourceType::Cluster, &cds))
                .responses
                .is_empty()
        );
        let eds = conn.on_request(&request(ResourceType::Endpoint, &[A], "", ""));
        let eds = eds.responses[0].clone();
        let acked = request(ResourceType::Endpoint, &[A], &eds.version_info, &eds.nonce);
        assert!(conn.on_request(&acked).responses.is_empty());
        (conn, cds, eds)
    }

    #[test]
    fn initial_requests_get_current_resources() {
        let mut conn = SotwConnection::new(resources().into());
        let cds = conn.on_request(&request(ResourceType::Cluster, &[], "", ""));
        assert_eq!(types(&cds), [ResourceType::Cluster]);
        let response = &cds.responses[0];
        assert_eq!(names(response), [A, B]);
        assert_eq!(response.version_info.len(), 32);
        assert!(!response.nonce.is_empty());

        // EDS and RDS get only the requested names that exist.
        let eds = conn.on_request(&request(ResourceType::Endpoint, &[B, "missing"], "", ""));
        assert_eq!(names(&eds.responses[0]), [B]);
        let rds = conn.on_request(&request(ResourceType::Route, &["9080"], "", ""));
        assert_eq!(names(&rds.responses[0]), ["9080"]);
        let nonces: BTreeSet<_> = [&cds, &eds, &rds]
            .iter()
            .map(|outcome| outcome.responses[0].nonce.clone())
            .collect();
        assert_eq!(nonces.len(), 3, "nonces are unique per response");
    }

    #[test]
    fn versions_are_content_hashes() {
        let mut one = SotwConnection::new(resources().into());
        let mut two = SotwConnection::new(resources().into());
        let first = one.on_request(&request(ResourceType::Cluster, &[], "", ""));
        let second = two.on_request(&request(ResourceType::Cluster, &[], "", ""));
        assert_eq!(
            first.responses[0].version_info,
            second.responses[0].version_info
        );

        let mut changed = resources();
        changed
            .clusters
            .insert(A.to_string(), cluster(A, "other").into());
        let mut three = SotwConnection::new(changed.into());
        let third = three.on_request(&request(ResourceType::Cluster, &[], "", ""));
        assert_ne!(
            first.responses[0].version_info,
            third.responses[0].version_info
        );
    }

    #[test]
    fn acked_content_is_not_resent() {
        let (mut conn, cds, _) = subscribed();
        let status = conn.status();
        assert_eq!(
            status[&ResourceType::Cluster].acked.as_ref(),
            Some(&cds.version_info)
        );
        assert!(conn.on_resources(resources().into()).responses.is_empty());
    }

    #[test]
    fn ack_is_reported() {
        let mut conn = SotwConnection::new(resources().into());
        let lds = conn.on_request(&request(ResourceType::Listener, &[], "", ""));
        let lds = &lds.responses[0];
        let outcome = conn.on_request(&ack(ResourceType::Listener, lds));
        let acked = Event::Ack {
            ty: ResourceType::Listener,
            version: lds.version_info.clone(),
        };
        assert_eq!(outcome.events, [acked]);
    }

    #[test]
    fn nacked_version_is_kept_and_not_resent() {
        let mut conn = SotwConnection::new(resources().into());
        let lds = conn.on_request(&request(ResourceType::Listener, &[], "", ""));
        let lds = lds.responses[0].clone();
        let outcome = conn.on_request(&nack(
            ResourceType::Listener,
            &[],
            "",
            &lds.nonce,
            "bad listener",
        ));
        assert!(outcome.responses.is_empty());
        let rejected = Nack {
            version: lds.version_info.clone(),
            message: "bad listener".to_string(),
        };
        assert_eq!(
            outcome.events,
            [Event::Nack {
                ty: ResourceType::Listener,
                version: rejected.version.clone(),
                message: rejected.message.clone(),
            }]
        );
        assert_eq!(conn.status()[&ResourceType::Listener].nack, Some(rejected));

        // A change elsewhere does not re-send the rejected listeners.
        let mut other = resources();
        other
            .clusters
            .insert(A.to_string(), cluster(A, "changed").into());
        assert!(conn.on_resources(other.clone().into()).responses.is_empty());

        // Changed listeners are sent; their ACK clears the rejection.
        other
            .listeners
            .insert("0.0.0.0_80".into(), listener("0.0.0.0_80", "fixed"));
        let fixed = conn.on_resources(other.into());
        assert_eq!(types(&fixed), [ResourceType::Listener]);
        assert_ne!(fixed.responses[0].version_info, lds.version_info);
        conn.on_request(&ack(ResourceType::Listener, &fixed.responses[0]));
        assert_eq!(conn.status()[&ResourceType::Listener].nack, None);
    }

    #[test]
    fn stale_nonce_is_ignored() {
        let mut conn = SotwConnection::new(resources().into());
        let first = conn.on_request(&request(ResourceType::Route, &["80"], "", ""));
        let first = first.responses[0].clone();
        let mut changed = resources();
        changed.routes.insert("80".into(), route("80", true).into());
        let second = conn.on_resources(changed.into());
        assert_eq!(types(&second), [ResourceType::Route]);

        // Envoy answers the first response after the second went out, even with new names.
        let late = request(
            ResourceType::Route,
            &["80", "9080"],
            &first.version_info,
            &first.nonce,
        );
        let outcome = conn.on_request(&late);
        assert!(outcome.responses.is_empty());
        let stale = Event::Stale {
            ty: ResourceType::Route,
            nonce: first.nonce.clone(),
        };
        assert_eq!(outcome.events, [stale]);
        let late_nack = nack(ResourceType::Route, &["80"], "", &first.nonce, "old");
        assert!(conn.on_request(&late_nack).responses.is_empty());
        assert_eq!(conn.status()[&ResourceType::Route].nack, None);
        assert_eq!(conn.status()[&ResourceType::Route].acked, None);
    }

    #[test]
    fn streams_asking_for_a_whole_set_share_its_names_and_keep_no_copy() {
        let set: Arc<ResourceSet> = resources().into();
        let eds = ResourceType::Endpoint;
        let mut streams = [
            SotwConnection::new(set.clone()),
            SotwConnection::new(set.clone()),
        ];
        for stream in &mut streams {
            let outcome = stream.on_request(&request(eds, &[B, A], "", ""));
            assert_eq!(names(&outcome.responses[0]), [A, B]);
        }
        let names = |stream: &SotwConnection| stream.watches[&eds].names.clone().expect("names");
        assert!(Arc::ptr_eq(&names(&streams[0]), &names(&streams[1])));
        for stream in &streams {
            let held = stream.watches[&eds].held.as_ref().expect("held");
            assert!(Arc::ptr_eq(&held.set, set.of(eds)));
            assert!(Arc::ptr_eq(&held.names, &names(stream)));
        }
    }

    #[test]
    fn changed_eds_names_are_answered() {
        let (mut conn, _, eds) = subscribed();
        let both = endpoints_a_and_b(&eds);
        let outcome = conn.on_request(&both);
        assert_eq!(types(&outcome), [ResourceType::Endpoint]);
        // The proxy holds A already; the version covers both.
        assert_eq!(names(&outcome.responses[0]), [B]);
        assert_ne!(outcome.responses[0].version_info, eds.version_info);

        // The same names again (an ACK) send nothing.
        let response = &outcome.responses[0];
        let again = endpoints_a_and_b(response);
        assert!(conn.on_request(&again).responses.is_empty());
    }

    #[test]
    fn a_derived_set_sends_what_the_general_way_sends() {
        use crate::xds::versions::Interner;
        // Two streams holding one set, A and B subscribed and ACKed; then B's assignment
        // changes, made anew for one, derived from the set for the other.
        let interner = Interner::default();
        let before = Arc::new(ResourceSet::interned(resources(), &interner, None));
        let mut general = SotwConnection::new(before.clone());
        let mut derived = SotwConnection::new(before.clone());
        for conn in [&mut general, &mut derived] {
            let cds = conn.on_request(&request(ResourceType::Cluster, &[], "", ""));
            conn.on_request(&ack(ResourceType::Cluster, &cds.responses[0]));
            let eds = conn.on_request(&request(ResourceType::Endpoint, &[A, B], "", ""));
            conn.on_request(&endpoints_a_and_b(&eds.responses[0]));
        }
        let replaced = BTreeMap::from([(B.to_string(), cla(B, 1).into())]);
        let after = Arc::new(before.with_endpoints(replaced, &interner));
        assert!(after.of(ResourceType::Endpoint).derived().is_some());
        let mut changed = resources();
        changed.endpoints.insert(B.into(), cla(B, 1).into());
        let from_general = general.on_resources(changed.into()).responses.remove(0);
        let from_derived = derived.on_resources(after.clone()).responses.remove(0);
        assert_eq!(names(&from_derived), [B]);
        assert_eq!(from_derived.version_info, from_general.version_info);
        assert_eq!(from_derived.resources, from_general.resources);
        // Its ACK, listing the same names, and the same set again send nothing.
        assert!(
            derived
                .on_request(&endpoints_a_and_b(&from_derived))
                .responses
                .is_empty()
        );
        assert!(derived.on_resources(after).responses.is_empty());
    }

    #[test]
    fn acked_eds_gets_only_what_changed() {
        let (mut conn, _, eds) = subscribed();
        let both = endpoints_a_and_b(&eds);
        let added = conn.on_request(&both).responses.remove(0);
        conn.on_request(&endpoints_a_and_b(&added));

        let mut changed = resources();
        changed.endpoints.insert(B.into(), cla(B, 1).into());
        let update = conn
            .on_resources(changed.clone().into())
            .responses
            .remove(0);
        assert_eq!(names(&update), [B]);

        // Until the proxy ACKs, it may not hold what it was sent: the next change sends all.
        changed.endpoints.insert(A.into(), cla(A, 1).into());
        let unacked = conn
            .on_resources(changed.clone().into())
            .responses
            .remove(0);
        assert_eq!(names(&unacked), [A, B]);

        // After a NACK too.
        conn.on_request(&nack(
            ResourceType::Endpoint,
            &[A, B],
            &added.version_info,
            &unacked.nonce,
            "bad",
        ));
        changed.endpoints.insert(A.into(), cla(A, 2).into());
        let after_nack = conn.on_resources(changed.into()).responses.remove(0);
        assert_eq!(names(&after_nack), [A, B]);
    }

    #[test]
    fn updates_go_out_in_ads_order() {
        let mut conn = SotwConnection::new(resources().into());
        let subscriptions = [
            request(ResourceType::Secret, &[CREDENTIAL], "", ""),
            request(ResourceType::Route, &["80"], "", ""),
            request(ResourceType::Listener, &[], "", ""),
            request(ResourceType::Endpoint, &[A], "", ""),
            request(ResourceType::Cluster, &[], "", ""),
        ];
        for subscription in &subscriptions {
            conn.on_request(subscription);
        }
        let mut changed = resources();
        changed.routes.insert("80".into(), route("80", true).into());
        changed
            .listeners
            .insert("0.0.0.0_80".into(), listener("0.0.0.0_80", "x"));
        changed.endpoints.insert(A.into(), cla(A, 1).into());
        changed.clusters.insert(B.into(), cluster(B, "x").into());
        changed
            .secrets
            .insert(CREDENTIAL.into(), secret(CREDENTIAL, "k2"));
        let outcome = conn.on_resources(changed.into());
        assert_eq!(types(&outcome), ResourceType::ALL);
    }

    #[test]
    fn eds_follows_every_cds_response() {
        let (mut conn, _, eds) = subscribed();
        let mut changed = resources();
        changed.clusters.insert(B.into(), cluster(B, "x").into());
        let outcome = conn.on_resources(changed.into());
        assert_eq!(
            types(&outcome),
            [ResourceType::Cluster, ResourceType::Endpoint]
        );
        let resent = &outcome.responses[1];
        assert_eq!(resent.version_info, eds.version_info);
        assert_ne!(resent.nonce, eds.nonce);
        assert_eq!(names(resent), [A]);
    }

    #[test]
    fn eds_refresh_skips_a_rejected_version() {
        let (mut conn, _, eds) = subscribed();
        let mut changed = resources();
        changed.endpoints.insert(A.into(), cla(A, 2).into());
        let update = conn.on_resources(changed.clone().into());
        let rejected = &update.responses[0];
        conn.on_request(&nack(
            ResourceType::Endpoint,
            &[A],
            &eds.version_info,
            &rejected.nonce,
            "bad",
        ));

        changed.clusters.insert(B.into(), cluster(B, "x").into());
        let outcome = conn.on_resources(changed.into());
        assert_eq!(types(&outcome), [ResourceType::Cluster]);
    }

    #[test]
    fn irrelevant_changes_send_nothing() {
        let (mut conn, _, _) = subscribed();
        assert!(conn.on_resources(resources().into()).responses.is_empty());

        // B's endpoints changed, but this proxy only watches A's; listeners are not subscribed.
        let mut changed = resources();
        changed.endpoints.insert(B.into(), cla(B, 3).into());
        changed.listeners.clear();
        let outcome = conn.on_resources(changed.into());
        assert_eq!(outcome, Outcome::default());
    }

    #[test]
    fn names_past_the_limit_are_refused() {
        let mut conn = SotwConnection::new(resources().into());
        conn.limit_names(3);
        // Wildcard types keep no names, whatever the request lists.
        let cds = request(ResourceType::Cluster, &["x", "y", "z", "w"], "", "");
        assert_eq!(conn.on_request(&cds).refused, None);
        let eds = conn.on_request(&request(ResourceType::Endpoint, &[A, B], "", ""));
        assert_eq!(eds.refused, None);
        // Duplicates count once; a type's new names replace its old ones.
        let rds = request(ResourceType::Route, &["80", "80"], "", "");
        assert_eq!(conn.on_request(&rds).refused, None);
        let eds = &eds.responses[0];
        let fewer = request(ResourceType::Endpoint, &[A], &eds.version_info, &eds.nonce);
        assert_eq!(conn.on_request(&fewer).refused, None);
        let more = request(ResourceType::Route, &["80", "9080"], "", "");
        assert_eq!(conn.on_request(&more).refused, None);

        let over = request(ResourceType::Route, &["80", "9080", "443"], "", "");
        let outcome = conn.on_request(&over);
        let refused = Refused::TooManyNames { names: 4, limit: 3 };
        assert_eq!(outcome, Outgoing::too_many_names(4, 3));
        assert_eq!(outcome.refused, Some(refused));
    }

    #[test]
    fn unknown_types_are_reported() {
        let mut conn = SotwConnection::new(resources().into());
        let secret = DiscoveryRequest {
            type_url: "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig".into(),
            ..Default::default()
        };
        let outcome = conn.on_request(&secret);
        assert!(outcome.responses.is_empty());
        assert!(matches!(outcome.events[..], [Event::UnknownType { .. }]));
    }
}

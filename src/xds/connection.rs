//! One ADS stream's state of the world, as a sans-IO state machine: what the proxy subscribed to,
//! what was sent with which version and nonce, what it ACKed or NACKed, and therefore what to send
//! next. Requests and new resources go in; responses to send (in order) and events to report come
//! out. It does no I/O, no async and no translation: the server feeds it the proxy's resources.
//!
//! Versions are content hashes, so identical content always gets the identical version, on every
//! connection and every replica. Each resource is hashed through its canonical proto3 JSON rather
//! than its wire bytes: prost encodes protobuf maps (`typed_per_filter_config`, metadata structs)
//! from `HashMap`s in random order, so equal resources can encode to different bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use xxhash_rust::xxh3::Xxh3;

use crate::envoy_json;
use crate::translate::{self, ResourceType, Resources};

/// What one proxy did with one resource type, for logs, metrics and debug endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeStatus {
    /// The version of the last response sent.
    pub sent: Option<String>,
    /// The version the proxy last ACKed.
    pub acked: Option<String>,
    /// The last rejection, until the proxy ACKs a later response.
    pub nack: Option<Nack>,
}

/// A rejected response: the version the proxy refused and Envoy's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub version: String,
    pub message: String,
}

/// Something the caller should log or count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Ack {
        ty: ResourceType,
        version: String,
    },
    Nack {
        ty: ResourceType,
        version: String,
        message: String,
    },
    /// A request answering a response that was superseded since; ignored.
    Stale {
        ty: ResourceType,
        nonce: String,
    },
    /// A type rudder does not serve (SDS, istio debug types); ignored.
    UnknownType {
        type_url: String,
    },
}

/// What to do after an input: send `responses` in order, report `events`.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub responses: Vec<DiscoveryResponse>,
    pub events: Vec<Event>,
}

/// The ADS state of one stream.
#[derive(Debug)]
pub struct Connection {
    resources: Resources,
    /// Content hash of every current resource, by type and name; reused while a resource is
    /// unchanged so an update only hashes what it changed.
    hashes: BTreeMap<ResourceType, BTreeMap<String, u64>>,
    watches: BTreeMap<ResourceType, Watch>,
    nonces: u64,
}

#[derive(Debug, Default)]
struct Watch {
    /// `None` for the wildcard types (CDS, LDS), which always get everything.
    names: Option<BTreeSet<String>>,
    /// The nonce of the last response; a request carrying any other nonce is stale.
    nonce: String,
    status: TypeStatus,
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

impl Connection {
    pub fn new(resources: Resources) -> Connection {
        let hashes = ResourceType::ALL
            .into_iter()
            .map(|ty| (ty, rehash(&resources, &Resources::default(), None, ty)))
            .collect();
        Connection {
            resources,
            hashes,
            watches: BTreeMap::new(),
            nonces: 0,
        }
    }

    /// Handles one request from the proxy.
    pub fn on_request(&mut self, request: &DiscoveryRequest) -> Outcome {
        let mut outcome = Outcome::default();
        let Some(ty) = ResourceType::from_type_url(&request.type_url) else {
            outcome.events.push(Event::UnknownType {
                type_url: request.type_url.clone(),
            });
            return outcome;
        };
        let names = (!ty.is_wildcard()).then(|| request.resource_names.iter().cloned().collect());

        if request.response_nonce.is_empty() {
            self.watches.entry(ty).or_default().names = names;
            self.push(ty, Reason::Subscribed, &mut outcome);
            return outcome;
        }

        let Some(watch) = self
            .watches
            .get_mut(&ty)
            .filter(|watch| watch.nonce == request.response_nonce)
        else {
            outcome.events.push(Event::Stale {
                ty,
                nonce: request.response_nonce.clone(),
            });
            return outcome;
        };
        match &request.error_detail {
            Some(error) => {
                // The request's version_info is the last version Envoy accepted; the rejected
                // one is what this nonce carried.
                let nack = Nack {
                    version: watch.status.sent.clone().unwrap_or_default(),
                    message: error.message.clone(),
                };
                outcome.events.push(Event::Nack {
                    ty,
                    version: nack.version.clone(),
                    message: nack.message.clone(),
                });
                watch.status.nack = Some(nack);
            }
            None => {
                outcome.events.push(Event::Ack {
                    ty,
                    version: request.version_info.clone(),
                });
                watch.status.acked = Some(request.version_info.clone());
                watch.status.nack = None;
            }
        }
        watch.names = names;
        self.push(ty, Reason::Changed, &mut outcome);
        outcome
    }

    /// Replaces the proxy's resources and sends, in ADS order, every subscribed type whose content
    /// changed.
    pub fn on_resources(&mut self, resources: Resources) -> Outcome {
        for ty in ResourceType::ALL {
            let hashes = rehash(&resources, &self.resources, self.hashes.get(&ty), ty);
            self.hashes.insert(ty, hashes);
        }
        self.resources = resources;
        let mut outcome = Outcome::default();
        for ty in ResourceType::ALL {
            self.push(ty, Reason::Changed, &mut outcome);
        }
        outcome
    }

    /// Per subscribed type, what was sent, ACKed and NACKed.
    pub fn status(&self) -> BTreeMap<ResourceType, TypeStatus> {
        self.watches
            .iter()
            .map(|(ty, watch)| (*ty, watch.status.clone()))
            .collect()
    }

    /// Sends `ty` if `reason` warrants it, then EDS if CDS went out.
    fn push(&mut self, ty: ResourceType, reason: Reason, outcome: &mut Outcome) {
        if self.push_one(ty, reason, outcome) && ty == ResourceType::Cluster {
            self.push_one(ResourceType::Endpoint, Reason::Refresh, outcome);
        }
    }

    fn push_one(&mut self, ty: ResourceType, reason: Reason, outcome: &mut Outcome) -> bool {
        let Some(watch) = self.watches.get(&ty) else {
            return false;
        };
        let selected = self.selected(ty, watch.names.as_ref());
        let version = version(&selected);
        let already_sent = watch.status.sent.as_deref() == Some(version.as_str());
        // Re-sending a rejected version would only be rejected again (go-control-plane#962);
        // wait for the content to change.
        let rejected = watch
            .status
            .nack
            .as_ref()
            .is_some_and(|nack| nack.version == version);
        let send = match reason {
            Reason::Subscribed => true,
            Reason::Changed => !already_sent && !rejected,
            Reason::Refresh => !rejected,
        };
        if !send {
            return false;
        }
        self.nonces += 1;
        let nonce = self.nonces.to_string();
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources: self.encode(ty, &selected),
            type_url: ty.type_url().to_string(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        if let Some(watch) = self.watches.get_mut(&ty) {
            watch.nonce = nonce;
            watch.status.sent = Some(version);
        }
        outcome.responses.push(response);
        true
    }

    /// The (name, hash) of every current resource the subscription covers.
    fn selected(
        &self,
        ty: ResourceType,
        names: Option<&BTreeSet<String>>,
    ) -> BTreeMap<String, u64> {
        let Some(hashes) = self.hashes.get(&ty) else {
            return BTreeMap::new();
        };
        hashes
            .iter()
            .filter(|(name, _)| names.is_none_or(|names| names.contains(*name)))
            .map(|(name, hash)| (name.clone(), *hash))
            .collect()
    }

    fn encode(&self, ty: ResourceType, selected: &BTreeMap<String, u64>) -> Vec<Any> {
        fn pick<M: Message + Name>(
            resources: &BTreeMap<String, M>,
            selected: &BTreeMap<String, u64>,
        ) -> Vec<Any> {
            selected
                .keys()
                .filter_map(|name| resources.get(name))
                .map(translate::any)
                .collect()
        }
        match ty {
            ResourceType::Cluster => pick(&self.resources.clusters, selected),
            ResourceType::Endpoint => pick(&self.resources.endpoints, selected),
            ResourceType::Listener => pick(&self.resources.listeners, selected),
            ResourceType::Route => pick(&self.resources.routes, selected),
        }
    }
}

/// Hashes the resources of one type in `new`, reusing the hash of any resource equal in `old`.
fn rehash(
    new: &Resources,
    old: &Resources,
    old_hashes: Option<&BTreeMap<String, u64>>,
    ty: ResourceType,
) -> BTreeMap<String, u64> {
    fn typed<M: Message + Name + PartialEq>(
        new: &BTreeMap<String, M>,
        old: &BTreeMap<String, M>,
        old_hashes: Option<&BTreeMap<String, u64>>,
    ) -> BTreeMap<String, u64> {
        new.iter()
            .map(|(name, resource)| {
                let reused = old
                    .get(name)
                    .filter(|previous| *previous == resource)
                    .and_then(|_| old_hashes?.get(name).copied());
                (
                    name.clone(),
                    reused.unwrap_or_else(|| resource_hash(resource)),
                )
            })
            .collect()
    }
    match ty {
        ResourceType::Cluster => typed(&new.clusters, &old.clusters, old_hashes),
        ResourceType::Endpoint => typed(&new.endpoints, &old.endpoints, old_hashes),
        ResourceType::Listener => typed(&new.listeners, &old.listeners, old_hashes),
        ResourceType::Route => typed(&new.routes, &old.routes, old_hashes),
    }
}

/// A hash of a resource's content, the same for equal resources whatever their map order.
fn resource_hash<M: Message + Name>(resource: &M) -> u64 {
    let mut hasher = Xxh3::new();
    match envoy_json::to_json(resource) {
        // serde_json objects are BTreeMaps, so the rendering is canonical.
        Ok(json) => {
            hasher.update(b"j");
            // Writing into a hasher cannot fail.
            let _ = serde_json::to_writer(HashWriter(&mut hasher), &json);
        }
        // A type missing from the descriptor pool still gets a version, only one that map order
        // may change.
        Err(_) => {
            hasher.update(b"b");
            hasher.update(&resource.encode_to_vec());
        }
    }
    hasher.digest()
}

/// The version of a response: a hash of the names and content hashes it carries, as hex.
fn version(selected: &BTreeMap<String, u64>) -> String {
    // XXH3 is specified bit for bit, so every replica and release computes the same version.
    let mut hasher = Xxh3::new();
    for (name, hash) in selected {
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(&hash.to_le_bytes());
    }
    format!("{:016x}", hasher.digest())
}

/// Feeds what serde_json writes straight into the hash, without an intermediate buffer.
struct HashWriter<'a>(&'a mut Xxh3);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::core::v3::Metadata;
    use envoy_types::pb::envoy::config::endpoint::v3::{
        ClusterLoadAssignment, LocalityLbEndpoints,
    };
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
    use envoy_types::pb::google::protobuf::{BoolValue, Struct, Value, value::Kind};
    use envoy_types::pb::google::rpc::Status;

    const A: &str = "outbound|80||a.default.svc.cluster.local";
    const B: &str = "outbound|80||b.default.svc.cluster.local";

    fn cluster(name: &str, stat: &str) -> Cluster {
        Cluster {
            name: name.to_string(),
            alt_stat_name: stat.to_string(),
            ..Default::default()
        }
    }

    fn cla(name: &str, priority: u32) -> ClusterLoadAssignment {
        ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                priority,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn listener(name: &str, stat: &str) -> Listener {
        Listener {
            name: name.to_string(),
            stat_prefix: stat.to_string(),
            ..Default::default()
        }
    }

    fn route(name: &str, validate: bool) -> RouteConfiguration {
        RouteConfiguration {
            name: name.to_string(),
            validate_clusters: Some(BoolValue { value: validate }),
            ..Default::default()
        }
    }

    fn resources() -> Resources {
        Resources {
            clusters: [(A, cluster(A, "")), (B, cluster(B, ""))]
                .map(|(name, c)| (name.to_string(), c))
                .into(),
            endpoints: [(A, cla(A, 0)), (B, cla(B, 0))]
                .map(|(name, c)| (name.to_string(), c))
                .into(),
            listeners: [("0.0.0.0_80", listener("0.0.0.0_80", ""))]
                .map(|(name, l)| (name.to_string(), l))
                .into(),
            routes: [("80", route("80", false)), ("9080", route("9080", false))]
                .map(|(name, r)| (name.to_string(), r))
                .into(),
        }
    }

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
            error_detail: Some(Status {
                code: 3,
                message: message.to_string(),
                details: Vec::new(),
            }),
            ..request(ty, names, version, nonce)
        }
    }

    fn ack(ty: ResourceType, response: &DiscoveryResponse) -> DiscoveryRequest {
        request(ty, &[], &response.version_info, &response.nonce)
    }

    fn types(outcome: &Outcome) -> Vec<ResourceType> {
        outcome
            .responses
            .iter()
            .filter_map(|response| ResourceType::from_type_url(&response.type_url))
            .collect()
    }

    fn names(response: &DiscoveryResponse) -> Vec<String> {
        response
            .resources
            .iter()
            .map(|any| match ResourceType::from_type_url(&any.type_url) {
                Some(ResourceType::Endpoint) => {
                    ClusterLoadAssignment::decode(any.value.as_slice())
                        .unwrap()
                        .cluster_name
                }
                Some(ResourceType::Cluster) => Cluster::decode(any.value.as_slice()).unwrap().name,
                Some(ResourceType::Route) => {
                    RouteConfiguration::decode(any.value.as_slice())
                        .unwrap()
                        .name
                }
                Some(ResourceType::Listener) => {
                    Listener::decode(any.value.as_slice()).unwrap().name
                }
                None => panic!("unexpected type {}", any.type_url),
            })
            .collect()
    }

    /// A connection subscribed to CDS and EDS (for A), with both ACKed.
    fn subscribed() -> (Connection, DiscoveryResponse, DiscoveryResponse) {
        let mut conn = Connection::new(resources());
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
        let mut conn = Connection::new(resources());
        let cds = conn.on_request(&request(ResourceType::Cluster, &[], "", ""));
        assert_eq!(types(&cds), [ResourceType::Cluster]);
        let response = &cds.responses[0];
        assert_eq!(names(response), [A, B]);
        assert_eq!(response.version_info.len(), 16);
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
        let mut one = Connection::new(resources());
        let mut two = Connection::new(resources());
        let first = one.on_request(&request(ResourceType::Cluster, &[], "", ""));
        let second = two.on_request(&request(ResourceType::Cluster, &[], "", ""));
        assert_eq!(
            first.responses[0].version_info,
            second.responses[0].version_info
        );

        let mut changed = resources();
        changed.clusters.insert(A.to_string(), cluster(A, "other"));
        let mut three = Connection::new(changed);
        let third = three.on_request(&request(ResourceType::Cluster, &[], "", ""));
        assert_ne!(
            first.responses[0].version_info,
            third.responses[0].version_info
        );
    }

    #[test]
    fn hashes_ignore_map_order() {
        let with_metadata = |keys: &[&str]| {
            let fields = keys
                .iter()
                .map(|key| {
                    let value = Value {
                        kind: Some(Kind::StringValue(key.to_string())),
                    };
                    (key.to_string(), value)
                })
                .collect();
            Cluster {
                metadata: Some(Metadata {
                    filter_metadata: [("istio".to_string(), Struct { fields })].into(),
                    ..Default::default()
                }),
                ..cluster(A, "")
            }
        };
        let keys: Vec<String> = (0..16).map(|i| format!("key{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let reversed: Vec<&str> = keys.iter().rev().copied().collect();
        let expected = resource_hash(&with_metadata(&keys));
        for _ in 0..8 {
            assert_eq!(resource_hash(&with_metadata(&reversed)), expected);
        }
    }

    #[test]
    fn acked_content_is_not_resent() {
        let (mut conn, cds, _) = subscribed();
        let status = conn.status();
        assert_eq!(
            status[&ResourceType::Cluster].acked.as_ref(),
            Some(&cds.version_info)
        );
        assert!(conn.on_resources(resources()).responses.is_empty());
    }

    #[test]
    fn ack_is_reported() {
        let mut conn = Connection::new(resources());
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
        let mut conn = Connection::new(resources());
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
        other.clusters.insert(A.to_string(), cluster(A, "changed"));
        assert!(conn.on_resources(other.clone()).responses.is_empty());

        // Changed listeners are sent; their ACK clears the rejection.
        other
            .listeners
            .insert("0.0.0.0_80".into(), listener("0.0.0.0_80", "fixed"));
        let fixed = conn.on_resources(other);
        assert_eq!(types(&fixed), [ResourceType::Listener]);
        assert_ne!(fixed.responses[0].version_info, lds.version_info);
        conn.on_request(&ack(ResourceType::Listener, &fixed.responses[0]));
        assert_eq!(conn.status()[&ResourceType::Listener].nack, None);
    }

    #[test]
    fn stale_nonce_is_ignored() {
        let mut conn = Connection::new(resources());
        let first = conn.on_request(&request(ResourceType::Route, &["80"], "", ""));
        let first = first.responses[0].clone();
        let mut changed = resources();
        changed.routes.insert("80".into(), route("80", true));
        let second = conn.on_resources(changed);
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
    fn changed_eds_names_are_answered() {
        let (mut conn, _, eds) = subscribed();
        let both = request(
            ResourceType::Endpoint,
            &[A, B],
            &eds.version_info,
            &eds.nonce,
        );
        let outcome = conn.on_request(&both);
        assert_eq!(types(&outcome), [ResourceType::Endpoint]);
        assert_eq!(names(&outcome.responses[0]), [A, B]);

        // The same names again (an ACK) send nothing.
        let response = &outcome.responses[0];
        let again = request(
            ResourceType::Endpoint,
            &[A, B],
            &response.version_info,
            &response.nonce,
        );
        assert!(conn.on_request(&again).responses.is_empty());
    }

    #[test]
    fn updates_go_out_in_ads_order() {
        let mut conn = Connection::new(resources());
        let subscriptions = [
            request(ResourceType::Route, &["80"], "", ""),
            request(ResourceType::Listener, &[], "", ""),
            request(ResourceType::Endpoint, &[A], "", ""),
            request(ResourceType::Cluster, &[], "", ""),
        ];
        for subscription in &subscriptions {
            conn.on_request(subscription);
        }
        let mut changed = resources();
        changed.routes.insert("80".into(), route("80", true));
        changed
            .listeners
            .insert("0.0.0.0_80".into(), listener("0.0.0.0_80", "x"));
        changed.endpoints.insert(A.into(), cla(A, 1));
        changed.clusters.insert(B.into(), cluster(B, "x"));
        let outcome = conn.on_resources(changed);
        assert_eq!(types(&outcome), ResourceType::ALL);
    }

    #[test]
    fn eds_follows_every_cds_response() {
        let (mut conn, _, eds) = subscribed();
        let mut changed = resources();
        changed.clusters.insert(B.into(), cluster(B, "x"));
        let outcome = conn.on_resources(changed);
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
        changed.endpoints.insert(A.into(), cla(A, 2));
        let update = conn.on_resources(changed.clone());
        let rejected = &update.responses[0];
        conn.on_request(&nack(
            ResourceType::Endpoint,
            &[A],
            &eds.version_info,
            &rejected.nonce,
            "bad",
        ));

        changed.clusters.insert(B.into(), cluster(B, "x"));
        let outcome = conn.on_resources(changed);
        assert_eq!(types(&outcome), [ResourceType::Cluster]);
    }

    #[test]
    fn irrelevant_changes_send_nothing() {
        let (mut conn, _, _) = subscribed();
        assert!(conn.on_resources(resources()).responses.is_empty());

        // B's endpoints changed, but this proxy only watches A's; listeners are not subscribed.
        let mut changed = resources();
        changed.endpoints.insert(B.into(), cla(B, 3));
        changed.listeners.clear();
        let outcome = conn.on_resources(changed);
        assert_eq!(outcome, Outcome::default());
    }

    #[test]
    fn unknown_types_are_reported() {
        let mut conn = Connection::new(resources());
        let secret = DiscoveryRequest {
            type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret".into(),
            ..Default::default()
        };
        let outcome = conn.on_request(&secret);
        assert!(outcome.responses.is_empty());
        assert!(matches!(outcome.events[..], [Event::UnknownType { .. }]));
    }
}

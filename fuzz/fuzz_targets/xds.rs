//! Sequences of ADS requests, state of the world or delta, against one stream's sans-IO state
//! machine, with the proxy's resources replaced between requests by a few fixed translations
//! (golden cases). Requests are structured: a served type or garbage, and names, nonces and
//! versions drawn from what the stream has seen (so ACKs, NACKs and subscriptions hit) or
//! garbage.
//!
//! Invariants: no panic; responses only of types the proxy asked for; every nonce non-empty and
//! unique on the stream; the status of a type carries its last response's nonce; what a response
//! carries is the current translation (a whole type for CDS and LDS under state of the world;
//! under delta, each resource once, at its own version, only if subscribed, and removals only of
//! names that no longer exist or are no longer subscribed).

#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use arbitrary::Arbitrary;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::rpc::Status;
use libfuzzer_sys::fuzz_target;
use rudder::model::{LastGood, build};
use rudder::proxy::Proxy;
use rudder::source::file::load_dirs;
use rudder::translate::{ResourceType, Resources, translate};
use rudder::xds::versions::{ResourceSet, resource_version};
use rudder::xds::wire::{DeltaResponse, SotwResponse};
use rudder::xds::{DeltaConnection, SotwConnection, StateMachine};
use serde_json::json;

#[derive(Arbitrary, Debug)]
struct Stream {
    delta: bool,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Request(Request),
    /// The proxy's config changes to one of [`RESOURCE_SETS`].
    Resources(u8),
}

#[derive(Arbitrary, Debug)]
struct Request {
    type_url: TypeUrl,
    /// `version_info` (state of the world only).
    version: Text,
    nonce: Text,
    /// `resource_names`, or delta's `resource_names_subscribe`.
    names: Vec<Text>,
    unsubscribe: Vec<Text>,
    initial_versions: Vec<(Text, Text)>,
    /// A NACK's `error_detail` message.
    error: Option<String>,
}

#[derive(Arbitrary, Debug)]
enum TypeUrl {
    Served(u8),
    Garbage(String),
}

/// A string field of a request.
#[derive(Arbitrary, Debug)]
enum Text {
    Empty,
    /// One of what the stream has seen that fits the field (by index, wrapping).
    Seen(u8),
    Wildcard,
    Garbage(String),
}

impl Text {
    fn resolve(&self, seen: &[String]) -> String {
        match self {
            Text::Empty => String::new(),
            Text::Seen(_) if seen.is_empty() => String::new(),
            Text::Seen(i) => seen[usize::from(*i) % seen.len()].clone(),
            Text::Wildcard => "*".to_string(),
            Text::Garbage(text) => text.clone(),
        }
    }
}

/// The translations a proxy's config switches between: two sidecars of bookinfo (same services,
/// different listeners), a gateway with credentials (Secrets), and nothing.
static RESOURCE_SETS: LazyLock<Vec<Arc<ResourceSet>>> = LazyLock::new(|| {
    let sidecar = "sidecar~127.0.10.1~productpage-v1.bookinfo~bookinfo.svc.cluster.local";
    let router = "router~10.0.0.9~ingress-abc.istio-system~istio-system.svc.cluster.local";
    let none = json!({"INTERCEPTION_MODE": "NONE"});
    let gateway = json!({"LABELS": {"istio": "ingressgateway"}});
    let mut sets: Vec<Arc<ResourceSet>> = [
        ("bookinfo-none", sidecar, none),
        ("bookinfo-redirect", sidecar, json!(null)),
        ("gateway-credentials", router, gateway),
    ]
    .into_iter()
    .map(|(case, id, metadata)| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../testdata/golden")
            .join(case)
            .join("input");
        let built = build(&load_dirs(&[dir]).inputs(), &LastGood::default());
        let proxy = Proxy::parse(id, &metadata)
            .expect("a valid node id")
            .with_workload_labels(&built.model);
        Arc::new(ResourceSet::new(translate(&built.model, &proxy)))
    })
    .collect();
    sets.push(Arc::new(ResourceSet::new(Resources::default())));
    sets
});

/// What the stream has seen, for requests to refer to, and what it promised.
#[derive(Default)]
struct Seen {
    nonces: Vec<String>,
    /// State of the world `version_info`s; delta per-resource versions.
    versions: Vec<String>,
    /// Types the proxy asked for.
    requested: BTreeSet<ResourceType>,
    /// The nonce of the last response of each type.
    last_nonce: BTreeMap<ResourceType, String>,
    /// Delta: what the proxy is subscribed to, by type.
    subscriptions: BTreeMap<ResourceType, Subscription>,
}

/// A delta subscription as the protocol defines it: CDS and LDS are always wildcard; for the
/// other types `*` subscribes to everything and other names to themselves, and a request's
/// subscriptions apply before its unsubscriptions, whatever its nonce.
#[derive(Default)]
struct Subscription {
    wildcard: bool,
    names: BTreeSet<String>,
}

impl Subscription {
    fn apply(&mut self, ty: ResourceType, request: &DeltaDiscoveryRequest) {
        if ty.is_wildcard() {
            self.wildcard = true;
            return;
        }
        for name in &request.resource_names_subscribe {
            match name.as_str() {
                "*" => self.wildcard = true,
                name => {
                    self.names.insert(name.to_string());
                }
            }
        }
        for name in &request.resource_names_unsubscribe {
            match name.as_str() {
                "*" => self.wildcard = false,
                name => {
                    self.names.remove(name);
                }
            }
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

impl Seen {
    fn names(resources: &ResourceSet, ty: Option<ResourceType>) -> Vec<String> {
        ty.map(|ty| {
            resources
                .of(ty)
                .iter()
                .map(|(name, _)| name.to_string())
                .collect()
        })
        .unwrap_or_default()
    }
}

/// One ADS protocol as the target drives it.
trait Protocol: StateMachine {
    /// The request to send for `request`, of `ty` if rudder serves it; `names` are the type's.
    fn request(
        request: &Request,
        type_url: String,
        ty: Option<ResourceType>,
        names: &[String],
        seen: &mut Seen,
    ) -> Self::Request;

    /// Checks a response against the current resources and what the proxy asked for; returns
    /// its type URL and nonce, and adds the versions it carries to `seen`.
    fn check(
        response: &Self::Response,
        resources: &ResourceSet,
        seen: &mut Seen,
    ) -> (String, String);
}

fn texts(texts: &[Text], seen: &[String]) -> Vec<String> {
    texts.iter().map(|text| text.resolve(seen)).collect()
}

fn error_detail(request: &Request) -> Option<Status> {
    request.error.as_ref().map(|message| Status {
        code: 3,
        message: message.clone(),
        details: Vec::new(),
    })
}

impl Protocol for SotwConnection {
    fn request(
        request: &Request,
        type_url: String,
        _: Option<ResourceType>,
        names: &[String],
        seen: &mut Seen,
    ) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: request.version.resolve(&seen.versions),
            resource_names: texts(&request.names, names),
            type_url,
            response_nonce: request.nonce.resolve(&seen.nonces),
            error_detail: error_detail(request),
            ..DiscoveryRequest::default()
        }
    }

    fn check(
        response: &SotwResponse,
        resources: &ResourceSet,
        seen: &mut Seen,
    ) -> (String, String) {
        let ty = ResourceType::from_type_url(&response.type_url).expect("a served type");
        let current = resources.of(ty);
        if ty.is_wildcard() {
            assert_eq!(
                response.resources.len(),
                current.len(),
                "a partial {ty:?} response"
            );
        }
        for resource in &response.resources {
            assert!(
                current
                    .iter()
                    .any(|(_, held)| held.any().as_bytes() == resource.as_bytes()),
                "a {ty:?} response carries a resource that is not in the current set"
            );
        }
        seen.versions.push(response.version_info.clone());
        (response.type_url.clone(), response.nonce.clone())
    }
}

impl Protocol for DeltaConnection {
    fn request(
        request: &Request,
        type_url: String,
        ty: Option<ResourceType>,
        names: &[String],
        seen: &mut Seen,
    ) -> DeltaDiscoveryRequest {
        let delta = DeltaDiscoveryRequest {
            type_url,
            resource_names_subscribe: texts(&request.names, names),
            resource_names_unsubscribe: texts(&request.unsubscribe, names),
            initial_resource_versions: request
                .initial_versions
                .iter()
                .map(|(name, version)| (name.resolve(names), version.resolve(&seen.versions)))
                .collect(),
            response_nonce: request.nonce.resolve(&seen.nonces),
            error_detail: error_detail(request),
            ..DeltaDiscoveryRequest::default()
        };
        if let Some(ty) = ty {
            seen.subscriptions.entry(ty).or_default().apply(ty, &delta);
        }
        delta
    }

    fn check(
        response: &DeltaResponse,
        resources: &ResourceSet,
        seen: &mut Seen,
    ) -> (String, String) {
        let ty = ResourceType::from_type_url(&response.type_url).expect("a served type");
        let current = resources.of(ty);
        let subscription = seen.subscriptions.entry(ty).or_default();
        let mut names = BTreeSet::new();
        for resource in &response.resources {
            assert!(
                names.insert(&resource.name),
                "{ty:?} {} sent twice",
                resource.name
            );
            let held = current
                .get(&resource.name)
                .unwrap_or_else(|| panic!("{ty:?} {} sent but not in the set", resource.name));
            assert_eq!(resource.version, resource_version(held.hash()));
            let any = resource
                .resource
                .as_ref()
                .expect("a resource without its content");
            assert_eq!(any.as_bytes(), held.any().as_bytes());
            assert!(
                subscription.wants(&resource.name),
                "{ty:?} {} unwanted",
                resource.name
            );
            seen.versions.push(resource.version.clone());
        }
        for name in &response.removed_resources {
            let wanted = current.contains(name) && subscription.wants(name);
            assert!(
                !wanted,
                "{ty:?} {name} removed but exists and is subscribed"
            );
            assert!(!names.contains(name), "{ty:?} {name} both sent and removed");
        }
        (response.type_url.clone(), response.nonce.clone())
    }
}

fn run<M: Protocol>(steps: &[Step]) {
    let sets = &*RESOURCE_SETS;
    let mut resources = sets[0].clone();
    let mut stream = M::new(resources.clone());
    let mut seen = Seen::default();
    let mut nonces = BTreeSet::new();
    for step in steps {
        let outcome = match step {
            Step::Request(request) => {
                let (type_url, ty) = match &request.type_url {
                    TypeUrl::Served(i) => {
                        let ty = ResourceType::ALL[usize::from(*i) % ResourceType::ALL.len()];
                        (ty.type_url().to_string(), Some(ty))
                    }
                    TypeUrl::Garbage(url) => (url.clone(), ResourceType::from_type_url(url)),
                };
                seen.requested.extend(ty);
                let names = Seen::names(&resources, ty);
                stream.on_request(&M::request(request, type_url, ty, &names, &mut seen))
            }
            Step::Resources(i) => {
                resources = sets[usize::from(*i) % sets.len()].clone();
                stream.on_resources(resources.clone())
            }
        };
        for response in &outcome.responses {
            let (type_url, nonce) = M::check(response, &resources, &mut seen);
            let ty = ResourceType::from_type_url(&type_url).expect("a served type");
            assert!(seen.requested.contains(&ty), "{ty:?} sent unasked");
            assert!(!nonce.is_empty(), "a response without a nonce");
            assert!(nonces.insert(nonce.clone()), "nonce {nonce} used twice");
            seen.nonces.push(nonce.clone());
            seen.last_nonce.insert(ty, nonce);
        }
        for (ty, status) in stream.status() {
            assert_eq!(
                status.nonce.as_ref(),
                seen.last_nonce.get(&ty),
                "{ty:?} status"
            );
        }
    }
}

fuzz_target!(|stream: Stream| {
    if stream.delta {
        run::<DeltaConnection>(&stream.steps);
    } else {
        run::<SotwConnection>(&stream.steps);
    }
});

//! Versions, shared by both ADS protocols: a content hash per resource, and the version of a set
//! of resources as a hash over their names and content hashes.
//!
//! Versions are content hashes, so identical content always gets the identical version, on every
//! connection, every replica and in both protocols: a delta stream's per-resource versions are the
//! resource hashes, and the version of a set (a state-of-the-world response, or what a delta
//! stream has sent of one type) is the same function of the same hashes. Hashes are 128-bit XXH3,
//! so a collision (a changed resource keeping its version, and never reaching the proxy) is not a
//! practical concern; they are rendered as 32 hex digits.
//!
//! Each resource is hashed through a canonical form of its wire bytes ([`super::canonical`]):
//! prost encodes protobuf maps (`typed_per_filter_config`, metadata structs) from `HashMap`s in
//! random order, so equal resources can encode to different bytes.
//!
//! Resources are encoded and hashed once and shared: a [`ResourceSet`] (what one proxy gets) holds
//! each resource in an `Arc`, and the [`Interner`] hands a translation the resource it already has
//! for any equal one, so proxies whose translations agree share their resources' bytes, and a
//! resource a model change left alone is neither encoded nor hashed again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use xxhash_rust::xxh3::Xxh3;

use super::canonical::canonical_hash;
use super::wire::EncodedAny;
use crate::translate::{self, ResourceType, Resources};

/// A resource's content hash.
pub type Hash = u128;

/// A resource name, shared: every set that holds a resource of that name, and every stream
/// subscribed to it, holds the same string.
pub type Name = Arc<str>;

/// One resource as proxies get it, encoded and hashed once and shared (through `Arc`) by every
/// proxy whose translation produced an equal resource.
#[derive(Debug)]
pub struct Resource {
    pub(super) hash: Hash,
    any: EncodedAny,
    /// For a cluster of type EDS, the name its endpoints are fetched by.
    eds_name: Option<String>,
    /// The resource itself, to recognize an equal one in a later translation.
    content: Content,
}

/// Boxed or shared: the messages differ much in size. Clusters, assignments and route configurations come
/// shared from translation ([`translate::Memo`]), so an equal one is often the very same.
#[derive(Debug)]
enum Content {
    Cluster(Arc<Cluster>),
    Endpoint(Arc<ClusterLoadAssignment>),
    Listener(Box<Listener>),
    Route(Arc<RouteConfiguration>),
    Secret(Box<Secret>),
}

impl PartialEq for Content {
    fn eq(&self, other: &Content) -> bool {
        match (self, other) {
            (Content::Cluster(a), Content::Cluster(b)) => Arc::ptr_eq(a, b) || a == b,
            (Content::Endpoint(a), Content::Endpoint(b)) => Arc::ptr_eq(a, b) || a == b,
            (Content::Listener(a), Content::Listener(b)) => a == b,
            (Content::Route(a), Content::Route(b)) => Arc::ptr_eq(a, b) || a == b,
            (Content::Secret(a), Content::Secret(b)) => a == b,
            _ => false,
        }
    }
}

impl Resource {
    fn new(content: Content) -> Resource {
        let any = match &content {
            Content::Cluster(c) => translate::any(&**c),
            Content::Endpoint(e) => translate::any(&**e),
            Content::Listener(l) => translate::any(&**l),
            Content::Route(r) => translate::any(&**r),
            Content::Secret(s) => translate::any(&**s),
        };
        let hash = any_hash(&any);
        let eds_name = match &content {
            Content::Cluster(cluster) => eds_name(cluster).map(str::to_string),
            _ => None,
        };
        Resource {
            hash,
            any: EncodedAny::new(&any),
            eds_name,
            content,
        }
    }

    /// The content hash.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The resource encoded for the wire.
    pub fn any(&self) -> &EncodedAny {
        &self.any
    }
}

/// The EDS resource name a cluster fetches its endpoints by (its `service_name`, else its own
/// name), if the cluster is of type EDS.
fn eds_name(cluster: &Cluster) -> Option<&str> {
    let eds = ClusterDiscoveryType::Type(DiscoveryType::Eds as i32);
    if cluster.cluster_discovery_type != Some(eds) {
        return None;
    }
    let service_name = cluster
        .eds_cluster_config
        .as_ref()
        .map(|eds| eds.service_name.as_str())
        .filter(|name| !name.is_empty());
    Some(service_name.unwrap_or(&cluster.name))
}

/// The resources of one type that one proxy gets, by name.
#[derive(Debug, Default)]
pub struct TypeSet {
    resources: BTreeMap<Name, Arc<Resource>>,
    /// The set version of all of them, computed once for every stream that sends them all.
    version: OnceLock<String>,
    /// Every name, for the streams that subscribe to all of them ([`TypeSet::names`]).
    all_names: OnceLock<Arc<BTreeSet<Name>>>,
    /// The set this one was made from by replacing (or adding) some resources, when it was: a
    /// stream that holds that set looks at those names alone ([`ResourceSet::with_endpoints`]).
    derived: Option<Derived>,
}

/// How a set was made from an earlier one.
#[derive(Debug)]
pub struct Derived {
    /// The earlier set; compared by identity only.
    pub from: Weak<TypeSet>,
    /// The names whose resource differs from the earlier set's (or that it did not have); every
    /// other name holds the very same resource.
    pub changed: Vec<Name>,
}

impl TypeSet {
    pub fn get(&self, name: &str) -> Option<&Arc<Resource>> {
        self.resources.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.resources.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Every resource, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&Name, &Arc<Resource>)> {
        self.resources.iter()
    }

    /// The content hash of every resource, by name.
    pub fn hashes(&self) -> impl Iterator<Item = (&Name, &Hash)> {
        self.resources
            .iter()
            .map(|(name, resource)| (name, &resource.hash))
    }

    /// `name`, shared with the resource of that name if there is one.
    pub fn name(&self, name: &str) -> Name {
        match self.resources.get_key_value(name) {
            Some((shared, _)) => shared.clone(),
            None => Name::from(name),
        }
    }

    /// The distinct names of `requested`, each shared with the resource of that name if there
    /// is one; exactly this set's names are the set's own list, shared by every stream that asks
    /// for all of it. A proxy that asks for most of the set (Envoy's EDS names are its
    /// clusters') is matched in one pass over both, not a lookup per name.
    pub fn names(&self, requested: &[String]) -> Arc<BTreeSet<Name>> {
        let mut requested: Vec<&str> = requested.iter().map(String::as_str).collect();
        // Envoy lists its names in order, which this sort recognizes in one pass.
        requested.sort_unstable();
        requested.dedup();
        if !self.mostly(requested.len()) {
            return Arc::new(requested.into_iter().map(|name| self.name(name)).collect());
        }
        let mut cursor = self.cursor();
        let mut unknown = false;
        let names: Vec<Name> = requested
            .into_iter()
            .map(|name| match cursor.seek(name) {
                Some((shared, _)) => shared.clone(),
                None => {
                    unknown = true;
                    Name::from(name)
                }
            })
            .collect();
        if !unknown && names.len() == self.resources.len() {
            return self.all_names().clone();
        }
        Arc::new(names.into_iter().collect())
    }

    /// Every name of the set, made once and shared.
    fn all_names(&self) -> &Arc<BTreeSet<Name>> {
        self.all_names
            .get_or_init(|| Arc::new(self.resources.keys().cloned().collect()))
    }

    /// The resources of `names` that the set has, in name order, with the names as `names`
    /// holds them: one pass over both when `names` is most of the set.
    pub fn select<'a>(&'a self, names: &'a BTreeSet<Name>) -> Vec<(&'a Name, &'a Arc<Resource>)> {
        if !self.mostly(names.len()) {
            return names
                .iter()
                .filter_map(|name| Some((name, self.resources.get(name)?)))
                .collect();
        }
        let mut cursor = self.cursor();
        names
            .iter()
            .filter_map(|name| Some((name, cursor.seek(name)?.1)))
            .collect()
    }

    /// Finds names given in increasing order in one pass over the set.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor {
            known: self.resources.iter().peekable(),
        }
    }

    /// Whether `count` names are enough of this set that one pass over it beats a lookup each.
    fn mostly(&self, count: usize) -> bool {
        count.saturating_mul(8) >= self.resources.len()
    }

    /// How this set was made from an earlier one, if it was.
    pub fn derived(&self) -> Option<&Derived> {
        self.derived.as_ref()
    }

    /// The set version of all the resources.
    pub fn version(&self) -> &str {
        self.version.get_or_init(|| set_version(self.hashes()))
    }

    /// The same names holding the very same resources.
    pub fn same_as(&self, other: &TypeSet) -> bool {
        self.resources.len() == other.resources.len()
            && self
                .resources
                .iter()
                .zip(&other.resources)
                .all(|((a, x), (b, y))| a == b && Arc::ptr_eq(x, y))
    }
}

/// One pass over a [`TypeSet`] in name order ([`TypeSet::cursor`]).
pub struct Cursor<'a> {
    known: std::iter::Peekable<std::collections::btree_map::Iter<'a, Name, Arc<Resource>>>,
}

impl<'a> Cursor<'a> {
    /// The resource of `name`, if the set has it; names must come in increasing order. A name
    /// shared with the set compares by pointer before any byte is read.
    pub fn seek(&mut self, name: &str) -> Option<(&'a Name, &'a Arc<Resource>)> {
        let same =
            |known: &Name| std::ptr::eq(known.as_ptr(), name.as_ptr()) && known.len() == name.len();
        while self
            .known
            .next_if(|(known, _)| !same(known) && &***known < name)
            .is_some()
        {}
        self.known
            .next_if(|(known, _)| same(known) || &***known == name)
    }
}

/// Everything one proxy gets, encoded and hashed: what the ADS state machines serve. Shared by
/// every stream of every proxy with the same translation ([`super::cache`]).
#[derive(Debug, Default)]
pub struct ResourceSet {
    /// By type, in [`ResourceType::ALL`] order.
    types: [Arc<TypeSet>; TYPES],
}

impl ResourceSet {
    /// Encodes and hashes a translation on its own, sharing nothing.
    pub fn new(resources: Resources) -> ResourceSet {
        ResourceSet::interned(resources, &Interner::default(), None)
    }

    /// Encodes and hashes a translation, reusing every resource `interner` knows an equal one of
    /// (so that it is neither encoded nor hashed again, and its bytes are shared), and `previous`'
    /// set of a type if that type did not change.
    pub fn interned(
        resources: Resources,
        interner: &Interner,
        previous: Option<&ResourceSet>,
    ) -> ResourceSet {
        let Resources {
            clusters,
            endpoints,
            listeners,
            routes,
            secrets,
        } = resources;
        let contents: [Vec<(String, Content)>; TYPES] = [
            wrap(clusters, Content::Cluster),
            wrap(endpoints, Content::Endpoint),
            wrap(listeners, |l| Content::Listener(Box::new(l))),
            wrap(routes, Content::Route),
            wrap(secrets, |s| Content::Secret(Box::new(s))),
        ];
        let mut types: [Arc<TypeSet>; TYPES] = Default::default();
        for ((ty, contents), slot) in ResourceType::ALL.into_iter().zip(contents).zip(&mut types) {
            let set = TypeSet {
                resources: contents
                    .into_iter()
                    .map(|(name, content)| interner.intern(ty, name, content))
                    .collect(),
                version: OnceLock::new(),
                all_names: OnceLock::new(),
                derived: None,
            };
            *slot = match previous.map(|previous| previous.of(ty)) {
                Some(unchanged) if unchanged.same_as(&set) => unchanged.clone(),
                _ => Arc::new(set),
            };
        }
        ResourceSet { types }
    }

    /// This set with `endpoints` put in place of the assignments of those names (an update after
    /// an endpoint-only change): every other type is this set's own, shared.
    pub fn with_endpoints(
        &self,
        endpoints: BTreeMap<String, Arc<ClusterLoadAssignment>>,
        interner: &Interner,
    ) -> ResourceSet {
        let ty = ResourceType::Endpoint;
        let before = self.of(ty);
        let mut resources: Option<BTreeMap<Name, Arc<Resource>>> = None;
        let mut changed = Vec::new();
        for (name, assignment) in endpoints {
            let (name, resource) = interner.intern(ty, name, Content::Endpoint(assignment));
            if before
                .get(&name)
                .is_some_and(|same| Arc::ptr_eq(same, &resource))
            {
                continue;
            }
            changed.push(name.clone());
            resources
                .get_or_insert_with(|| before.resources.clone())
                .insert(name, resource);
        }
        let mut types = self.types.clone();
        if let Some(resources) = resources {
            // The same names keep the same shared list.
            let all_names = OnceLock::new();
            if let Some(names) = before.all_names.get()
                && changed
                    .iter()
                    .all(|name| before.resources.contains_key(name))
            {
                let _ = all_names.set(names.clone());
            }
            types[type_index(ty)] = Arc::new(TypeSet {
                resources,
                version: OnceLock::new(),
                all_names,
                derived: Some(Derived {
                    from: Arc::downgrade(before),
                    changed,
                }),
            });
        }
        ResourceSet { types }
    }

    /// The resources of one type.
    pub fn of(&self, ty: ResourceType) -> &Arc<TypeSet> {
        &self.types[type_index(ty)]
    }

    /// Whether every type holds the very same resources as in `other`.
    pub fn same_as(&self, other: &ResourceSet) -> bool {
        self.types
            .iter()
            .zip(&other.types)
            .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// The EDS resource name a cluster fetches its endpoints by, if the cluster exists and is of
    /// type EDS.
    pub fn eds_name(&self, cluster: &str) -> Option<&str> {
        self.of(ResourceType::Cluster)
            .get(cluster)?
            .eds_name
            .as_deref()
    }

    /// How many resources of all types.
    pub fn len(&self) -> usize {
        self.types.iter().map(|set| set.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Resources> for Arc<ResourceSet> {
    fn from(resources: Resources) -> Arc<ResourceSet> {
        Arc::new(ResourceSet::new(resources))
    }
}

fn wrap<M>(resources: BTreeMap<String, M>, content: fn(M) -> Content) -> Vec<(String, Content)> {
    resources
        .into_iter()
        .map(|(name, resource)| (name, content(resource)))
        .collect()
}

const TYPES: usize = ResourceType::ALL.len();

fn type_index(ty: ResourceType) -> usize {
    match ty {
        ResourceType::Cluster => 0,
        ResourceType::Endpoint => 1,
        ResourceType::Listener => 2,
        ResourceType::Route => 3,
        ResourceType::Secret => 4,
    }
}

/// Finds, for a freshly translated resource, an equal one already encoded and hashed, so that
/// proxies whose translations agree on a resource share it, and a resource a model change left
/// alone is not encoded or hashed again. Holds resources weakly: one lives as long as some
/// [`ResourceSet`] holds it.
#[derive(Debug, Default)]
pub struct Interner {
    /// By type, then name: the live resources of that name (translations for different proxies
    /// can differ under one name).
    known: Mutex<[HashMap<Name, Vec<Weak<Resource>>>; TYPES]>,
}

impl Interner {
    /// The resource of `name` with `content`, and its name, both shared.
    fn intern(&self, ty: ResourceType, name: String, content: Content) -> (Name, Arc<Resource>) {
        let (shared, candidates): (Option<Name>, Vec<Arc<Resource>>) =
            match self.lock()[type_index(ty)].get_key_value(name.as_str()) {
                Some((shared, known)) => (
                    Some(shared.clone()),
                    known.iter().filter_map(Weak::upgrade).collect(),
                ),
                None => (None, Vec::new()),
            };
        let name = shared.unwrap_or_else(|| Name::from(name));
        // Comparing and hashing happen outside the lock, so translations intern in parallel.
        if let Some(equal) = candidates
            .into_iter()
            .find(|known| known.content == content)
        {
            return (name, equal);
        }
        let resource = Arc::new(Resource::new(content));
        let mut known = self.lock();
        let variants = known[type_index(ty)].entry(name.clone()).or_default();
        variants.retain(|variant| variant.strong_count() > 0);
        variants.push(Arc::downgrade(&resource));
        (name, resource)
    }

    /// Forgets resources no set holds any more.
    pub fn sweep(&self) {
        for known in self.lock().iter_mut() {
            known.retain(|_, variants| {
                variants.retain(|variant| variant.strong_count() > 0);
                !variants.is_empty()
            });
        }
    }

    /// How many distinct resources are alive.
    pub fn live(&self) -> usize {
        self.lock()
            .iter()
            .flat_map(|known| known.values())
            .flatten()
            .filter(|variant| variant.strong_count() > 0)
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [HashMap<Name, Vec<Weak<Resource>>>; TYPES]> {
        // Every change leaves the map consistent, so a panic elsewhere does not poison it.
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A per-resource version as sent on the wire: the content hash in hex.
pub fn resource_version(hash: Hash) -> String {
    format!("{hash:032x}")
}

/// A per-resource version a proxy reports, back to the hash it renders; `None` if it is not one
/// of rudder's (another control plane's, or garbled), which then matches no current resource.
pub fn parse_resource_version(version: &str) -> Option<Hash> {
    if version.len() != 32 {
        return None;
    }
    Hash::from_str_radix(version, 16).ok()
}

/// The version of a set of resources: a hash of their names and content hashes, as hex. A
/// state-of-the-world response carries it; a delta stream reports it for what it has sent.
pub fn set_version<'a, N: AsRef<str> + ?Sized + 'a>(
    resources: impl IntoIterator<Item = (&'a N, &'a Hash)>,
) -> String {
    // XXH3 is specified bit for bit, so every replica and release computes the same version.
    let mut hasher = Xxh3::new();
    for (name, hash) in resources {
        let name = name.as_ref();
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(&hash.to_le_bytes());
    }
    format!("{:032x}", hasher.digest128())
}

/// A digest of a list of names, in their order.
pub fn names_digest<N: AsRef<str>>(names: &[N]) -> Hash {
    let mut hasher = Xxh3::new();
    for name in names {
        let name = name.as_ref();
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
    }
    hasher.digest128()
}

/// A hash of a resource's content, the same for equal resources whatever their map order.
pub fn resource_hash<M: Message + prost::Name>(resource: &M) -> Hash {
    canonical_hash(&M::full_name(), &resource.encode_to_vec())
}

/// [`resource_hash`] of the message an `Any` holds.
fn any_hash(any: &Any) -> Hash {
    let full_name = any.type_url.rsplit_once('/').map_or("", |(_, name)| name);
    canonical_hash(full_name, &any.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::fixtures::{A, cla, cluster, resources};
    use envoy_types::pb::envoy::config::core::v3::Metadata;
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

    /// A set of 100 assignments, `n000` to `n099`.
    fn hundred() -> Arc<TypeSet> {
        let endpoints = (0..100)
            .map(|i| format!("n{i:03}"))
            .map(|name| (name.clone(), cla(&name, 0).into()))
            .collect();
        let set = ResourceSet::new(Resources {
            endpoints,
            ..Resources::default()
        });
        set.of(ResourceType::Endpoint).clone()
    }

    /// `names` and `select` in one pass or by lookups: what a lookup per name gives.
    #[test]
    fn names_and_selections_match_a_lookup_each() {
        let set = hundred();
        let lists: Vec<Vec<String>> = vec![
            (0..100).map(|i| format!("n{i:03}")).collect(),
            (0..100).rev().map(|i| format!("n{i:03}")).collect(),
            // Most of the set, out of order, repeated, with names it does not have.
            (0..60)
                .map(|i| format!("n{:03}", (i * 37) % 100))
                .chain(["a", "n0505", "n050", "zzz", "n099", ""].map(String::from))
                .collect(),
            // A few names: looked up one by one.
            ["n007", "x", "n042"].map(String::from).to_vec(),
            Vec::new(),
        ];
        for requested in lists {
            let names = set.names(&requested);
            // Exactly the set's names are its one shared list.
            let whole = requested.len() == 100 && requested.iter().all(|n| set.contains(n));
            assert_eq!(Arc::ptr_eq(&names, &set.names(&requested)), whole);
            let expected: BTreeSet<&str> = requested.iter().map(String::as_str).collect();
            assert_eq!(
                names.iter().map(|n| &**n).collect::<BTreeSet<_>>(),
                expected
            );
            for name in names.iter() {
                if let Some((shared, _)) = set.resources.get_key_value(name) {
                    assert!(Arc::ptr_eq(shared, name), "{name} is not shared");
                }
            }
            // Names not shared with the set select the same resources.
            let unshared: BTreeSet<Name> =
                requested.iter().map(|n| Name::from(n.as_str())).collect();
            for names in [&*names, &unshared] {
                let selected: Vec<(&str, Hash)> = set
                    .select(names)
                    .into_iter()
                    .map(|(name, resource)| (&**name, resource.hash))
                    .collect();
                let expected: Vec<(&str, Hash)> = names
                    .iter()
                    .filter_map(|name| Some((&**name, set.get(name)?.hash)))
                    .collect();
                assert_eq!(selected, expected);
            }
        }
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
    fn resource_versions_round_trip() {
        let set = ResourceSet::new(resources());
        let hash = set.of(ResourceType::Cluster).get(A).unwrap().hash();
        let version = resource_version(hash);
        assert_eq!(version.len(), 32);
        assert_eq!(parse_resource_version(&version), Some(hash));
        assert_eq!(parse_resource_version("1"), None);
        assert_eq!(parse_resource_version(&"z".repeat(32)), None);
    }

    #[test]
    fn equal_resources_are_encoded_and_hashed_once() {
        let interner = Interner::default();
        let first = ResourceSet::interned(resources(), &interner, None);
        let mut changed = resources();
        changed
            .clusters
            .insert(A.into(), cluster(A, "other").into());
        let second = ResourceSet::interned(changed, &interner, None);
        let clusters = |set: &ResourceSet| set.of(ResourceType::Cluster).clone();
        let (before, after) = (clusters(&first), clusters(&second));
        assert_ne!(after.get(A).unwrap().hash(), before.get(A).unwrap().hash());
        assert_eq!(after.len(), before.len());
        // Every other resource is the very same one, bytes included.
        for (name, resource) in before.iter().filter(|(name, _)| &***name != A) {
            assert!(Arc::ptr_eq(resource, after.get(name).unwrap()), "{name}");
        }
        for ty in [ResourceType::Endpoint, ResourceType::Route] {
            for (name, resource) in first.of(ty).iter() {
                assert!(Arc::ptr_eq(resource, second.of(ty).get(name).unwrap()));
            }
        }
        // Both variants of A are alive, besides the other resources.
        assert_eq!(interner.live(), first.len() + 1);
        drop((first, before, after));
        interner.sweep();
        assert_eq!(interner.live(), second.len());
    }

    #[test]
    fn unchanged_types_are_reused_whole() {
        let interner = Interner::default();
        let first = ResourceSet::interned(resources(), &interner, None);
        let same = ResourceSet::interned(resources(), &interner, Some(&first));
        assert!(same.same_as(&first));
        let mut changed = resources();
        changed.endpoints.insert(A.into(), cla(A, 1).into());
        let next = ResourceSet::interned(changed, &interner, Some(&first));
        assert!(!next.same_as(&first));
        for ty in ResourceType::ALL {
            let reused = Arc::ptr_eq(next.of(ty), first.of(ty));
            assert_eq!(reused, ty != ResourceType::Endpoint, "{ty:?}");
        }
    }

    #[test]
    fn set_versions_depend_on_names_and_content() {
        let set = ResourceSet::new(resources());
        let clusters = set.of(ResourceType::Cluster);
        let all: BTreeMap<String, Hash> = clusters
            .hashes()
            .map(|(n, h)| (n.to_string(), *h))
            .collect();
        let first: BTreeMap<String, Hash> =
            all.iter().take(1).map(|(n, h)| (n.clone(), *h)).collect();
        assert_eq!(set_version(&all), clusters.version());
        assert_ne!(set_version(&all), set_version(&first));
        assert_eq!(clusters.version().len(), 32);
        assert_eq!(set.eds_name(A), Some(A));
        assert_eq!(set.eds_name("missing"), None);
        let mut static_cluster = resources();
        if let Some(cluster) = static_cluster.clusters.get_mut(A) {
            Arc::make_mut(cluster).cluster_discovery_type = None;
        }
        assert_eq!(ResourceSet::new(static_cluster).eds_name(A), None);
    }
}

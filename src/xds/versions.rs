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
//! Each resource is hashed through its canonical proto3 JSON rather than its wire bytes: prost
//! encodes protobuf maps (`typed_per_filter_config`, metadata structs) from `HashMap`s in random
//! order, so equal resources can encode to different bytes.

use std::collections::BTreeMap;
use std::io;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use xxhash_rust::xxh3::Xxh3;

use crate::envoy_json;
use crate::translate::{self, ResourceType, Resources};

/// A resource's content hash.
pub type Hash = u128;

/// One proxy's current resources, with the content hash of each, by type and name.
#[derive(Debug, Default)]
pub struct Store {
    resources: Resources,
    hashes: BTreeMap<ResourceType, BTreeMap<String, Hash>>,
}

impl Store {
    pub fn new(resources: Resources) -> Store {
        let mut store = Store::default();
        store.update(resources);
        store
    }

    /// Replaces the resources, hashing only those that changed: an unchanged resource keeps its
    /// hash, so an update costs what it changed.
    pub fn update(&mut self, resources: Resources) {
        for ty in ResourceType::ALL {
            let hashes = rehash(&resources, &self.resources, self.hashes.get(&ty), ty);
            self.hashes.insert(ty, hashes);
        }
        self.resources = resources;
    }

    /// The content hash of every current resource of `ty`, by name.
    pub fn hashes(&self, ty: ResourceType) -> &BTreeMap<String, Hash> {
        static EMPTY: BTreeMap<String, Hash> = BTreeMap::new();
        self.hashes.get(&ty).unwrap_or(&EMPTY)
    }

    /// One current resource, encoded for the wire.
    pub fn encode(&self, ty: ResourceType, name: &str) -> Option<Any> {
        match ty {
            ResourceType::Cluster => self.resources.clusters.get(name).map(translate::any),
            ResourceType::Endpoint => self.resources.endpoints.get(name).map(translate::any),
            ResourceType::Listener => self.resources.listeners.get(name).map(translate::any),
            ResourceType::Route => self.resources.routes.get(name).map(translate::any),
        }
    }

    /// The EDS resource name a cluster fetches its endpoints by (its `service_name`, else its
    /// own name), if the cluster exists and is of type EDS.
    pub fn eds_name(&self, cluster: &str) -> Option<&str> {
        let cluster: &Cluster = self.resources.clusters.get(cluster)?;
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
pub fn set_version<'a>(resources: impl IntoIterator<Item = (&'a String, &'a Hash)>) -> String {
    // XXH3 is specified bit for bit, so every replica and release computes the same version.
    let mut hasher = Xxh3::new();
    for (name, hash) in resources {
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(&hash.to_le_bytes());
    }
    format!("{:032x}", hasher.digest128())
}

/// Hashes the resources of one type in `new`, reusing the hash of any resource equal in `old`.
fn rehash(
    new: &Resources,
    old: &Resources,
    old_hashes: Option<&BTreeMap<String, Hash>>,
    ty: ResourceType,
) -> BTreeMap<String, Hash> {
    fn typed<M: Message + Name + PartialEq>(
        new: &BTreeMap<String, M>,
        old: &BTreeMap<String, M>,
        old_hashes: Option<&BTreeMap<String, Hash>>,
    ) -> BTreeMap<String, Hash> {
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
pub fn resource_hash<M: Message + Name>(resource: &M) -> Hash {
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
    hasher.digest128()
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
    use crate::xds::fixtures::{A, cluster, resources};
    use envoy_types::pb::envoy::config::core::v3::Metadata;
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};

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
        let store = Store::new(resources());
        let hash = store.hashes(ResourceType::Cluster)[A];
        let version = resource_version(hash);
        assert_eq!(version.len(), 32);
        assert_eq!(parse_resource_version(&version), Some(hash));
        assert_eq!(parse_resource_version("1"), None);
        assert_eq!(parse_resource_version(&"z".repeat(32)), None);
    }

    #[test]
    fn updates_rehash_only_what_changed() {
        let mut store = Store::new(resources());
        let before = store.hashes(ResourceType::Cluster).clone();
        let mut changed = resources();
        changed.clusters.insert(A.into(), cluster(A, "other"));
        store.update(changed);
        let after = store.hashes(ResourceType::Cluster);
        assert_ne!(after[A], before[A]);
        assert_eq!(after.len(), before.len());
        assert!(
            after
                .iter()
                .all(|(name, hash)| name == A || before[name] == *hash)
        );
    }

    #[test]
    fn set_versions_depend_on_names_and_content() {
        let store = Store::new(resources());
        let all = store.hashes(ResourceType::Cluster);
        let first: BTreeMap<String, Hash> =
            all.iter().take(1).map(|(n, h)| (n.clone(), *h)).collect();
        assert_eq!(set_version(all), set_version(&all.clone()));
        assert_ne!(set_version(all), set_version(&first));
        assert_eq!(set_version(all).len(), 32);
        assert_eq!(store.eds_name(A), Some(A));
        assert_eq!(store.eds_name("missing"), None);
        let mut static_cluster = resources();
        static_cluster
            .clusters
            .get_mut(A)
            .unwrap()
            .cluster_discovery_type = None;
        assert_eq!(Store::new(static_cluster).eds_name(A), None);
    }
}

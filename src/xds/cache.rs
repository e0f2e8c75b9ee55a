//! One translation per kind of proxy per snapshot: proxies that would receive identical config
//! share one translation and one encoded, hashed copy of each resource.
//!
//! A translation depends on the model and on the few things about a proxy that `translate` reads,
//! the [`ProxyKey`]: its kind, namespace, labels, interception mode, DNS domain and locality, and
//! what the translation reads of its addresses ([`AddressKey`]: their families and the workload
//! at them, and the addresses themselves only where the translation writes or compares them),
//! not its id or pod name. The Sidecar scope (`translate::scope`) reads the kind, namespace,
//! labels and interception mode, all in the key. So every sidecar of one Deployment shares one
//! translation, unless its own address is a headless service's endpoint, a ServiceEntry's
//! endpoint, or a Sidecar ingress default endpoint. The
//! cache holds the current snapshot's translations by key; the first stream to ask for a key
//! translates (on the blocking pool, at most one translation per CPU at a time) while streams
//! asking for the same key wait for it. Resources are interned ([`Interner`]), so proxies with
//! different keys still share every resource their translations agree on, and a resource a model
//! change left alone is not encoded or hashed again. A translation equal to the key's previous
//! one is that very [`ResourceSet`], which lets a stream see at once that nothing changed for it.
//!
//! When a snapshot changed only endpoints ([`EndpointChange`]), a key's new set is its previous
//! one with the ClusterLoadAssignments of the changed hosts made again from the view the previous
//! translation kept (`translate::update_endpoints`): no scope, cluster, listener or route is
//! made, and every other type stays the very same `TypeSet`. A key no stream asked for in the
//! previous snapshot, or a proxy at an address whose Pod or ServiceEntry endpoints changed, is
//! translated in full.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::{OnceCell, Semaphore};

use super::hook::{self, ResourcesHook};
use super::versions::{Interner, ResourceSet};
use super::{EndpointChange, Snapshot};
use crate::model::{Locality, Model};
use crate::proxy::{InterceptionMode, Proxy, ProxyKind, SecretAccess};
use crate::translate::{self, AddressKey, AddressReads, Memo, ProxyView, ResourceType};

/// What a proxy's translation depends on besides the model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProxyKey {
    kind: ProxyKind,
    namespace: String,
    labels: BTreeMap<String, String>,
    interception: InterceptionMode,
    dns_domain: String,
    locality: Locality,
    secret_access: SecretAccess,
    /// What the translation reads of the proxy's addresses.
    addresses: AddressKey,
    /// The proxy's own id, when a test hook may rewrite each proxy's translation differently.
    id: Option<String>,
}

impl ProxyKey {
    /// The key of `proxy` (after [`Proxy::with_workload_labels`]), with what its translation
    /// reads of its addresses; `per_proxy` keys it by its id too, sharing nothing.
    pub fn new(proxy: &Proxy, addresses: AddressKey, per_proxy: bool) -> ProxyKey {
        // Every field is named, so that a new one has to be sorted into the key or out of it.
        // Out only if `translate` never reads it: proxies would get each other's config.
        let Proxy {
            id,
            kind,
            // In `addresses`, as far as the translation reads them.
            ips: _,
            pod_name: _,
            namespace,
            labels,
            interception,
            dns_domain,
            locality,
            secret_access,
        } = proxy;
        ProxyKey {
            kind: *kind,
            namespace: namespace.clone(),
            labels: labels.clone(),
            interception: *interception,
            dns_domain: dns_domain.clone(),
            locality: locality.clone(),
            secret_access: *secret_access,
            addresses,
            id: per_proxy.then(|| id.clone()),
        }
    }
}

/// Translations shared by every stream of one xDS server.
#[derive(Debug)]
pub struct Cache {
    state: Mutex<State>,
    interner: Arc<Interner>,
    /// Clusters, assignments and route configurations shared across keys and models.
    memo: Arc<Memo>,
    /// Translations are CPU-bound: more at once than CPUs only holds more memory.
    translating: Arc<Semaphore>,
    hook: Option<ResourcesHook>,
    translations: AtomicU64,
    endpoint_updates: AtomicU64,
}

/// One key's resources, with the view its endpoints were made from (none from a hook).
#[derive(Debug, Clone)]
struct Translated {
    set: Arc<ResourceSet>,
    view: Option<Arc<ProxyView>>,
}

type Slot = Arc<OnceCell<Translated>>;

/// A key's translation for the previous model: the set while a stream still holds it, the view
/// for one model change.
#[derive(Debug)]
struct Previous {
    set: Weak<ResourceSet>,
    view: Option<Arc<ProxyView>>,
}

/// What a new translation may start from.
struct Base {
    set: Arc<ResourceSet>,
    /// The view and the change, when the key's EDS alone needs updating.
    update: Option<(Arc<ProxyView>, EndpointChange)>,
}

#[derive(Debug, Default)]
struct State {
    /// The model the current translations are of.
    model: Option<Arc<Model>>,
    /// What translations compare proxies' addresses with in `model`.
    address_reads: AddressReads,
    generation: u64,
    current: HashMap<ProxyKey, Slot>,
    /// The previous model's translations.
    previous: HashMap<ProxyKey, Previous>,
    /// The model `previous` translated.
    previous_model: Weak<Model>,
    /// `current` is pruned of translations no stream holds when it grows to this size.
    prune_at: usize,
}

const MIN_PRUNE_AT: usize = 64;

impl Cache {
    /// A cache whose translations go through `hook` (tests only); with a hook, translations are
    /// per proxy, since a hook may treat each proxy differently.
    pub fn new(hook: Option<ResourcesHook>) -> Cache {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Cache {
            state: Mutex::new(State {
                prune_at: MIN_PRUNE_AT,
                ..State::default()
            }),
            interner: Arc::default(),
            memo: Arc::default(),
            translating: Arc::new(Semaphore::new(cpus)),
            hook,
            translations: AtomicU64::new(0),
            endpoint_updates: AtomicU64::new(0),
        }
    }

    /// What `proxy` gets from `snapshot`: the shared translation of its key, made now if no
    /// stream asked for it yet.
    pub async fn resources(&self, snapshot: &Snapshot, proxy: &Proxy) -> Arc<ResourceSet> {
        let Some((slot, base)) = self.slot(snapshot, proxy) else {
            // A stream behind the newest snapshot (it will catch up): not worth keeping.
            return self.translate(&snapshot.model, proxy, None).await.set;
        };
        let base = base.map(|mut base| {
            // A proxy at an address whose workload or entry endpoints changed needs more than EDS.
            if let Some((_, change)) = &base.update
                && proxy.ips.iter().any(|ip| change.addresses.contains(ip))
            {
                base.update = None;
            }
            base
        });
        let translated = slot
            .get_or_init(|| self.translate(&snapshot.model, proxy, base))
            .await;
        translated.set.clone()
    }

    /// The slot of `key` in `snapshot`, with the key's previous translation if there is one to
    /// start from; `None` if `snapshot` is older than the cache's.
    fn slot(&self, snapshot: &Snapshot, proxy: &Proxy) -> Option<(Slot, Option<Base>)> {
        let mut state = self.lock();
        let current = state
            .model
            .as_ref()
            .is_some_and(|model| Arc::ptr_eq(model, &snapshot.model));
        if !current {
            if snapshot.generation < state.generation {
                return None;
            }
            state.rotate(snapshot);
            self.interner.sweep();
        }
        let addresses = state.address_reads.key(&snapshot.model, proxy);
        let key = ProxyKey::new(proxy, addresses, self.hook.is_some());
        // The change applies to the previous translations only if it starts from their model.
        let change = snapshot
            .endpoint_change
            .as_ref()
            .filter(|change| change.base.ptr_eq(&state.previous_model));
        let base = state.previous.get(&key).and_then(|previous| {
            let set = previous.set.upgrade()?;
            let update = match (&previous.view, change) {
                (Some(view), Some(change)) => Some((view.clone(), change.clone())),
                _ => None,
            };
            Some(Base { set, update })
        });
        let slot = state.slot(key);
        drop(state);
        if !current {
            // Outside the lock: what it drops, no proxy holds, and freeing it takes time.
            self.memo.sweep();
        }
        Some((slot, base))
    }

    /// How many full translations this cache made.
    pub fn translations(&self) -> u64 {
        self.translations.load(Ordering::Relaxed)
    }

    /// How many translations were endpoint updates of an earlier one.
    pub fn endpoint_updates(&self) -> u64 {
        self.endpoint_updates.load(Ordering::Relaxed)
    }

    /// Translates on the blocking pool, or updates the base's endpoints when that is all that
    /// changed; returns the base's set if the result is the same.
    async fn translate(&self, model: &Arc<Model>, proxy: &Proxy, base: Option<Base>) -> Translated {
        // The semaphore is never closed.
        let _permit = self.translating.acquire().await.ok();
        let (model, proxy) = (model.clone(), proxy.clone());
        let (interner, memo, hook) = (self.interner.clone(), self.memo.clone(), self.hook.clone());
        let (previous, update) = match base {
            Some(Base { set, update }) => (Some(set), update),
            None => (None, None),
        };
        let counter = match update {
            Some(_) => &self.endpoint_updates,
            None => &self.translations,
        };
        let keep = previous.clone();
        let translated = tokio::task::spawn_blocking(move || match (keep, update) {
            (Some(previous), Some((view, change))) => {
                let names = previous.of(ResourceType::Endpoint);
                let names = names.iter().map(|(name, _)| &**name);
                let (endpoints, view) =
                    translate::update_endpoints(&view, &model, &proxy, &change.hosts, names, &memo);
                (previous.with_endpoints(endpoints, &interner), Some(view))
            }
            (keep, _) => match &hook {
                Some(hook) => {
                    let resources = hook::translate(&model, &proxy, Some(hook));
                    (
                        ResourceSet::interned(resources, &interner, keep.as_deref()),
                        None,
                    )
                }
                None => {
                    let (resources, view) = translate::translate_with_view(&model, &proxy, &memo);
                    let set = ResourceSet::interned(resources, &interner, keep.as_deref());
                    (set, Some(view))
                }
            },
        })
        .await;
        counter.fetch_add(1, Ordering::Relaxed);
        let (set, view) = match translated {
            Ok(translated) => translated,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Only a runtime shutting down cancels blocking tasks.
            Err(_) => (ResourceSet::default(), None),
        };
        let set = match previous {
            Some(previous) if set.same_as(&previous) => previous,
            _ => Arc::new(set),
        };
        Translated {
            set,
            view: view.map(Arc::new),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change leaves the state consistent, so a panic elsewhere does not poison it.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Moves on to `snapshot`'s model; the current translations become the previous ones.
    fn rotate(&mut self, snapshot: &Snapshot) {
        self.previous = self
            .current
            .drain()
            .filter_map(|(key, slot)| {
                let translated = slot.get()?;
                // A set only this slot holds goes with it: nothing will start from its view.
                let held = Arc::strong_count(&translated.set) > 1;
                let previous = Previous {
                    set: Arc::downgrade(&translated.set),
                    view: translated.view.clone().filter(|_| held),
                };
                Some((key, previous))
            })
            .collect();
        self.previous_model = self.model.as_ref().map(Arc::downgrade).unwrap_or_default();
        self.model = Some(snapshot.model.clone());
        self.address_reads = AddressReads::of(&snapshot.model);
        self.generation = snapshot.generation;
        self.prune_at = MIN_PRUNE_AT;
    }

    fn slot(&mut self, key: ProxyKey) -> Slot {
        if let Some(slot) = self.current.get(&key) {
            return slot.clone();
        }
        if self.current.len() >= self.prune_at {
            // Keys whose proxies all left; a translation still being made is kept.
            self.current
                .retain(|_, slot| slot.get().is_none_or(|t| Arc::strong_count(&t.set) > 1));
            self.prune_at = MIN_PRUNE_AT.max(2 * self.current.len());
        }
        self.current.entry(key).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::{Value, json};

    use super::*;
    use crate::model::{LastGood, build};
    use crate::source::file::load_dirs;
    use crate::translate::{self, ResourceType};

    fn bookinfo() -> Arc<Snapshot> {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/bookinfo"));
        let built = build(&load_dirs(&[dir]).inputs(), &LastGood::default());
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        Arc::new(Snapshot {
            model: Arc::new(built.model),
            generation: 1,
            ..Snapshot::default()
        })
    }

    fn proxy(ip: &str, pod: &str, metadata: Value) -> Proxy {
        let id = format!("sidecar~{ip}~{pod}.bookinfo~bookinfo.svc.cluster.local");
        Proxy::parse(&id, &metadata).unwrap()
    }

    fn labelled(ip: &str, pod: &str, app: &str) -> Proxy {
        let metadata = json!({"NAMESPACE": "bookinfo", "LABELS": {"app": app, "version": "v1"}});
        proxy(ip, pod, metadata)
    }

    #[test]
    fn the_key_holds_everything_translation_reads() {
        let snapshot = bookinfo();
        let model = &snapshot.model;
        let reads = AddressReads::of(model);
        let key =
            |proxy: &Proxy, per_proxy| ProxyKey::new(proxy, reads.key(model, proxy), per_proxy);
        // Same key, different id, pod and IPs: the same translation, on a model with routing
        // rules that match on source labels and namespaces.
        let one = labelled("10.0.0.1", "productpage-v1-a", "productpage");
        let two = labelled("10.0.0.2", "productpage-v1-b", "productpage");
        assert_eq!(key(&one, false), key(&two, false));
        assert_eq!(
            translate::translate(model, &one),
            translate::translate(model, &two)
        );
        assert_ne!(key(&one, true), key(&two, true));
        let other = labelled("10.0.0.1", "productpage-v1-a", "reviews");
        assert_ne!(key(&one, false), key(&other, false));
        // The address family decides a DNS cluster's lookups.
        let ipv6 = labelled("fd00::1", "productpage-v1-c", "productpage");
        assert_ne!(key(&one, false), key(&ipv6, false));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn proxies_with_one_key_share_one_translation() {
        let snapshot = bookinfo();
        let cache = Arc::new(Cache::new(None));
        let asking: Vec<_> = (0..50)
            .map(|i| {
                let (cache, snapshot) = (cache.clone(), snapshot.clone());
                tokio::spawn(async move {
                    let proxy = labelled(&format!("10.0.1.{i}"), &format!("pp-{i}"), "productpage");
                    cache.resources(&snapshot, &proxy).await
                })
            })
            .collect();
        let mut sets = Vec::new();
        for asking in asking {
            sets.push(asking.await.unwrap());
        }
        assert_eq!(cache.translations(), 1);
        assert!(sets.iter().all(|set| Arc::ptr_eq(set, &sets[0])));
        assert!(!sets[0].is_empty());
    }

    #[tokio::test]
    async fn different_keys_share_equal_resources() {
        let snapshot = bookinfo();
        let cache = Cache::new(None);
        let productpage = labelled("10.0.0.1", "pp", "productpage");
        let reviews = labelled("10.0.0.2", "rv", "reviews");
        let one = cache.resources(&snapshot, &productpage).await;
        let two = cache.resources(&snapshot, &reviews).await;
        assert_eq!(cache.translations(), 2);
        assert!(!Arc::ptr_eq(&one, &two));
        let clusters = |set: &ResourceSet| set.of(ResourceType::Cluster).clone();
        let (a, b) = (clusters(&one), clusters(&two));
        assert!(!a.is_empty());
        for (name, resource) in a.iter() {
            assert!(Arc::ptr_eq(resource, b.get(name).unwrap()), "{name}");
        }
    }

    #[tokio::test]
    async fn a_model_that_changes_nothing_for_a_proxy_gives_it_the_same_set() {
        let snapshot = bookinfo();
        let cache = Cache::new(None);
        let proxy = labelled("10.0.0.1", "pp", "productpage");
        let first = cache.resources(&snapshot, &proxy).await;
        // An equal model, published anew: translated again, found the same.
        let next = Arc::new(Snapshot {
            model: Arc::new((*snapshot.model).clone()),
            generation: 2,
            ..Snapshot::default()
        });
        let second = cache.resources(&next, &proxy).await;
        assert_eq!(cache.translations(), 2);
        assert!(Arc::ptr_eq(&first, &second));
        // An older snapshot is still answered, without disturbing the cache.
        let stale = cache.resources(&snapshot, &proxy).await;
        for ty in ResourceType::ALL {
            assert!(stale.of(ty).same_as(first.of(ty)), "{ty:?}");
        }
        let again = cache.resources(&next, &proxy).await;
        assert!(Arc::ptr_eq(&again, &second));
        assert_eq!(cache.translations(), 3);
    }

    /// `snapshot`'s inputs with reviews' slice serving from `addresses`, built both ways: the
    /// endpoint update's snapshot, and the model a full build makes.
    fn reviews_moved(snapshot: &Arc<Snapshot>, addresses: &[&str]) -> (Arc<Snapshot>, Model) {
        use crate::inputs::{Changes, Decoded, Entry, decode};
        use crate::model::endpoint_update::{EndpointIndex, update};
        let endpoints: Vec<Value> = addresses
            .iter()
            .map(|address| json!({"addresses": [address], "conditions": {"ready": true}}))
            .collect();
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": "reviews-abc12", "namespace": "bookinfo",
                "labels": {"kubernetes.io/service-name": "reviews"},
            },
            "addressType": "IPv4", "ports": [{"name": "http", "port": 9080}],
            "endpoints": endpoints,
        });
        let Ok(Decoded::Object(key, object)) = decode(slice, "bookinfo") else {
            panic!("the slice decodes");
        };
        let before = &snapshot.inputs;
        let origin = before.entries[&key].origin.clone();
        let mut inputs = (**before).clone();
        inputs
            .entries
            .insert(key, Arc::new(Entry { origin, object }));
        let full = build(&inputs, &LastGood::default());
        let mut accepted = build(before, &LastGood::default()).last_good;
        let mut index = EndpointIndex::new(&accepted);
        let changes = Changes::between(before, &inputs);
        let updated = update(
            &snapshot.model,
            &mut accepted,
            &mut index,
            &[],
            &inputs,
            &changes,
        )
        .expect("an endpoint update");
        assert_eq!(updated.model, full.model);
        let next = Snapshot {
            model: Arc::new(updated.model),
            generation: snapshot.generation + 1,
            inputs: Arc::new(inputs),
            endpoint_change: Some(EndpointChange {
                base: Arc::downgrade(&snapshot.model),
                hosts: updated.hosts,
                addresses: updated.addresses,
            }),
            ..Snapshot::default()
        };
        (Arc::new(next), full.model)
    }

    #[tokio::test]
    async fn an_endpoint_change_updates_the_assignments_of_its_clusters_alone() {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/bookinfo"));
        let inputs = load_dirs(&[dir]).inputs();
        let built = build(&inputs, &LastGood::default());
        let first = Arc::new(Snapshot {
            model: Arc::new(built.model),
            generation: 1,
            inputs: Arc::new(inputs),
            ..Snapshot::default()
        });
        let cache = Cache::new(None);
        let proxy = labelled("10.0.0.1", "pp", "productpage");
        let before = cache.resources(&first, &proxy).await;
        // Twice in a row: the second update starts from the first.
        let (second, model) = reviews_moved(&first, &["127.0.13.9"]);
        let after = cache.resources(&second, &proxy).await;
        let (third, model_after) = reviews_moved(&second, &["127.0.13.9", "127.0.13.8"]);
        let last = cache.resources(&third, &proxy).await;
        assert_eq!((cache.translations(), cache.endpoint_updates()), (1, 2));
        for (set, model) in [(&after, &model), (&last, &model_after)] {
            let full = ResourceSet::new(translate::translate(model, &proxy));
            for ty in ResourceType::ALL {
                let names = |set: &ResourceSet| -> Vec<(String, u128)> {
                    set.of(ty)
                        .hashes()
                        .map(|(name, hash)| (name.to_string(), *hash))
                        .collect()
                };
                assert_eq!(names(set), names(&full), "{ty:?} as a full translation");
            }
        }
        for ty in ResourceType::ALL
            .into_iter()
            .filter(|ty| *ty != ResourceType::Endpoint)
        {
            assert!(Arc::ptr_eq(before.of(ty), after.of(ty)), "{ty:?} shared");
        }
        let changed: Vec<&str> = after
            .of(ResourceType::Endpoint)
            .iter()
            .filter(|(name, resource)| {
                !Arc::ptr_eq(
                    before.of(ResourceType::Endpoint).get(name).unwrap(),
                    resource,
                )
            })
            .map(|(name, _)| &**name)
            .collect();
        assert_eq!(
            changed,
            [
                "outbound|9080|v1|reviews.bookinfo.svc.cluster.local",
                "outbound|9080|v2|reviews.bookinfo.svc.cluster.local",
                "outbound|9080|v3|reviews.bookinfo.svc.cluster.local",
                "outbound|9080||reviews.bookinfo.svc.cluster.local",
            ]
        );
    }

    #[tokio::test]
    async fn a_hook_makes_translations_per_proxy() {
        let snapshot = bookinfo();
        let hook = ResourcesHook::new(|proxy, resources| {
            if proxy.id.contains("10.0.0.1") {
                resources.clusters.clear();
            }
        });
        let cache = Cache::new(Some(hook));
        let one = cache
            .resources(&snapshot, &labelled("10.0.0.1", "a", "productpage"))
            .await;
        let two = cache
            .resources(&snapshot, &labelled("10.0.0.2", "b", "productpage"))
            .await;
        assert!(one.of(ResourceType::Cluster).is_empty());
        assert!(!two.of(ResourceType::Cluster).is_empty());
    }
}

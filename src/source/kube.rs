//! The Kubernetes source: watches the API server with kube-rs and publishes what it holds as
//! [`Inputs`], the same bag of objects the file source produces.
//!
//! It owns the watches and the per-kind stores. Every object is pruned to the fields rudder reads
//! (no managedFields, no Pod specs, no Secret data but the TLS keys istiod reads) and decoded the
//! moment it arrives, so memory holds typed objects, not API server JSON. A relist (after a watch error, a 410 Gone
//! or an API server restart) fills a fresh buffer and swaps it in only when the list is complete,
//! so config that is still valid is never dropped in between. While a kind's watch is down (the
//! API server or etcd unreachable), the kind is not in sync: the store keeps serving what it last
//! listed, says so once in the log and in [`SyncState`], and relists once the API server answers.
//! An Istio kind whose CRD is not installed is reported once and treated as empty (and looked for
//! again later).
//!
//! It must not judge objects: a malformed object is an entry with its field error, and the model
//! decides what to do with it, exactly as for files.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::diagnostic::Origin;
use crate::inputs::{Decoded, Entry, Inputs, ObjectKey, decode};
use crate::istio::{NETWORKING_GROUP, NETWORKING_VERSIONS};
use crate::model::credential::{GENERIC_CERTIFICATE, GENERIC_KEY, SECRET_DATA_KEYS};

/// The Istio kinds rudder watches, in `networking.istio.io`.
pub const ISTIO_KINDS: [&str; 6] = [
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "ServiceEntry",
    "WorkloadEntry",
    "Sidecar",
];

/// How often to look again for an Istio CRD that is not installed.
const CRD_RETRY: Duration = Duration::from_secs(30);

/// The longest wait before relisting a kind whose watch failed (kube-rs's default backoff's cap).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The shortest wait before relisting a kind whose watch failed.
const MIN_RETRY: Duration = Duration::from_secs(1);

/// After an outage, how long the kinds that relisted wait for the others before their objects
/// are published: a mesh half relisted (new EndpointSlices, old Pods) would route wrongly.
const RELIST_HOLD: Duration = Duration::from_secs(5);

/// Which namespaces rudder reads, like istiod's discoverySelectors. Cluster-scoped objects are
/// always read.
#[derive(Debug, Clone, Default)]
pub struct NamespaceFilter {
    /// Namespaces read whatever their labels.
    pub names: BTreeSet<String>,
    /// A label selector (`kubectl` syntax); namespaces it selects are read too.
    pub selector: Option<String>,
}

impl NamespaceFilter {
    fn is_everything(&self) -> bool {
        self.names.is_empty() && self.selector.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeSourceError {
    #[error("the namespace selector {selector:?} is not valid: {source}")]
    BadSelector {
        selector: String,
        source: kube::Error,
    },
    #[error("cannot reach the Kubernetes API server: {0}")]
    Unreachable(#[source] kube::Error),
}

/// The status an Istio object carries in the cluster, by object; the status writer compares it
/// with what it should be.
pub type Statuses = BTreeMap<ObjectKey, Value>;

/// Whether each watched kind is in step with the API server: listed, and its watch up since.
pub type SyncState = BTreeMap<&'static str, bool>;

/// A running Kubernetes source.
pub struct KubeSource {
    pub inputs: watch::Receiver<Arc<Inputs>>,
    pub statuses: watch::Receiver<Arc<Statuses>>,
    /// True once every watched kind has been listed once; stays true through later outages.
    pub synced: watch::Receiver<bool>,
    /// Which kinds are in sync now.
    pub sync_state: watch::Receiver<SyncState>,
    /// The watches end when this is dropped.
    _tasks: JoinSet<()>,
}

/// One kind to watch: what to ask the API server for, and how to find it.
#[derive(Debug, Clone)]
struct Watched {
    /// The kind as rudder names it (`Service`, `VirtualService`, ...).
    kind: &'static str,
    locate: Locate,
}

#[derive(Debug, Clone)]
enum Locate {
    /// A built-in resource, always there, optionally narrowed by the API server.
    Builtin {
        resource: ApiResource,
        fields: Option<String>,
        labels: Option<String>,
    },
    /// An Istio CRD: the first served of v1, v1beta1, v1alpha3.
    Istio,
}

fn builtin<K: Resource<DynamicType = ()>>() -> Locate {
    Locate::Builtin {
        resource: ApiResource::erase::<K>(&()),
        fields: None,
        labels: None,
    }
}

fn watched_kinds(filter: &NamespaceFilter) -> Vec<Watched> {
    let watched = |kind, locate| Watched { kind, locate };
    let mut kinds = vec![
        // With a selector, the API server lists only the namespaces it selects.
        watched(
            "Namespace",
            Locate::Builtin {
                resource: ApiResource::erase::<Namespace>(&()),
                fields: None,
                labels: filter.selector.clone(),
            },
        ),
        watched("Service", builtin::<Service>()),
        watched("EndpointSlice", builtin::<EndpointSlice>()),
        watched("Pod", builtin::<Pod>()),
        watched("Node", builtin::<Node>()),
        // Gateways terminate TLS with these. istiod reads generic Secrets too (`cert`, `key`,
        // `cacert`), so no type selects them all; the two types that are large and never
        // credentials stay on the API server, and `prune` drops every other Secret's data.
        watched(
            "Secret",
            Locate::Builtin {
                resource: ApiResource::erase::<Secret>(&()),
                fields: Some(
                    "type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token"
                        .to_string(),
                ),
                labels: None,
            },
        ),
    ];
    kinds.extend(ISTIO_KINDS.iter().map(|kind| watched(kind, Locate::Istio)));
    kinds
}

/// What a watch task tells the store.
#[derive(Debug)]
enum Update {
    /// An object was applied or deleted.
    Changed(&'static str, Change),
    /// A (re)list is complete: these are all the objects of the kind.
    Listed(&'static str, Vec<Stored>),
    /// The kind does not exist in this cluster (its CRD is missing): empty, but synced.
    Missing(&'static str),
    /// The kind's watch or list failed; it is relisted after a backoff.
    Failed(&'static str, String),
}

#[derive(Debug)]
enum Change {
    Applied(Stored),
    Deleted(ObjectKey),
}

/// One object as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    key: ObjectKey,
    entry: Entry,
    /// For Istio kinds: the status the object carries (`Value::Null` if none).
    status: Option<Value>,
    /// For Namespaces: their labels, for the namespace selector.
    labels: BTreeMap<String, String>,
}

/// Starts watching. Fails early only when the API server cannot be reached or the namespace
/// selector is invalid; everything later is retried with backoff and logged.
pub async fn start(client: Client, filter: NamespaceFilter) -> Result<KubeSource, KubeSourceError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut probe = ListParams::default().limit(1);
    if let Some(selector) = &filter.selector {
        probe = probe.labels(selector);
    }
    namespaces
        .list_metadata(&probe)
        .await
        .map_err(|source| match &filter.selector {
            Some(selector) if matches!(&source, kube::Error::Api(status) if status.code == 400) => {
                KubeSourceError::BadSelector {
                    selector: selector.clone(),
                    source,
                }
            }
            _ => KubeSourceError::Unreachable(source),
        })?;

    let kinds = watched_kinds(&filter);
    let (updates_tx, updates) = mpsc::channel(256);
    let (inputs_tx, inputs) = watch::channel(Arc::new(Inputs::default()));
    let (statuses_tx, statuses) = watch::channel(Arc::new(Statuses::new()));
    let (synced_tx, synced) = watch::channel(false);
    let (sync_state_tx, sync_state) = watch::channel(SyncState::new());
    // Counts completed lists: one kind listing again means the API server is back, and the
    // kinds still waiting out their backoff retry at once instead of each on its own schedule.
    let (lists_tx, _) = watch::channel(0u64);
    let mut tasks = JoinSet::new();
    for watched in &kinds {
        tasks.spawn(watch_kind(
            client.clone(),
            watched.clone(),
            updates_tx.clone(),
            lists_tx.clone(),
        ));
    }
    let store = Store {
        filter,
        expected: kinds.iter().map(|watched| watched.kind).collect(),
        ..Store::default()
    };
    let publish = Publish {
        inputs: inputs_tx,
        statuses: statuses_tx,
        synced: synced_tx,
        sync_state: sync_state_tx,
    };
    tasks.spawn(store.run(updates, publish));
    Ok(KubeSource {
        inputs,
        statuses,
        synced,
        sync_state,
        _tasks: tasks,
    })
}

/// Watches one kind forever, sending what it sees to the store.
async fn watch_kind(
    client: Client,
    watched: Watched,
    updates: mpsc::Sender<Update>,
    lists: watch::Sender<u64>,
) {
    let (resource, fields, labels) = match &watched.locate {
        Locate::Builtin {
            resource,
            fields,
            labels,
        } => (resource.clone(), fields.clone(), labels.clone()),
        Locate::Istio => {
            let mut reported = false;
            let resource = loop {
                if let Some(resource) = istio_resource(&client, watched.kind).await {
                    if reported {
                        tracing::info!(kind = watched.kind, "the CRD is installed now");
                    }
                    break resource;
                }
                if !reported {
                    tracing::warn!(
                        kind = watched.kind,
                        "the CRD is not installed (networking.istio.io/{{v1,v1beta1,v1alpha3}}); \
                         treating the kind as empty and checking again every {}s",
                        CRD_RETRY.as_secs()
                    );
                    if updates.send(Update::Missing(watched.kind)).await.is_err() {
                        return;
                    }
                    reported = true;
                }
                tokio::time::sleep(CRD_RETRY).await;
            };
            (resource, None, None)
        }
    };
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let mut config = watcher::Config::default();
    if let Some(fields) = &fields {
        config = config.fields(fields);
    }
    if let Some(labels) = &labels {
        config = config.labels(labels);
    }
    // kube-rs's own backoff: 0.8 s doubling to 30 s, back to the start after 2 quiet minutes.
    let mut backoff = watcher::DefaultBackoff::default();
    let mut others_listed = lists.subscribe();
    loop {
        others_listed.mark_unchanged();
        // A fresh watcher lists before it watches. The kube-rs watcher alone would resume a broken
        // watch from its last resource version; relisting after any failure, as client-go's
        // reflector does, is what tells the store the kind is in step again.
        let mut events = watcher::watcher(api.clone(), config.clone()).boxed();
        let mut listing: Option<Vec<Stored>> = None;
        let failure = loop {
            let Some(event) = events.next().await else {
                return;
            };
            let update = match event {
                Ok(Event::Init) => {
                    listing = Some(Vec::new());
                    continue;
                }
                Ok(Event::InitApply(object)) => {
                    let stored = store_object(&resource, object);
                    if let (Some(buffer), Some(stored)) = (listing.as_mut(), stored) {
                        buffer.push(stored);
                    }
                    continue;
                }
                Ok(Event::InitDone) => {
                    lists.send_modify(|count| *count = count.wrapping_add(1));
                    others_listed.mark_unchanged();
                    Update::Listed(watched.kind, listing.take().unwrap_or_default())
                }
                Ok(Event::Apply(object)) => match store_object(&resource, object) {
                    Some(stored) => Update::Changed(watched.kind, Change::Applied(stored)),
                    None => continue,
                },
                Ok(Event::Delete(object)) => match store_object(&resource, object) {
                    Some(stored) => Update::Changed(watched.kind, Change::Deleted(stored.key)),
                    None => continue,
                },
                Err(error) => break error,
            };
            if updates.send(update).await.is_err() {
                return;
            }
        };
        // The store logs the first failure of an outage; every retry is logged here.
        tracing::debug!(kind = watched.kind, error = %failure, "watch failed");
        if updates
            .send(Update::Failed(watched.kind, failure.to_string()))
            .await
            .is_err()
        {
            return;
        }
        let delay = backoff.next().unwrap_or(MAX_BACKOFF);
        let earliest = tokio::time::Instant::now() + MIN_RETRY;
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            // Another kind's list is a sign the API server answers again; the floor keeps kinds
            // that list fine but fail to watch from waking each other in a loop.
            Ok(()) = others_listed.changed() => tokio::time::sleep_until(earliest).await,
        }
    }
}

/// The API resource of an Istio kind: the first of rudder's versions the cluster serves.
pub async fn istio_resource(client: &Client, kind: &str) -> Option<ApiResource> {
    for version in NETWORKING_VERSIONS {
        let gvk = GroupVersionKind::gvk(NETWORKING_GROUP, version, kind);
        if let Ok((resource, _)) = kube::discovery::pinned_kind(client, &gvk).await {
            return Some(resource);
        }
    }
    None
}

/// Prunes and decodes one object from the API server; `None` if it cannot even be keyed
/// (reported, since the API server guarantees names this should not happen).
fn store_object(resource: &ApiResource, object: DynamicObject) -> Option<Stored> {
    let mut value = match serde_json::to_value(&object) {
        Ok(value) => value,
        Err(error) => {
            tracing::warn!(kind = resource.kind, %error, "cannot read an object");
            return None;
        }
    };
    // List items come without apiVersion and kind; decoding needs them.
    if let Some(fields) = value.as_object_mut() {
        fields.insert(
            "apiVersion".into(),
            Value::String(resource.api_version.clone()),
        );
        fields.insert("kind".into(), Value::String(resource.kind.clone()));
    }
    let status = (resource.group == NETWORKING_GROUP)
        .then(|| value.get("status").cloned().unwrap_or(Value::Null));
    let labels = object.metadata.labels.clone().unwrap_or_default();
    let value = prune(&resource.kind, value);
    match decode(value, "default") {
        Ok(Decoded::Object(key, object)) => Some(Stored {
            key,
            entry: Entry {
                origin: Origin::Kubernetes,
                object,
            },
            status,
            labels,
        }),
        Ok(Decoded::Skipped { .. }) => None,
        Err(error) => {
            let name = object.metadata.name.as_deref().unwrap_or_default();
            tracing::warn!(kind = resource.kind, name, %error, "cannot key an object");
            None
        }
    }
}

/// Keeps only what rudder reads of an object, so memory holds little more than the config.
fn prune(kind: &str, mut value: Value) -> Value {
    let Some(object) = value.as_object_mut() else {
        return value;
    };
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        for field in ["managedFields", "ownerReferences", "finalizers", "selfLink"] {
            metadata.remove(field);
        }
        if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    let keep = |object: &mut serde_json::Map<String, Value>, field: &str, keep: &[&str]| {
        if let Some(Value::Object(inner)) = object.get_mut(field) {
            inner.retain(|key, _| keep.contains(&key.as_str()));
        }
    };
    match kind {
        "Pod" => {
            keep(
                object,
                "spec",
                &["nodeName", "serviceAccountName", "hostNetwork"],
            );
            keep(object, "status", &["podIP", "podIPs", "phase"]);
        }
        "Node" => {
            object.remove("spec");
            object.remove("status");
        }
        "Secret" => prune_secret(object),
        "Service" => {
            object.remove("status");
        }
        _ if object
            .get("apiVersion")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with(NETWORKING_GROUP)) =>
        {
            // The status is kept apart, for the status writer; the model reads the spec.
            object.remove("status");
        }
        _ => {}
    }
    value
}

/// Keeps of a Secret only the data keys istiod reads for credentials, and of the generic
/// `cert`/`key` pair only a whole pair: an Opaque Secret's lone `key` is some API key, not a TLS
/// key, and stays out of memory. Annotations go too (they can hold anything, a copy of the data
/// included).
fn prune_secret(object: &mut serde_json::Map<String, Value>) {
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        metadata.remove("annotations");
    }
    object.remove("stringData");
    let Some(Value::Object(data)) = object.get_mut("data") else {
        return;
    };
    data.retain(|key, _| SECRET_DATA_KEYS.contains(&key.as_str()));
    if !(data.contains_key(GENERIC_CERTIFICATE) && data.contains_key(GENERIC_KEY)) {
        data.remove(GENERIC_CERTIFICATE);
        data.remove(GENERIC_KEY);
    }
}

/// The objects of every kind, and what has been listed so far.
#[derive(Debug, Default)]
struct Store {
    filter: NamespaceFilter,
    expected: BTreeSet<&'static str>,
    /// Kinds listed at least once.
    synced: BTreeSet<&'static str>,
    /// Kinds whose watch is down, since when.
    out_of_sync: BTreeMap<&'static str, Instant>,
    /// Set while some kinds have relisted after an outage and others have not: until then
    /// nothing is published (see [`RELIST_HOLD`]).
    hold_until: Option<Instant>,
    kinds: BTreeMap<&'static str, BTreeMap<ObjectKey, Stored>>,
}

/// Where the store publishes.
struct Publish {
    inputs: watch::Sender<Arc<Inputs>>,
    statuses: watch::Sender<Arc<Statuses>>,
    synced: watch::Sender<bool>,
    sync_state: watch::Sender<SyncState>,
}

impl Store {
    fn apply(&mut self, update: Update) {
        match update {
            Update::Changed(kind, Change::Applied(stored)) => {
                self.kinds
                    .entry(kind)
                    .or_default()
                    .insert(stored.key.clone(), stored);
            }
            Update::Changed(kind, Change::Deleted(key)) => {
                self.kinds.entry(kind).or_default().remove(&key);
            }
            Update::Listed(kind, objects) => {
                if let Some(since) = self.out_of_sync.remove(kind) {
                    tracing::info!(
                        kind,
                        objects = objects.len(),
                        out_of_sync_secs = since.elapsed().as_secs_f64(),
                        "relisted from the API server; in sync again"
                    );
                    if self.out_of_sync.is_empty() {
                        self.hold_until = None;
                    } else if self.hold_until.is_none() && self.is_synced() {
                        self.hold_until = Some(Instant::now() + RELIST_HOLD);
                    }
                }
                let objects = objects
                    .into_iter()
                    .map(|stored| (stored.key.clone(), stored))
                    .collect();
                self.kinds.insert(kind, objects);
                self.synced.insert(kind);
            }
            Update::Missing(kind) => {
                self.kinds.remove(kind);
                self.synced.insert(kind);
            }
            Update::Failed(kind, error) => {
                if !self.out_of_sync.contains_key(kind) {
                    tracing::warn!(
                        kind,
                        %error,
                        "lost the watch on the API server; serving the objects last listed \
                         until it answers again"
                    );
                    self.out_of_sync.insert(kind, Instant::now());
                }
            }
        }
    }

    fn sync_state(&self) -> SyncState {
        self.expected
            .iter()
            .map(|&kind| {
                let in_sync = self.synced.contains(kind) && !self.out_of_sync.contains_key(kind);
                (kind, in_sync)
            })
            .collect()
    }

    fn is_synced(&self) -> bool {
        self.expected.is_subset(&self.synced)
    }

    /// The namespaces whose objects are read; `None` means all of them.
    fn selected_namespaces(&self) -> Option<BTreeSet<&str>> {
        if self.filter.is_everything() {
            return None;
        }
        let mut selected: BTreeSet<&str> = self.filter.names.iter().map(String::as_str).collect();
        if self.filter.selector.is_some() {
            // The Namespace watch carries the selector, so every listed namespace matches it.
            let listed = self
                .kinds
                .get("Namespace")
                .into_iter()
                .flat_map(BTreeMap::values);
            selected.extend(listed.map(|stored| stored.key.name.as_str()));
        }
        Some(selected)
    }

    fn inputs(&self) -> Inputs {
        let selected = self.selected_namespaces();
        let mut inputs = Inputs::default();
        for stored in self.kinds.values().flat_map(BTreeMap::values) {
            let namespace = stored.key.namespace.as_str();
            let wanted = namespace.is_empty()
                || selected
                    .as_ref()
                    .is_none_or(|names| names.contains(namespace));
            if wanted {
                inputs.insert(stored.key.clone(), stored.entry.clone());
            }
        }
        inputs
    }

    fn statuses(&self) -> Statuses {
        self.kinds
            .values()
            .flat_map(BTreeMap::values)
            .filter_map(|stored| Some((stored.key.clone(), stored.status.clone()?)))
            .collect()
    }

    /// Applies updates as they come, publishing after each burst; ends when every watch has.
    async fn run(mut self, mut updates: mpsc::Receiver<Update>, publish: Publish) {
        loop {
            let received = match self.hold_until {
                Some(deadline) => tokio::time::timeout_at(deadline.into(), updates.recv())
                    .await
                    .ok(),
                None => Some(updates.recv().await),
            };
            match received {
                Some(Some(update)) => {
                    self.apply(update);
                    // Everything already queued goes into the same publication.
                    while let Ok(update) = updates.try_recv() {
                        self.apply(update);
                    }
                }
                Some(None) => return,
                None => {
                    let waiting: Vec<_> = self.out_of_sync.keys().collect();
                    tracing::warn!(
                        ?waiting,
                        "kinds still not relisted after {}s; publishing the others",
                        RELIST_HOLD.as_secs()
                    );
                    self.hold_until = None;
                }
            }
            let state = self.sync_state();
            publish.sync_state.send_if_modified(|published| {
                let changed = *published != state;
                if changed {
                    *published = state;
                }
                changed
            });
            // Until every kind is listed, the mesh is half-loaded: publish nothing.
            if !self.is_synced() || self.hold_until.is_some() {
                continue;
            }
            let current = self.inputs();
            publish.inputs.send_if_modified(|published| {
                let changed = **published != current;
                if changed {
                    *published = Arc::new(current);
                }
                changed
            });
            let current = self.statuses();
            publish.statuses.send_if_modified(|published| {
                let changed = **published != current;
                if changed {
                    *published = Arc::new(current);
                }
                changed
            });
            publish
                .synced
                .send_if_modified(|synced| !std::mem::replace(synced, true));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(kind: &str, api_version: &str, namespace: &str, name: &str, labels: Value) -> Stored {
        let resource = ApiResource {
            group: api_version
                .rsplit_once('/')
                .map(|(g, _)| g)
                .unwrap_or_default()
                .to_string(),
            version: api_version
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            plural: format!("{}s", kind.to_lowercase()),
        };
        let object: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"hosts": ["x"]},
        }))
        .unwrap();
        store_object(&resource, object).unwrap()
    }

    fn vs(namespace: &str, name: &str) -> Stored {
        stored(
            "VirtualService",
            "networking.istio.io/v1",
            namespace,
            name,
            json!({}),
        )
    }

    fn names(inputs: &Inputs) -> Vec<String> {
        inputs.entries.keys().map(ToString::to_string).collect()
    }

    fn store(filter: NamespaceFilter) -> Store {
        Store {
            filter,
            expected: ["Namespace", "VirtualService"].into(),
            ..Store::default()
        }
    }

    #[test]
    fn a_relist_replaces_the_kind_only_when_complete() {
        let mut store = store(NamespaceFilter::default());
        store.apply(Update::Listed(
            "VirtualService",
            vec![vs("a", "one"), vs("a", "two")],
        ));
        assert!(!store.is_synced(), "Namespaces are not listed yet");
        store.apply(Update::Missing("Namespace"));
        assert!(store.is_synced());
        store.apply(Update::Changed(
            "VirtualService",
            Change::Deleted(vs("a", "one").key),
        ));
        assert_eq!(names(&store.inputs()), ["VirtualService a/two"]);
        // After a watch error the watcher relists; what the list no longer has goes away.
        store.apply(Update::Listed("VirtualService", vec![vs("b", "three")]));
        assert_eq!(names(&store.inputs()), ["VirtualService b/three"]);
    }

    #[test]
    fn a_failed_watch_keeps_the_objects_until_the_relist() {
        let mut store = store(NamespaceFilter::default());
        store.apply(Update::Missing("Namespace"));
        store.apply(Update::Listed("VirtualService", vec![vs("a", "one")]));
        let in_sync = SyncState::from([("Namespace", true), ("VirtualService", true)]);
        assert_eq!(store.sync_state(), in_sync);

        store.apply(Update::Failed(
            "VirtualService",
            "connection refused".into(),
        ));
        store.apply(Update::Failed(
            "VirtualService",
            "connection refused".into(),
        ));
        assert_eq!(
            store.sync_state(),
            SyncState::from([("Namespace", true), ("VirtualService", false)])
        );
        assert!(store.is_synced(), "listed once: the mesh stays published");
        assert_eq!(names(&store.inputs()), ["VirtualService a/one"]);

        store.apply(Update::Listed("VirtualService", vec![vs("a", "two")]));
        assert_eq!(store.sync_state(), in_sync);
        assert_eq!(names(&store.inputs()), ["VirtualService a/two"]);
    }

    #[test]
    fn after_an_outage_publication_waits_for_every_kind_to_relist() {
        let mut store = store(NamespaceFilter::default());
        store.apply(Update::Missing("Namespace"));
        store.apply(Update::Listed("VirtualService", vec![vs("a", "one")]));
        assert_eq!(store.hold_until, None);
        store.apply(Update::Failed("Namespace", "connection refused".into()));
        store.apply(Update::Failed(
            "VirtualService",
            "connection refused".into(),
        ));

        store.apply(Update::Listed("VirtualService", vec![vs("a", "two")]));
        assert!(
            store.hold_until.is_some(),
            "Namespaces are not relisted yet"
        );
        store.apply(Update::Listed("Namespace", Vec::new()));
        assert_eq!(store.hold_until, None);
    }

    #[test]
    fn namespaces_are_filtered_by_name_and_selector() {
        let namespace = |name: &str| stored("Namespace", "v1", "", name, json!({"mesh": "on"}));
        let filter = NamespaceFilter {
            names: ["named".to_string()].into(),
            selector: Some("mesh=on".to_string()),
        };
        let mut store = store(filter);
        // The API server answered the selector: only `labelled` matched it.
        store.apply(Update::Listed("Namespace", vec![namespace("labelled")]));
        store.apply(Update::Listed(
            "VirtualService",
            vec![vs("named", "a"), vs("labelled", "b"), vs("other", "c")],
        ));
        assert_eq!(
            names(&store.inputs()),
            [
                "Namespace labelled",
                "VirtualService labelled/b",
                "VirtualService named/a"
            ]
        );
    }

    #[test]
    fn istio_statuses_are_kept_apart_from_the_spec() {
        let resource = ApiResource {
            group: "networking.istio.io".into(),
            version: "v1".into(),
            api_version: "networking.istio.io/v1".into(),
            kind: "DestinationRule".into(),
            plural: "destinationrules".into(),
        };
        let object: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": "r", "namespace": "n", "managedFields": [{"manager": "kubectl"}]},
            "spec": {"host": "reviews"},
            "status": {"conditions": [{"type": "Accepted"}]},
        }))
        .unwrap();
        let stored = store_object(&resource, object).unwrap();
        assert_eq!(
            stored.status,
            Some(json!({"conditions": [{"type": "Accepted"}]}))
        );
        assert!(stored.entry.object.is_ok());
    }

    #[test]
    fn pruning_keeps_what_rudder_reads() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "managedFields": [{}], "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{...}", "keep": "me"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "x"}]},
            "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready"}]},
        });
        assert_eq!(
            prune("Pod", pod),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "annotations": {"keep": "me"}},
                "spec": {"nodeName": "n1"},
                "status": {"podIP": "10.0.0.1"},
            })
        );
        let secret =
            json!({"kind": "Secret", "data": {"tls.crt": "a", "tls.key": "b", "password": "c"}});
        assert_eq!(
            prune("Secret", secret)["data"],
            json!({"tls.crt": "a", "tls.key": "b"})
        );
        let generic = json!({"kind": "Secret", "metadata": {"name": "g", "annotations": {"a": "b"}},
            "data": {"cert": "a", "key": "b", "cacert": "c", "token": "d"}});
        assert_eq!(
            prune("Secret", generic),
            json!({"kind": "Secret", "metadata": {"name": "g"},
                "data": {"cert": "a", "key": "b", "cacert": "c"}})
        );
        let api_key = json!({"kind": "Secret", "data": {"key": "s3cr3t", "ca.crt": "c"}});
        assert_eq!(prune("Secret", api_key)["data"], json!({"ca.crt": "c"}));
    }
}

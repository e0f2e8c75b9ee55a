//! The Kubernetes source: watches the API server with kube-rs and publishes what it holds as
//! [`Inputs`], the same bag of objects the file source produces.
//!
//! It owns the watches: one task per kind, each sending what it sees to the store (`store`), which
//! publishes; objects are pruned and decoded as they arrive (`objects`). After any watch failure the
//! kind is relisted, as client-go's reflector does, and the first kind to list again wakes the others
//! (an API server back from an outage answers them all). An Istio kind whose CRD is not installed is
//! reported once and treated as empty (and looked for again later). Every Istio kind is watched,
//! those rudder does not translate too, so their objects can be reported ([`Kind::untranslated`]);
//! publication never waits for those.
//!
//! It must not judge objects: a malformed object is an entry with its field error, and the model
//! decides what to do with it, exactly as for files.

mod objects;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::inputs::{Inputs, Kind, ObjectKey};
use objects::store_object;
use store::{Change, Publish, Store, Stored, Update};

/// How often to look again for an Istio CRD that is not installed.
const CRD_RETRY: Duration = Duration::from_secs(30);

/// The longest wait before relisting a kind whose watch failed (kube-rs's default backoff's cap).
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The shortest wait before relisting a kind whose watch failed.
const MIN_RETRY: Duration = Duration::from_secs(1);

/// Which namespaces rudder reads (`--namespaces`, `--namespace-selector`). Cluster-scoped objects
/// are always read. meshConfig's discoverySelectors narrow it further in the model
/// (`model::discovery`), which sees only the labels of the Namespaces read here.
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

/// How many object events the watches reported, by kind and event (`add`, `update`,
/// `updatesame`, `delete`), since the source started: counted as informers count them, a relist
/// counting each object it brings once. Cumulative, so a reader adds what grew since it last
/// looked.
pub type KubeEvents = BTreeMap<(&'static str, &'static str), u64>;

/// A running Kubernetes source.
pub struct KubeSource {
    pub inputs: watch::Receiver<Arc<Inputs>>,
    pub statuses: watch::Receiver<Arc<Statuses>>,
    /// True once every watched kind has been listed once; stays true through later outages.
    pub synced: watch::Receiver<bool>,
    /// Which kinds are in sync now.
    pub sync_state: watch::Receiver<SyncState>,
    /// The object events seen so far.
    pub events: watch::Receiver<KubeEvents>,
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
    /// An Istio CRD: the first served of the kind's versions.
    Istio(Kind),
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
    // Every Istio kind, translated or not: objects of kinds rudder does not translate are
    // read to be reported.
    let istio = Kind::ALL.iter().filter(|kind| kind.is_istio());
    kinds.extend(istio.map(|&kind| watched(kind.name(), Locate::Istio(kind))));
    kinds
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
    let (events_tx, events) = watch::channel(KubeEvents::new());
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
    // Kinds rudder does not translate do not hold publication up: their objects change no
    // proxy's config, and a cluster whose RBAC does not let rudder list them must still be
    // served.
    let (informational, expected): (Vec<&Watched>, Vec<&Watched>) = kinds.iter().partition(
        |watched| matches!(watched.locate, Locate::Istio(kind) if kind.untranslated_effect().is_some()),
    );
    let names = |kinds: Vec<&Watched>| -> BTreeSet<&'static str> {
        kinds.iter().map(|watched| watched.kind).collect()
    };
    let store = Store::new(filter, names(expected), names(informational));
    let publish = Publish {
        inputs: inputs_tx,
        statuses: statuses_tx,
        synced: synced_tx,
        sync_state: sync_state_tx,
        events: events_tx,
    };
    tasks.spawn(store.run(updates, publish));
    Ok(KubeSource {
        inputs,
        statuses,
        synced,
        sync_state,
        events,
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
        Locate::Istio(kind) => match wait_for_crd(&client, *kind, &updates).await {
            Some(resource) => (resource, None, None),
            None => return,
        },
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

/// The resource of an Istio kind once its CRD is installed; until then the kind is reported
/// missing (empty) and looked for every [`CRD_RETRY`]. `None` if the store has stopped.
async fn wait_for_crd(
    client: &Client,
    kind: Kind,
    updates: &mpsc::Sender<Update>,
) -> Option<ApiResource> {
    let mut reported = false;
    loop {
        if let Some(resource) = istio_resource(client, kind).await {
            if reported {
                tracing::info!(kind = kind.name(), "the CRD is installed now");
            }
            return Some(resource);
        }
        if !reported {
            let api = kind.api();
            let message = format!(
                "the CRD is not installed ({}/{{{}}}); treating the kind as empty and checking \
                 again every {}s",
                api.group,
                api.versions.join(","),
                CRD_RETRY.as_secs()
            );
            // Without the CRD there is no object of the kind to miss: only the kinds rudder
            // translates are worth a warning.
            if kind.untranslated_effect().is_some() {
                tracing::debug!(kind = kind.name(), "{message}");
            } else {
                tracing::warn!(kind = kind.name(), "{message}");
            }
            updates.send(Update::Missing(kind.name())).await.ok()?;
            reported = true;
        }
        tokio::time::sleep(CRD_RETRY).await;
    }
}

/// The API resource of an Istio kind: the first of its versions the cluster serves.
pub async fn istio_resource(client: &Client, kind: Kind) -> Option<ApiResource> {
    let api = kind.api();
    for version in api.versions {
        let gvk = GroupVersionKind::gvk(api.group, version, kind.name());
        if let Ok((resource, _)) = kube::discovery::pinned_kind(client, &gvk).await {
            return Some(resource);
        }
    }
    None
}

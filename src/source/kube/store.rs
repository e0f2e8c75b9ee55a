//! The Kubernetes source's store: the objects of every watched kind as the watches last
//! reported them, which kinds are in sync, and what is published from them.
//!
//! It owns the merge of watch updates and the decision of when to publish. A relist fills a fresh
//! buffer and replaces the kind only when complete, so config that is still valid is never dropped
//! in between. While a kind's watch is down (API server or etcd unreachable) the objects it last
//! listed stay in force, and the kind is out of sync: logged once, and shown in [`SyncState`].
//! Nothing is published before every kind has been listed once, nor while a relist after an outage
//! is half done. It must do no I/O but publishing on its channels; its tests are plain synchronous
//! tests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::{KubeEvents, NamespaceFilter, Statuses, SyncState};
use crate::inputs::{Entry, Inputs, ObjectKey};
use crate::source::publish_if_changed;

/// After an outage, how long the kinds that relisted wait for the others before their objects
/// are published: a mesh half relisted (new EndpointSlices, old Pods) would route wrongly.
const RELIST_HOLD: Duration = Duration::from_secs(5);

/// What a watch task tells the store.
#[derive(Debug)]
pub(super) enum Update {
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
pub(super) enum Change {
    Applied(Stored),
    Deleted(ObjectKey),
}

/// One object as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Stored {
    pub(super) key: ObjectKey,
    pub(super) entry: Arc<Entry>,
    /// For Istio kinds: the status the object carries (`Value::Null` if none).
    pub(super) status: Option<Value>,
    /// For Namespaces: their labels, for the namespace selector.
    pub(super) labels: BTreeMap<String, String>,
}

/// The objects of every kind, and what has been listed so far.
#[derive(Debug, Default)]
pub(super) struct Store {
    filter: NamespaceFilter,
    /// Kinds that must be listed before anything is published.
    expected: BTreeSet<&'static str>,
    /// Kinds watched only to report their objects (Istio kinds rudder does not translate): shown
    /// in [`SyncState`], but publication never waits for them.
    informational: BTreeSet<&'static str>,
    /// Kinds listed at least once.
    synced: BTreeSet<&'static str>,
    /// Kinds whose watch is down, since when.
    out_of_sync: BTreeMap<&'static str, Instant>,
    /// Set while some kinds have relisted after an outage and others have not: until then
    /// nothing is published (see [`RELIST_HOLD`]).
    hold_until: Option<Instant>,
    kinds: BTreeMap<&'static str, BTreeMap<ObjectKey, Stored>>,
    /// Every object event seen so far, as an informer reports them (see [`KubeEvents`]).
    events: KubeEvents,
}

/// Where the store publishes.
pub(super) struct Publish {
    pub(super) inputs: watch::Sender<Arc<Inputs>>,
    pub(super) statuses: watch::Sender<Arc<Statuses>>,
    pub(super) synced: watch::Sender<bool>,
    pub(super) sync_state: watch::Sender<SyncState>,
    pub(super) events: watch::Sender<KubeEvents>,
}

impl Store {
    /// An empty store for `filter`, waiting for the `expected` kinds to be listed; the
    /// `informational` ones are published as they come.
    pub(super) fn new(
        filter: NamespaceFilter,
        expected: BTreeSet<&'static str>,
        informational: BTreeSet<&'static str>,
    ) -> Store {
        Store {
            filter,
            expected,
            informational,
            ..Store::default()
        }
    }

    /// Whether a kind publication waits for is out of sync.
    fn expected_out_of_sync(&self) -> bool {
        self.out_of_sync
            .keys()
            .any(|kind| self.expected.contains(kind))
    }

    fn apply(&mut self, update: Update) {
        match update {
            Update::Changed(kind, Change::Applied(stored)) => {
                let objects = self.kinds.entry(kind).or_default();
                let event = match objects.get(&stored.key) {
                    None => "add",
                    Some(old) if *old == stored => "updatesame",
                    Some(_) => "update",
                };
                objects.insert(stored.key.clone(), stored);
                self.count(kind, event, 1);
            }
            Update::Changed(kind, Change::Deleted(key)) => {
                if self.kinds.entry(kind).or_default().remove(&key).is_some() {
                    self.count(kind, "delete", 1);
                }
            }
            Update::Listed(kind, objects) => {
                if let Some(since) = self.out_of_sync.remove(kind) {
                    tracing::info!(
                        kind,
                        objects = objects.len(),
                        out_of_sync_secs = since.elapsed().as_secs_f64(),
                        "relisted from the API server; in sync again"
                    );
                    if !self.expected_out_of_sync() {
                        self.hold_until = None;
                    } else if self.hold_until.is_none()
                        && self.is_synced()
                        && self.expected.contains(kind)
                    {
                        self.hold_until = Some(Instant::now() + RELIST_HOLD);
                    }
                }
                let objects: BTreeMap<ObjectKey, Stored> = objects
                    .into_iter()
                    .map(|stored| (stored.key.clone(), stored))
                    .collect();
                self.count_relist(kind, &objects);
                self.kinds.insert(kind, objects);
                self.synced.insert(kind);
            }
            Update::Missing(kind) => {
                self.kinds.remove(kind);
                self.synced.insert(kind);
            }
            Update::Failed(kind, error) => {
                if !self.out_of_sync.contains_key(kind) {
                    if self.informational.contains(kind) {
                        // Forbidden by RBAC, most often: a manifest from before rudder read it.
                        tracing::warn!(
                            kind,
                            %error,
                            "cannot watch a kind rudder does not translate; its objects are not \
                             reported until the watch works"
                        );
                    } else {
                        tracing::warn!(
                            kind,
                            %error,
                            "lost the watch on the API server; serving the objects last listed \
                             until it answers again"
                        );
                    }
                    self.out_of_sync.insert(kind, Instant::now());
                }
            }
        }
    }

    /// Counts `count` events of one kind.
    fn count(&mut self, kind: &'static str, event: &'static str, count: u64) {
        if count > 0 {
            *self.events.entry((kind, event)).or_default() += count;
        }
    }

    /// Counts a (re)list of `kind` as the events an informer reports for it: objects new to the
    /// store are added, those it had are updated (unchanged or not), those gone are deleted.
    fn count_relist(&mut self, kind: &'static str, listed: &BTreeMap<ObjectKey, Stored>) {
        let (mut added, mut same, mut updated, mut deleted) = (0, 0, 0, 0);
        let known = self.kinds.get(kind);
        for (key, stored) in listed {
            match known.and_then(|objects| objects.get(key)) {
                None => added += 1,
                Some(old) if old == stored => same += 1,
                Some(_) => updated += 1,
            }
        }
        for key in known.into_iter().flat_map(BTreeMap::keys) {
            if !listed.contains_key(key) {
                deleted += 1;
            }
        }
        self.count(kind, "add", added);
        self.count(kind, "updatesame", same);
        self.count(kind, "update", updated);
        self.count(kind, "delete", deleted);
    }

    fn sync_state(&self) -> SyncState {
        self.expected
            .iter()
            .chain(&self.informational)
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
                inputs.insert(stored.key.clone(), Arc::clone(&stored.entry));
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
    pub(super) async fn run(mut self, mut updates: mpsc::Receiver<Update>, publish: Publish) {
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
                    let waiting: Vec<_> = self
                        .out_of_sync
                        .keys()
                        .filter(|kind| self.expected.contains(*kind))
                        .collect();
                    tracing::warn!(
                        ?waiting,
                        "kinds still not relisted after {}s; publishing the others",
                        RELIST_HOLD.as_secs()
                    );
                    self.hold_until = None;
                }
            }
            publish_if_changed(&publish.sync_state, self.sync_state());
            publish_if_changed(&publish.events, self.events.clone());
            // Until every kind is listed, the mesh is half-loaded: publish nothing.
            if !self.is_synced() || self.hold_until.is_some() {
                continue;
            }
            publish_if_changed(&publish.inputs, Arc::new(self.inputs()));
            publish_if_changed(&publish.statuses, Arc::new(self.statuses()));
            publish_if_changed(&publish.synced, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::kube::objects::tests::stored;
    use serde_json::json;

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
        Store::new(
            filter,
            ["Namespace", "VirtualService"].into(),
            ["AuthorizationPolicy"].into(),
        )
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
    fn events_are_counted_as_an_informer_reports_them() {
        let mut store = store(NamespaceFilter::default());
        store.apply(Update::Listed(
            "VirtualService",
            vec![vs("a", "one"), vs("a", "two")],
        ));
        store.apply(Update::Changed(
            "VirtualService",
            Change::Applied(vs("a", "one")),
        ));
        let mut changed = vs("a", "two");
        changed.status = Some(json!({"observedGeneration": "2"}));
        store.apply(Update::Changed("VirtualService", Change::Applied(changed)));
        store.apply(Update::Changed(
            "VirtualService",
            Change::Deleted(vs("a", "one").key),
        ));
        // Deleting what is not there is no event.
        store.apply(Update::Changed(
            "VirtualService",
            Change::Deleted(vs("a", "gone").key),
        ));
        // A relist: `two` is still there (unchanged), `three` is new.
        let mut two = vs("a", "two");
        two.status = Some(json!({"observedGeneration": "2"}));
        store.apply(Update::Listed(
            "VirtualService",
            vec![two, vs("b", "three")],
        ));
        let counts = |event| store.events.get(&("VirtualService", event)).copied();
        assert_eq!(counts("add"), Some(3));
        assert_eq!(counts("updatesame"), Some(2));
        assert_eq!(counts("update"), Some(1));
        assert_eq!(counts("delete"), Some(1));
    }

    #[test]
    fn a_failed_watch_keeps_the_objects_until_the_relist() {
        let mut store = store(NamespaceFilter::default());
        store.apply(Update::Missing("Namespace"));
        store.apply(Update::Listed("VirtualService", vec![vs("a", "one")]));
        // AuthorizationPolicy is not listed (its CRD may be missing), and holds nothing up.
        let in_sync = SyncState::from([
            ("AuthorizationPolicy", false),
            ("Namespace", true),
            ("VirtualService", true),
        ]);
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
            SyncState::from([
                ("AuthorizationPolicy", false),
                ("Namespace", true),
                ("VirtualService", false)
            ])
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
    fn kinds_only_reported_never_hold_publication_up() {
        let mut store = store(NamespaceFilter::default());
        // Forbidden by RBAC: the kind never lists.
        store.apply(Update::Failed(
            "AuthorizationPolicy",
            "403 forbidden".into(),
        ));
        store.apply(Update::Missing("Namespace"));
        store.apply(Update::Listed("VirtualService", vec![vs("a", "one")]));
        assert!(store.is_synced());
        store.apply(Update::Failed(
            "VirtualService",
            "connection refused".into(),
        ));
        store.apply(Update::Listed("VirtualService", vec![vs("a", "two")]));
        assert_eq!(store.hold_until, None);
        let policy = stored(
            "AuthorizationPolicy",
            "security.istio.io/v1",
            "a",
            "deny-all",
            json!({}),
        );
        store.apply(Update::Listed("AuthorizationPolicy", vec![policy]));
        assert_eq!(
            names(&store.inputs()),
            ["VirtualService a/two", "AuthorizationPolicy a/deny-all"]
        );
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
}

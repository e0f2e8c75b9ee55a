//! `rudder serve`: wires the pipeline together. Sources (config directories, the Kubernetes API)
//! publish `Inputs`; a model task merges them, rebuilds the model once changes settle
//! ([`debounce`]) and publishes a `Snapshot` (only when the model or its errors changed); the xDS
//! server and the admin server read snapshots, and the status writer reports rejected objects
//! back to the cluster. This module owns the tasks, their start order and their shutdown; it holds
//! no config logic.

pub mod debounce;
pub mod kubeconfig;
pub mod summary;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use debounce::Debounce;
use debounce::Debouncer;

use crate::admin::{AdminOptions, AdminState, Readiness, serve_admin};
use crate::diagnostic::ConfigError;
use crate::inputs::{Changes, Inputs};
use crate::kube_auth::{DEFAULT_TOKEN_AUDIENCE, KubeSecretReaders, KubeTokenReviewer};
use crate::mesh_config::MeshConfig;
use crate::metrics::Metrics;
use crate::model::endpoint_update::{self, EndpointIndex};
use crate::model::{self, LastGood, Model, Settings};
use crate::source::file::{FileWatcher, Settle};
use crate::source::kube::{KubeEvents, NamespaceFilter, SyncState};
use crate::source::mesh::MeshFile;
use crate::status::run_status_writer;
use crate::xds::{EndpointChange, Registry, Snapshot, XdsOptions, serve_xds};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config_dirs: Vec<PathBuf>,
    /// How long a config file written in place must stay unchanged before it applies.
    pub file_quiet_period: Duration,
    pub kubernetes: Option<KubernetesOptions>,
    /// How config changes are coalesced into builds (and so pushes).
    pub debounce: Debounce,
    pub xds_address: SocketAddr,
    pub admin_address: SocketAddr,
    /// Who may read `/debug/*`, the debug work bound and the admin connections' timeouts.
    pub admin: AdminOptions,
    pub xds: XdsOptions,
    /// The default of meshConfig.rootNamespace: where the mesh-wide default Sidecar and
    /// DestinationRules live unless the mesh config says otherwise.
    pub root_namespace: String,
    /// The DNS suffix of Kubernetes services (`--domain`, istiod's flag).
    pub dns_domain: String,
    /// A mesh config file (`--mesh-config`), followed as it changes; without it, the `istio`
    /// ConfigMap of the control-plane namespace when rudder watches a cluster.
    pub mesh_config_file: Option<PathBuf>,
}

/// How to reach the Kubernetes API and what to read from it.
#[derive(Debug, Clone)]
pub struct KubernetesOptions {
    pub connection: KubeConnection,
    pub namespaces: NamespaceFilter,
    /// Where the status writer's Lease lives.
    pub lease_namespace: String,
    /// Where the `istio` ConfigMap (the mesh config) is read from.
    pub control_plane_namespace: String,
}

#[derive(Debug, Clone)]
pub enum KubeConnection {
    Kubeconfig(PathBuf),
    /// The kubeconfig kubectl would use: the files in `KUBECONFIG` (merged as kubectl merges
    /// them), else `~/.kube/config`.
    Default,
    InCluster,
}

impl KubeConnection {
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let config = match self {
            KubeConnection::Kubeconfig(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("read kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .with_context(|| format!("use kubeconfig {}", path.display()))?
            }
            KubeConnection::Default => {
                let kubeconfig = kubeconfig::read_default_kubeconfig()
                    .context("read the kubeconfig ($KUBECONFIG, else ~/.kube/config)")?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .context("use the kubeconfig ($KUBECONFIG, else ~/.kube/config)")?
            }
            KubeConnection::InCluster => {
                kube::Config::incluster().context("read the in-cluster service account config")?
            }
        };
        kube::Client::try_from(config).context("create a Kubernetes client")
    }
}

/// How long [`Server::stop`] lets the servers close their connections before cutting them off.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running rudder: its bound addresses and the tasks serving them.
pub struct Server {
    xds_address: SocketAddr,
    admin_address: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
    /// The tasks that end by themselves once told to stop: the xDS and admin servers.
    servers: Vec<tokio::task::Id>,
}

impl Server {
    /// Starts the sources and the admin server, waits until every source has loaded everything
    /// once (until then `/ready` answers 503 and no proxy is served), then serves xDS. Ready
    /// once this returns.
    pub async fn start(options: ServeOptions) -> anyhow::Result<Server> {
        anyhow::ensure!(
            !options.config_dirs.is_empty() || options.kubernetes.is_some(),
            "no config source: give --config-dir, --kubeconfig or --in-cluster, or set KUBECONFIG"
        );
        let (stop, stopped) = watch::channel(false);
        let shutdown = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };
        let metrics = Arc::new(Metrics::new());
        let registry = Registry::default();
        let readiness = Readiness::default();
        let mut tasks = JoinSet::new();

        // Bind first, so a port in use fails before anything else starts.
        let xds_listener = TcpListener::bind(options.xds_address)
            .await
            .with_context(|| format!("bind xDS address {}", options.xds_address))?;
        let admin_listener = TcpListener::bind(options.admin_address)
            .await
            .with_context(|| format!("bind admin address {}", options.admin_address))?;
        let xds_address = xds_listener.local_addr()?;
        let admin_address = admin_listener.local_addr()?;

        // Made before the servers start (making it does not reach the API server): its
        // TokenReviews authenticate proxies on the xDS port and callers of the debug endpoints.
        let client = match &options.kubernetes {
            Some(kubernetes) => Some(kubernetes.connection.client().await?),
            None => None,
        };
        let token_reviewer = client.as_ref().map(|client| {
            KubeTokenReviewer::new(client.clone(), vec![DEFAULT_TOKEN_AUDIENCE.to_string()])
        });
        let mut admin_options = options.admin.clone();
        if let Some(reviewer) = &token_reviewer {
            let auth = (*admin_options.auth)
                .clone()
                .with_verifier(reviewer.clone());
            admin_options.auth = Arc::new(auth);
        }

        let (snapshots_tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
        let admin = AdminState {
            snapshots: snapshots.clone(),
            metrics: metrics.clone(),
            registry: registry.clone(),
            readiness: readiness.clone(),
        };
        let admin = serve_admin(admin_listener, admin, admin_options, shutdown());
        let mut servers = vec![
            tasks
                .spawn(async move { admin.await.context("admin server") })
                .id(),
        ];

        let mut sources = Vec::new();
        if !options.config_dirs.is_empty() {
            let (inputs_tx, inputs) = watch::channel(Arc::new(Inputs::default()));
            // A file that never settles is reported once a change would have been built anyway.
            let settle = Settle {
                quiet: options.file_quiet_period,
                report_after: options.debounce.max.max(options.file_quiet_period * 2),
            };
            let watcher = FileWatcher::start(options.config_dirs.clone(), settle, inputs_tx)
                .context("config directories")?;
            tasks.spawn(async move {
                watcher.run().await;
                Ok(())
            });
            sources.push(inputs);
        }
        if let Some(path) = &options.mesh_config_file {
            let (file, inputs) = MeshFile::start(path.clone(), options.file_quiet_period)
                .context("--mesh-config")?;
            tasks.spawn(async move {
                file.run().await;
                Ok(())
            });
            sources.push(inputs);
        }
        let mut xds_options = options.xds.clone();
        if let (Some(kubernetes), Some(client)) = (&options.kubernetes, client) {
            // Proxies may prove who they are with service account tokens, and RBAC decides
            // which identities may read Secrets, as with istiod.
            xds_options.auth.tokens = token_reviewer.map(|reviewer| reviewer as _);
            xds_options
                .auth
                .readers
                .push(KubeSecretReaders::new(client.clone()));
            let mut source =
                crate::source::kube::start(client.clone(), kubernetes.namespaces.clone())
                    .await
                    .context("Kubernetes source")?;
            tracing::info!("waiting for every watched kind to be listed once");
            source
                .synced
                .wait_for(|synced| *synced)
                .await
                .context("the Kubernetes source stopped before it synced")?;
            sources.push(source.inputs.clone());
            // A --mesh-config file stands in for the ConfigMap, as istiod's --meshConfig does.
            if options.mesh_config_file.is_none() {
                let (follow, inputs) = crate::source::mesh::watch_config_map(
                    client.clone(),
                    kubernetes.control_plane_namespace.clone(),
                )
                .await
                .context("mesh config ConfigMap")?;
                tasks.spawn(async move {
                    follow.await;
                    Ok(())
                });
                sources.push(inputs);
            }
            let writer = run_status_writer(
                client,
                kubernetes.lease_namespace.clone(),
                snapshots.clone(),
                source.statuses.clone(),
            );
            let sync_reports = report_kube_sync(source.sync_state.clone(), metrics.clone());
            let event_reports = report_kube_events(source.events.clone(), metrics.clone());
            tasks.spawn(async move {
                // The source's watches live as long as this task.
                let _source = source;
                tokio::join!(writer, sync_reports, event_reports);
                Ok(())
            });
        }

        let mut pipeline = Pipeline {
            settings: Settings {
                dns_domain: options.dns_domain.clone(),
                mesh_defaults: MeshConfig::with_root_namespace(&options.root_namespace),
                ..Settings::default()
            },
            ..Pipeline::default()
        };
        let first = pipeline
            .rebuild(merged(&sources), &metrics, std::time::Instant::now())
            .context("the first build publishes a snapshot")?;
        let (errors, warnings) = summary::error_counts(&first.errors);
        // Each of them was logged by the build, as `config error: ...`.
        tracing::info!(
            objects = %summary::object_counts(&first.inputs),
            errors,
            warnings,
            "loaded config"
        );
        let attach = summary::attach_command(&first.model, xds_address, options.xds.tls.is_some());
        snapshots_tx.send_replace(Arc::new(first));
        tasks.spawn(run_pipeline(
            pipeline,
            sources,
            snapshots_tx,
            metrics.clone(),
            options.debounce,
        ));

        let xds = serve_xds(
            xds_listener,
            snapshots,
            metrics,
            registry,
            xds_options,
            shutdown(),
        );
        servers.push(
            tasks
                .spawn(async move { xds.await.context("xDS server") })
                .id(),
        );
        readiness.set_ready();
        tracing::info!(%xds_address, %admin_address, "serving");
        tracing::info!(
            "connect proxies on this host to xDS at {} ({}); /ready, /metrics and /debug/* are at http://{}",
            summary::local_address(xds_address),
            if options.xds.tls.is_some() {
                "TLS"
            } else {
                "plaintext"
            },
            summary::local_address(admin_address)
        );
        tracing::info!("attach a stock Envoy on this host with: {attach}");
        Ok(Server {
            xds_address,
            admin_address,
            stop,
            tasks,
            servers,
        })
    }

    pub fn xds_address(&self) -> SocketAddr {
        self.xds_address
    }

    pub fn admin_address(&self) -> SocketAddr {
        self.admin_address
    }

    /// Runs until a task fails or `shutdown` completes, then stops everything, giving the
    /// servers `grace` to close their connections (see [`Server::stop_within`]).
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()>,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let outcome = tokio::select! {
            () = shutdown => Ok(()),
            Some(finished) = self.tasks.join_next() => match finished {
                Ok(Ok(())) => Err(anyhow::anyhow!("a server task ended unexpectedly")),
                Ok(Err(error)) => Err(error),
                Err(panic) => Err(anyhow::anyhow!("a server task panicked: {panic}")),
            },
        };
        self.stop_within(grace).await;
        outcome
    }

    /// Stops serving within [`DEFAULT_SHUTDOWN_GRACE`].
    pub async fn stop(self) {
        self.stop_within(DEFAULT_SHUTDOWN_GRACE).await;
    }

    /// Stops serving: the servers stop accepting connections, every ADS stream ends with
    /// `UNAVAILABLE` (so Envoy reconnects at once, to another replica if there is one, keeping
    /// its config meanwhile) and each connection closes with a GOAWAY. What is still running
    /// after `grace` (a proxy that does not read, say) is cut off.
    pub async fn stop_within(mut self, grace: Duration) {
        let _ = self.stop.send(true);
        let mut running = std::mem::take(&mut self.servers);
        let closed = async {
            while !running.is_empty() {
                let id = match self.tasks.join_next_with_id().await {
                    Some(Ok((id, _))) => id,
                    Some(Err(error)) => error.id(),
                    None => break,
                };
                running.retain(|server| *server != id);
            }
        };
        if tokio::time::timeout(grace, closed).await.is_err() {
            tracing::warn!(
                ?grace,
                "connections still open after the shutdown grace; closing them"
            );
        }
        // The file watcher and model task end when their channels close; the rest now.
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The state that outlives one build: last good objects, the errors already reported, and the
/// model last published with what the endpoint update needs to move it on.
#[derive(Default)]
struct Pipeline {
    last_good: LastGood,
    reported: BTreeSet<ConfigError>,
    generation: u64,
    /// The inputs of the last build.
    inputs: Arc<Inputs>,
    /// rudder's flags that shape the model (`--domain`, `--root-namespace`).
    settings: Settings,
    /// The model and errors last published.
    model: Arc<Model>,
    errors: Vec<ConfigError>,
    /// Which objects feed which endpoints, for `last_good`.
    endpoint_index: EndpointIndex,
}

impl Pipeline {
    /// Builds the model from `inputs`, whose first change not yet built was `seen` then: the
    /// snapshot to publish, or `None` when the model and its errors are what was published.
    /// A change of endpoints alone updates the published model (`model::endpoint_update`);
    /// anything else builds it anew.
    fn rebuild(
        &mut self,
        inputs: Inputs,
        metrics: &Metrics,
        seen: std::time::Instant,
    ) -> Option<Snapshot> {
        let inputs = Arc::new(inputs);
        let first = self.generation == 0;
        metrics.count_build();
        let changes = Changes::between(&self.inputs, &inputs);
        if !first {
            metrics.record_triggers(&changes);
        }
        self.inputs = inputs.clone();
        if !first && changes.is_empty() {
            return None;
        }
        let updated = (!first)
            .then(|| {
                endpoint_update::update(
                    &self.model,
                    &mut self.last_good,
                    &mut self.endpoint_index,
                    &self.errors,
                    &inputs,
                    &changes,
                )
            })
            .flatten();
        let (model, errors, endpoint_change) = match updated {
            Some(update) => {
                metrics.count_endpoint_update();
                if !update.changed() {
                    return None;
                }
                let change = EndpointChange {
                    base: Arc::downgrade(&self.model),
                    hosts: update.hosts,
                    addresses: update.addresses,
                };
                (Arc::new(update.model), self.errors.clone(), Some(change))
            }
            None => {
                let built = model::build_with(&inputs, &self.last_good, &self.settings);
                self.last_good = built.last_good;
                self.endpoint_index = EndpointIndex::new(&self.last_good);
                self.report(&built.errors);
                metrics.record_untranslated(&inputs);
                let same_model = !first && built.model == *self.model;
                if same_model && built.errors == self.errors {
                    return None;
                }
                // Only the errors changed: the same model, so no proxy is translated again.
                let model = if same_model {
                    self.model.clone()
                } else {
                    // What the edit left alone keeps its identity, which translation's memo
                    // recognizes.
                    Arc::new(built.model.sharing_unchanged(&self.model))
                };
                (model, built.errors, None)
            }
        };
        metrics.record_model(&model, errors.len());
        self.model = model;
        self.errors = errors.clone();
        self.generation += 1;
        Some(Snapshot {
            model: self.model.clone(),
            errors,
            generation: self.generation,
            created: Some(seen),
            inputs,
            endpoint_change,
        })
    }

    /// Logs each problem once when it appears and once when it is gone, not per build.
    fn report(&mut self, errors: &[ConfigError]) {
        let current: BTreeSet<ConfigError> = errors.iter().cloned().collect();
        for error in current.difference(&self.reported) {
            tracing::warn!("config error: {error}");
        }
        for error in self.reported.difference(&current) {
            tracing::info!("config error resolved: {error}");
        }
        self.reported = current;
    }
}

/// What all sources hold together.
fn merged(sources: &[watch::Receiver<Arc<Inputs>>]) -> Inputs {
    let current: Vec<Arc<Inputs>> = sources
        .iter()
        .map(|source| source.borrow().clone())
        .collect();
    Inputs::merge(current.iter().map(AsRef::as_ref))
}

/// Rebuilds the model as sources change, coalescing changes as `debounce` says, and publishes
/// each build that changed the model or its errors. Ends once every source is gone and nothing
/// is left to build.
async fn run_pipeline(
    mut pipeline: Pipeline,
    mut sources: Vec<watch::Receiver<Arc<Inputs>>>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
    debounce: Debounce,
) -> anyhow::Result<()> {
    // A source whose sender is gone keeps its last inputs but is not waited on again.
    let mut open: Vec<bool> = vec![true; sources.len()];
    let mut debouncer = Debouncer::new(debounce);
    loop {
        let deadline = debouncer.deadline();
        let changes: Vec<_> = sources
            .iter_mut()
            .zip(&open)
            .enumerate()
            .filter(|(_, (_, open))| **open)
            .map(|(index, (source, _))| Box::pin(async move { (index, source.changed().await) }))
            .collect();
        if changes.is_empty() && deadline.is_none() {
            return Ok(());
        }
        let change = async move {
            if changes.is_empty() {
                std::future::pending().await
            } else {
                futures::future::select_all(changes).await.0
            }
        };
        let due = async move {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            (index, changed) = change => match changed {
                Ok(()) => debouncer.change(tokio::time::Instant::now()),
                Err(_) => open[index] = false,
            },
            () = due => {}
        }
        // Inputs are read when built; seeing a change is all that waiting on it was for.
        for source in &mut sources {
            source.mark_unchanged();
        }
        let now = tokio::time::Instant::now();
        let Some(seen) = debouncer.take_due(now) else {
            continue;
        };
        metrics.observe_debounce(now - seen);
        // Proxies only hear of builds that changed the model or its errors.
        if let Some(snapshot) = pipeline.rebuild(merged(&sources), &metrics, seen.into_std()) {
            snapshots.send_replace(Arc::new(snapshot));
        }
    }
}

/// Mirrors which watched Kubernetes kinds are in sync into the metrics, for as long as the
/// source runs.
async fn report_kube_sync(mut state: watch::Receiver<SyncState>, metrics: Arc<Metrics>) {
    loop {
        let kinds = state.borrow_and_update().clone();
        metrics.record_kube_sync(kinds);
        if state.changed().await.is_err() {
            return;
        }
    }
}

/// Mirrors the Kubernetes watches' object events into `pilot_k8s_cfg_events` and
/// `pilot_k8s_reg_events`, for as long as the source runs: the source's counts are cumulative,
/// so each change adds what grew since the last one.
async fn report_kube_events(mut events: watch::Receiver<KubeEvents>, metrics: Arc<Metrics>) {
    let mut reported = KubeEvents::new();
    loop {
        let counts = events.borrow_and_update().clone();
        for (&(kind, event), &count) in &counts {
            let before = reported.get(&(kind, event)).copied().unwrap_or_default();
            metrics.kube_events(kind, event, count.saturating_sub(before));
        }
        reported = counts;
        if events.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::diagnostic::Origin;
    use crate::inputs::{Decoded, Entry, decode};

    /// A Service whose one ready endpoint is the `edit`th address.
    fn inputs(edit: usize) -> Arc<Inputs> {
        annotated_inputs(edit, json!({}))
    }

    /// [`inputs`], with these annotations on the Service.
    fn annotated_inputs(edit: usize, annotations: serde_json::Value) -> Arc<Inputs> {
        let objects = [
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
                "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "http", "port": 80}]},
            }),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {
                    "name": "web-1", "namespace": "default",
                    "labels": {"kubernetes.io/service-name": "web"},
                },
                "addressType": "IPv4", "ports": [{"name": "http", "port": 80}],
                "endpoints": [{
                    "addresses": [format!("10.1.{}.{}", edit / 250, edit % 250 + 1)],
                    "conditions": {"ready": true},
                }],
            }),
        ];
        let mut inputs = Inputs::default();
        for (line, object) in objects.into_iter().enumerate() {
            let Ok(Decoded::Object(key, object)) = decode(object, "default") else {
                panic!("test objects decode");
            };
            let origin = Origin::File {
                path: "test.yaml".into(),
                line: line + 1,
            };
            inputs.insert(key, Entry { origin, object });
        }
        Arc::new(inputs)
    }

    /// Feeds `edits` input changes, `every` apart, through the pipeline task; returns the
    /// generations it published, in order.
    async fn publish(debounce: Debounce, edits: usize, every: Duration) -> Vec<u64> {
        publish_inputs(debounce, (1..=edits).map(inputs).collect(), every).await
    }

    /// Feeds `edits`, `every` apart, after `inputs(0)`; returns the generations published.
    async fn publish_inputs(
        debounce: Debounce,
        edits: Vec<Arc<Inputs>>,
        every: Duration,
    ) -> Vec<u64> {
        let (source, receiver) = watch::channel(inputs(0));
        let (snapshots, mut published) = watch::channel(Arc::new(Snapshot::default()));
        let pipeline = tokio::spawn(run_pipeline(
            Pipeline::default(),
            vec![receiver],
            snapshots,
            Arc::new(Metrics::new()),
            debounce,
        ));
        let watcher = tokio::spawn(async move {
            let mut generations = Vec::new();
            while published.changed().await.is_ok() {
                generations.push(published.borrow_and_update().generation);
            }
            generations
        });
        for edit in edits {
            source.send_replace(edit);
            tokio::time::sleep(every).await;
        }
        // The pipeline builds what is pending, then ends with its last source.
        drop(source);
        pipeline.await.unwrap().unwrap();
        watcher.await.unwrap()
    }

    #[test]
    fn an_endpoint_edit_updates_the_published_model() {
        let metrics = Metrics::new();
        let mut pipeline = Pipeline::default();
        let now = std::time::Instant::now();
        let first = pipeline
            .rebuild((*inputs(1)).clone(), &metrics, now)
            .expect("the first build publishes");
        assert!(first.endpoint_change.is_none());
        let second = pipeline
            .rebuild((*inputs(2)).clone(), &metrics, now)
            .expect("a moved endpoint publishes");
        let change = second.endpoint_change.as_ref().expect("an endpoint update");
        assert!(change.base.ptr_eq(&Arc::downgrade(&first.model)));
        assert_eq!(
            change.hosts,
            BTreeSet::from(["web.default.svc.cluster.local".to_string()])
        );
        assert_eq!(second.errors, first.errors);
        // The same objects read again: nothing to publish, and no model built.
        assert!(
            pipeline
                .rebuild((*inputs(2)).clone(), &metrics, now)
                .is_none()
        );
        let text = metrics.render();
        assert!(
            text.contains("rudder_config_endpoint_updates_total 1"),
            "{text}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_a_thousand_edits_makes_one_build() {
        let generations = publish(Debounce::default(), 1000, Duration::from_millis(1)).await;
        assert_eq!(generations, [1]);
    }

    #[tokio::test(start_paused = true)]
    async fn edits_that_never_pause_are_built_every_ten_seconds() {
        // 25 s of edits 50 ms apart: built at 10 s and 20 s, then once they stop.
        let generations = publish(Debounce::default(), 500, Duration::from_millis(50)).await;
        assert_eq!(generations, [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_quiet_period_every_edit_is_built() {
        let debounce = Debounce {
            quiet: Duration::ZERO,
            ..Debounce::default()
        };
        let generations = publish(debounce, 20, Duration::from_millis(1)).await;
        assert_eq!(generations, (1..=20).collect::<Vec<u64>>());
    }

    #[tokio::test(start_paused = true)]
    async fn an_edit_no_proxy_depends_on_publishes_nothing() {
        // An annotation rudder does not read is rebuilt, but the model is the same, so proxies
        // are not woken at all.
        let annotated = annotated_inputs(1, json!({"team": "web"}));
        let generations = publish_inputs(
            Debounce::default(),
            vec![inputs(1), annotated],
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(generations, [1]);
    }
}

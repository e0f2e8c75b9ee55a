//! `rudder serve`: wires the pipeline together. Sources (config directories, the Kubernetes API)
//! publish `Inputs`; a model task merges them, rebuilds the model on every change and publishes a
//! `Snapshot` (only when the model or its errors changed); the xDS server and the admin server
//! read snapshots, and the status writer reports rejected objects back to the cluster. This
//! module owns the tasks, their start order and their shutdown; it holds no config logic.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::{AdminState, Readiness, serve_admin};
use crate::diagnostic::ConfigError;
use crate::inputs::Inputs;
use crate::metrics::Metrics;
use crate::model::{self, LastGood};
use crate::source::file::FileWatcher;
use crate::source::kube::NamespaceFilter;
use crate::status::run_status_writer;
use crate::xds::{Registry, Snapshot, XdsOptions, serve_xds};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config_dirs: Vec<PathBuf>,
    pub kubernetes: Option<KubernetesOptions>,
    pub xds_address: SocketAddr,
    pub admin_address: SocketAddr,
    pub xds: XdsOptions,
}

/// How to reach the Kubernetes API and what to read from it.
#[derive(Debug, Clone)]
pub struct KubernetesOptions {
    pub connection: KubeConnection,
    pub namespaces: NamespaceFilter,
    /// Where the status writer's Lease lives.
    pub lease_namespace: String,
}

#[derive(Debug, Clone)]
pub enum KubeConnection {
    Kubeconfig(PathBuf),
    InCluster,
}

impl KubeConnection {
    async fn client(&self) -> anyhow::Result<kube::Client> {
        let config = match self {
            KubeConnection::Kubeconfig(path) => {
                let kubeconfig = Kubeconfig::read_from(path)
                    .with_context(|| format!("read kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .with_context(|| format!("use kubeconfig {}", path.display()))?
            }
            KubeConnection::InCluster => {
                kube::Config::incluster().context("read the in-cluster service account config")?
            }
        };
        kube::Client::try_from(config).context("create a Kubernetes client")
    }
}

/// A running rudder: its bound addresses and the tasks serving them.
pub struct Server {
    xds_address: SocketAddr,
    admin_address: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Server {
    /// Starts the sources and the admin server, waits until every source has loaded everything
    /// once (until then `/ready` answers 503 and no proxy is served), then serves xDS. Ready
    /// once this returns.
    pub async fn start(options: ServeOptions) -> anyhow::Result<Server> {
        anyhow::ensure!(
            !options.config_dirs.is_empty() || options.kubernetes.is_some(),
            "no config source: give --config-dir, --kubeconfig or --in-cluster"
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

        let (snapshots_tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
        let admin = AdminState {
            snapshots: snapshots.clone(),
            metrics: metrics.clone(),
            registry: registry.clone(),
            readiness: readiness.clone(),
        };
        let admin = serve_admin(admin_listener, admin, shutdown());
        tasks.spawn(async move { admin.await.context("admin server") });

        let mut sources = Vec::new();
        if !options.config_dirs.is_empty() {
            let (inputs_tx, inputs) = watch::channel(Arc::new(Inputs::default()));
            let watcher = FileWatcher::start(options.config_dirs.clone(), inputs_tx)
                .context("config directories")?;
            tasks.spawn(async move {
                watcher.run().await;
                Ok(())
            });
            sources.push(inputs);
        }
        if let Some(kubernetes) = &options.kubernetes {
            let client = kubernetes.connection.client().await?;
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
            let writer = run_status_writer(
                client,
                kubernetes.lease_namespace.clone(),
                snapshots.clone(),
                source.statuses.clone(),
            );
            tasks.spawn(async move {
                // The source's watches live as long as this task.
                let _source = source;
                writer.await;
                Ok(())
            });
        }

        let mut pipeline = Pipeline::default();
        let first = pipeline.rebuild(&merged(&sources), &metrics);
        snapshots_tx.send_replace(Arc::new(first));
        tasks.spawn(run_pipeline(
            pipeline,
            sources,
            snapshots_tx,
            metrics.clone(),
        ));

        let xds = serve_xds(
            xds_listener,
            snapshots,
            metrics,
            registry,
            options.xds,
            shutdown(),
        );
        tasks.spawn(async move { xds.await.context("xDS server") });
        readiness.set_ready();
        tracing::info!(%xds_address, %admin_address, "serving");
        Ok(Server {
            xds_address,
            admin_address,
            stop,
            tasks,
        })
    }

    pub fn xds_address(&self) -> SocketAddr {
        self.xds_address
    }

    pub fn admin_address(&self) -> SocketAddr {
        self.admin_address
    }

    /// Runs until a task fails or `shutdown` completes, then stops everything.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let outcome = tokio::select! {
            () = shutdown => Ok(()),
            Some(finished) = self.tasks.join_next() => match finished {
                Ok(Ok(())) => Err(anyhow::anyhow!("a server task ended unexpectedly")),
                Ok(Err(error)) => Err(error),
                Err(panic) => Err(anyhow::anyhow!("a server task panicked: {panic}")),
            },
        };
        self.stop().await;
        outcome
    }

    /// Stops serving and waits for the tasks to end.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        // The file watcher and model task end when their channels close; the servers on `stop`.
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// The state that outlives one build: last good objects and the errors already reported.
#[derive(Default)]
struct Pipeline {
    last_good: LastGood,
    reported: BTreeSet<ConfigError>,
    generation: u64,
}

impl Pipeline {
    fn rebuild(&mut self, inputs: &Inputs, metrics: &Metrics) -> Snapshot {
        let built = model::build(inputs, &self.last_good);
        self.last_good = built.last_good;
        let current: BTreeSet<ConfigError> = built.errors.iter().cloned().collect();
        // Each problem is logged once when it appears and once when it is gone, not per build.
        for error in current.difference(&self.reported) {
            tracing::warn!("config error: {error}");
        }
        for error in self.reported.difference(&current) {
            tracing::info!("config error resolved: {error}");
        }
        self.reported = current;
        metrics.record_build(built.errors.len());
        self.generation += 1;
        Snapshot {
            model: Arc::new(built.model),
            errors: built.errors,
            generation: self.generation,
        }
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

async fn run_pipeline(
    mut pipeline: Pipeline,
    mut sources: Vec<watch::Receiver<Arc<Inputs>>>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    // A source whose sender is gone keeps its last inputs but is not waited on again.
    let mut open: Vec<bool> = vec![true; sources.len()];
    loop {
        let changes = sources
            .iter_mut()
            .zip(&open)
            .enumerate()
            .filter(|(_, (_, open))| **open)
            .map(|(index, (source, _))| Box::pin(async move { (index, source.changed().await) }));
        let changes: Vec<_> = changes.collect();
        if changes.is_empty() {
            return Ok(());
        }
        let ((index, changed), _, _) = futures::future::select_all(changes).await;
        if changed.is_err() {
            open[index] = false;
            continue;
        }
        for source in &mut sources {
            source.mark_unchanged();
        }
        let current = merged(&sources);
        let snapshot = pipeline.rebuild(&current, &metrics);
        // Proxies only hear of builds that changed the model or its errors.
        snapshots.send_if_modified(|published| {
            let changed = published.model != snapshot.model || published.errors != snapshot.errors;
            if changed {
                *published = Arc::new(snapshot);
            }
            changed
        });
    }
}

//! `rudder serve`: wires the pipeline together. The file source publishes `Inputs`; a model task
//! rebuilds the model on every change and publishes a `Snapshot` (only when the model or its
//! errors changed); the xDS server and the admin server read snapshots. This module owns the
//! tasks and their shutdown; it holds no config logic of its own.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::{AdminState, Readiness, serve_admin};
use crate::diagnostic::ConfigError;
use crate::inputs::Inputs;
use crate::metrics::Metrics;
use crate::model::{self, LastGood};
use crate::source::file::FileWatcher;
use crate::xds::{Registry, Snapshot, serve_xds};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub config_dirs: Vec<PathBuf>,
    pub xds_address: SocketAddr,
    pub admin_address: SocketAddr,
}

/// A running rudder: its bound addresses and the tasks serving them.
pub struct Server {
    xds_address: SocketAddr,
    admin_address: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Server {
    /// Loads the config, binds both ports and starts serving; ready once this returns.
    pub async fn start(options: ServeOptions) -> anyhow::Result<Server> {
        anyhow::ensure!(
            !options.config_dirs.is_empty(),
            "no config source: give at least one --config-dir"
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

        let (inputs_tx, inputs) = watch::channel(Arc::new(Inputs::default()));
        let watcher = FileWatcher::start(options.config_dirs.clone(), inputs_tx)
            .context("config directories")?;
        tasks.spawn(async move {
            watcher.run().await;
            Ok(())
        });

        let mut pipeline = Pipeline::default();
        let first = pipeline.rebuild(&inputs.borrow(), &metrics);
        let (snapshots_tx, snapshots) = watch::channel(Arc::new(first));
        tasks.spawn(run_pipeline(
            pipeline,
            inputs,
            snapshots_tx,
            metrics.clone(),
        ));

        let xds_listener = TcpListener::bind(options.xds_address)
            .await
            .with_context(|| format!("bind xDS address {}", options.xds_address))?;
        let admin_listener = TcpListener::bind(options.admin_address)
            .await
            .with_context(|| format!("bind admin address {}", options.admin_address))?;
        let xds_address = xds_listener.local_addr()?;
        let admin_address = admin_listener.local_addr()?;

        let xds = serve_xds(
            xds_listener,
            snapshots.clone(),
            metrics.clone(),
            registry.clone(),
            shutdown(),
        );
        tasks.spawn(async move { xds.await.context("xDS server") });
        let admin = AdminState {
            snapshots,
            metrics,
            registry,
            readiness: readiness.clone(),
        };
        tasks.spawn(async move {
            serve_admin(admin_listener, admin, shutdown())
                .await
                .context("admin server")
        });
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

async fn run_pipeline(
    mut pipeline: Pipeline,
    mut inputs: watch::Receiver<Arc<Inputs>>,
    snapshots: watch::Sender<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    while inputs.changed().await.is_ok() {
        let current = inputs.borrow_and_update().clone();
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
    Ok(())
}

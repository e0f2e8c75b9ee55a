//! Mesh config sources: the `--mesh-config` file, or the `istio` ConfigMap of the control-plane
//! namespace (its `mesh` and `meshNetworks` keys), each followed as it changes and published as
//! [`Inputs`] that hold only [`Inputs::mesh_config`]. They read text and nothing more: whether
//! the text is a mesh config istiod would accept is `model::build`'s (through `mesh_config`),
//! which keeps the last good one in force otherwise.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::publish_if_changed;
use crate::diagnostic::Origin;
use crate::inputs::{Inputs, MeshConfigText};

/// The ConfigMap istiod reads its mesh config from (without a revision).
pub const CONFIG_MAP_NAME: &str = "istio";
/// Its keys.
const MESH_KEY: &str = "mesh";
const NETWORKS_KEY: &str = "meshNetworks";

#[derive(Debug, thiserror::Error)]
pub enum MeshSourceError {
    #[error("cannot read the mesh config file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot watch the mesh config file {path}: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    #[error("the Kubernetes mesh config watch ended before it listed the ConfigMap")]
    NotListed,
}

fn file_inputs(path: &Path, text: String) -> Arc<Inputs> {
    Arc::new(Inputs {
        mesh_config: Some(MeshConfigText {
            origin: Origin::File {
                path: path.to_path_buf(),
                line: 1,
            },
            holder: String::new(),
            mesh: Some(text),
            networks: None,
        }),
        ..Inputs::default()
    })
}

/// Follows a mesh config file: its directory is watched (so a ConfigMap volume's symlink swap is
/// seen), and the file is read again once changes have been quiet for `quiet`.
pub struct MeshFile {
    path: PathBuf,
    quiet: Duration,
    changes: mpsc::Receiver<()>,
    tx: watch::Sender<Arc<Inputs>>,
    /// The OS watch lives as long as this.
    _watcher: RecommendedWatcher,
}

impl MeshFile {
    /// Reads the file (it must exist) and publishes it before returning, then watches it.
    pub fn start(
        path: PathBuf,
        quiet: Duration,
    ) -> Result<(MeshFile, watch::Receiver<Arc<Inputs>>), MeshSourceError> {
        let (changed, changes) = mpsc::channel(1);
        let mut watcher = notify::recommended_watcher(move |_: notify::Result<notify::Event>| {
            // A full channel already means "read again".
            let _ = changed.try_send(());
        })
        .map_err(|source| MeshSourceError::Watch {
            path: path.clone(),
            source,
        })?;
        let directory = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        watcher
            .watch(&directory, RecursiveMode::NonRecursive)
            .map_err(|source| MeshSourceError::Watch {
                path: path.clone(),
                source,
            })?;
        // Watching starts before the first read, so no change falls between the two.
        let text =
            std::fs::read_to_string(&path).map_err(|source| MeshSourceError::Unreadable {
                path: path.clone(),
                source,
            })?;
        let (tx, rx) = watch::channel(file_inputs(&path, text));
        Ok((
            MeshFile {
                path,
                quiet,
                changes,
                tx,
                _watcher: watcher,
            },
            rx,
        ))
    }

    /// Reads the file again after each burst of changes, until every receiver is gone. A file
    /// that cannot be read (removed, say) keeps the text last read in force.
    pub async fn run(mut self) {
        loop {
            tokio::select! {
                change = self.changes.recv() => if change.is_none() { return },
                () = self.tx.closed() => return,
            }
            // A file written in place is read once writes have stopped for `quiet`.
            loop {
                tokio::time::sleep(self.quiet).await;
                if self.changes.try_recv().is_err() {
                    break;
                }
                while self.changes.try_recv().is_ok() {}
            }
            let path = self.path.clone();
            match tokio::task::spawn_blocking(move || std::fs::read_to_string(path)).await {
                Ok(Ok(text)) => publish_if_changed(&self.tx, file_inputs(&self.path, text)),
                Ok(Err(error)) => tracing::warn!(
                    path = %self.path.display(),
                    %error,
                    "cannot read the mesh config file; the last one read stays in force"
                ),
                Err(_) => return,
            }
        }
    }
}

/// What the ConfigMap holds, as inputs; `None` (no ConfigMap) is istiod's defaults.
fn config_map_inputs(config_map: Option<&ConfigMap>, namespace: &str) -> Arc<Inputs> {
    let mesh_config = config_map.map(|config_map| {
        let data = config_map.data.clone().unwrap_or_default();
        MeshConfigText {
            origin: Origin::Kubernetes,
            holder: format!("ConfigMap {namespace}/{CONFIG_MAP_NAME}"),
            mesh: data.get(MESH_KEY).cloned(),
            networks: data.get(NETWORKS_KEY).cloned(),
        }
    });
    Arc::new(Inputs {
        mesh_config,
        ..Inputs::default()
    })
}

/// Watches the `istio` ConfigMap of `namespace`; returns once it has been listed (so the first
/// build already uses it), with the task that follows it. Watch failures are retried with
/// kube-rs's backoff, and what was last seen stays in force meanwhile. When RBAC forbids reading
/// it, waiting would keep rudder from ever serving: it starts on istiod's defaults, says so, and
/// keeps trying.
pub async fn watch_config_map(
    client: kube::Client,
    namespace: String,
) -> Result<
    (
        impl Future<Output = ()> + Send + 'static,
        watch::Receiver<Arc<Inputs>>,
    ),
    MeshSourceError,
> {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={CONFIG_MAP_NAME}"));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let (tx, rx) = watch::channel(Arc::new(Inputs::default()));
    let mut listing: Option<Option<ConfigMap>> = None;
    let mut current: Option<ConfigMap> = None;
    // Until the first list is done, this function is the one reading events.
    loop {
        match events.next().await {
            None => return Err(MeshSourceError::NotListed),
            Some(Ok(event)) => {
                if apply_event(event, &mut listing, &mut current) {
                    break;
                }
            }
            Some(Err(watcher::Error::InitialListFailed(kube::Error::Api(status))))
                if status.code == 403 =>
            {
                tracing::error!(
                    namespace,
                    error = %status.message,
                    "may not read ConfigMap {namespace}/{CONFIG_MAP_NAME} (grant get, list and \
                     watch on configmaps there); istiod's default mesh config applies until it \
                     can be read"
                );
                break;
            }
            Some(Err(error)) => {
                tracing::warn!(%error, namespace, "cannot list the mesh config ConfigMap; retrying");
            }
        }
    }
    publish_if_changed(&tx, config_map_inputs(current.as_ref(), &namespace));
    let follow = async move {
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    apply_event(event, &mut listing, &mut current);
                    publish_if_changed(&tx, config_map_inputs(current.as_ref(), &namespace));
                }
                Err(error) => tracing::debug!(%error, "mesh config watch failed; retrying"),
            }
        }
    };
    Ok((follow, rx))
}

/// Applies one watch event to what is known of the ConfigMap; true when a list just completed.
fn apply_event(
    event: Event<ConfigMap>,
    listing: &mut Option<Option<ConfigMap>>,
    current: &mut Option<ConfigMap>,
) -> bool {
    match event {
        Event::Init => *listing = Some(None),
        Event::InitApply(config_map) => *listing = Some(Some(config_map)),
        Event::InitDone => {
            *current = listing.take().flatten();
            return true;
        }
        Event::Apply(config_map) => *current = Some(config_map),
        Event::Delete(_) => *current = None,
    }
    false
}

//! Real istiod for tests that compare rudder with it: `scripts/istiod up` on a config directory
//! with a mesh config (file mode), or watching a Kubernetes API server (Kubernetes mode), down
//! again when dropped (and when the test process dies, through the script's watchdog). Knows
//! nothing of what the tests compare.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

/// istiod (`scripts/istiod`) on a config directory; stopped when dropped.
pub struct Istiod {
    run_dir: tempfile::TempDir,
    /// Its plaintext xDS address.
    pub xds: SocketAddr,
    /// Its HTTP address (`/debug/*`, `/metrics`), `127.0.0.1:PORT`.
    pub http: String,
}

impl Istiod {
    /// istiod on `config_dir`, with the mesh config file `mesh` (else the script's own).
    pub fn up(config_dir: &Path, mesh: Option<&Path>) -> Result<Istiod, String> {
        let mut command = Command::new(script());
        command.arg("up").arg(config_dir);
        Self::start(command, mesh)
    }

    /// istiod on its production path: the Kubernetes registry and the Istio CRs of the cluster
    /// `kubeconfig` names (`RUDDER_ISTIOD_KUBECONFIG=... scripts/istiod up`), with the mesh config
    /// of that cluster's `istio` ConfigMap in istio-system unless `mesh` names a file.
    pub fn up_kubernetes(kubeconfig: &Path, mesh: Option<&Path>) -> Result<Istiod, String> {
        let mut command = Command::new(script());
        command
            .arg("up")
            .env("RUDDER_ISTIOD_KUBECONFIG", kubeconfig);
        Self::start(command, mesh)
    }

    fn start(mut command: Command, mesh: Option<&Path>) -> Result<Istiod, String> {
        let run_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        command
            .env("RUDDER_ISTIOD_DIR", run_dir.path())
            .env("RUDDER_ISTIOD_OWNER_PID", std::process::id().to_string());
        if let Some(mesh) = mesh {
            command.env("RUDDER_ISTIOD_MESH_CONFIG", mesh);
        }
        let output = command
            .output()
            .map_err(|error| format!("run scripts/istiod up: {error}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!(
                "scripts/istiod up failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let xds = stdout
            .lines()
            .rfind(|line| !line.trim().is_empty())
            .and_then(|line| line.trim().parse().ok())
            .ok_or_else(|| format!("scripts/istiod up printed no address: {stdout:?}"))?;
        // `up` keeps its ports in the run dir.
        let state = std::fs::read_to_string(run_dir.path().join("istiod.env"))
            .map_err(|error| format!("scripts/istiod's state: {error}"))?;
        let port = state
            .lines()
            .find_map(|line| line.strip_prefix("HTTP_PORT="))
            .ok_or("scripts/istiod's state has no HTTP_PORT")?;
        let http = format!("127.0.0.1:{port}");
        Ok(Istiod { run_dir, xds, http })
    }

    /// [`Istiod::wait_for_documents`] for the objects of the files in `config_dir`.
    pub async fn wait_for_config(&self, config_dir: &Path) -> Result<(), String> {
        let mut documents = Vec::new();
        for entry in std::fs::read_dir(config_dir).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            let parsed = rudder::inputs::yaml::parse_documents(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            documents.extend(parsed.into_iter().map(|document| document.value));
        }
        self.wait_for_documents(&documents).await
    }

    /// Waits until istiod holds the Istio objects among `documents` (`/debug/configz` lists
    /// them all) and its service registry has every ServiceEntry host and Service among them
    /// (`/debug/registryz`), then for longer than istiod's push debounce. istiod opens its xDS
    /// port before its config store and registries are filled, and builds the config it serves
    /// on a debounced push after that: a proxy attached earlier gets a config without them first.
    pub async fn wait_for_documents(&self, documents: &[serde_json::Value]) -> Result<(), String> {
        let mut objects = 0;
        let mut hosts = Vec::new();
        for value in documents {
            let api_version = value["apiVersion"].as_str().unwrap_or_default();
            if api_version.contains(".istio.io/") {
                objects += 1;
            }
            match (value["kind"].as_str(), api_version) {
                (Some("ServiceEntry"), _) => {
                    let listed = value["spec"]["hosts"].as_array().into_iter().flatten();
                    hosts.extend(listed.filter_map(|host| host.as_str()).map(str::to_string));
                }
                (Some("Service"), "v1") => {
                    let metadata = &value["metadata"];
                    if let (Some(name), Some(namespace)) =
                        (metadata["name"].as_str(), metadata["namespace"].as_str())
                    {
                        hosts.push(format!("{name}.{namespace}.svc.cluster.local"));
                    }
                }
                _ => {}
            }
        }
        let get = |path: &'static str| async move {
            let url = format!("http://{}/debug/{path}", self.http);
            match reqwest::get(url).await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let configz: serde_json::Value =
                serde_json::from_str(&get("configz").await).unwrap_or_default();
            let held = configz.as_array().map_or(0, Vec::len);
            let registry = get("registryz").await;
            let missing: Vec<&String> = hosts
                .iter()
                .filter(|host| !registry.contains(&format!("\"{host}\"")))
                .collect();
            if held >= objects && missing.is_empty() {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "istiod holds {held} of {objects} objects; registry lacks {missing:?}"
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // istiod's debounce (PILOT_DEBOUNCE_AFTER, 100 ms) and the push context it then builds.
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        Ok(())
    }

    /// istiod's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.run_dir.path().join("logs/istiod.log")).unwrap_or_default()
    }
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/istiod")
}

impl Drop for Istiod {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("down")
            .env("RUDDER_ISTIOD_DIR", self.run_dir.path())
            .output();
    }
}

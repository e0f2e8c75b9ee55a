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

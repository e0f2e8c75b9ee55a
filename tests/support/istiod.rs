//! Real istiod for tests that compare rudder with it: `scripts/istiod up` on a config directory
//! with a mesh config, down again when dropped (and when the test process dies, through the
//! script's watchdog). Knows nothing of what the tests compare.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

/// istiod (`scripts/istiod`) on a config directory with a mesh config; stopped when dropped.
pub struct Istiod {
    run_dir: tempfile::TempDir,
    pub xds: SocketAddr,
}

impl Istiod {
    pub fn up(config_dir: &Path, mesh: &Path) -> Result<Istiod, String> {
        let run_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = Command::new(script())
            .arg("up")
            .arg(config_dir)
            .env("RUDDER_ISTIOD_DIR", run_dir.path())
            .env("RUDDER_ISTIOD_MESH_CONFIG", mesh)
            .env("RUDDER_ISTIOD_OWNER_PID", std::process::id().to_string())
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
        Ok(Istiod { run_dir, xds })
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

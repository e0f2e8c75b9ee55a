//! The Istio release the tests compare with: the `istio.io/istio` module hack/istiod/go.mod pins
//! (its samples, test data and dashboards) and istioctl built from it by `scripts/istiod`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory of the pinned `istio.io/istio` module, downloaded through the Go module proxy
/// if it is not in the module cache yet.
pub fn istio_module() -> PathBuf {
    let module_dir = root().join("hack/istiod");
    let go_mod = std::fs::read_to_string(module_dir.join("go.mod")).expect("hack/istiod/go.mod");
    let version = go_mod
        .lines()
        .find_map(|line| line.trim().strip_prefix("istio.io/istio "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("hack/istiod/go.mod requires istio.io/istio");
    let output = Command::new("go")
        .args(["mod", "download", "-json"])
        .arg(format!("istio.io/istio@{version}"))
        .current_dir(&module_dir)
        .output()
        .expect("run `go mod download` (Go is needed by the test suite)");
    assert!(
        output.status.success(),
        "go mod download istio.io/istio@{version} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let info: Value = serde_json::from_slice(&output.stdout).expect("go mod download -json");
    PathBuf::from(info["Dir"].as_str().expect("the module's directory"))
}

/// istioctl: `ISTIOCTL`, else the one `scripts/istiod build-istioctl` builds (cached).
pub fn istioctl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ISTIOCTL") {
        return PathBuf::from(path);
    }
    let output = Command::new(root().join("scripts/istiod"))
        .arg("build-istioctl")
        .output()
        .expect("run scripts/istiod build-istioctl");
    assert!(
        output.status.success(),
        "scripts/istiod build-istioctl failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    PathBuf::from(stdout.lines().last().expect("the istioctl path").trim())
}

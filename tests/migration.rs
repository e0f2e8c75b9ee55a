//! The README's migration guide, first step, for real: on a real API server with Istio's own CRDs
//! and objects of kinds rudder translates and does not, the README's shell block exports every
//! Istio object with kubectl and `rudder validate` reads the export. It must name the objects
//! rudder would not carry out (a deny-all AuthorizationPolicy among them) as warnings, check the
//! rules alone (a destination host no exported object defines is a warning), and exit 0.

mod support;

use std::path::Path;
use std::process::Command;

use support::cluster::DevCluster;

const OBJECTS: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews]
  http:
    - route:
        - destination: {host: reviews, subset: v2}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: shop}
spec:
  host: reviews
  subsets:
    - name: v2
      labels: {version: v2}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: shop}
spec: {}
";

/// The README's sh block that runs `needle`, as written (blocks inside list items are indented;
/// the fence's indentation is taken off every line).
fn readme_block(needle: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let mut blocks = Vec::new();
    let mut current: Option<(usize, Vec<&str>)> = None;
    for line in readme.lines() {
        match &mut current {
            None => {
                if line.trim_start() == "```sh" {
                    current = Some((line.len() - line.trim_start().len(), Vec::new()));
                }
            }
            Some((indent, lines)) => {
                if line.trim() == "```" {
                    blocks.push(lines.join("\n"));
                    current = None;
                } else {
                    lines.push(line.get(*indent..).unwrap_or_default());
                }
            }
        }
    }
    blocks
        .into_iter()
        .find(|block| block.contains(needle))
        .unwrap_or_else(|| panic!("README.md has no sh block with {needle:?}"))
}

#[test]
fn the_guides_export_and_validate_names_what_rudder_would_not_carry_out() {
    let cluster = DevCluster::up("migration");
    cluster.install_istio_crds();
    cluster.ok(&["apply", "-f", "-"], OBJECTS);

    let block = readme_block("rudder validate istio-config");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rudder = Path::new(env!("CARGO_BIN_EXE_rudder"));
    let path = format!(
        "{}:{}",
        rudder.parent().expect("the binary's directory").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &block])
        .current_dir(dir.path())
        .env("PATH", path)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .output()
        .expect("run the README's block");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // `rudder validate` exits 0 when no problem is an error.
    assert!(
        output.status.success(),
        "the README's block failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let has = |needles: &[&str]| {
        lines
            .iter()
            .any(|line| needles.iter().all(|needle| line.contains(needle)))
    };
    assert!(
        has(&[
            "AuthorizationPolicy shop/deny-all",
            "warning",
            "NOT enforced"
        ]),
        "{stdout}"
    );
    assert!(has(&["VirtualService shop/reviews", "warning"]), "{stdout}");
    assert!(stderr.contains("rules are checked alone"), "{stderr}");
}

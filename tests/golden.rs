//! Golden tests: every directory under `testdata/golden/` is a case. Its `input/` is a config
//! directory, `proxy.yaml` (optional) names the proxy (`id` and `metadata`), `mesh.yaml`
//! (optional) is the mesh config, `domain.txt` (optional) the `--domain`, and `expected/` holds
//! one JSON file per xDS type plus `errors.txt` (`secrets.json` only when the proxy gets Secrets;
//! private keys show as `[redacted]` there, while Envoy validates the real ones). Every case's
//! resources must also pass `envoy --mode validate`.
//!
//! `RUDDER_UPDATE_GOLDEN=1 cargo test --test golden` rewrites `expected/` and deletes files in it
//! that the case no longer produces.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rudder::diagnostic::Origin;
use rudder::envoy_json::resources_to_json;
use rudder::inputs::MeshConfigText;
use rudder::model::{LastGood, Settings, build_with};
use rudder::proxy::{Proxy, SecretAccess};
use rudder::source::file::load_dirs;
use rudder::translate::{ResourceType, translate};
use serde_json::Value;

const DEFAULT_PROXY: &str = "sidecar~10.0.0.1~client.default~default.svc.cluster.local";

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("testdata/golden exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no golden cases under {}",
        root.display()
    );
    cases
}

fn proxy_of(case: &Path) -> Proxy {
    let path = case.join("proxy.yaml");
    let (id, metadata) = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let value: Value = serde_saphyr::from_str(&text).expect("proxy.yaml parses");
            let id = value["id"]
                .as_str()
                .expect("proxy.yaml has an id")
                .to_string();
            (id, value.get("metadata").cloned().unwrap_or(Value::Null))
        }
        Err(_) => (DEFAULT_PROXY.to_string(), Value::Null),
    };
    let mut proxy = Proxy::parse(&id, &metadata).expect("the case's proxy id parses");
    // Goldens show what a gateway allowed to read its namespace's Secrets gets.
    proxy.secret_access = SecretAccess::All;
    proxy
}

/// What a case produces: file name -> contents.
fn outputs(case: &Path) -> (BTreeMap<String, String>, rudder::translate::Resources) {
    let source = load_dirs(&[case.join("input")]);
    let mut inputs = source.inputs();
    let mesh = case.join("mesh.yaml");
    if let Ok(text) = std::fs::read_to_string(&mesh) {
        inputs.mesh_config = Some(MeshConfigText {
            origin: Origin::File {
                path: mesh,
                line: 1,
            },
            holder: String::new(),
            mesh: Some(text),
            networks: None,
        });
    }
    let mut settings = Settings::default();
    if let Ok(domain) = std::fs::read_to_string(case.join("domain.txt")) {
        settings.dns_domain = domain.trim().to_string();
    }
    let built = build_with(&inputs, &LastGood::default(), &settings);
    let proxy = proxy_of(case).with_workload_labels(&built.model);
    let resources = translate(&built.model, &proxy);
    let mut files = BTreeMap::new();
    for ty in ResourceType::ALL {
        let json = resources_to_json(&resources, ty).expect("resources render");
        let name = match ty {
            ResourceType::Cluster => "clusters.json",
            ResourceType::Endpoint => "endpoints.json",
            ResourceType::Listener => "listeners.json",
            ResourceType::Route => "routes.json",
            // Only gateways with credentials get any: other cases have no file for them.
            ResourceType::Secret if resources.secrets.is_empty() => continue,
            ResourceType::Secret => "secrets.json",
        };
        files.insert(
            name.to_string(),
            serde_json::to_string_pretty(&json).expect("JSON renders") + "\n",
        );
    }
    let prefix = format!("{}/", case.display());
    let errors: String = built
        .errors
        .iter()
        .map(|error| error.to_string().replace(&prefix, "") + "\n")
        .collect();
    files.insert("errors.txt".to_string(), errors);
    (files, resources)
}

#[test]
fn golden_cases() {
    let update = std::env::var_os("RUDDER_UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for case in cases() {
        let name = case
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let (files, resources) = outputs(&case);
        let expected_dir = case.join("expected");
        if update {
            std::fs::create_dir_all(&expected_dir).expect("create expected/");
            for entry in std::fs::read_dir(&expected_dir).expect("read expected/") {
                let path = entry.expect("readable entry").path();
                let stale = path
                    .file_name()
                    .is_some_and(|f| !files.contains_key(&*f.to_string_lossy()));
                if stale {
                    std::fs::remove_file(&path).expect("delete a stale expected file");
                }
            }
            for (file, contents) in &files {
                std::fs::write(expected_dir.join(file), contents).expect("write expected file");
            }
        } else {
            for (file, contents) in &files {
                let expected = std::fs::read_to_string(expected_dir.join(file)).unwrap_or_default();
                if &expected != contents {
                    failures.push(format!(
                        "{name}/{file} differs from what rudder produces (RUDDER_UPDATE_GOLDEN=1 to accept):\n{}",
                        first_difference(&expected, contents)
                    ));
                }
            }
        }
        if let Err(error) = support::envoy::envoy_validate(&resources) {
            failures.push(format!(
                "{name}: envoy --mode validate rejects the resources:\n{error}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn first_difference(expected: &str, actual: &str) -> String {
    let mut expected_lines = expected.lines();
    for (number, line) in actual.lines().enumerate() {
        let wanted = expected_lines.next();
        if wanted != Some(line) {
            return format!(
                "  line {}: expected {:?}\n  line {}: actual   {line:?}",
                number + 1,
                wanted,
                number + 1
            );
        }
    }
    "  expected has more lines".to_string()
}

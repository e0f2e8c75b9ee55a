//! rudder's istiod-shaped debug endpoints against a real istiod (`scripts/istiod`, Istio 1.31):
//! both serve the same ServiceEntries (and an AuthorizationPolicy, a kind rudder does not
//! translate) to a stock Envoy each, and what `/debug/syncz`, `/debug/adsz`, `/debug/connections`,
//! `/debug/configz`, `/debug/config_dump?proxyID=`, `/debug/registryz` and `/debug/endpointz`
//! answer must have the same shape on both: the same keys at the same places, holding the same
//! JSON types. What istiod shows and rudder does not keep is listed in [`ISTIOD_ONLY`], each with
//! its reason (README, "Debug endpoints"). Config dumps are compared down to the resources, not
//! inside them: what the resources hold is the translation's business (`mesh_config_istiod.rs`).
//! Each side's answers are kept under `CARGO_TARGET_TMPDIR/debug_istiod/`.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rudder::bootstrap::AdsApiType;
use rudder::serve::Server;
use serde_json::{Value, json};
use support::envoy_process::EnvoyProcess;
use support::istiod::Istiod;
use support::mesh::local_serve_options;

const NODE: &str = "sidecar~127.0.0.1~client.default~default.svc.cluster.local";
const PROXY: &str = "client.default";

const CONFIG: &str = "\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default, labels: {team: web}}
spec:
  hosts: [web.mesh.test]
  addresses: [10.96.8.1]
  ports: [{number: 19881, name: http, protocol: HTTP}]
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints: [{address: 10.1.8.1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  ports: [{number: 19882, name: tcp, protocol: TCP}]
  location: MESH_EXTERNAL
  resolution: DNS
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: default}
spec: {}
";

/// `ENDPOINT PATH-PREFIX` (paths as [`shape`] writes them) istiod answers and rudder leaves out,
/// with why.
const ISTIOD_ONLY: &[(&str, &str)] = &[(
    "registryz [].Attributes.Labels.",
    "rudder's model keeps no labels of a ServiceEntry or Service: `Labels` is null",
)];

/// `ENDPOINT PATH-PREFIX` rudder answers and istiod does not, with why.
const RUDDER_ONLY: &[(&str, &str)] = &[];

/// The endpoints compared, and how deep (config dumps stop at the resources).
fn endpoints() -> Vec<(String, usize)> {
    vec![
        ("syncz".to_string(), usize::MAX),
        ("adsz".to_string(), usize::MAX),
        (format!("adsz?proxyID={PROXY}"), usize::MAX),
        ("connections".to_string(), usize::MAX),
        ("configz".to_string(), usize::MAX),
        (format!("config_dump?proxyID={PROXY}"), 5),
        (format!("config_dump?proxyID={PROXY}&include_eds"), 5),
        ("registryz".to_string(), usize::MAX),
        ("endpointz".to_string(), usize::MAX),
    ]
}

/// A JSON value's shape: every path to a value (object keys joined by `.`, `[]` for list items,
/// all items merged) with the value's JSON type, down to `depth` levels.
fn shape(value: &Value, depth: usize) -> BTreeMap<String, &'static str> {
    fn walk(
        value: &Value,
        path: String,
        depth: usize,
        shapes: &mut BTreeMap<String, &'static str>,
    ) {
        let kind = match value {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "list",
            Value::Object(_) => "object",
        };
        // A field both write, one as null where the other has an empty object or list, is the
        // same field: Go's encoding/json writes a nil map or slice as null.
        shapes.entry(path.clone()).or_insert(kind);
        if depth == 0 {
            return;
        }
        match value {
            Value::Array(items) => {
                for item in items {
                    walk(item, format!("{path}[]"), depth - 1, shapes);
                }
            }
            Value::Object(fields) => {
                for (key, field) in fields {
                    walk(field, format!("{path}.{key}"), depth - 1, shapes);
                }
            }
            _ => {}
        }
    }
    let mut shapes = BTreeMap::new();
    walk(value, String::new(), depth, &mut shapes);
    shapes
}

async fn get(admin: &str, request: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{admin}/debug/{request}"))
        .await
        .expect("the debug port answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// Every compared endpoint's answer, once a stock Envoy attached to `xds` has ACKed clusters
/// and listeners.
async fn answers(name: &str, xds: std::net::SocketAddr, admin: &str) -> BTreeMap<String, Value> {
    let metadata = json!({"NAMESPACE": "default", "LABELS": {"app": "client"}});
    let envoy = EnvoyProcess::start(NODE, metadata, xds, AdsApiType::Grpc);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, syncz) = get(admin, "syncz").await;
        let acked = serde_json::from_str::<Value>(&syncz).is_ok_and(|syncz| {
            syncz[0]["cluster_acked"].is_string() && syncz[0]["listener_acked"].is_string()
        });
        if acked {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: Envoy never ACKed clusters and listeners: {syncz}\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("debug_istiod");
    std::fs::create_dir_all(&kept).expect("a directory for the answers");
    let mut answers = BTreeMap::new();
    for (request, _) in endpoints() {
        let (status, body) = get(admin, &request).await;
        assert_eq!(status, 200, "{name} {request}: {body}");
        let file = format!("{name}-{}.json", request.replace(['?', '&', '='], "_"));
        std::fs::write(kept.join(file), &body).expect("keep the answer");
        let value = serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("{name} {request}: not JSON ({error}): {body}"));
        answers.insert(request, value);
    }
    drop(envoy);
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_endpoints_have_istiods_shapes() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("config dir");
    std::fs::write(config_dir.join("config.yaml"), CONFIG).expect("write config");

    let server = Server::start(local_serve_options(vec![config_dir.clone()]))
        .await
        .expect("rudder starts");
    let admin = server.admin_address().to_string();
    let rudder = answers("rudder", server.xds_address(), &admin).await;
    server.stop().await;

    let istiod = Istiod::up(&config_dir, None).unwrap_or_else(|error| panic!("{error}"));
    let reference = answers("istiod", istiod.xds, &istiod.http.clone()).await;
    drop(istiod);

    let listed = |list: &[(&str, &str)], request: &str, path: &str| {
        list.iter().any(|(listed, _)| {
            listed.split_once(' ').is_some_and(|(endpoint, prefix)| {
                request.split('?').next() == Some(endpoint) && path.starts_with(prefix)
            })
        })
    };
    let mut differences = Vec::new();
    for (request, depth) in endpoints() {
        let ours = shape(&rudder[&request], depth);
        let theirs = shape(&reference[&request], depth);
        for (path, kind) in &theirs {
            match ours.get(path) {
                None if listed(ISTIOD_ONLY, &request, path) => {}
                None => differences.push(format!("{request}: istiod has {path} ({kind})")),
                // null on one side is the other's empty value (Go's nil maps and slices).
                Some(ours) if ours == kind || *ours == "null" || *kind == "null" => {}
                Some(ours) => {
                    differences.push(format!("{request}: {path} is {ours}, istiod's {kind}"))
                }
            }
        }
        for (path, kind) in &ours {
            if !theirs.contains_key(path) && !listed(RUDDER_ONLY, &request, path) {
                differences.push(format!("{request}: rudder has {path} ({kind})"));
            }
        }
    }
    assert!(
        differences.is_empty(),
        "shapes differ from istiod's:\n{}",
        differences.join("\n")
    );

    // The untranslated kind is in configz as istiod lists it: an object of its kind.
    let policy = |configz: &Value| {
        configz.as_array().into_iter().flatten().any(|object| {
            object["kind"] == "AuthorizationPolicy" && object["metadata"]["name"] == "deny-all"
        })
    };
    assert!(policy(&reference["configz"]), "{}", reference["configz"]);
    assert!(policy(&rudder["configz"]), "{}", rudder["configz"]);
}

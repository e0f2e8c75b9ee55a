use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use super::*;
use crate::inputs::yaml::parse_documents;

/// The `istio.io/api` release whose CRDs `istio_fields.json` is made from: the one
/// `hack/istiod/go.mod` builds istiod with.
const ISTIO_API: &str = "istio.io/api@v1.31.1";

fn check(kind: Kind, object: Value) -> Result<(), String> {
    check_unknown_fields(kind, &object).map_err(|error| error.to_string())
}

#[test]
fn misspelled_fields_are_refused_with_the_nearest_known_one() {
    let vs = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "a", "anything": 1}, "status": {"whatever": true},
        "spec": {"hosts": ["a"], "http": [{"route": []}, {"timeuot": "1s"}]}});
    assert_eq!(
        check(Kind::VirtualService, vs),
        Err("spec.http[1].timeuot: unknown field (did you mean timeout?)".into())
    );
    let dr =
        json!({"spec": {"trafficPolicy": {"connectionPool": {"tcp": {"max_connections": 1}}}}});
    assert_eq!(
        check(Kind::DestinationRule, dr),
        Err(
            "spec.trafficPolicy.connectionPool.tcp.max_connections: unknown field \
             (did you mean maxConnections?)"
                .into()
        )
    );
    let far = json!({"spec": {"selector": {}, "action": "DENY", "colour": "red"}});
    assert_eq!(
        check(Kind::AuthorizationPolicy, far),
        Err("spec.colour: unknown field".into())
    );
    assert_eq!(
        check(Kind::Sidecar, json!({"spc": {}})),
        Err("spc: unknown field (did you mean spec?)".into())
    );
    // Map keys are data; their values' fields are checked.
    let headers = json!({"spec": {"http": [{"match": [{"headers": {"x-user": {"exakt": "a"}}}]}]}});
    assert_eq!(
        check(Kind::VirtualService, headers),
        Err(
            "spec.http[0].match[0].headers[x-user].exakt: unknown field (did you mean exact?)"
                .into()
        )
    );
}

#[test]
fn open_and_kubernetes_values_are_not_looked_into() {
    let envoy_filter = json!({"spec": {"configPatches": [{"applyTo": "HTTP_FILTER",
        "patch": {"operation": "MERGE", "value": {"anything": {"goes": 1}}}}]}});
    assert_eq!(check(Kind::EnvoyFilter, envoy_filter), Ok(()));
    let labels = json!({"spec": {"subsets": [{"name": "v1", "labels": {"any-label": "x"}}]}});
    assert_eq!(check(Kind::DestinationRule, labels), Ok(()));
    assert_eq!(
        check(Kind::Service, json!({"spec": {"bogus": 1}, "extra": 2})),
        Ok(())
    );
}

#[test]
fn suggestions_are_typos_only() {
    let known = ["timeout", "retries", "route"];
    assert_eq!(nearest("timeuot", known.into_iter()), Some("timeout"));
    assert_eq!(nearest("Retries", known.into_iter()), Some("retries"));
    assert_eq!(nearest("rout", known.into_iter()), Some("route"));
    assert_eq!(nearest("mirror", known.into_iter()), None);
    assert_eq!(nearest(&"t".repeat(10_000), known.into_iter()), None);
}

/// Every field of every spec type rudder reads is a field of Istio's: the check never refuses
/// what rudder translates.
#[test]
fn rudder_reads_no_field_istio_lacks() {
    fn paths(schema: &Value, node: &Node, at: &str, missing: &mut Vec<String>) {
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, property) in properties.into_iter().flatten() {
            let path = format!("{at}.{name}");
            let Node::Fields(known) = node else { return };
            let Some(child) = known.get(name) else {
                missing.push(path);
                continue;
            };
            let inner = match child {
                Node::List(item) => (item.as_ref(), property.get("items")),
                Node::Map(item) => (item.as_ref(), property.get("additionalProperties")),
                other => (other, Some(property)),
            };
            if let (node, Some(schema)) = inner {
                paths(schema, node, &path, missing);
            }
        }
    }
    use crate::istio;
    use crate::istio::spec_schema;
    let schemas = [
        (Kind::VirtualService, spec_schema::<istio::VirtualService>()),
        (
            Kind::DestinationRule,
            spec_schema::<istio::DestinationRule>(),
        ),
        (Kind::ServiceEntry, spec_schema::<istio::ServiceEntry>()),
        (Kind::WorkloadEntry, spec_schema::<istio::WorkloadEntry>()),
        (Kind::Sidecar, spec_schema::<istio::Sidecar>()),
        (Kind::Gateway, spec_schema::<istio::Gateway>()),
    ];
    let mut missing = Vec::new();
    for (kind, schema) in schemas {
        paths(
            &schema,
            &istio_specs()[kind.name()],
            &format!("{kind} spec"),
            &mut missing,
        );
    }
    assert!(missing.is_empty(), "not in Istio's CRDs: {missing:?}");
}

#[test]
fn every_istio_kind_has_a_field_tree() {
    for kind in Kind::ALL.iter().filter(|kind| kind.is_istio()) {
        assert!(
            matches!(istio_specs().get(kind.name()), Some(Node::Fields(_))),
            "{kind} has no field tree in istio_fields.json"
        );
    }
}

/// `istio_fields.json` is the field tree of Istio's CRDs, taken from the Go module proxy;
/// `RUDDER_UPDATE_ISTIO_FIELDS=1` rewrites it.
#[test]
fn the_field_tree_is_istios() {
    let crds = std::fs::read_to_string(
        istio_api_dir().join("kubernetes/customresourcedefinitions.gen.yaml"),
    )
    .expect("read Istio's CRDs");
    let mut trees: BTreeMap<String, Node> = BTreeMap::new();
    for document in parse_documents(&crds).expect("Istio's CRDs parse") {
        let spec = &document.value["spec"];
        let kind = spec["names"]["kind"]
            .as_str()
            .expect("a CRD names its kind")
            .to_string();
        for version in spec["versions"].as_array().into_iter().flatten() {
            let schema = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
            let tree = node_of(schema);
            let merged = match trees.remove(&kind) {
                Some(before) => union(before, tree),
                None => tree,
            };
            trees.insert(kind.clone(), merged);
        }
    }
    let generated: serde_json::Map<String, Value> = trees
        .iter()
        .map(|(kind, node)| (kind.clone(), to_json(node)))
        .collect();
    let text = serde_json::to_string_pretty(&generated).expect("JSON") + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/inputs/istio_fields.json");
    if std::env::var_os("RUDDER_UPDATE_ISTIO_FIELDS").is_some() {
        std::fs::write(&path, &text).expect("write istio_fields.json");
    }
    assert!(
        text == ISTIO_FIELDS,
        "src/inputs/istio_fields.json is not the field tree of {ISTIO_API}'s CRDs; regenerate with \
         RUDDER_UPDATE_ISTIO_FIELDS=1 cargo test --lib inputs::fields"
    );
}

/// Where the Go module cache holds `istio.io/api` (downloaded from the module proxy if needed).
fn istio_api_dir() -> PathBuf {
    let output = Command::new("go")
        .args(["mod", "download", "-json", ISTIO_API])
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run go (the Go toolchain is needed to fetch Istio's CRDs)");
    assert!(
        output.status.success(),
        "go mod download {ISTIO_API}: {output:?}"
    );
    let info: Value = serde_json::from_slice(&output.stdout).expect("go mod download -json");
    PathBuf::from(info["Dir"].as_str().expect("the module's directory"))
}

/// A field's shape from its OpenAPI schema in a CRD.
fn node_of(schema: &Value) -> Node {
    if schema["x-kubernetes-preserve-unknown-fields"] == json!(true) {
        return Node::Any;
    }
    if schema["type"] == "array" {
        return match node_of(&schema["items"]) {
            Node::Scalar => Node::Scalar,
            item => Node::List(Box::new(item)),
        };
    }
    if let Some(properties) = schema["properties"].as_object() {
        return Node::Fields(
            properties
                .iter()
                .map(|(name, property)| (name.clone(), node_of(property)))
                .collect(),
        );
    }
    if schema["additionalProperties"].is_object() {
        return match node_of(&schema["additionalProperties"]) {
            Node::Scalar => Node::Scalar,
            value => Node::Map(Box::new(value)),
        };
    }
    Node::Scalar
}

/// The fields of two versions together.
fn union(a: Node, b: Node) -> Node {
    match (a, b) {
        (Node::Any, _) | (_, Node::Any) => Node::Any,
        (Node::Fields(mut a), Node::Fields(b)) => {
            for (name, node) in b {
                let merged = match a.remove(&name) {
                    Some(existing) => union(existing, node),
                    None => node,
                };
                a.insert(name, merged);
            }
            Node::Fields(a)
        }
        (Node::List(a), Node::List(b)) => Node::List(Box::new(union(*a, *b))),
        (Node::Map(a), Node::Map(b)) => Node::Map(Box::new(union(*a, *b))),
        (Node::Scalar, other) | (other, Node::Scalar) => other,
        (a, _) => a,
    }
}

fn to_json(node: &Node) -> Value {
    match node {
        Node::Scalar => json!("scalar"),
        Node::Any => json!("any"),
        Node::List(item) => json!({"list": to_json(item)}),
        Node::Map(item) => json!({"map": to_json(item)}),
        Node::Fields(fields) => json!({"fields": fields
            .iter()
            .map(|(name, node)| (name.clone(), to_json(node)))
            .collect::<serde_json::Map<_, _>>()}),
    }
}

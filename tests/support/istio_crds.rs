//! Istio's own CRDs for tests, as `scripts/istio-crds` prints them (the `istio.io/api` Go module,
//! fetched at test time, never committed), and objects made from their schemas: for each kind, a
//! few specs that together set every field of the schema, valid under its OpenAPI and CEL rules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::{Map, Value, json};

/// The oldest `istio.io/api` version the Go module proxy serves that has the v1 networking API
/// (Istio 1.22: v1 served, v1beta1 stored, no CEL rules yet).
pub const OLDEST: &str = "v1.22.0";

/// The versions the tests install: the oldest and the one `hack/istiod/go.mod` pins.
pub fn tested_versions() -> Vec<String> {
    vec![OLDEST.to_string(), pinned()]
}

/// The `istio.io/api` version `hack/istiod/go.mod` pins.
pub fn pinned() -> String {
    let go_mod = std::fs::read_to_string(root().join("hack/istiod/go.mod")).expect("go.mod");
    go_mod
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("istio.io/api"))
                .then(|| words.next())
                .flatten()
        })
        .next()
        .expect("hack/istiod/go.mod requires istio.io/api")
        .to_string()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Istio's CRDs of `version` (all of them, every group), as the README has users install them.
pub fn yaml(version: &str) -> String {
    let output = Command::new(root().join("scripts/istio-crds"))
        .arg(version)
        .output()
        .expect("run scripts/istio-crds");
    assert!(
        output.status.success(),
        "scripts/istio-crds {version} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the CRDs are UTF-8")
}

/// The six networking kinds rudder translates.
pub const KINDS: [&str; 6] = [
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "ServiceEntry",
    "WorkloadEntry",
    "Sidecar",
];

/// The CRD of each networking kind rudder translates, by kind.
pub fn networking_crds(yaml: &str) -> BTreeMap<String, Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("Istio's CRDs are YAML");
    documents
        .into_iter()
        .filter(|crd| crd["spec"]["group"] == "networking.istio.io")
        .filter_map(|crd| {
            let kind = crd["spec"]["names"]["kind"].as_str()?.to_string();
            KINDS.contains(&kind.as_str()).then_some((kind, crd))
        })
        .collect()
}

/// The `spec` schema of one served version of a CRD.
pub fn spec_schema<'a>(crd: &'a Value, version: &str) -> &'a Value {
    crd["spec"]["versions"]
        .as_array()
        .and_then(|versions| versions.iter().find(|v| v["name"] == version))
        .map(|v| &v["schema"]["openAPIV3Schema"]["properties"]["spec"])
        .unwrap_or_else(|| panic!("no version {version} in {}", crd["metadata"]["name"]))
}

/// The names of the versions a CRD serves.
pub fn served_versions(crd: &Value) -> Vec<String> {
    crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"] == true)
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect()
}

/// Every field path of a schema, as the coverage table writes them: `spec.http[].route[]` for
/// lists, `spec.subsets[].labels` for maps of plain values, `name{}` for maps of messages.
pub fn schema_paths(schema: &Value, at: &str, out: &mut BTreeSet<String>) {
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        let values = &property["additionalProperties"];
        let (path, inner) = if property["type"] == "array" {
            (format!("{at}.{name}[]"), &property["items"])
        } else if values.get("properties").is_some() {
            (format!("{at}.{name}{{}}"), values)
        } else {
            (format!("{at}.{name}"), property)
        };
        schema_paths(inner, &path, out);
        out.insert(path);
    }
}

/// The field paths a value sets, named as [`schema_paths`] names them.
pub fn value_paths(value: &Value, schema: &Value, at: &str, out: &mut BTreeSet<String>) {
    let (Some(object), Some(properties)) = (value.as_object(), schema["properties"].as_object())
    else {
        return;
    };
    for (name, child) in object {
        let Some(property) = properties.get(name) else {
            continue;
        };
        let values = &property["additionalProperties"];
        if property["type"] == "array" {
            let path = format!("{at}.{name}[]");
            for item in child.as_array().into_iter().flatten() {
                value_paths(item, &property["items"], &path, out);
            }
            out.insert(path);
        } else if values.get("properties").is_some() {
            let path = format!("{at}.{name}{{}}");
            for item in child.as_object().into_iter().flatten().map(|(_, v)| v) {
                value_paths(item, values, &path, out);
            }
            out.insert(path);
        } else {
            let path = format!("{at}.{name}");
            value_paths(child, property, &path, out);
            out.insert(path);
        }
    }
}

/// Specs that together set every field of `schema`, made for variants 0 to `limit` - 1 and kept
/// when they set a field the ones before did not: variant `n` takes branch `n` (modulo their
/// number) of every choice (a `oneOf`, fields a CEL rule allows one of).
pub fn every_field_specs(schema: &Value, limit: usize) -> Vec<Value> {
    let mut all = BTreeSet::new();
    schema_paths(schema, "spec", &mut all);
    let mut covered = BTreeSet::new();
    let mut specs = Vec::new();
    for variant in 0..limit {
        let spec = value_of(schema, variant);
        let mut paths = BTreeSet::new();
        value_paths(&spec, schema, "spec", &mut paths);
        if !paths.is_subset(&covered) {
            covered.extend(paths);
            specs.push(spec);
        }
        if all.is_subset(&covered) {
            return specs;
        }
    }
    let missing: Vec<_> = all.difference(&covered).collect();
    panic!("no spec sets {missing:?}");
}

/// The CEL rules on a schema node.
fn rules(schema: &Value) -> impl Iterator<Item = &str> {
    schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|rule| rule["rule"].as_str())
}

/// Groups of fields of an object of which one only may be set: the `required` lists of its
/// `oneOf` branches (directly or under `allOf`), and the fields a CEL rule
/// `(has(self.a) ? 1 : 0) + (has(self.b) ? 1 : 0) <= 1` counts.
fn exclusive_groups(schema: &Value) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut one_ofs = vec![&schema["oneOf"]];
    one_ofs.extend(
        schema["allOf"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| &s["oneOf"]),
    );
    for one_of in one_ofs {
        let group: Vec<String> = one_of
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|branch| branch["required"].as_array())
            .flatten()
            .filter_map(|name| name.as_str().map(str::to_string))
            .collect();
        if !group.is_empty() {
            groups.push(group);
        }
    }
    // CEL "at most one of": pairs, joined into groups where they share a field.
    for rule in rules(schema) {
        if !rule.ends_with("<= 1") {
            continue;
        }
        let counted: Vec<String> = rule
            .split("has(self.")
            .skip(1)
            .filter_map(|rest| rest.split(')').next().map(str::to_string))
            .collect();
        match groups
            .iter_mut()
            .find(|group| counted.iter().any(|field| group.contains(field)))
        {
            Some(group) => {
                for field in counted {
                    if !group.contains(&field) {
                        group.push(field);
                    }
                }
            }
            None => groups.push(counted),
        }
    }
    groups
}

/// Enum values that other rules need: a ServiceEntry with endpoints and CIDR addresses must be
/// STATIC (CEL), and every other choice is as good as the first.
fn enum_value(name: &str, values: &[Value]) -> Value {
    let preferred = match name {
        "resolution" => Some("STATIC"),
        _ => None,
    };
    preferred
        .and_then(|want| values.iter().find(|v| v.as_str() == Some(want)))
        .or_else(|| values.first())
        .cloned()
        .unwrap_or(Value::Null)
}

fn value_of(schema: &Value, variant: usize) -> Value {
    named_value("", schema, variant)
}

fn named_value(name: &str, schema: &Value, variant: usize) -> Value {
    if let Some(values) = schema["enum"].as_array() {
        return enum_value(name, values);
    }
    if schema["x-kubernetes-int-or-string"] == true {
        return json!(7);
    }
    match schema["type"].as_str() {
        Some("object") => object_value(schema, variant),
        Some("array") => {
            let items = named_value(name, &schema["items"], variant);
            let count = schema["minItems"].as_u64().unwrap_or(1).max(1);
            Value::Array((0..count).map(|_| items.clone()).collect())
        }
        // Within the schema's bounds; a fraction for numbers, so that they cannot read back as
        // integers.
        Some("integer") => json!(within_bounds(schema, 7.0) as i64),
        Some("number") => json!(within_bounds(schema, 0.5)),
        Some("boolean") => json!(true),
        Some("string") => string_value(schema),
        _ => json!({}),
    }
}

fn within_bounds(schema: &Value, wanted: f64) -> f64 {
    let minimum = schema["minimum"].as_f64().unwrap_or(f64::MIN);
    let maximum = schema["maximum"].as_f64().unwrap_or(f64::MAX);
    wanted.clamp(minimum, maximum)
}

fn string_value(schema: &Value) -> Value {
    // Proto `bytes`: base64 (`format: binary` in Istio 1.22's CRDs, `byte` later).
    if schema["format"] == "byte" || schema["format"] == "binary" {
        return json!("aGVsbG8=");
    }
    // A Go duration: what duration fields need (older CRDs do not mark them), and a valid value
    // of every other string field too (hosts, names, addresses, regexes).
    json!("5s")
}

fn object_value(schema: &Value, variant: usize) -> Value {
    let mut object = Map::new();
    if let Some(properties) = schema["properties"].as_object() {
        let groups = exclusive_groups(schema);
        let left_out: BTreeSet<&String> = groups
            .iter()
            .flat_map(|group| {
                let chosen = &group[variant % group.len()];
                group.iter().filter(move |field| *field != chosen)
            })
            .collect();
        for (name, property) in properties {
            if left_out.contains(name) {
                continue;
            }
            // Below a field chosen from n, the next choices turn n times slower, so that every
            // pair of nested choices is met (loadBalancer's `consistentHash` and its four ways).
            let chosen_from = groups
                .iter()
                .find(|group| group.contains(name))
                .map_or(1, Vec::len);
            let value = named_value(name, property, variant / chosen_from);
            object.insert(name.clone(), value);
        }
    } else if schema["additionalProperties"].is_object() {
        // One entry, named as every key rule allows (port names, label keys, localities).
        object.insert(
            "http".to_string(),
            named_value("", &schema["additionalProperties"], variant),
        );
    }
    Value::Object(object)
}

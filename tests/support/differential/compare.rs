//! What is compared, and how: a stock Envoy's `/config_dump?include_eds` turned into a tree keyed
//! by resource name (what differs between two runs of the same config removed: versions,
//! timestamps), and a field-by-field diff of two such trees that names each difference by a path
//! (`clusters[outbound|9080||reviews.default.svc.cluster.local].connect_timeout`). Arrays whose
//! elements all carry a distinct name (or endpoint address) are compared by that name, so one
//! extra element is one difference, not a shifted list; their order is compared on its own
//! (`{order}`). Arrays of plain values are one field. Knows nothing of allowlists or scenarios.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// Keys whose values differ between two runs of the same config: the resource versions each
/// control plane picks, and when Envoy took a resource.
const VOLATILE_KEYS: &[&str] = &["version_info", "last_updated"];

/// A config dump as a tree of resources by name: `clusters`, `listeners`, `routes`, `endpoints`,
/// `secrets`, plus what Envoy did not take (`warming_*`, `listener_errors`).
pub fn normalize(dump: &Value) -> Value {
    let mut tree: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    let mut put = |section: &'static str, name: &Value, value: Value| {
        if let Some(name) = name.as_str() {
            tree.entry(section)
                .or_default()
                .insert(name.to_string(), value);
        }
    };
    for config in dump["configs"].as_array().into_iter().flatten() {
        let kind = config["@type"].as_str().unwrap_or_default();
        let kind = kind.rsplit('.').next().unwrap_or_default();
        let items = |key: &str| config[key].as_array().into_iter().flatten();
        match kind {
            "ClustersConfigDump" => {
                for entry in items("dynamic_active_clusters") {
                    put(
                        "clusters",
                        &entry["cluster"]["name"],
                        entry["cluster"].clone(),
                    );
                }
                for entry in items("dynamic_warming_clusters") {
                    put(
                        "warming_clusters",
                        &entry["cluster"]["name"],
                        Value::Bool(true),
                    );
                }
            }
            "ListenersConfigDump" => {
                for entry in items("dynamic_listeners") {
                    if let Some(active) = entry.get("active_state") {
                        put("listeners", &entry["name"], active["listener"].clone());
                    }
                    if entry.get("warming_state").is_some() {
                        put("warming_listeners", &entry["name"], Value::Bool(true));
                    }
                    if let Some(error) = entry.get("error_state") {
                        put("listener_errors", &entry["name"], error["details"].clone());
                    }
                }
            }
            "RoutesConfigDump" => {
                for entry in items("dynamic_route_configs") {
                    let config = &entry["route_config"];
                    put("routes", &config["name"], config.clone());
                }
            }
            "EndpointsConfigDump" => {
                for entry in items("dynamic_endpoint_configs") {
                    let config = &entry["endpoint_config"];
                    put("endpoints", &config["cluster_name"], config.clone());
                }
            }
            "SecretsConfigDump" => {
                for key in ["dynamic_active_secrets", "dynamic_warming_secrets"] {
                    for entry in items(key) {
                        put("secrets", &entry["name"], entry["secret"].clone());
                    }
                }
            }
            // The bootstrap and its static resources are the same file for both (bar the xDS
            // address); scoped routes and ECDS are not used by either control plane.
            _ => {}
        }
    }
    let mut out = Map::new();
    for (section, items) in tree {
        out.insert(section.to_string(), Value::Object(items));
    }
    let mut out = Value::Object(out);
    strip_volatile(&mut out);
    out
}

fn strip_volatile(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, _| !VOLATILE_KEYS.contains(&key.as_str()));
            map.values_mut().for_each(strip_volatile);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_volatile),
        _ => {}
    }
}

/// One step of a path: a field, an element by name, or an element by position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Field(String),
    Key(String),
    Index(usize),
}

/// Where in the tree a difference is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(pub Vec<Step>);

impl Path {
    fn with(&self, step: Step) -> Path {
        let mut steps = self.0.clone();
        steps.push(step);
        Path(steps)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                // Resource names hold dots: such a field is written as an element.
                Step::Field(name) if name.is_empty() || name.contains(['.', '[', ']']) => {
                    write!(f, "[{name}]")?
                }
                Step::Field(name) if i == 0 => write!(f, "{name}")?,
                Step::Field(name) => write!(f, ".{name}")?,
                Step::Key(key) => write!(f, "[{key}]")?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A field that is not the same under both control planes; `None` where one side lacks it.
#[derive(Debug, Clone)]
pub struct Difference {
    pub path: Path,
    pub rudder: Option<Value>,
    pub istiod: Option<Value>,
}

/// The differences between two trees, and how many fields were compared (leaves of either tree,
/// those on both sides counted once).
pub fn diff(rudder: &Value, istiod: &Value) -> (Vec<Difference>, usize) {
    let mut out = Vec::new();
    let mut compared = 0;
    walk(&Path::default(), rudder, istiod, &mut out, &mut compared);
    (out, compared)
}

fn walk(
    at: &Path,
    rudder: &Value,
    istiod: &Value,
    out: &mut Vec<Difference>,
    compared: &mut usize,
) {
    match (rudder, istiod) {
        (Value::Object(left), Value::Object(right)) => {
            let mut keys: Vec<&String> = left.keys().chain(right.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let here = at.with(Step::Field(key.clone()));
                sides(&here, left.get(key), right.get(key), out, compared);
            }
        }
        (Value::Array(left), Value::Array(right)) if is_composite(left) || is_composite(right) => {
            match (keys_of(left), keys_of(right)) {
                (Some(left_keys), Some(right_keys)) => {
                    let by_key = |items: &'_ [Value], keys: &[String]| -> BTreeMap<String, Value> {
                        keys.iter().cloned().zip(items.iter().cloned()).collect()
                    };
                    let (l, r) = (by_key(left, &left_keys), by_key(right, &right_keys));
                    let mut all: Vec<&String> = l.keys().chain(r.keys()).collect();
                    all.sort();
                    all.dedup();
                    for key in all {
                        let here = at.with(Step::Key(key.clone()));
                        sides(&here, l.get(key), r.get(key), out, compared);
                    }
                    let same_set = {
                        let (mut a, mut b) = (left_keys.clone(), right_keys.clone());
                        a.sort();
                        b.sort();
                        a == b
                    };
                    if same_set && left_keys.len() > 1 {
                        *compared += 1;
                        if left_keys != right_keys {
                            out.push(Difference {
                                path: at.with(Step::Field("{order}".to_string())),
                                rudder: Some(Value::from(left_keys)),
                                istiod: Some(Value::from(right_keys)),
                            });
                        }
                    }
                }
                _ => {
                    for index in 0..left.len().max(right.len()) {
                        let here = at.with(Step::Index(index));
                        sides(&here, left.get(index), right.get(index), out, compared);
                    }
                }
            }
        }
        _ => {
            *compared += 1;
            if rudder != istiod {
                out.push(Difference {
                    path: at.clone(),
                    rudder: Some(rudder.clone()),
                    istiod: Some(istiod.clone()),
                });
            }
        }
    }
}

fn sides(
    at: &Path,
    rudder: Option<&Value>,
    istiod: Option<&Value>,
    out: &mut Vec<Difference>,
    compared: &mut usize,
) {
    match (rudder, istiod) {
        (Some(left), Some(right)) => walk(at, left, right, out, compared),
        (left, right) => {
            *compared += left.or(right).map_or(0, leaves);
            out.push(Difference {
                path: at.clone(),
                rudder: left.cloned(),
                istiod: right.cloned(),
            });
        }
    }
}

fn is_composite(items: &[Value]) -> bool {
    items.iter().any(|item| item.is_object() || item.is_array())
}

/// How many fields a subtree holds.
fn leaves(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.values().map(leaves).sum(),
        Value::Array(items) if is_composite(items) => items.iter().map(leaves).sum(),
        _ => 1,
    }
}

/// The names elements are compared by, when every element has one and no two share it: `name`,
/// else an endpoint's address, else a filter chain's match.
fn keys_of(items: &[Value]) -> Option<Vec<String>> {
    let by = |key: fn(&Value) -> Option<String>| -> Option<Vec<String>> {
        let keys: Vec<String> = items.iter().map(key).collect::<Option<_>>()?;
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        (unique.len() == keys.len()).then_some(keys)
    };
    by(|item| {
        item.get("name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
            .map(str::to_string)
    })
    .or_else(|| {
        by(|item| {
            let socket = &item.get("endpoint")?["address"]["socket_address"];
            Some(format!(
                "{}:{}",
                socket["address"].as_str()?,
                socket["port_value"]
            ))
        })
    })
}

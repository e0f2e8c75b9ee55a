//! Fields Istio's API does not have: a misspelled `timeuot` is refused with its path
//! (`spec.http[0].timeuot`) and the nearest known field (`did you mean timeout?`), as
//! `istioctl validate` (strict JSON decoding) and the API server (strict field validation against
//! Istio's CRDs) refuse it.
//!
//! The known fields are those of Istio's own CRDs, every version of every Istio kind rudder
//! knows, translated or not: `istio_fields.json`, generated from the CRDs of the `istio.io/api`
//! module (see the test `the_field_tree_is_istios`), so a field rudder does not translate yet is
//! still a known field. Only `apiVersion`, `kind`, `metadata`, `spec` and `status` are known at
//! the top, as with `istioctl validate`; `metadata` and `status` are not looked into.
//! Pure: no I/O; it says nothing about values, only about field names.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::{FieldError, Kind};

/// Istio's field tree, by kind (see the module's doc).
const ISTIO_FIELDS: &str = include_str!("istio_fields.json");

/// The top-level fields of an object.
const TOP_LEVEL: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

/// Names longer than this get no suggestion: the edit distance costs their length times each
/// candidate's, and no Istio field name is near this long.
const LONGEST_SUGGESTED: usize = 64;

/// The shape of one field, as far as field names go.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// A value without fields of its own (a string, number, list or map of them).
    Scalar,
    /// Anything (`x-kubernetes-preserve-unknown-fields`: a `google.protobuf.Struct`).
    Any,
    List(Box<Node>),
    /// A map whose values are messages.
    Map(Box<Node>),
    Fields(BTreeMap<String, Node>),
}

impl Node {
    /// Reads the tree as `istio_fields.json` writes it: `"scalar"`, `"any"`, `{"list": NODE}`,
    /// `{"map": NODE}` or `{"fields": {NAME: NODE}}`.
    fn from_json(value: &Value) -> Option<Node> {
        match value {
            Value::String(text) if text == "scalar" => Some(Node::Scalar),
            Value::String(text) if text == "any" => Some(Node::Any),
            Value::Object(object) if object.len() == 1 => {
                let (tag, inner) = object.iter().next()?;
                match tag.as_str() {
                    "list" => Some(Node::List(Box::new(Node::from_json(inner)?))),
                    "map" => Some(Node::Map(Box::new(Node::from_json(inner)?))),
                    "fields" => inner
                        .as_object()?
                        .iter()
                        .map(|(name, node)| Some((name.clone(), Node::from_json(node)?)))
                        .collect::<Option<_>>()
                        .map(Node::Fields),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// The spec tree of each Istio kind by name; empty if the embedded file does not read (a unit
/// test sees to it that it does).
fn istio_specs() -> &'static BTreeMap<String, Node> {
    static SPECS: OnceLock<BTreeMap<String, Node>> = OnceLock::new();
    SPECS.get_or_init(|| {
        let parsed: Option<BTreeMap<String, Node>> = serde_json::from_str::<Value>(ISTIO_FIELDS)
            .ok()
            .and_then(|value| {
                value
                    .as_object()?
                    .iter()
                    .map(|(kind, node)| Some((kind.clone(), Node::from_json(node)?)))
                    .collect()
            });
        parsed.unwrap_or_default()
    })
}

/// The first field (in name order, depth first) of an Istio object that Istio's API does not
/// have; `Ok` for kinds that are not Istio kinds.
pub fn check_unknown_fields(kind: Kind, object: &Value) -> Result<(), FieldError> {
    let Some(spec) = kind
        .is_istio()
        .then(|| istio_specs().get(kind.name()))
        .flatten()
    else {
        return Ok(());
    };
    let Some(fields) = object.as_object() else {
        return Ok(());
    };
    for name in fields.keys() {
        if !TOP_LEVEL.contains(&name.as_str()) {
            return Err(unknown(name, name, TOP_LEVEL.iter().copied()));
        }
    }
    match fields.get("spec") {
        Some(value) => walk(value, spec, "spec"),
        None => Ok(()),
    }
}

fn walk(value: &Value, node: &Node, at: &str) -> Result<(), FieldError> {
    match (node, value) {
        (Node::Fields(known), Value::Object(fields)) => {
            for (name, child) in fields {
                let path = format!("{at}.{name}");
                match known.get(name) {
                    Some(node) => walk(child, node, &path)?,
                    None => return Err(unknown(&path, name, known.keys().map(String::as_str))),
                }
            }
            Ok(())
        }
        (Node::List(item), Value::Array(items)) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, item, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (Node::Map(item), Value::Object(entries)) => {
            for (key, child) in entries {
                walk(child, item, &format!("{at}[{key}]"))?;
            }
            Ok(())
        }
        // A value of the wrong shape is for the typed decoding to report.
        _ => Ok(()),
    }
}

fn unknown<'a>(path: &str, name: &str, known: impl Iterator<Item = &'a str>) -> FieldError {
    let message = match nearest(name, known) {
        Some(suggestion) => format!("unknown field (did you mean {suggestion}?)"),
        None => "unknown field".to_string(),
    };
    FieldError {
        field: path.to_string(),
        message,
    }
}

/// The known name closest to `name`: the same name in another case or with `_`/`-` (protobuf's
/// `max_connections` for `maxConnections`), else the nearest by edit distance if it is close
/// enough to be a typo (a third of the name's length, at least 1). Ties go to the first in name
/// order.
fn nearest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let folded = |text: &str| -> Vec<char> {
        text.chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = folded(name);
    if wanted.len() > LONGEST_SUGGESTED {
        return None;
    }
    let limit = (wanted.len() / 3).max(1);
    known
        .map(|candidate| (edit_distance(&wanted, &folded(candidate)), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`: the optimal string
/// alignment distance, so `timeuot` is one edit from `timeout`.
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let width = b.len() + 1;
    let mut rows = vec![0usize; (a.len() + 1) * width];
    let at = |i: usize, j: usize| i * width + j;
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            rows[at(i, j)] = if i == 0 || j == 0 {
                i + j
            } else {
                let substitute = rows[at(i - 1, j - 1)] + usize::from(a[i - 1] != b[j - 1]);
                let mut best = substitute
                    .min(rows[at(i - 1, j)] + 1)
                    .min(rows[at(i, j - 1)] + 1);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    best = best.min(rows[at(i - 2, j - 2)] + 1);
                }
                best
            };
        }
    }
    rows[at(a.len(), b.len())]
}

#[cfg(test)]
mod tests;

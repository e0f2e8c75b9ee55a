//! Istio API coverage: one table ([`table`]) of every field of the Istio networking kinds with
//! what rudder does with it (supported, partial, not yet, ignored, refused), and what is derived from it:
//! the warnings for objects that set fields rudder does not carry out ([`unsupported_settings`]),
//! the coverage document, docs/coverage.md ([`document`]), and which rows a corpus of objects
//! exercises ([`exercised`]). Tests check the table
//! against the types' JSON schemas, so a field without a status cannot be added unnoticed.
//!
//! This module says nothing about whether an object is valid (that is `model::validate`) and
//! translates nothing.

pub mod exercised;
mod table;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::inputs::{FieldError, Kind, Object};

/// What rudder does with one field.
#[derive(Debug, Clone, Copy)]
pub enum Status {
    Supported,
    /// Part of it is carried out; `how` says which. When rudder can tell from the value that the
    /// unsupported part is used, `unsupported` says so.
    Partial {
        how: &'static str,
        unsupported: Option<Unsupported>,
    },
    /// Read and ignored; `note`, when not empty, says what happens instead.
    NotYet {
        note: &'static str,
    },
    /// Deprecated and ignored on purpose, as by istiod; the text says why and what to use.
    Ignored(&'static str),
    /// An object that sets it is refused, as by istiod's validation; the text says why.
    Refused(&'static str),
}

/// The part of a partly supported field that rudder can recognize in its value.
#[derive(Debug, Clone, Copy)]
pub struct Unsupported {
    pub applies: fn(&Value) -> bool,
    /// The warning for an object whose value `applies`.
    pub message: &'static str,
}

/// One field: `name` as in the Istio API, with `[]` for a list and `{}` for a map of messages.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub status: Status,
    pub fields: &'static [Field],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Single,
    List,
    Map,
}

impl Field {
    fn key_and_shape(&self) -> (&'static str, Shape) {
        if let Some(key) = self.name.strip_suffix("[]") {
            (key, Shape::List)
        } else if let Some(key) = self.name.strip_suffix("{}") {
            (key, Shape::Map)
        } else {
            (self.name, Shape::Single)
        }
    }
}

/// The fields of `kind`'s spec, for the six Istio kinds.
pub fn spec_fields(kind: Kind) -> Option<&'static [Field]> {
    table::KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, fields)| *fields)
}

/// The fields an accepted Istio object sets that rudder does not carry out, one warning each,
/// named by their concrete path (`spec.http[2].fault.delay.exponentialDelay`). A field counts as
/// set as istiod reads proto3: a zero value (`0`, `""`, `false`, an empty list) is unset.
/// Nothing under an unsupported field is reported again.
pub fn unsupported_settings(object: &Object) -> Vec<FieldError> {
    let (kind, spec) = match object {
        Object::VirtualService(o) => (Kind::VirtualService, serde_json::to_value(&o.spec)),
        Object::DestinationRule(o) => (Kind::DestinationRule, serde_json::to_value(&o.spec)),
        Object::ServiceEntry(o) => (Kind::ServiceEntry, serde_json::to_value(&o.spec)),
        Object::WorkloadEntry(o) => (Kind::WorkloadEntry, serde_json::to_value(&o.spec)),
        Object::Sidecar(o) => (Kind::Sidecar, serde_json::to_value(&o.spec)),
        Object::Gateway(o) => (Kind::Gateway, serde_json::to_value(&o.spec)),
        _ => return Vec::new(),
    };
    let (Some(fields), Ok(spec)) = (spec_fields(kind), spec) else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    walk(&spec, fields, "spec", &mut warnings);
    warnings
}

fn walk(value: &Value, fields: &[Field], at: &str, warnings: &mut Vec<FieldError>) {
    let Some(object) = value.as_object() else {
        return;
    };
    for field in fields {
        let (key, shape) = field.key_and_shape();
        let Some(child) = object.get(key).filter(|child| is_set(child)) else {
            continue;
        };
        let path = format!("{at}.{key}");
        let warn = |message: String| FieldError {
            field: path.clone(),
            message,
        };
        match field.status {
            Status::NotYet { note } => {
                let consequence = if note.is_empty() { "ignored" } else { note };
                warnings.push(warn(format!("not supported by rudder yet; {consequence}")));
                continue;
            }
            // Refused objects are not admitted; an admitted one is reported all the same.
            Status::Ignored(why) | Status::Refused(why) => {
                warnings.push(warn(why.to_string()));
                continue;
            }
            Status::Partial {
                unsupported: Some(unsupported),
                ..
            } if (unsupported.applies)(child) => {
                warnings.push(warn(unsupported.message.to_string()));
            }
            Status::Supported | Status::Partial { .. } => {}
        }
        match shape {
            Shape::Single => walk(child, field.fields, &path, warnings),
            Shape::List => {
                for (i, item) in child.as_array().into_iter().flatten().enumerate() {
                    walk(item, field.fields, &format!("{path}[{i}]"), warnings);
                }
            }
            Shape::Map => {
                for (name, item) in child.as_object().into_iter().flatten() {
                    walk(item, field.fields, &format!("{path}[{name}]"), warnings);
                }
            }
        }
    }
}

fn is_set(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(set) => *set,
        Value::Number(number) => number.as_f64() != Some(0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(_) => true,
    }
}

/// Where [`document`] is kept, from the repository's root.
pub const DOCUMENT_PATH: &str = "docs/coverage.md";

/// The coverage document (docs/coverage.md), as markdown: one table per kind, every field with
/// its status. A group of fields used in several places is listed at its first place and referred
/// to from the others.
pub fn document() -> String {
    let mut out = String::from(
        "# Istio API coverage\n\n\
         What rudder does with each field of the Istio networking kinds (back to the\n\
         [README](../README.md)). Generated from `src/coverage/table.rs`, the table\n\
         `rudder validate` and `serve` warn from: a field marked *not yet* or *ignored*, or the\n\
         unsupported part of a *partial* one, is reported once as a warning naming the object and\n\
         the field, and the rest of the object applies; an object that sets a *refused* field is\n\
         not applied. Regenerate with `RUDDER_UPDATE_COVERAGE=1 cargo test --lib coverage`.\n",
    );
    for (kind, fields) in table::KINDS {
        let _ = write!(out, "\n### {kind}\n\n| field | status |\n| --- | --- |\n");
        let mut listed = BTreeMap::new();
        rows(fields, "spec", false, &mut listed, &mut out);
    }
    out
}

/// Appends one row per field under `at`; `listed` maps a shared group (by address) to the path it
/// was listed under. Under a field that is not supported at all, every field is marked *not yet*.
fn rows(
    fields: &'static [Field],
    at: &str,
    parent_not_yet: bool,
    listed: &mut BTreeMap<usize, String>,
    out: &mut String,
) {
    for field in fields {
        let path = format!("{at}.{}", field.name);
        let not_yet =
            parent_not_yet || matches!(field.status, Status::NotYet { .. } | Status::Refused(_));
        let status = if parent_not_yet {
            "not yet".to_string()
        } else {
            status_text(field.status)
        };
        let group = field.fields.as_ptr() as usize;
        let seen = (!field.fields.is_empty() && !not_yet)
            .then(|| listed.get(&group).cloned())
            .flatten();
        match seen {
            Some(first) => {
                let _ = writeln!(
                    out,
                    "| `{path}` | {status}; its fields as under `{first}` |"
                );
            }
            None => {
                let _ = writeln!(out, "| `{path}` | {status} |");
                if !not_yet && !field.fields.is_empty() {
                    listed.insert(group, path.clone());
                }
                rows(field.fields, &path, not_yet, listed, out);
            }
        }
    }
}

fn status_text(status: Status) -> String {
    match status {
        Status::Supported => "supported".to_string(),
        Status::Partial { how, .. } => format!("partial: {}", one_line(how)),
        Status::NotYet { note: "" } => "not yet".to_string(),
        Status::NotYet { note } => format!("not yet ({})", one_line(note)),
        Status::Ignored(why) => format!("ignored: {}", one_line(why)),
        Status::Refused(why) => format!("refused: {}", one_line(why)),
    }
}

/// Table cells are one line; the table's texts are wrapped in the source.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;

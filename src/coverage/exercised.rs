//! Which rows of the coverage table a set of Istio objects exercises, so that a test corpus (the
//! differential suite's scenarios) can show it reaches every field group rudder carries out.
//!
//! A *group* is one table of fields as docs/coverage.md lists it: a kind's spec, or a field's
//! sub-fields, named by the path it is first listed under (a group shared by several places,
//! like the string match of `uri`, `method` and `headers`, is one group). A *row* is one field of
//! a group. Only fields rudder carries out (supported or partial) count: the rest are reported as
//! warnings, not translated, so there is nothing to compare. A field counts as set as
//! [`super::unsupported_settings`] counts it (proto3: zero values are unset).
//!
//! Pure: reads values, never decides validity and translates nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Field, Shape, Status, is_set, table};
use crate::inputs::Kind;

/// One row: the kind, the path its group is listed under (`spec` for the spec's own fields),
/// and the field's name as the table writes it (`retries`, `match[]`, `headers{}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Row {
    pub kind: Kind,
    pub group: String,
    pub field: &'static str,
}

/// Every row rudder carries out, in table order.
pub fn carried_out_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    for (kind, fields) in table::KINDS {
        let names = group_names(fields);
        let mut seen = BTreeSet::new();
        collect_rows(*kind, fields, &names, &mut seen, &mut rows);
    }
    rows
}

fn collect_rows(
    kind: Kind,
    fields: &'static [Field],
    names: &BTreeMap<usize, String>,
    seen: &mut BTreeSet<usize>,
    rows: &mut Vec<Row>,
) {
    if !seen.insert(address(fields)) {
        return;
    }
    let Some(group) = names.get(&address(fields)) else {
        return;
    };
    for field in fields.iter().filter(|field| carried_out(field)) {
        rows.push(Row {
            kind,
            group: group.clone(),
            field: field.name,
        });
        if !field.fields.is_empty() {
            collect_rows(kind, field.fields, names, seen, rows);
        }
    }
}

/// The rows one object's spec sets. `kind` must be one of the table's kinds; others set nothing.
pub fn rows_set(kind: Kind, spec: &Value) -> BTreeSet<Row> {
    let mut out = BTreeSet::new();
    if let Some((_, fields)) = table::KINDS.iter().find(|(k, _)| *k == kind) {
        let names = group_names(fields);
        walk(kind, spec, fields, &names, &mut out);
    }
    out
}

fn walk(
    kind: Kind,
    value: &Value,
    fields: &'static [Field],
    names: &BTreeMap<usize, String>,
    out: &mut BTreeSet<Row>,
) {
    let (Some(object), Some(group)) = (value.as_object(), names.get(&address(fields))) else {
        return;
    };
    for field in fields.iter().filter(|field| carried_out(field)) {
        let (key, shape) = field.key_and_shape();
        let Some(child) = object.get(key).filter(|child| is_set(child)) else {
            continue;
        };
        out.insert(Row {
            kind,
            group: group.clone(),
            field: field.name,
        });
        match shape {
            Shape::Single => walk(kind, child, field.fields, names, out),
            Shape::List => {
                for item in child.as_array().into_iter().flatten() {
                    walk(kind, item, field.fields, names, out);
                }
            }
            Shape::Map => {
                for item in child.as_object().into_iter().flatten().map(|(_, v)| v) {
                    walk(kind, item, field.fields, names, out);
                }
            }
        }
    }
}

fn carried_out(field: &Field) -> bool {
    matches!(field.status, Status::Supported | Status::Partial { .. })
}

/// Each group's name, by the address of its fields: the path docs/coverage.md first lists it
/// under (the same depth-first table order).
fn group_names(fields: &'static [Field]) -> BTreeMap<usize, String> {
    fn visit(fields: &'static [Field], at: &str, names: &mut BTreeMap<usize, String>) {
        for field in fields.iter().filter(|field| carried_out(field)) {
            if field.fields.is_empty() || names.contains_key(&address(field.fields)) {
                continue;
            }
            let path = format!("{at}.{}", field.name);
            names.insert(address(field.fields), path.clone());
            visit(field.fields, &path, names);
        }
    }
    let mut names = BTreeMap::from([(address(fields), "spec".to_string())]);
    visit(fields, "spec", &mut names);
    names
}

/// A group's identity: where its table is (the table's groups are statics).
fn address(fields: &'static [Field]) -> usize {
    fields.as_ptr() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_group_is_one_group_named_where_it_is_first_listed() {
        let spec = serde_json::json!({
            "hosts": ["a"],
            "http": [{"match": [{"method": {"exact": "GET"}, "uri": {"prefix": ""}}],
                      "retries": {"attempts": 0}}],
        });
        let rows = rows_set(Kind::VirtualService, &spec);
        let names: Vec<String> = rows
            .iter()
            .map(|row| format!("{} {}", row.group, row.field))
            .collect();
        // `uri.prefix` is empty and `attempts` zero: unset, as proto3 reads them; `retries` is
        // an object, so set.
        assert_eq!(
            names,
            [
                "spec hosts[]",
                "spec http[]",
                "spec.http[] match[]",
                "spec.http[] retries",
                "spec.http[].match[] method",
                "spec.http[].match[] uri",
                "spec.http[].match[].uri exact",
            ]
        );
    }

    #[test]
    fn every_row_set_is_a_row_carried_out() {
        let all: BTreeSet<Row> = carried_out_rows().into_iter().collect();
        let spec = serde_json::json!({
            "trafficPolicy": {"tls": {"mode": "SIMPLE"}, "portLevelSettings": [
                {"port": {"number": 80}, "loadBalancer": {"simple": "ROUND_ROBIN"}}]},
            "subsets": [{"name": "v1", "labels": {"version": "v1"},
                         "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}}],
        });
        let rows = rows_set(Kind::DestinationRule, &spec);
        assert!(rows.len() > 8, "{rows:?}");
        for row in rows {
            assert!(all.contains(&row), "{row:?} is not in the table's rows");
        }
    }
}

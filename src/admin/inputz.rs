//! `/debug/inputz`: rudder's own view of its inputs, richer than istiod's `/debug/configz`
//! (which shows only the Istio objects it accepted, see [`super::istiod::configz_view`]): every
//! object the current build was made from as loaded, Kubernetes objects included, each with
//! where it came from, why it was refused and its config errors; every error of the build; and
//! the objects of kinds rudder does not translate with what that means for traffic.
//!
//! A pure view of the snapshot; Secrets show the names of their keys only, never the data.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::inputs::{Inputs, IstioObject, Kind, Metadata, Object, ObjectKey};
use crate::xds::Snapshot;

/// The inputs behind the current build, as loaded, each object with its config errors; then
/// every error of the build (those that belong to no object too).
pub fn inputz_view(snapshot: &Snapshot) -> Value {
    let mut by_object: BTreeMap<&ObjectKey, Vec<String>> = BTreeMap::new();
    for error in &snapshot.errors {
        if let Some(key) = &error.object {
            by_object.entry(key).or_default().push(error.to_string());
        }
    }
    let objects: Vec<Value> = snapshot
        .inputs
        .entries
        .iter()
        .map(|(key, entry)| {
            let (object, refused) = match &entry.object {
                Ok(object) => (object_json(object), Value::Null),
                Err(error) => (Value::Null, json!(error.to_string())),
            };
            json!({
                "kind": key.kind.name(),
                "namespace": key.namespace,
                "name": key.name,
                "origin": entry.origin.to_string(),
                "refused": refused,
                "errors": by_object.get(key).cloned().unwrap_or_default(),
                "object": object,
            })
        })
        .collect();
    let mut errors: Vec<String> = snapshot.errors.iter().map(ToString::to_string).collect();
    errors.sort();
    json!({
        "generation": snapshot.generation,
        "objects": objects,
        "errors": errors,
        "untranslated": untranslated_view(&snapshot.inputs),
    })
}

/// The objects of Istio kinds rudder does not translate yet, with what that means for traffic.
fn untranslated_view(inputs: &Inputs) -> Vec<Value> {
    Kind::untranslated()
        .flat_map(|kind| inputs.of_kind(kind))
        .map(|(key, entry)| {
            json!({
                "kind": key.kind.name(),
                "namespace": key.namespace,
                "name": key.name,
                "origin": entry.origin.to_string(),
                "effect": key.kind.untranslated_effect(),
            })
        })
        .collect()
}

/// An Istio object's metadata and spec (`None` for other kinds); an object of a kind rudder does
/// not translate has no spec kept: `{}`.
pub(super) fn istio_parts(object: &Object) -> Option<(&Metadata, Value)> {
    fn parts<S: Serialize>(object: &IstioObject<S>) -> Option<(&Metadata, Value)> {
        Some((&object.metadata, value(&object.spec)))
    }
    match object {
        Object::Namespace(_)
        | Object::Node(_)
        | Object::Secret(_)
        | Object::Service(_)
        | Object::Pod(_)
        | Object::EndpointSlice(_) => None,
        Object::WorkloadEntry(object) => parts(object),
        Object::ServiceEntry(object) => parts(object),
        Object::DestinationRule(object) => parts(object),
        Object::VirtualService(object) => parts(object),
        Object::Gateway(object) => parts(object),
        Object::Sidecar(object) => parts(object),
        Object::Untranslated(object) => Some((&object.metadata, json!({}))),
    }
}

fn value<T: Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap_or_else(|error| json!({"error": error.to_string()}))
}

/// An input object as JSON; Secrets show their name, labels and the names of their keys only.
fn object_json(object: &Object) -> Value {
    fn metadata(metadata: &Metadata) -> Value {
        json!({
            "name": metadata.name,
            "namespace": metadata.namespace,
            "labels": metadata.labels,
            "annotations": metadata.annotations,
            "creationTimestamp": metadata.creation_timestamp,
        })
    }
    if let Some((meta, spec)) = istio_parts(object) {
        return match object {
            Object::Untranslated(_) => json!({"metadata": metadata(meta)}),
            _ => json!({"metadata": metadata(meta), "spec": spec}),
        };
    }
    match object {
        Object::Namespace(object) => value(object),
        Object::Node(object) => value(object),
        Object::Secret(secret) => {
            let keys: Vec<&String> = secret
                .data
                .iter()
                .flat_map(|data| data.keys())
                .chain(secret.string_data.iter().flat_map(|data| data.keys()))
                .collect();
            // Annotations can hold anything, a copy of the data included
            // (`kubectl.kubernetes.io/last-applied-configuration`).
            let metadata = &secret.metadata;
            json!({
                "metadata": {
                    "name": metadata.name,
                    "namespace": metadata.namespace,
                    "labels": metadata.labels,
                    "creationTimestamp": metadata.creation_timestamp,
                },
                "type": secret.type_,
                "keys": keys,
            })
        }
        Object::Service(object) => value(object),
        Object::Pod(object) => value(object),
        Object::EndpointSlice(object) => value(object),
        // Istio kinds are answered above.
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn inputz_lists_objects_with_their_errors() {
        use crate::diagnostic::{ConfigError, Origin};
        use crate::inputs::{Entry, FieldError};
        let key = ObjectKey::new(Kind::VirtualService, "default", "broken");
        let mut inputs = Inputs::default();
        inputs.insert(
            key.clone(),
            Entry {
                origin: Origin::Kubernetes,
                object: Err(FieldError {
                    field: "spec.http".into(),
                    message: "bad".into(),
                }),
            },
        );
        let snapshot = Snapshot {
            errors: vec![
                ConfigError::new("bad").on(key).field("spec.http"),
                ConfigError::new("unreadable"),
            ],
            generation: 4,
            inputs: Arc::new(inputs),
            ..Snapshot::default()
        };
        assert_eq!(
            inputz_view(&snapshot),
            json!({
                "generation": 4,
                "objects": [{
                    "kind": "VirtualService",
                    "namespace": "default",
                    "name": "broken",
                    "origin": "kubernetes",
                    "refused": "spec.http: bad",
                    "errors": ["VirtualService default/broken: spec.http: bad"],
                    "object": null,
                }],
                "errors": ["VirtualService default/broken: spec.http: bad", "unreadable"],
                "untranslated": [],
            })
        );
    }
}

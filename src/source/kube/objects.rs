//! What the Kubernetes source keeps of an object: pruned to the fields rudder reads and decoded
//! as it arrives, so memory holds typed objects, not API server JSON.
//!
//! It must not judge objects: a malformed object is an entry with its field error, and the model
//! decides what to do with it.

use kube::api::{ApiResource, DynamicObject};
use serde_json::Value;

use super::store::Stored;
use crate::diagnostic::Origin;
use crate::inputs::{Decoded, Entry, Kind, UnknownFields, decode_with};
use crate::model::credential::{GENERIC_CERTIFICATE, GENERIC_KEY, SECRET_DATA_KEYS};

/// Prunes and decodes one object from the API server; `None` if it cannot even be keyed
/// (reported, since the API server guarantees names this should not happen).
pub(super) fn store_object(resource: &ApiResource, object: DynamicObject) -> Option<Stored> {
    let mut value = match serde_json::to_value(&object) {
        Ok(value) => value,
        Err(error) => {
            tracing::warn!(kind = resource.kind, %error, "cannot read an object");
            return None;
        }
    };
    // List items come without apiVersion and kind; decoding needs them.
    if let Some(fields) = value.as_object_mut() {
        fields.insert(
            "apiVersion".into(),
            Value::String(resource.api_version.clone()),
        );
        fields.insert("kind".into(), Value::String(resource.kind.clone()));
    }
    let kind = Kind::from_type(&resource.api_version, &resource.kind);
    // Statuses are written on the objects rudder translates only.
    let status = kind
        .filter(|kind| kind.is_istio() && kind.untranslated_effect().is_none())
        .map(|_| value.get("status").cloned().unwrap_or(Value::Null));
    let labels = object.metadata.labels.clone().unwrap_or_default();
    let value = prune(kind, &resource.kind, value);
    // The API server held the object to its CRD's schema already.
    match decode_with(value, "default", UnknownFields::Ignore) {
        Ok(Decoded::Object(key, object)) => Some(Stored {
            key,
            entry: std::sync::Arc::new(Entry {
                origin: Origin::Kubernetes,
                object,
            }),
            status,
            labels,
        }),
        Ok(Decoded::Skipped { .. }) => None,
        Err(error) => {
            let name = object.metadata.name.as_deref().unwrap_or_default();
            tracing::warn!(kind = resource.kind, name, %error, "cannot key an object");
            None
        }
    }
}

/// Keeps only what rudder reads of an object (`kind` as written, `known` if rudder knows it), so
/// memory holds little more than the config.
fn prune(known: Option<Kind>, kind: &str, mut value: Value) -> Value {
    let Some(object) = value.as_object_mut() else {
        return value;
    };
    let istio_kind = known.is_some_and(Kind::is_istio);
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        // `resourceVersion` changes with every write, so keeping it would make every update
        // (an annotation, a status) a change of the inputs and a rebuild.
        for field in [
            "managedFields",
            "ownerReferences",
            "finalizers",
            "selfLink",
            "resourceVersion",
        ] {
            metadata.remove(field);
        }
        if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
            // Of the registry's objects only Istio's annotations mean anything to a mesh
            // (`networking.istio.io/exportTo`, `sidecar.istio.io/...`); the rest are dropped here
            // so that editing them changes nothing downstream. Istio objects keep theirs: they
            // are shown as the objects were written (`/debug/configz`).
            if !istio_kind {
                annotations.retain(|key, _| is_istio_annotation(key));
            }
        }
    }
    let keep = |object: &mut serde_json::Map<String, Value>, field: &str, keep: &[&str]| {
        if let Some(Value::Object(inner)) = object.get_mut(field) {
            inner.retain(|key, _| keep.contains(&key.as_str()));
        }
    };
    match kind {
        "Pod" => {
            keep(
                object,
                "spec",
                &[
                    "nodeName",
                    "serviceAccountName",
                    "hostNetwork",
                    "containers",
                ],
            );
            // Of the containers, the named ports: a Service's named targetPort resolves through
            // them (istiod's FindPort), for endpoints and for the Pod's own inbound listeners.
            if let Some(Value::Array(containers)) = object
                .get_mut("spec")
                .and_then(|spec| spec.get_mut("containers"))
            {
                for container in containers.iter_mut().filter_map(Value::as_object_mut) {
                    container.retain(|key, _| key == "name" || key == "ports");
                    if let Some(Value::Array(ports)) = container.get_mut("ports") {
                        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                            port.retain(|key, _| {
                                matches!(key.as_str(), "name" | "containerPort" | "protocol")
                            });
                        }
                    }
                }
            }
            keep(object, "status", &["podIP", "podIPs", "phase"]);
        }
        "Node" => {
            object.remove("spec");
            object.remove("status");
        }
        "Secret" => prune_secret(object),
        "Service" => {
            object.remove("status");
        }
        // Of a kind rudder does not translate, only what names the object is reported.
        _ if known.is_some_and(|kind| kind.untranslated_effect().is_some()) => {
            object.retain(|field, _| matches!(field.as_str(), "apiVersion" | "kind" | "metadata"));
        }
        _ if known.is_some_and(Kind::is_istio) => {
            // The status is kept apart, for the status writer; the model reads the spec.
            object.remove("status");
        }
        _ => {}
    }
    value
}

/// An annotation in one of Istio's domains (`*.istio.io/...`, `istio.io/...`).
fn is_istio_annotation(key: &str) -> bool {
    key.split_once('/')
        .is_some_and(|(domain, _)| domain == "istio.io" || domain.ends_with(".istio.io"))
}

/// Keeps of a Secret only the data keys istiod reads for credentials, and of the generic
/// `cert`/`key` pair only a whole pair: an Opaque Secret's lone `key` is some API key, not a TLS
/// key, and stays out of memory. Annotations go too (they can hold anything, a copy of the data
/// included).
fn prune_secret(object: &mut serde_json::Map<String, Value>) {
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        metadata.remove("annotations");
    }
    object.remove("stringData");
    let Some(Value::Object(data)) = object.get_mut("data") else {
        return;
    };
    data.retain(|key, _| SECRET_DATA_KEYS.contains(&key.as_str()));
    if !(data.contains_key(GENERIC_CERTIFICATE) && data.contains_key(GENERIC_KEY)) {
        data.remove(GENERIC_CERTIFICATE);
        data.remove(GENERIC_KEY);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    pub(in crate::source::kube) fn stored(
        kind: &str,
        api_version: &str,
        namespace: &str,
        name: &str,
        labels: Value,
    ) -> Stored {
        let resource = ApiResource {
            group: api_version
                .rsplit_once('/')
                .map(|(g, _)| g)
                .unwrap_or_default()
                .to_string(),
            version: api_version
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_string(),
            api_version: api_version.to_string(),
            kind: kind.to_string(),
            plural: format!("{}s", kind.to_lowercase()),
        };
        let object: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"hosts": ["x"]},
        }))
        .unwrap();
        store_object(&resource, object).unwrap()
    }

    #[test]
    fn istio_statuses_are_kept_apart_from_the_spec() {
        let resource = ApiResource {
            group: "networking.istio.io".into(),
            version: "v1".into(),
            api_version: "networking.istio.io/v1".into(),
            kind: "DestinationRule".into(),
            plural: "destinationrules".into(),
        };
        let object: DynamicObject = serde_json::from_value(json!({
            "metadata": {"name": "r", "namespace": "n", "managedFields": [{"manager": "kubectl"}]},
            "spec": {"host": "reviews"},
            "status": {"conditions": [{"type": "Accepted"}]},
        }))
        .unwrap();
        let stored = store_object(&resource, object).unwrap();
        assert_eq!(
            stored.status,
            Some(json!({"conditions": [{"type": "Accepted"}]}))
        );
        assert!(stored.entry.object.is_ok());
    }

    #[test]
    fn pruning_keeps_what_rudder_reads() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "managedFields": [{}], "resourceVersion": "42",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}",
                    "example.com/owner": "team-a", "sidecar.istio.io/inject": "true"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "x", "env": [],
                "ports": [{"name": "web", "containerPort": 9090, "hostPort": 80}]}]},
            "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready"}]},
        });
        assert_eq!(
            prune(Some(Kind::Pod), "Pod", pod),
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "annotations": {"sidecar.istio.io/inject": "true"}},
                "spec": {"nodeName": "n1", "containers": [
                    {"name": "app", "ports": [{"name": "web", "containerPort": 9090}]}]},
                "status": {"podIP": "10.0.0.1"},
            })
        );
        let secret =
            json!({"kind": "Secret", "data": {"tls.crt": "a", "tls.key": "b", "password": "c"}});
        assert_eq!(
            prune(Some(Kind::Secret), "Secret", secret)["data"],
            json!({"tls.crt": "a", "tls.key": "b"})
        );
        let generic = json!({"kind": "Secret", "metadata": {"name": "g", "annotations": {"a": "b"}},
            "data": {"cert": "a", "key": "b", "cacert": "c", "token": "d"}});
        assert_eq!(
            prune(Some(Kind::Secret), "Secret", generic),
            json!({"kind": "Secret", "metadata": {"name": "g"},
                "data": {"cert": "a", "key": "b", "cacert": "c"}})
        );
        let api_key = json!({"kind": "Secret", "data": {"key": "s3cr3t", "ca.crt": "c"}});
        assert_eq!(
            prune(Some(Kind::Secret), "Secret", api_key)["data"],
            json!({"ca.crt": "c"})
        );
        let policy = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "p"}, "spec": {"action": "DENY"}, "status": {}});
        assert_eq!(
            prune(
                Some(Kind::AuthorizationPolicy),
                "AuthorizationPolicy",
                policy
            ),
            json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                "metadata": {"name": "p"}})
        );
    }
}

//! `Inputs`: the plain bag of objects rudder's config sources produce, keyed by kind, namespace
//! and name. A source turns raw documents into entries with [`decode`]; an entry whose content
//! does not fit its kind's schema is kept as a rejected entry (with the field that failed), so the
//! model can fall back to that object's last good version instead of dropping it.
//! This module knows object shapes only: no cross-object checks, no Envoy, no I/O.

mod changes;
pub mod fields;
mod kind;
pub mod yaml;

pub use changes::Changes;
pub use kind::{Api, EXTENSIONS_GROUP, Handling, Kind, SECURITY_GROUP, TELEMETRY_GROUP};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diagnostic::{ConfigError, Origin};
use crate::istio;

/// Identifies one object; `namespace` is empty for cluster-scoped kinds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The metadata rudder keeps for Istio objects.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Metadata {
    pub name: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339; istiod orders rules by creation time, then name.
    pub creation_timestamp: Option<String>,
}

/// An Istio object: metadata and its typed spec.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IstioObject<Spec> {
    pub metadata: Metadata,
    pub spec: Spec,
}

/// A decoded object of a kind rudder reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Namespace(Box<Namespace>),
    Node(Box<Node>),
    Secret(Box<Secret>),
    Service(Box<Service>),
    Pod(Box<Pod>),
    EndpointSlice(Box<EndpointSlice>),
    WorkloadEntry(Box<IstioObject<istio::WorkloadEntry>>),
    ServiceEntry(Box<IstioObject<istio::ServiceEntry>>),
    DestinationRule(Box<IstioObject<istio::DestinationRule>>),
    VirtualService(Box<IstioObject<istio::VirtualService>>),
    Gateway(Box<IstioObject<istio::Gateway>>),
    Sidecar(Box<IstioObject<istio::Sidecar>>),
    /// An object of an Istio kind rudder does not translate yet ([`Kind::untranslated`]): only
    /// what identifies it is kept, to report it.
    Untranslated(Box<UntranslatedObject>),
}

/// What rudder keeps of an object whose kind it does not translate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UntranslatedObject {
    pub metadata: Metadata,
}

/// A field of an object that does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// One object as a source saw it: where it came from, and either its decoded form or why its
/// content was refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub origin: Origin,
    pub object: Result<Object, FieldError>,
}

/// Everything the sources currently hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    /// Shared (`Arc`) with the sources that hold them and with earlier inputs: merging sources
    /// or keeping a copy of the inputs copies no object.
    pub entries: BTreeMap<ObjectKey, Arc<Entry>>,
    /// Problems that belong to no single object: unreadable files, duplicates, missing names.
    pub problems: Vec<ConfigError>,
    /// The mesh config as its source holds it (`--mesh-config`, or the `istio` ConfigMap);
    /// `None` when there is none, which means istiod's defaults.
    pub mesh_config: Option<MeshConfigText>,
}

/// The text of a mesh config, not yet judged (`model::build` parses it, and keeps the last
/// good one in force when it is refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfigText {
    pub origin: Origin,
    /// What holds the text, as messages name it: `ConfigMap istio-system/istio` (whose keys are
    /// `data.mesh` and `data.meshNetworks`); empty for a file, which `origin` names.
    pub holder: String,
    /// The `mesh` key (or the file's text); `None` when the ConfigMap has no `mesh` key.
    pub mesh: Option<String>,
    /// The `meshNetworks` key, when there is one.
    pub networks: Option<String>,
}

impl Inputs {
    /// Adds an entry; the first definition of a key wins and a later one is reported.
    pub fn insert(&mut self, key: ObjectKey, entry: impl Into<Arc<Entry>>) {
        let entry = entry.into();
        if let Some(existing) = self.entries.get(&key) {
            self.problems.push(
                ConfigError::new(format!(
                    "duplicate definition; {} already defines it",
                    existing.origin
                ))
                .at(entry.origin.clone())
                .on(key),
            );
            return;
        }
        self.entries.insert(key, entry);
    }

    /// The entries of one kind, in key order.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = (&ObjectKey, &Entry)> {
        self.entries
            .range(ObjectKey::new(kind, "", "")..)
            .take_while(move |(key, _)| key.kind == kind)
            .map(|(key, entry)| (key, &**entry))
    }

    /// Everything several sources hold; an object defined by two sources is reported and the
    /// first source's definition kept.
    pub fn merge<'a>(sources: impl IntoIterator<Item = &'a Inputs>) -> Inputs {
        let mut merged = Inputs::default();
        for source in sources {
            merged.problems.extend(source.problems.iter().cloned());
            // One source gives the mesh config (`--mesh-config` wins over the ConfigMap: serve
            // starts only one of them).
            if merged.mesh_config.is_none() {
                merged.mesh_config.clone_from(&source.mesh_config);
            }
            for (key, entry) in &source.entries {
                merged.insert(key.clone(), Arc::clone(entry));
            }
        }
        merged
    }
}

/// What [`decode`] makes of one raw document.
#[derive(Debug)]
pub enum Decoded {
    /// A kind rudder reads, keyed; the object itself may still have been refused.
    Object(ObjectKey, Result<Object, FieldError>),
    /// A kind rudder does not read (`apiVersion` and `kind` as written).
    Skipped { api_version: String, kind: String },
}

/// Why a raw document is not an object rudder can key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not a Kubernetes object: apiVersion and kind are required")]
    NotAnObject,
    #[error(transparent)]
    Field(FieldError),
}

impl From<DecodeError> for ConfigError {
    fn from(error: DecodeError) -> ConfigError {
        match error {
            DecodeError::NotAnObject => ConfigError::new(error.to_string()),
            DecodeError::Field(FieldError { field, message }) => {
                ConfigError::new(message).field(field)
            }
        }
    }
}

/// What [`decode_with`] does with fields Istio's API does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownFields {
    /// The object is refused, naming the field ([`fields`]), as `istioctl validate` and the API
    /// server's strict field validation refuse it: config files.
    Refuse,
    /// They are ignored: objects the API server has already held to the CRD's schema (which
    /// knows the fields of the Istio release installed, maybe newer than rudder's list).
    Ignore,
}

/// Decodes one raw object from a file, refusing fields Istio's API does not have. See
/// [`decode_with`].
pub fn decode(value: Value, default_namespace: &str) -> Result<Decoded, DecodeError> {
    decode_with(value, default_namespace, UnknownFields::Refuse)
}

/// Decodes one raw object. `default_namespace` applies to namespaced kinds without one, as
/// `kubectl apply` does with `default`.
pub fn decode_with(
    value: Value,
    default_namespace: &str,
    unknown_fields: UnknownFields,
) -> Result<Decoded, DecodeError> {
    let text = |field: &str| {
        value
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (api_version, kind_name) = (text("apiVersion"), text("kind"));
    if api_version.is_empty() || kind_name.is_empty() {
        return Err(DecodeError::NotAnObject);
    }
    let Some(kind) = Kind::from_type(&api_version, &kind_name) else {
        return Ok(Decoded::Skipped {
            api_version,
            kind: kind_name,
        });
    };
    let metadata = value.get("metadata");
    // An unquoted `namespace: 123` is a YAML number; reading it as absent would file the object
    // under the default namespace.
    let field = |name: &'static str| match metadata.and_then(|m| m.get(name)) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(text)) => Ok(text.as_str()),
        Some(_) => Err(name),
    };
    let not_a_string = |name| {
        DecodeError::Field(FieldError {
            field: format!("metadata.{name}"),
            message: "must be a string".to_string(),
        })
    };
    let name = field("name").map_err(not_a_string)?.to_string();
    if name.is_empty() {
        return Err(DecodeError::Field(FieldError {
            field: "metadata.name".to_string(),
            message: format!("{kind} without a name"),
        }));
    }
    let namespace = match (
        kind.is_namespaced(),
        field("namespace").map_err(not_a_string)?,
    ) {
        (false, _) => String::new(),
        (true, "") => default_namespace.to_string(),
        (true, namespace) => namespace.to_string(),
    };
    let key = ObjectKey::new(kind, namespace.clone(), name);
    if unknown_fields == UnknownFields::Refuse
        && let Err(error) = fields::check_unknown_fields(kind, &value)
    {
        return Ok(Decoded::Object(key, Err(error)));
    }
    let object = decode_object(kind, value).map(|object| with_namespace(object, &namespace));
    Ok(Decoded::Object(key, object))
}

fn decode_object(kind: Kind, value: Value) -> Result<Object, FieldError> {
    Ok(match kind {
        Kind::Namespace => Object::Namespace(typed(value)?),
        Kind::Node => Object::Node(typed(value)?),
        Kind::Secret => Object::Secret(typed(value)?),
        Kind::Service => Object::Service(typed(value)?),
        Kind::Pod => Object::Pod(typed(value)?),
        Kind::EndpointSlice => Object::EndpointSlice(typed(value)?),
        Kind::WorkloadEntry => Object::WorkloadEntry(typed(value)?),
        Kind::ServiceEntry => Object::ServiceEntry(typed(value)?),
        Kind::DestinationRule => Object::DestinationRule(typed(value)?),
        Kind::VirtualService => Object::VirtualService(typed(value)?),
        Kind::Gateway => Object::Gateway(typed(value)?),
        Kind::Sidecar => Object::Sidecar(typed(value)?),
        Kind::AuthorizationPolicy
        | Kind::PeerAuthentication
        | Kind::RequestAuthentication
        | Kind::EnvoyFilter
        | Kind::ProxyConfig
        | Kind::WorkloadGroup
        | Kind::Telemetry
        | Kind::WasmPlugin
        | Kind::TrafficExtension => Object::Untranslated(typed(value)?),
    })
}

/// Deserializes with the path of the failing field, so errors can name it.
fn typed<T: DeserializeOwned>(value: Value) -> Result<Box<T>, FieldError> {
    serde_path_to_error::deserialize(value)
        .map(Box::new)
        .map_err(|error| FieldError {
            field: error.path().to_string(),
            message: error.into_inner().to_string(),
        })
}

/// Fills in the namespace a document left out, so later stages never guess it.
fn with_namespace(mut object: Object, namespace: &str) -> Object {
    let slot = match &mut object {
        Object::Namespace(_) | Object::Node(_) => return object,
        Object::Secret(o) => &mut o.metadata.namespace,
        Object::Service(o) => &mut o.metadata.namespace,
        Object::Pod(o) => &mut o.metadata.namespace,
        Object::EndpointSlice(o) => &mut o.metadata.namespace,
        Object::WorkloadEntry(o) => &mut o.metadata.namespace,
        Object::ServiceEntry(o) => &mut o.metadata.namespace,
        Object::DestinationRule(o) => &mut o.metadata.namespace,
        Object::VirtualService(o) => &mut o.metadata.namespace,
        Object::Gateway(o) => &mut o.metadata.namespace,
        Object::Sidecar(o) => &mut o.metadata.namespace,
        Object::Untranslated(o) => &mut o.metadata.namespace,
    };
    *slot = Some(namespace.to_string());
    object
}

/// The inputs of every golden case (`testdata/golden/*/input`), read as `serve` reads a config
/// directory, with the case's directory: for unit tests that check a property over all of them.
#[cfg(test)]
pub(crate) fn golden_case_inputs() -> Vec<(std::path::PathBuf, Inputs)> {
    let cases = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/golden");
    let mut dirs: Vec<std::path::PathBuf> = std::fs::read_dir(cases)
        .expect("the golden cases")
        .filter_map(|case| Some(case.ok()?.path()))
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|case| {
            let inputs = crate::source::file::load_dirs(&[case.join("input")]).inputs();
            (case, inputs)
        })
        .collect()
}

/// Two Kubernetes Services of `default`, `reviews` and `ratings`, each with the HTTP port 9080:
/// where unit tests that need a couple of services start their YAML.
#[cfg(test)]
pub(crate) const TWO_SERVICES_YAML: &str = "
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  ports: [{name: http, port: 9080}]
";

/// Inputs from YAML text, as if it were the file `test.yaml` (objects without a namespace in
/// `default`): the crate's unit tests build their models from this.
#[cfg(test)]
pub(crate) fn from_test_yaml(yaml: &str) -> Inputs {
    let mut inputs = Inputs::default();
    for document in yaml::parse_documents(yaml).expect("the test YAML parses") {
        let decoded = decode(document.value, "default").expect("a test document decodes");
        if let Decoded::Object(key, object) = decoded {
            let origin = Origin::File {
                path: "test.yaml".into(),
                line: document.line,
            };
            inputs.insert(key, Entry { origin, object });
        }
    }
    inputs
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The key `decode` files a Service under, or its error as text.
    fn key(metadata: Value) -> Result<ObjectKey, String> {
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata});
        match decode(service, "default").map_err(|error| error.to_string())? {
            Decoded::Object(key, _) => Ok(key),
            Decoded::Skipped { api_version, kind } => panic!("skipped {api_version} {kind}"),
        }
    }

    #[test]
    fn namespace_defaults_only_when_absent() {
        let default = Ok(ObjectKey::new(Kind::Service, "default", "a"));
        assert_eq!(key(json!({"name": "a"})), default);
        assert_eq!(key(json!({"name": "a", "namespace": null})), default);
        assert_eq!(
            key(json!({"name": "a", "namespace": "ns"})),
            Ok(ObjectKey::new(Kind::Service, "ns", "a"))
        );
        let not_a_string = Err("metadata.namespace: must be a string".to_string());
        assert_eq!(key(json!({"name": "a", "namespace": 123})), not_a_string);
        assert_eq!(
            key(json!({"name": 7})),
            Err("metadata.name: must be a string".into())
        );
        assert_eq!(
            key(json!({})),
            Err("metadata.name: Service without a name".into())
        );
    }

    #[test]
    fn other_kinds_are_skipped_and_non_objects_refused() {
        assert!(matches!(
            decode(json!({"apiVersion": "v1", "kind": "ConfigMap"}), "default"),
            Ok(Decoded::Skipped { .. })
        ));
        assert_eq!(
            decode(json!("text"), "default").unwrap_err().to_string(),
            "not a Kubernetes object: apiVersion and kind are required"
        );
    }
}

//! The CustomResourceDefinitions of the Istio networking kinds rudder reads, generated from
//! rudder's own types in [`crate::istio`], so that the schema the API server enforces is the
//! schema rudder parses.
//!
//! Each CRD serves `v1` (the storage version), `v1beta1` and `v1alpha3` with one schema, is
//! namespaced, has a `status` subresource that keeps whatever status Istio tools write, and
//! carries Istio's names, short names, categories and printer columns. The schemas are made
//! structural (as the API server requires) by kube-core's `StructuralSchemaRewriter`, the same
//! rewriter kube-derive's `CustomResource` uses.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::schema::{OptionalEnum, OptionalIntOrString, StructuralSchemaRewriter};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use schemars::transform::{AddNullable, Transform, transform_subschemas};
use serde_json::{Value, json};

use crate::istio;

/// The version the API server stores objects in.
pub const STORAGE_VERSION: &str = "v1";

/// The first line of [`istio_crds_yaml`].
const YAML_HEADER: &str = "# Generated from rudder's Istio types by rudder::crd::istio_crds_yaml; do not edit.\n\
    # Regenerate: RUDDER_UPDATE_GOLDEN=1 cargo test --test manifests\n\
    # Install: kubectl apply --server-side -f manifests/crds.yaml\n";

/// One kind's names and columns.
struct KindInfo {
    kind: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    /// `(name, type, JSON path, description)`; `Age` is added to every kind.
    columns: &'static [(&'static str, &'static str, &'static str, &'static str)],
    spec_schema: fn() -> Value,
    description: &'static str,
}

const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: "DestinationRule",
        plural: "destinationrules",
        short_names: &["dr"],
        columns: &[(
            "Host",
            "string",
            ".spec.host",
            "The name of a service from the service registry",
        )],
        spec_schema: spec_schema::<istio::DestinationRule>,
        description: "Configuration affecting load balancing, outlier detection, etc.",
    },
    KindInfo {
        kind: "Gateway",
        plural: "gateways",
        short_names: &["gw"],
        columns: &[],
        spec_schema: spec_schema::<istio::Gateway>,
        description: "Configuration affecting edge load balancer.",
    },
    KindInfo {
        kind: "ServiceEntry",
        plural: "serviceentries",
        short_names: &["se"],
        columns: &[
            (
                "Hosts",
                "string",
                ".spec.hosts",
                "The hosts associated with the ServiceEntry",
            ),
            (
                "Location",
                "string",
                ".spec.location",
                "Whether the service is external to the mesh or part of the mesh (MESH_EXTERNAL or MESH_INTERNAL)",
            ),
            (
                "Resolution",
                "string",
                ".spec.resolution",
                "Service resolution mode for the hosts (NONE, STATIC, DNS or DNS_ROUND_ROBIN)",
            ),
        ],
        spec_schema: spec_schema::<istio::ServiceEntry>,
        description: "Configuration affecting service registry.",
    },
    KindInfo {
        kind: "Sidecar",
        plural: "sidecars",
        short_names: &[],
        columns: &[],
        spec_schema: spec_schema::<istio::Sidecar>,
        description: "Configuration affecting network reachability of a sidecar.",
    },
    KindInfo {
        kind: "VirtualService",
        plural: "virtualservices",
        short_names: &["vs"],
        columns: &[
            (
                "Gateways",
                "string",
                ".spec.gateways",
                "The names of gateways and sidecars that should apply these routes",
            ),
            (
                "Hosts",
                "string",
                ".spec.hosts",
                "The destination hosts to which traffic is being sent",
            ),
        ],
        spec_schema: spec_schema::<istio::VirtualService>,
        description: "Configuration affecting label/content routing, sni routing, etc.",
    },
    KindInfo {
        kind: "WorkloadEntry",
        plural: "workloadentries",
        short_names: &["we"],
        columns: &[(
            "Address",
            "string",
            ".spec.address",
            "Address associated with the network endpoint",
        )],
        spec_schema: spec_schema::<istio::WorkloadEntry>,
        description: "Configuration affecting VMs onboarded into the mesh.",
    },
];

/// The CRDs of the six Istio networking kinds rudder reads (DestinationRule, Gateway,
/// ServiceEntry, Sidecar, VirtualService, WorkloadEntry), in that order.
pub fn istio_crds() -> Vec<CustomResourceDefinition> {
    KINDS.iter().map(crd).collect()
}

/// [`istio_crds`] as multi-document YAML, ready for `kubectl apply -f -`. The output is the same
/// on every run (it is checked in as `manifests/crds.yaml`).
pub fn istio_crds_yaml() -> String {
    let crds = istio_crds();
    let body = serde_saphyr::to_string_multiple(&crds).expect("CRDs serialize to YAML");
    format!("{YAML_HEADER}{body}")
}

/// The structural OpenAPI v3 schema of an Istio spec type, as JSON.
pub fn spec_schema<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::openapi3()
        .with(|settings| {
            settings.inline_subschemas = true;
            settings.meta_schema = None;
        })
        .with_transform(AddNullable::default())
        .with_transform(StructuralSchemaRewriter)
        .with_transform(OptionalEnum)
        .with_transform(OptionalIntOrString)
        .with_transform(Tidy)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    schema
}

/// The last touches schemars leaves to do:
/// - field defaults come from `#[serde(default)]`; the API server would write them into every
///   object it stores (`hosts: []`, `trafficPolicy: null`), so they are left out;
/// - the Rust type names schemars uses as titles are left out;
/// - `null` is taken out of the values of optional enums (`nullable` already allows it; Istio's
///   CRDs list only the names);
/// - integer formats the API server does not know (`uint32`, `uint64`: it warns on every write)
///   become bounds, as in Istio's CRDs.
#[derive(Debug, Clone, Copy)]
struct Tidy;

/// The `format`s the API server recognizes (and schemars emits).
const KNOWN_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "date",
    "date-time",
];

impl Transform for Tidy {
    fn transform(&mut self, schema: &mut schemars::Schema) {
        transform_subschemas(self, schema);
        if let Some(object) = schema.as_object_mut() {
            object.remove("default");
            object.remove("title");
            if let Some(Value::Array(values)) = object.get_mut("enum") {
                values.retain(|value| !value.is_null());
            }
            let format = object
                .get("format")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if let Some(format) = format.filter(|f| !KNOWN_FORMATS.contains(&f.as_str())) {
                object.remove("format");
                let maximum = match format.as_str() {
                    "uint8" => Some(u64::from(u8::MAX)),
                    "uint16" => Some(u64::from(u16::MAX)),
                    "uint32" => Some(u64::from(u32::MAX)),
                    _ => None,
                };
                if let Some(maximum) = maximum {
                    object.insert("maximum".to_string(), json!(maximum));
                }
            }
        }
    }
}

fn crd(info: &KindInfo) -> CustomResourceDefinition {
    let spec = with_description((info.spec_schema)(), info.description);
    let schema: JSONSchemaProps = serde_json::from_value(json!({
        "type": "object",
        "properties": {
            "spec": spec,
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        },
        "required": ["spec"]
    }))
    .expect("generated schemas fit JSONSchemaProps");
    let mut columns: Vec<CustomResourceColumnDefinition> = info
        .columns
        .iter()
        .map(
            |&(name, type_, path, description)| CustomResourceColumnDefinition {
                name: name.to_string(),
                type_: type_.to_string(),
                json_path: path.to_string(),
                description: Some(description.to_string()),
                ..Default::default()
            },
        )
        .collect();
    columns.push(CustomResourceColumnDefinition {
        name: "Age".to_string(),
        type_: "date".to_string(),
        json_path: ".metadata.creationTimestamp".to_string(),
        description: Some(
            "CreationTimestamp is a timestamp representing the server time when this object was created."
                .to_string(),
        ),
        ..Default::default()
    });
    let versions = istio::NETWORKING_VERSIONS
        .iter()
        .map(|&version| CustomResourceDefinitionVersion {
            name: version.to_string(),
            served: true,
            storage: version == STORAGE_VERSION,
            schema: Some(CustomResourceValidation {
                open_api_v3_schema: Some(schema.clone()),
            }),
            subresources: Some(CustomResourceSubresources {
                status: Some(CustomResourceSubresourceStatus(json!({}))),
                ..Default::default()
            }),
            additional_printer_columns: Some(columns.clone()),
            ..Default::default()
        })
        .collect();
    CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(format!("{}.{}", info.plural, istio::NETWORKING_GROUP)),
            ..Default::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: istio::NETWORKING_GROUP.to_string(),
            names: CustomResourceDefinitionNames {
                kind: info.kind.to_string(),
                list_kind: Some(format!("{}List", info.kind)),
                plural: info.plural.to_string(),
                singular: Some(info.kind.to_lowercase()),
                short_names: (!info.short_names.is_empty())
                    .then(|| info.short_names.iter().map(|s| s.to_string()).collect()),
                categories: Some(vec![
                    "istio-io".to_string(),
                    "networking-istio-io".to_string(),
                ]),
            },
            scope: "Namespaced".to_string(),
            versions,
            ..Default::default()
        },
        status: None,
    }
}

fn with_description(mut schema: Value, description: &str) -> Value {
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "description".to_string(),
            Value::String(format!(
                "{description} See more details at: https://istio.io/docs/reference/config/networking/"
            )),
        );
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every keyword of a schema, with the path to it, so a test can look for ones the API server
    /// refuses.
    fn keywords(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    out.push((path.to_string(), key.clone()));
                    // Under `properties` the keys are field names, not keywords.
                    if key == "properties" {
                        for (name, field) in child.as_object().into_iter().flatten() {
                            keywords(field, &format!("{path}.{name}"), out);
                        }
                    } else {
                        keywords(child, &format!("{path}/{key}"), out);
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    keywords(item, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }

    /// Numbers as floats: JSONSchemaProps keeps `minimum` as f64.
    fn floats(value: Value) -> Value {
        match value {
            Value::Number(n) => json!(n.as_f64()),
            Value::Array(items) => Value::Array(items.into_iter().map(floats).collect()),
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (k, floats(v))).collect())
            }
            other => other,
        }
    }

    #[test]
    fn schemas_survive_the_round_trip_through_k8s_openapi() {
        for info in KINDS {
            let schema = (info.spec_schema)();
            let props: JSONSchemaProps = serde_json::from_value(schema.clone()).unwrap();
            assert_eq!(
                floats(serde_json::to_value(&props).unwrap()),
                floats(schema),
                "{}: a keyword is lost in JSONSchemaProps",
                info.kind
            );
        }
    }

    #[test]
    fn schemas_use_only_structural_keywords() {
        for info in KINDS {
            let schema = (info.spec_schema)();
            let text = schema.to_string();
            assert!(!text.contains(r#""format":"uint"#), "{}: {text}", info.kind);
            let mut found = Vec::new();
            keywords(&schema, info.kind, &mut found);
            for (path, keyword) in &found {
                assert!(
                    !["$ref", "$defs", "definitions", "default", "const", "title"]
                        .contains(&keyword.as_str()),
                    "{path}: {keyword}"
                );
                // Inside oneOf/anyOf/not only `required` (and nesting) may appear.
                if path.contains("/oneOf") || path.contains("/anyOf") || path.contains("/not") {
                    assert!(
                        ["required", "not", "anyOf", "oneOf"].contains(&keyword.as_str()),
                        "{path}: {keyword} inside a junction"
                    );
                }
            }
        }
    }

    #[test]
    fn string_match_allows_an_empty_matcher_and_enums_list_known_values() {
        let schema = spec_schema::<istio::VirtualService>();
        let request = &schema["properties"]["http"]["items"]["properties"]["match"]["items"];
        let header = &request["properties"]["headers"]["additionalProperties"];
        assert_eq!(header["type"], "object");
        assert_eq!(
            header["oneOf"][0]["not"]["anyOf"][0]["required"][0],
            "exact"
        );
        let derive_port = &schema["properties"]["http"]["items"]["properties"]["redirect"]["properties"]
            ["derivePort"];
        assert_eq!(
            derive_port["enum"],
            json!(["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"])
        );
        let timeout = &schema["properties"]["http"]["items"]["properties"]["timeout"];
        assert_eq!(timeout["type"], "string");
    }

    #[test]
    fn crds_have_istio_names_and_versions() {
        let crds = istio_crds();
        let names: Vec<_> = crds
            .iter()
            .map(|crd| crd.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "destinationrules.networking.istio.io",
                "gateways.networking.istio.io",
                "serviceentries.networking.istio.io",
                "sidecars.networking.istio.io",
                "virtualservices.networking.istio.io",
                "workloadentries.networking.istio.io",
            ]
        );
        for crd in &crds {
            let versions: Vec<_> = crd
                .spec
                .versions
                .iter()
                .map(|v| (v.name.as_str(), v.storage))
                .collect();
            assert_eq!(
                versions,
                [("v1", true), ("v1beta1", false), ("v1alpha3", false)]
            );
        }
        assert_eq!(
            crds[4].spec.names.short_names.as_deref(),
            Some(&["vs".to_string()][..])
        );
        assert!(istio_crds_yaml().starts_with(YAML_HEADER));
    }
}

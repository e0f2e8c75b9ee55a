//! Renders Envoy protobuf messages as canonical proto3 JSON (the form Envoy's own config_dump and
//! `--config-path` use), through a descriptor pool compiled from the protos envoy-types ships.
//! Used for config dumps, golden files and bootstraps; never on the xDS wire. The pool also
//! guides `xds::canonical`'s walk of encoded resources.

use std::sync::LazyLock;

use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

use crate::translate::{ResourceType, Resources, redact_secret};

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(
        include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptors.bin")).as_ref(),
    )
    .expect("the descriptor set built by build.rs decodes")
});

/// The descriptor of a message type in the pool (by its full name, `envoy.config.cluster.v3.Cluster`),
/// for walking encoded messages (`xds::canonical` hashes resources this way).
pub fn message_descriptor(full_name: &str) -> Option<prost_reflect::MessageDescriptor> {
    POOL.get_message_by_name(full_name)
}

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("no descriptor for {0}; add its proto to build.rs")]
    UnknownMessage(String),
    #[error("cannot decode {type_name}: {source}")]
    Decode {
        type_name: String,
        source: prost::DecodeError,
    },
    #[error("cannot render {type_name} as JSON: {source}")]
    Serialize {
        type_name: String,
        source: serde_json::Error,
    },
}

/// Renders encoded bytes of the named message type as JSON.
pub fn bytes_to_json(full_name: &str, bytes: &[u8]) -> Result<Value, JsonError> {
    render(full_name, bytes, true)
}

/// Renders a message as protobuf's JSON mapping with its lowerCamelCase field names, as istiod
/// writes the protobuf messages of its debug endpoints (Go's `jsonpb` defaults); defaults skipped.
pub fn to_camel_case_json<M: Message + Name>(message: &M) -> Result<Value, JsonError> {
    render(&M::full_name(), &message.encode_to_vec(), false)
}

fn render(full_name: &str, bytes: &[u8], proto_names: bool) -> Result<Value, JsonError> {
    let descriptor = POOL
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownMessage(full_name.to_string()))?;
    let message =
        DynamicMessage::decode(descriptor, bytes).map_err(|source| JsonError::Decode {
            type_name: full_name.to_string(),
            source,
        })?;
    // Defaults are skipped, as in Envoy's config_dump (whose fields keep their proto names).
    let options = SerializeOptions::new()
        .skip_default_fields(true)
        .use_proto_field_name(proto_names);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|source| JsonError::Serialize {
            type_name: full_name.to_string(),
            source,
        })
}

/// Renders a message as JSON.
pub fn to_json<M: Message + Name>(message: &M) -> Result<Value, JsonError> {
    bytes_to_json(&M::full_name(), &message.encode_to_vec())
}

/// Renders an `Any` as JSON, with its `@type`.
pub fn any_to_json(any: &Any) -> Result<Value, JsonError> {
    to_json(any)
}

/// The resources of one type as a JSON array, in name order, private keys redacted: what
/// anything showing resources to people (config dumps, golden files) prints.
pub fn resources_to_json(resources: &Resources, ty: ResourceType) -> Result<Value, JsonError> {
    if ty != ResourceType::Secret {
        return encoded_to_json(resources.encode(ty));
    }
    let mut secrets = resources.secrets.clone();
    secrets.values_mut().for_each(redact_secret);
    let redacted = Resources {
        secrets,
        ..Resources::default()
    };
    encoded_to_json(redacted.encode(ty))
}

/// The Secrets as JSON with their private keys, for handing to Envoy itself (as a validation
/// bootstrap does); never for printing.
pub fn secrets_with_keys_to_json(resources: &Resources) -> Result<Value, JsonError> {
    encoded_to_json(resources.encode(ResourceType::Secret))
}

fn encoded_to_json(encoded: std::collections::BTreeMap<String, Any>) -> Result<Value, JsonError> {
    let rendered = encoded
        .values()
        .map(|any| {
            let full_name = any.type_url.rsplit('/').next().unwrap_or_default();
            bytes_to_json(full_name, &any.value)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Value::Array(rendered))
}

/// A proxy's resources in the shape of Envoy's `/config_dump` (`configs` holding the clusters,
/// endpoints, listeners, routes and secrets dumps, private keys redacted), each resource tagged
/// with the version it was sent at.
pub fn config_dump(
    resources: &Resources,
    version_of: impl Fn(ResourceType) -> String,
) -> Result<Value, JsonError> {
    use serde_json::json;
    let mut configs = Vec::new();
    for ty in ResourceType::ALL {
        let version = version_of(ty);
        let items: Vec<Value> = match resources_to_json(resources, ty)? {
            Value::Array(items) => items,
            _ => Vec::new(),
        };
        let entry = match ty {
            ResourceType::Cluster => json!({
                "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "dynamic_active_clusters": items.into_iter().map(|cluster| json!({"version_info": version, "cluster": cluster})).collect::<Vec<_>>(),
            }),
            ResourceType::Endpoint => json!({
                "@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
                "dynamic_endpoint_configs": items.into_iter().map(|cla| json!({"version_info": version, "endpoint_config": cla})).collect::<Vec<_>>(),
            }),
            ResourceType::Listener => json!({
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "dynamic_listeners": items.into_iter().map(|listener| json!({
                    "name": listener.get("name").cloned().unwrap_or_default(),
                    "active_state": {"version_info": version, "listener": listener},
                })).collect::<Vec<_>>(),
            }),
            ResourceType::Route => json!({
                "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
                "dynamic_route_configs": items.into_iter().map(|route| json!({"version_info": version, "route_config": route})).collect::<Vec<_>>(),
            }),
            ResourceType::Secret => json!({
                "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
                "dynamic_active_secrets": items.into_iter().map(|secret| json!({
                    "name": secret.get("name").cloned().unwrap_or_default(),
                    "version_info": version,
                    "secret": secret,
                })).collect::<Vec<_>>(),
            }),
        };
        configs.push(entry);
    }
    Ok(json!({ "configs": configs }))
}

//! Who is on an ADS stream: the `node` of its first request, checked and turned into a
//! [`Proxy`]. Anything a proxy could send is refused with a message naming the problem, never a
//! panic: no node, an empty, overlong or non-printable id, metadata of the wrong type (istiod
//! reads metadata into typed fields and refuses what does not fit), a node without a namespace,
//! and, on mutual TLS, a client certificate whose SPIFFE identity is of another namespace or
//! service account than the node claims (istiod's `checkConnectionIdentity`). Owns no I/O.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::{Struct, value::Kind};
use serde_json::Value;
use tonic::Status;

use super::spiffe::SpiffeId;
use crate::proxy::{Proxy, ProxyError};

/// Longer than any id Istio makes (a Pod name, a namespace, an IP and a DNS suffix), and short
/// enough for logs and metric labels.
pub const MAX_NODE_ID_BYTES: usize = 1024;

/// The metadata fields rudder reads that must be strings; `LABELS` must be a map of strings.
const TEXT_FIELDS: [&str; 4] = [
    "NAMESPACE",
    "INSTANCE_IPS",
    "INTERCEPTION_MODE",
    "SERVICE_ACCOUNT",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error("the first request on an ADS stream must carry `node` (id and metadata)")]
    Missing,
    #[error("node id is empty")]
    EmptyId,
    #[error("node id is {0} bytes, over the limit of {MAX_NODE_ID_BYTES}")]
    IdTooLong(usize),
    #[error("node id {0:?} has characters other than printable ASCII")]
    IdNotPrintable(String),
    #[error("node metadata {field}: expected {expected}, got {got}")]
    MetadataType {
        field: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error(transparent)]
    Id(#[from] ProxyError),
    #[error(
        "authorization failed: the client certificate is {identity}, not of namespace {namespace:?}{}",
        service_account.as_ref().map(|sa| format!(" and service account {sa:?}")).unwrap_or_default()
    )]
    Unauthorized {
        identity: String,
        namespace: String,
        service_account: Option<String>,
    },
}

impl From<NodeError> for Status {
    fn from(error: NodeError) -> Status {
        match error {
            NodeError::Unauthorized { .. } => Status::permission_denied(error.to_string()),
            other => Status::invalid_argument(other.to_string()),
        }
    }
}

/// The proxy a stream's first request names; `identity`, the SPIFFE id of its client
/// certificate (mutual TLS), must be of the proxy's namespace and, if the metadata names one,
/// service account.
pub fn identify(node: Option<&Node>, identity: Option<&SpiffeId>) -> Result<Proxy, NodeError> {
    let node = node.ok_or(NodeError::Missing)?;
    let metadata = node.metadata.as_ref().map_or(Value::Null, struct_to_json);
    let proxy = parse(&node.id, &metadata)?;
    if let Some(identity) = identity {
        let service_account = metadata
            .get("SERVICE_ACCOUNT")
            .and_then(Value::as_str)
            .filter(|sa| !sa.is_empty());
        let matches = identity.namespace == proxy.namespace
            && service_account.is_none_or(|sa| sa == identity.service_account);
        if !matches {
            return Err(NodeError::Unauthorized {
                identity: identity.to_string(),
                namespace: proxy.namespace,
                service_account: service_account.map(str::to_string),
            });
        }
    }
    Ok(proxy)
}

/// A node id and its metadata (JSON), checked, as a [`Proxy`].
pub fn parse(id: &str, metadata: &Value) -> Result<Proxy, NodeError> {
    check_id(id)?;
    check_metadata(metadata)?;
    Ok(Proxy::parse(id, metadata)?)
}

/// A client asking for Istio's debug types (istioctl), not a proxy: nothing is translated for
/// it, so its id need not be a proxy's. istioctl sends `sidecar~IP~test-1.NS~NS.svc.cluster.local`
/// with an empty IP on a host with only loopback, and `debug~0.0.0.0~istioctl~cluster.local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugClient {
    pub id: String,
    /// The namespace it claims: metadata `NAMESPACE`, else the `POD.NAMESPACE` part of its id;
    /// empty when it claims none.
    pub namespace: String,
}

/// Checks a debug client's node as a proxy's is checked (id, metadata types, and the identity
/// against the namespace and service account it claims, as istiod's `checkConnectionIdentity`),
/// without requiring an id that names a proxy.
pub fn identify_debug_client(
    node: Option<&Node>,
    identity: Option<&SpiffeId>,
) -> Result<DebugClient, NodeError> {
    let node = node.ok_or(NodeError::Missing)?;
    check_id(&node.id)?;
    let metadata = node.metadata.as_ref().map_or(Value::Null, struct_to_json);
    check_metadata(&metadata)?;
    let text = |key: &str| {
        metadata
            .get(key)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    };
    let from_id = || {
        let parts: Vec<&str> = node.id.split('~').collect();
        match parts[..] {
            [_, _, pod, _] => pod.split_once('.').map(|(_, namespace)| namespace),
            _ => None,
        }
    };
    let namespace = text("NAMESPACE").or_else(from_id).unwrap_or_default();
    if let Some(identity) = identity {
        let service_account = text("SERVICE_ACCOUNT");
        let matches = (namespace.is_empty() || identity.namespace == namespace)
            && service_account.is_none_or(|sa| sa == identity.service_account);
        if !matches {
            return Err(NodeError::Unauthorized {
                identity: identity.to_string(),
                namespace: namespace.to_string(),
                service_account: service_account.map(str::to_string),
            });
        }
    }
    Ok(DebugClient {
        id: node.id.clone(),
        namespace: namespace.to_string(),
    })
}

fn check_id(id: &str) -> Result<(), NodeError> {
    if id.is_empty() {
        return Err(NodeError::EmptyId);
    }
    if id.len() > MAX_NODE_ID_BYTES {
        return Err(NodeError::IdTooLong(id.len()));
    }
    if !id.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(NodeError::IdNotPrintable(id.to_string()));
    }
    Ok(())
}

fn check_metadata(metadata: &Value) -> Result<(), NodeError> {
    let wrong = |field: &str, expected, value: &Value| NodeError::MetadataType {
        field: field.to_string(),
        expected,
        got: json_type(value),
    };
    let fields = match metadata {
        Value::Null => return Ok(()),
        Value::Object(fields) => fields,
        other => return Err(wrong("", "an object", other)),
    };
    for field in TEXT_FIELDS {
        match fields.get(field) {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(other) => return Err(wrong(field, "a string", other)),
        }
    }
    match fields.get("LABELS") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(labels)) => labels
            .iter()
            .find(|(_, value)| !value.is_string())
            .map_or(Ok(()), |(key, value)| {
                Err(wrong(&format!("LABELS.{key}"), "a string", value))
            }),
        Some(other) => Err(wrong("LABELS", "a map of strings", other)),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Envoy's node metadata (a protobuf `Struct`) as JSON.
fn struct_to_json(value: &Struct) -> Value {
    Value::Object(
        value
            .fields
            .iter()
            .map(|(key, value)| (key.clone(), kind_to_json(value.kind.as_ref())))
            .collect(),
    )
}

fn kind_to_json(kind: Option<&Kind>) -> Value {
    match kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(number)) => serde_json::Number::from_f64(*number)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Some(Kind::StringValue(text)) => Value::String(text.clone()),
        Some(Kind::BoolValue(flag)) => Value::Bool(*flag),
        Some(Kind::StructValue(object)) => struct_to_json(object),
        Some(Kind::ListValue(list)) => Value::Array(
            list.values
                .iter()
                .map(|value| kind_to_json(value.kind.as_ref()))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::google::protobuf::{ListValue, Value as ProtoValue};
    use serde_json::json;

    const NODE_ID: &str = "sidecar~127.0.0.1~app.default~default.svc.cluster.local";

    fn proto(kind: Kind) -> ProtoValue {
        ProtoValue { kind: Some(kind) }
    }

    fn node(id: &str, metadata: Vec<(&str, Kind)>) -> Node {
        Node {
            id: id.to_string(),
            metadata: Some(Struct {
                fields: metadata
                    .into_iter()
                    .map(|(key, kind)| (key.to_string(), proto(kind)))
                    .collect(),
            }),
            ..Default::default()
        }
    }

    /// The status a stream whose first request carries `node` ends with.
    fn refusal(node: Option<&Node>) -> Status {
        Status::from(identify(node, None).expect_err("the node is refused"))
    }

    #[test]
    fn metadata_becomes_json() {
        let labels = Struct {
            fields: [("app".to_string(), proto(Kind::StringValue("web".into())))].into(),
        };
        let metadata = Struct {
            fields: [
                ("LABELS".to_string(), proto(Kind::StructValue(labels))),
                ("N".to_string(), proto(Kind::NumberValue(2.5))),
                ("B".to_string(), proto(Kind::BoolValue(true))),
                ("NULL".to_string(), proto(Kind::NullValue(0))),
                (
                    "L".to_string(),
                    proto(Kind::ListValue(ListValue {
                        values: vec![proto(Kind::StringValue("x".into()))],
                    })),
                ),
            ]
            .into(),
        };
        assert_eq!(
            struct_to_json(&metadata),
            json!({"LABELS": {"app": "web"}, "N": 2.5, "B": true, "NULL": null, "L": ["x"]})
        );
    }

    #[test]
    fn malformed_nodes_are_invalid_arguments_that_name_the_problem() {
        let list = || {
            Kind::ListValue(ListValue {
                values: vec![proto(Kind::StringValue("app=web".into()))],
            })
        };
        let labels_with_number = Kind::StructValue(Struct {
            fields: [("version".to_string(), proto(Kind::NumberValue(2.0)))].into(),
        });
        let huge = format!(
            "sidecar~127.0.0.1~{}.default~default.svc.cluster.local",
            "a".repeat(1 << 20)
        );
        let cases: Vec<(Option<Node>, &str)> = vec![
            (None, "must carry `node`"),
            (Some(node("", vec![])), "node id is empty"),
            (
                Some(node("sidecar~127.0.0.1", vec![])),
                "is not TYPE~IP~POD.NAMESPACE",
            ),
            (
                Some(node(
                    "sidecar~127.0.0.1~a.b~b.svc.cluster.local~extra",
                    vec![],
                )),
                "is not TYPE~IP~POD.NAMESPACE",
            ),
            (
                Some(node("waypoint~127.0.0.1~a.b~b.svc.cluster.local", vec![])),
                "unknown proxy type \"waypoint\"",
            ),
            (
                Some(node("sidecar~not-an-ip~a.b~b.svc.cluster.local", vec![])),
                "\"not-an-ip\" is not an IP address",
            ),
            (
                Some(node("sidecar~127.0.0.1~app~.svc.cluster.local", vec![])),
                "no namespace",
            ),
            (
                Some(node(NODE_ID, vec![("LABELS", list())])),
                "LABELS: expected a map of strings, got a list",
            ),
            (
                Some(node(NODE_ID, vec![("LABELS", labels_with_number)])),
                "LABELS.version: expected a string, got a number",
            ),
            (
                Some(node(NODE_ID, vec![("NAMESPACE", Kind::NumberValue(7.0))])),
                "NAMESPACE: expected a string, got a number",
            ),
            (
                Some(node(
                    NODE_ID,
                    vec![("INTERCEPTION_MODE", Kind::BoolValue(true))],
                )),
                "INTERCEPTION_MODE: expected a string, got a boolean",
            ),
            (Some(node(&huge, vec![])), "over the limit of 1024"),
            (
                Some(node(
                    "sidecar~127.0.0.1~café.default~default.svc.cluster.local",
                    vec![],
                )),
                "other than printable ASCII",
            ),
            (
                Some(node(
                    "sidecar~127.0.0.1~app.default\n~default.svc.cluster.local",
                    vec![],
                )),
                "other than printable ASCII",
            ),
        ];
        for (node, problem) in cases {
            let status = refusal(node.as_ref());
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{problem}");
            assert!(
                status.message().contains(problem),
                "{problem:?} not in {:?}",
                status.message()
            );
            assert!(status.message().len() < 2048, "the message stays short");
        }
    }

    #[test]
    fn well_formed_nodes_pass() {
        let labels = Kind::StructValue(Struct {
            fields: [("app".to_string(), proto(Kind::StringValue("web".into())))].into(),
        });
        let node = node(
            NODE_ID,
            vec![
                ("LABELS", labels),
                ("NAMESPACE", Kind::StringValue("default".into())),
                ("ISTIO_VERSION", Kind::NumberValue(1.0)),
                ("INSTANCE_IPS", Kind::NullValue(0)),
            ],
        );
        let proxy = identify(Some(&node), None).unwrap();
        assert_eq!(proxy.labels["app"], "web");
        assert_eq!(proxy.namespace, "default");
    }

    #[test]
    fn a_certificate_of_another_namespace_or_service_account_is_refused() {
        let identity = |namespace: &str, service_account: &str| SpiffeId {
            trust_domain: "cluster.local".into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        };
        let plain = node(NODE_ID, vec![]);
        let with_sa = node(
            NODE_ID,
            vec![("SERVICE_ACCOUNT", Kind::StringValue("app".into()))],
        );
        assert!(identify(Some(&plain), Some(&identity("default", "any"))).is_ok());
        assert!(identify(Some(&with_sa), Some(&identity("default", "app"))).is_ok());
        for (node, identity) in [
            (&plain, identity("other", "app")),
            (&with_sa, identity("default", "other")),
        ] {
            let status = Status::from(identify(Some(node), Some(&identity)).unwrap_err());
            assert_eq!(status.code(), tonic::Code::PermissionDenied);
            assert!(
                status.message().contains(&identity.to_string()),
                "{}",
                status.message()
            );
        }
    }

    #[test]
    fn istioctls_node_is_a_debug_client_even_without_an_ip() {
        let spiffe = |namespace: &str| SpiffeId {
            trust_domain: "cluster.local".into(),
            namespace: namespace.into(),
            service_account: "default".into(),
        };
        // What istioctl sends on a host with only loopback: no IP in the id.
        let istioctl = node(
            "sidecar~~test-1.istio-system~istio-system.svc.cluster.local",
            vec![
                ("NAMESPACE", Kind::StringValue("istio-system".into())),
                ("SERVICE_ACCOUNT", Kind::StringValue("default".into())),
                ("GENERATOR", Kind::StringValue("event".into())),
            ],
        );
        assert!(identify(Some(&istioctl), None).is_err());
        let client = identify_debug_client(Some(&istioctl), Some(&spiffe("istio-system"))).unwrap();
        assert_eq!(client.namespace, "istio-system");
        // istioctl x internal-debug's id names no namespace.
        let internal = node("debug~0.0.0.0~istioctl~cluster.local", vec![]);
        let client = identify_debug_client(Some(&internal), Some(&spiffe("shop"))).unwrap();
        assert_eq!(client.namespace, "");
        // An identity of another namespace than the one claimed is refused, as for proxies.
        let refused = identify_debug_client(Some(&istioctl), Some(&spiffe("shop"))).unwrap_err();
        assert_eq!(Status::from(refused).code(), tonic::Code::PermissionDenied);
        assert!(identify_debug_client(Some(&node("", vec![])), None).is_err());
    }
}

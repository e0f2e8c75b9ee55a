//! The xDS messages the attacks send, encoded: nodes (a sidecar of the hostile namespace, a
//! gateway of `istio-system`), first requests, and gRPC frames of them. Building only; sending
//! is [`super::raw`]'s.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use prost::Message;
use prost::bytes::Bytes;
use rudder::translate::ResourceType;

use super::config::NAMESPACE;
use super::raw;

/// A gateway's node in `istio-system`, as the attacker sent it.
pub const GATEWAY_NODE: &str = "router~10.6.6.6~x.istio-system~istio-system.svc.cluster.local";

pub fn text(value: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(value.to_string())),
    }
}

/// A sidecar of the hostile namespace: `sidecar~IP~NAME.hostile~hostile.svc.cluster.local`.
pub fn sidecar(ip: &str, name: &str) -> Node {
    Node {
        id: format!("sidecar~{ip}~{name}.{NAMESPACE}~{NAMESPACE}.svc.cluster.local"),
        metadata: Some(Struct {
            fields: [("NAMESPACE".to_string(), text(NAMESPACE))].into(),
        }),
        ..Default::default()
    }
}

pub fn node(id: &str) -> Node {
    Node {
        id: id.to_string(),
        ..Default::default()
    }
}

/// A SotW request for `names` of `ty`, first on its stream when it has a node.
pub fn sotw(node: Option<Node>, ty: ResourceType, names: Vec<String>) -> DiscoveryRequest {
    DiscoveryRequest {
        node,
        type_url: ty.type_url().to_string(),
        resource_names: names,
        ..Default::default()
    }
}

pub fn delta(
    node: Option<Node>,
    ty: ResourceType,
    subscribe: Vec<String>,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node,
        type_url: ty.type_url().to_string(),
        resource_names_subscribe: subscribe,
        ..Default::default()
    }
}

/// `message` encoded and framed for the wire.
pub fn framed(message: &impl Message) -> Bytes {
    raw::frame(&message.encode_to_vec())
}

/// `message` (a SotW or delta request, whose field 3 is the names to subscribe) framed with
/// short names appended (`0`, `1`, ... from `first`) until it is about `bytes` long: the most
/// names, and so the most for a server to hold, per byte sent. Returns the frame and how many
/// names it carries.
pub fn framed_with_names(message: &impl Message, first: usize, bytes: usize) -> (Bytes, usize) {
    /// Field 3, length-delimited.
    const NAMES_TAG: u8 = 3 << 3 | 2;
    let mut encoded = message.encode_to_vec();
    let mut count = 0;
    while encoded.len() < bytes {
        let name = (first + count).to_string();
        encoded.push(NAMES_TAG);
        encoded.push(name.len() as u8);
        encoded.extend_from_slice(name.as_bytes());
        count += 1;
    }
    (raw::frame(&encoded), count)
}

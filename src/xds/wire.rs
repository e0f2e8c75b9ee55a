//! ADS responses as rudder sends them: the fields of `DiscoveryResponse` and
//! `DeltaDiscoveryResponse` that rudder fills, with every resource an [`EncodedAny`], a
//! `google.protobuf.Any` encoded once and shared. Every proxy that gets a resource shares its bytes,
//! also while responses wait in a stream's queue; the only copy per proxy is the message the
//! server's gRPC layer writes for the connection, freed once sent. On the wire these are the
//! protobuf messages, byte for byte what prost would encode from the same fields.

use std::fmt;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use prost::bytes::BufMut;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

/// A `google.protobuf.Any` message, encoded; clones share the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedAny(Arc<[u8]>);

impl EncodedAny {
    pub fn new(any: &Any) -> EncodedAny {
        EncodedAny(any.encode_to_vec().into())
    }

    /// The encoded `Any` message.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The `Any` back, for inspection (tests, debug output).
    pub fn decode(&self) -> Any {
        // These bytes were encoded from an `Any`.
        Any::decode(self.as_bytes()).unwrap_or_default()
    }
}

impl fmt::Debug for EncodedAny {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncodedAny({} bytes)", self.0.len())
    }
}

/// A state-of-the-world response (`DiscoveryResponse`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SotwResponse {
    pub version_info: String,
    pub resources: Vec<EncodedAny>,
    pub type_url: String,
    pub nonce: String,
    /// `control_plane.identifier`; empty: no `control_plane` (istiod sets it on debug syncz only).
    pub control_plane: String,
}

/// A delta response (`DeltaDiscoveryResponse`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeltaResponse {
    pub system_version_info: String,
    pub resources: Vec<DeltaResource>,
    pub type_url: String,
    pub removed_resources: Vec<String>,
    pub nonce: String,
}

/// One resource of a delta response (`Resource`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeltaResource {
    pub name: String,
    pub version: String,
    pub resource: Option<EncodedAny>,
}

/// A message rudder encodes by hand, field by field, as prost would.
pub trait WireMessage {
    /// Writes the message's fields (no length prefix).
    fn encode_raw(&self, buf: &mut impl BufMut);

    /// The length `encode_raw` writes.
    fn encoded_len(&self) -> usize;

    fn encode_to_vec(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.encode_raw(&mut buf);
        buf
    }
}

// Field numbers, from envoy/service/discovery/v3/discovery.proto.
const SOTW_VERSION_INFO: u32 = 1;
const SOTW_RESOURCES: u32 = 2;
const SOTW_TYPE_URL: u32 = 4;
const SOTW_NONCE: u32 = 5;
const SOTW_CONTROL_PLANE: u32 = 6;
const CONTROL_PLANE_IDENTIFIER: u32 = 1;
const DELTA_SYSTEM_VERSION_INFO: u32 = 1;
const DELTA_RESOURCES: u32 = 2;
const DELTA_TYPE_URL: u32 = 4;
const DELTA_NONCE: u32 = 5;
const DELTA_REMOVED_RESOURCES: u32 = 6;
const RESOURCE_VERSION: u32 = 1;
const RESOURCE_RESOURCE: u32 = 2;
const RESOURCE_NAME: u32 = 3;

/// A length-delimited field's length on the wire, key included.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_delimited(tag: u32, bytes: &[u8], buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

/// A proto3 string field: absent when empty.
fn string_len(tag: u32, value: &str) -> usize {
    if value.is_empty() {
        0
    } else {
        delimited_len(tag, value.len())
    }
}

fn put_string(tag: u32, value: &str, buf: &mut impl BufMut) {
    if !value.is_empty() {
        put_delimited(tag, value.as_bytes(), buf);
    }
}

impl WireMessage for SotwResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_string(SOTW_VERSION_INFO, &self.version_info, buf);
        for resource in &self.resources {
            put_delimited(SOTW_RESOURCES, resource.as_bytes(), buf);
        }
        put_string(SOTW_TYPE_URL, &self.type_url, buf);
        put_string(SOTW_NONCE, &self.nonce, buf);
        if !self.control_plane.is_empty() {
            let inner = string_len(CONTROL_PLANE_IDENTIFIER, &self.control_plane);
            encode_key(SOTW_CONTROL_PLANE, WireType::LengthDelimited, buf);
            encode_varint(inner as u64, buf);
            put_string(CONTROL_PLANE_IDENTIFIER, &self.control_plane, buf);
        }
    }

    fn encoded_len(&self) -> usize {
        string_len(SOTW_VERSION_INFO, &self.version_info)
            + self
                .resources
                .iter()
                .map(|resource| delimited_len(SOTW_RESOURCES, resource.as_bytes().len()))
                .sum::<usize>()
            + string_len(SOTW_TYPE_URL, &self.type_url)
            + string_len(SOTW_NONCE, &self.nonce)
            + if self.control_plane.is_empty() {
                0
            } else {
                delimited_len(
                    SOTW_CONTROL_PLANE,
                    string_len(CONTROL_PLANE_IDENTIFIER, &self.control_plane),
                )
            }
    }
}

impl WireMessage for DeltaResource {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_string(RESOURCE_VERSION, &self.version, buf);
        if let Some(resource) = &self.resource {
            put_delimited(RESOURCE_RESOURCE, resource.as_bytes(), buf);
        }
        put_string(RESOURCE_NAME, &self.name, buf);
    }

    fn encoded_len(&self) -> usize {
        string_len(RESOURCE_VERSION, &self.version)
            + self.resource.as_ref().map_or(0, |resource| {
                delimited_len(RESOURCE_RESOURCE, resource.as_bytes().len())
            })
            + string_len(RESOURCE_NAME, &self.name)
    }
}

impl WireMessage for DeltaResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_string(DELTA_SYSTEM_VERSION_INFO, &self.system_version_info, buf);
        for resource in &self.resources {
            encode_key(DELTA_RESOURCES, WireType::LengthDelimited, buf);
            encode_varint(resource.encoded_len() as u64, buf);
            resource.encode_raw(buf);
        }
        put_string(DELTA_TYPE_URL, &self.type_url, buf);
        put_string(DELTA_NONCE, &self.nonce, buf);
        for name in &self.removed_resources {
            // Repeated strings are written even when empty.
            put_delimited(DELTA_REMOVED_RESOURCES, name.as_bytes(), buf);
        }
    }

    fn encoded_len(&self) -> usize {
        string_len(DELTA_SYSTEM_VERSION_INFO, &self.system_version_info)
            + self
                .resources
                .iter()
                .map(|resource| delimited_len(DELTA_RESOURCES, resource.encoded_len()))
                .sum::<usize>()
            + string_len(DELTA_TYPE_URL, &self.type_url)
            + string_len(DELTA_NONCE, &self.nonce)
            + self
                .removed_resources
                .iter()
                .map(|name| delimited_len(DELTA_REMOVED_RESOURCES, name.len()))
                .sum::<usize>()
    }
}

impl SotwResponse {
    /// The protobuf message this encodes to.
    pub fn to_proto(&self) -> DiscoveryResponse {
        DiscoveryResponse::decode(self.encode_to_vec().as_slice()).unwrap_or_default()
    }
}

impl DeltaResponse {
    /// The protobuf message this encodes to.
    pub fn to_proto(&self) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse::decode(self.encode_to_vec().as_slice()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::Resource;

    fn any(name: &str) -> Any {
        Any {
            type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".to_string(),
            value: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn sotw_responses_encode_as_prost_does() {
        let response = SotwResponse {
            version_info: "v1".into(),
            resources: vec![EncodedAny::new(&any("a")), EncodedAny::new(&any("b"))],
            type_url: "t".into(),
            nonce: "7".into(),
            control_plane: "{\"Component\":\"istiod\"}".into(),
        };
        let expected = DiscoveryResponse {
            version_info: "v1".into(),
            resources: vec![any("a"), any("b")],
            type_url: "t".into(),
            nonce: "7".into(),
            control_plane: Some(envoy_types::pb::envoy::config::core::v3::ControlPlane {
                identifier: "{\"Component\":\"istiod\"}".into(),
            }),
            ..Default::default()
        };
        assert_eq!(response.encode_to_vec(), expected.encode_to_vec());
        assert_eq!(response.encoded_len(), expected.encoded_len());
        assert_eq!(response.to_proto(), expected);
        assert_eq!(SotwResponse::default().encode_to_vec(), Vec::<u8>::new());
    }

    #[test]
    fn delta_responses_encode_as_prost_does() {
        let response = DeltaResponse {
            system_version_info: "v2".into(),
            resources: vec![
                DeltaResource {
                    name: "a".into(),
                    version: "1".into(),
                    resource: Some(EncodedAny::new(&any("a"))),
                },
                DeltaResource {
                    name: "b".into(),
                    version: String::new(),
                    resource: None,
                },
            ],
            type_url: "t".into(),
            removed_resources: vec!["c".into(), String::new()],
            nonce: "8".into(),
        };
        let expected = DeltaDiscoveryResponse {
            system_version_info: "v2".into(),
            resources: vec![
                Resource {
                    name: "a".into(),
                    version: "1".into(),
                    resource: Some(any("a")),
                    ..Default::default()
                },
                Resource {
                    name: "b".into(),
                    ..Default::default()
                },
            ],
            type_url: "t".into(),
            removed_resources: vec!["c".into(), String::new()],
            nonce: "8".into(),
            ..Default::default()
        };
        assert_eq!(response.encode_to_vec(), expected.encode_to_vec());
        assert_eq!(response.encoded_len(), expected.encoded_len());
        assert_eq!(response.to_proto(), expected);
    }

    #[test]
    fn clones_share_bytes() {
        let one = EncodedAny::new(&any("shared"));
        let two = one.clone();
        assert!(std::ptr::eq(one.as_bytes(), two.as_bytes()));
        assert_eq!(two.decode(), any("shared"));
    }
}

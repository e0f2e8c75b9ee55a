//! What the stream task needs of each ADS protocol beyond its state machine: the node and type
//! of a request, what to log of a response, and whether it carries Istio's debug types (state of
//! the world only).

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};

use crate::xds::connection::StateMachine;
use crate::xds::debug;
use crate::xds::wire::{DeltaResponse, SotwResponse, WireMessage};
use crate::xds::{DeltaConnection, SotwConnection};

/// What the stream task needs of a protocol, beyond its state machine: the node in a request,
/// and what to log of a response.
pub(super) trait Protocol: StateMachine<Request: prost::Message + Default> {
    const DELTA: bool;

    fn node(request: &Self::Request) -> Option<&Node>;

    fn type_url(request: &Self::Request) -> &str;

    fn summary(response: &Self::Response) -> Summary<'_>;

    /// The request, if it asks for one of Istio's debug types; only state of the world serves
    /// them (istioctl's only protocol), delta streams ignore them as unknown types.
    fn debug_request(request: &Self::Request) -> Option<&DiscoveryRequest>;

    /// A debug response in this protocol's message.
    fn debug_response(response: SotwResponse) -> Option<Self::Response>;
}

/// A response, for logs and metrics.
pub(super) struct Summary<'a> {
    pub(super) type_url: &'a str,
    pub(super) version: &'a str,
    pub(super) nonce: &'a str,
    pub(super) resources: usize,
    pub(super) removed: usize,
    /// Encoded size.
    pub(super) bytes: usize,
}

impl Protocol for SotwConnection {
    const DELTA: bool = false;

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn type_url(request: &DiscoveryRequest) -> &str {
        &request.type_url
    }

    fn summary(response: &SotwResponse) -> Summary<'_> {
        Summary {
            type_url: &response.type_url,
            version: &response.version_info,
            nonce: &response.nonce,
            resources: response.resources.len(),
            removed: 0,
            bytes: response.encoded_len(),
        }
    }

    fn debug_request(request: &DiscoveryRequest) -> Option<&DiscoveryRequest> {
        debug::is_debug_type(&request.type_url).then_some(request)
    }

    fn debug_response(response: SotwResponse) -> Option<SotwResponse> {
        Some(response)
    }
}

impl Protocol for DeltaConnection {
    const DELTA: bool = true;

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn type_url(request: &DeltaDiscoveryRequest) -> &str {
        &request.type_url
    }

    fn summary(response: &DeltaResponse) -> Summary<'_> {
        Summary {
            type_url: &response.type_url,
            version: &response.system_version_info,
            nonce: &response.nonce,
            resources: response.resources.len(),
            removed: response.removed_resources.len(),
            bytes: response.encoded_len(),
        }
    }

    fn debug_request(_: &DeltaDiscoveryRequest) -> Option<&DiscoveryRequest> {
        None
    }

    fn debug_response(_: SotwResponse) -> Option<DeltaResponse> {
        None
    }
}

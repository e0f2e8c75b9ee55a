//! The label values of rudder's metrics that name a reason: why a push started
//! (`pilot_push_triggers{type}`, istiod's values) and why the xDS server refused a client
//! (`rudder_xds_refused_total{reason}`). Values only; recording is the parent module's.

use std::collections::BTreeMap;

use crate::inputs::{Changes, Kind};

/// Why a push was started, as istiod labels `pilot_push_triggers{type}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PushTrigger {
    /// Endpoints changed (EndpointSlices, Pods, WorkloadEntries).
    Endpoint,
    /// Istio config changed (VirtualService, DestinationRule, Gateway, Sidecar, unreadable files).
    Config,
    /// Services changed (Service, ServiceEntry).
    Service,
    /// A proxy changed (reconnected, new metadata).
    Proxy,
    /// Everything must be recomputed.
    Global,
    /// A Namespace changed.
    Namespace,
    /// A Secret changed.
    Secret,
    /// A push for no known reason.
    Unknown,
}

impl PushTrigger {
    pub const ALL: [PushTrigger; 8] = [
        PushTrigger::Endpoint,
        PushTrigger::Config,
        PushTrigger::Service,
        PushTrigger::Proxy,
        PushTrigger::Global,
        PushTrigger::Namespace,
        PushTrigger::Secret,
        PushTrigger::Unknown,
    ];

    /// istiod's label value (`model.TriggerReason`).
    pub fn label(self) -> &'static str {
        match self {
            PushTrigger::Endpoint => "endpoint",
            PushTrigger::Config => "config",
            PushTrigger::Service => "service",
            PushTrigger::Proxy => "proxy",
            PushTrigger::Global => "global",
            PushTrigger::Namespace => "namespace",
            PushTrigger::Secret => "secret",
            PushTrigger::Unknown => "unknown",
        }
    }

    /// The trigger a change of an object of `kind` is.
    pub fn of_kind(kind: Kind) -> PushTrigger {
        match kind {
            Kind::EndpointSlice | Kind::Pod | Kind::WorkloadEntry => PushTrigger::Endpoint,
            Kind::Service | Kind::ServiceEntry => PushTrigger::Service,
            Kind::Namespace => PushTrigger::Namespace,
            Kind::Secret => PushTrigger::Secret,
            Kind::Node => PushTrigger::Global,
            // VirtualService, DestinationRule, Gateway, Sidecar, and kinds added later.
            _ => PushTrigger::Config,
        }
    }

    /// What a change set holds, by trigger: one per object added, removed or changed (or
    /// refused differently), and one `config` if the problems that belong to no object or the
    /// mesh config changed.
    pub fn of_changes(changes: &Changes) -> BTreeMap<PushTrigger, u64> {
        let mut triggers = BTreeMap::new();
        for key in &changes.objects {
            *triggers.entry(PushTrigger::of_kind(key.kind)).or_insert(0) += 1;
        }
        if changes.global {
            *triggers.entry(PushTrigger::Config).or_insert(0) += 1;
        }
        triggers
    }
}

/// Why the xDS server refused a connection or ended a stream, as `rudder_xds_refused_total{reason}`
/// labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// A request over `--xds-max-message-size`.
    MessageSize,
    /// A request that is no valid ADS request (bad protobuf, too deep, not UTF-8, compressed, cut
    /// short).
    BadRequest,
    /// No first request within `--xds-first-request-timeout`.
    FirstRequestTimeout,
    /// A connection without TLS and the HTTP/2 preface within `--xds-handshake-timeout`.
    HandshakeTimeout,
    /// A connection whose TLS handshake failed, or that is not HTTP/2.
    HandshakeFailed,
    /// A new stream beyond `--xds-max-streams-per-second`.
    RateLimit,
    /// A request taking a stream past `--xds-max-subscribed-names`.
    Subscriptions,
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::MessageSize,
        Refusal::BadRequest,
        Refusal::FirstRequestTimeout,
        Refusal::HandshakeTimeout,
        Refusal::HandshakeFailed,
        Refusal::RateLimit,
        Refusal::Subscriptions,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::MessageSize => "message_size",
            Refusal::BadRequest => "bad_request",
            Refusal::FirstRequestTimeout => "first_request_timeout",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::HandshakeFailed => "handshake_failed",
            Refusal::RateLimit => "rate_limit",
            Refusal::Subscriptions => "subscriptions",
        }
    }
}

//! The sans-IO ADS state machines, one per stream: [`SotwConnection`](super::SotwConnection) for
//! state of the world (`StreamAggregatedResources`) and
//! [`DeltaConnection`](super::DeltaConnection) for delta (`DeltaAggregatedResources`). Requests
//! and new resources go in; responses to send (in order) and events to report come out. They do
//! no I/O, no async and no translation: the server feeds them the proxy's resources.
//!
//! Both are built from the same parts: the proxy's [`ResourceSet`] (shared by every stream whose
//! proxy gets the same config) with a content hash per resource, set versions computed the same
//! way, and per type the `Acks` bookkeeping here (nonce of the last response, what was sent,
//! ACKed and NACKed). They differ only in what a response carries: under one set version, the
//! whole type (CDS, LDS) or the subscribed resources the proxy does not hold yet (EDS, RDS), or
//! for delta the resources whose version the proxy does not have plus the names it must drop.
//!
//! Rules both keep: responses go out in ADS order (CDS, EDS, LDS, RDS); EDS follows a CDS
//! response even when unchanged, since Envoy warms clusters until it gets one; a request whose
//! nonce is not the type's last is stale and its ACK or NACK is ignored; a rejected version is
//! not sent again until the content changes; a request that would take the names a stream keeps
//! past its limit ([`StateMachine::limit_names`]) is refused, and the stream is to end.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::google::rpc::Status as RpcStatus;

use super::versions::{Name, ResourceSet};
use crate::translate::ResourceType;

/// What one proxy did with one resource type, for logs, metrics and debug endpoints.
///
/// Versions are set versions ([`super::versions::set_version`]): for state of the world the
/// version of the response, for delta the version of the whole set the stream has sent of that
/// type, so the same content reports the same version in both protocols.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeStatus {
    /// The version of the last response sent.
    pub sent: Option<String>,
    /// The nonce of the last response sent.
    pub nonce: Option<String>,
    /// The version the proxy last ACKed.
    pub acked: Option<String>,
    /// The last rejection, until the proxy ACKs a later response.
    pub nack: Option<Nack>,
}

/// A rejected response: the version the proxy refused and Envoy's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub version: String,
    pub message: String,
}

/// Something the caller should log or count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Ack {
        ty: ResourceType,
        version: String,
    },
    Nack {
        ty: ResourceType,
        version: String,
        message: String,
    },
    /// A request answering a response that was superseded since; its ACK or NACK is ignored.
    Stale {
        ty: ResourceType,
        nonce: String,
    },
    /// A type rudder does not serve (SDS, istio debug types); ignored.
    UnknownType {
        type_url: String,
    },
}

/// A request the stream does not take: the server ends the stream with a status saying why. The
/// state machine may hold part of the refused request after it, so it is not used again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The request would have the stream keep `names` names, over its `limit`.
    TooManyNames { names: usize, limit: usize },
}

/// What to do after an input: send `responses` in order, report `events`; or, if `refused`, end
/// the stream (there are no responses then).
#[derive(Debug, PartialEq)]
pub struct Outcome<R> {
    pub responses: Vec<R>,
    pub events: Vec<Event>,
    pub refused: Option<Refused>,
}

impl<R> Outcome<R> {
    /// Refuses the request: the stream would keep `names` names, over `limit`.
    pub fn too_many_names(names: usize, limit: usize) -> Outcome<R> {
        Outcome {
            refused: Some(Refused::TooManyNames { names, limit }),
            ..Outcome::default()
        }
    }

    /// The type a request asks for, if rudder serves it; otherwise the request is reported as
    /// `UnknownType` and gets no answer.
    pub fn served_type(&mut self, type_url: &str) -> Option<crate::translate::ResourceType> {
        let ty = crate::translate::ResourceType::from_type_url(type_url);
        if ty.is_none() {
            self.events.push(Event::UnknownType {
                type_url: type_url.to_string(),
            });
        }
        ty
    }
}

impl<R> Default for Outcome<R> {
    fn default() -> Self {
        Outcome {
            responses: Vec::new(),
            events: Vec::new(),
            refused: None,
        }
    }
}

/// The ADS state of one stream, whichever protocol: what the server drives.
pub trait StateMachine: Send + Sync + Sized + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;

    /// A stream for a proxy whose resources are `resources`; nothing is subscribed yet.
    fn new(resources: Arc<ResourceSet>) -> Self;

    /// Refuses requests that would have the stream keep more than `limit` names the proxy gave,
    /// all types together (none by default): names are kept for the stream's life, so a client
    /// could otherwise grow a stream without bound, one request at a time.
    fn limit_names(&mut self, limit: usize);

    /// Handles one request from the proxy.
    fn on_request(&mut self, request: &Self::Request) -> Outcome<Self::Response>;

    /// Replaces the proxy's resources and sends, in ADS order, what changed for it.
    fn on_resources(&mut self, resources: Arc<ResourceSet>) -> Outcome<Self::Response>;

    /// Per subscribed type, what was sent, ACKed and NACKed.
    fn status(&self) -> BTreeMap<ResourceType, TypeStatus>;

    /// Per subscribed type, the names the proxy subscribed to, sorted; none for a wildcard
    /// subscription (what istiod's `/debug/adsz` shows as a proxy's watches).
    fn watched(&self) -> BTreeMap<ResourceType, Vec<Name>>;
}

/// The ACK/NACK bookkeeping of one type on one stream.
#[derive(Debug, Default)]
pub(super) struct Acks {
    /// The nonce of the last response; a request carrying any other nonce is stale.
    nonce: Option<String>,
    pub status: TypeStatus,
}

/// What a request says about the last response of its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// No nonce: a new subscription, or a change of one.
    Unanswered,
    /// The nonce of a response that was superseded since.
    Stale,
    Ack,
    Nack,
}

impl Acks {
    /// Records a response of `version` sent with `nonce`.
    pub fn sent(&mut self, nonce: String, version: String) {
        self.status.nonce = Some(nonce.clone());
        self.nonce = Some(nonce);
        self.status.sent = Some(version);
    }

    /// Reads a request's nonce and error: an ACK or NACK of the last response updates the status
    /// (a NACK is a request with `error_detail`, whatever its version says), and is reported.
    pub fn answer(
        &mut self,
        ty: ResourceType,
        nonce: &str,
        error: Option<&RpcStatus>,
        events: &mut Vec<Event>,
    ) -> Answer {
        if nonce.is_empty() {
            return Answer::Unanswered;
        }
        if self.nonce.as_deref() != Some(nonce) {
            events.push(Event::Stale {
                ty,
                nonce: nonce.to_string(),
            });
            return Answer::Stale;
        }
        let version = self.status.sent.clone().unwrap_or_default();
        match error {
            Some(error) => {
                let nack = Nack {
                    version: version.clone(),
                    message: error.message.clone(),
                };
                events.push(Event::Nack {
                    ty,
                    version,
                    message: nack.message.clone(),
                });
                self.status.nack = Some(nack);
                Answer::Nack
            }
            None => {
                events.push(Event::Ack {
                    ty,
                    version: version.clone(),
                });
                self.status.acked = Some(version);
                self.status.nack = None;
                Answer::Ack
            }
        }
    }
}

/// Nonces unique within a stream.
#[derive(Debug, Default)]
pub(super) struct Nonces(u64);

impl Nonces {
    pub fn next(&mut self) -> String {
        self.0 += 1;
        self.0.to_string()
    }
}

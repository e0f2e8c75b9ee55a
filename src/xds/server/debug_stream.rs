//! A stream whose first request asks for one of Istio's debug types (istioctl): it is answered
//! as istiod's `StatusGen` answers it ([`crate::xds::debug`] builds the responses) and is never
//! registered as a proxy, so syncz does not list it and nothing is pushed to it. The generic
//! type `istio.io/debug` (istiod's `DebugGen`, which `istioctl x internal-debug` asks) takes one
//! resource name, `NAME?QUERY`, and gets the body of the admin port's `/debug/NAME?QUERY`
//! ([`crate::admin::views`]) as one resource of that type; a caller outside the system namespace
//! may ask for `config_dump` and `edsz` only (else `PERMISSION_DENIED`, as istiod).
//!
//! Bounds, beyond those of every stream (request size, rate of new streams, first request
//! timeout, maximum age): the caller must have proven an identity on a TLS port (else
//! `UNAUTHENTICATED`, istiod's "authentication required"), its node must pass the checks a
//! proxy's does, requests are answered one after the other, and config dumps (a translation each)
//! are made one at a time across all streams. A request carrying the nonce of the last response
//! is its ACK or NACK and is not answered, as istiod does.

use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use tonic::Status;
use tracing::{debug, info, warn};

use super::{AdsStream, Protocol, until};
use crate::admin::views;
use crate::xds::debug::{self, CONFIG_DUMP_TYPE, DEBUG_TYPE, SYNCZ_TYPE, Scope};
use crate::xds::grpc::ReadError;
use crate::xds::node::identify_debug_client;
use crate::xds::wire::{EncodedAny, SotwResponse};
use crate::xds::{FindError, Snapshot};

/// istiod's status for a debug request without a verified identity.
const AUTHENTICATION_REQUIRED: &str = "authentication required";

impl<M: Protocol> AdsStream<M> {
    /// Serves a debug client until it leaves, the server stops or the stream reaches its age.
    pub(super) async fn run_debug(mut self, first: M::Request) {
        let peer = self.peer.map(|peer| peer.to_string()).unwrap_or_default();
        let verified = match self.auth.authenticate(&self.credentials).await {
            Ok(Some(verified)) => verified,
            Ok(None) => {
                warn!(%peer, "refusing debug request: no verified identity (debug types need a TLS port and a client certificate or token)");
                self.close_with(Status::unauthenticated(AUTHENTICATION_REQUIRED))
                    .await;
                return;
            }
            Err(error) => {
                warn!(%peer, %error, "refusing debug request");
                self.close_with(error.into()).await;
                return;
            }
        };
        let client = match identify_debug_client(M::node(&first), Some(&verified.identity)) {
            Ok(client) => client,
            Err(error) => {
                warn!(%peer, %error, "refusing debug request");
                self.close_with(error.into()).await;
                return;
            }
        };
        self.unidentified = None;
        let identity = verified.identity.to_string();
        info!(client = client.id, %peer, %identity, "debug client connected");
        let expired = until(self.expires);
        tokio::pin!(expired);
        let mut last_nonce = String::new();
        let mut answered = 0_u64;
        let mut request = first;
        loop {
            if let Some(asked) = M::debug_request(&request)
                && (asked.response_nonce.is_empty() || asked.response_nonce != last_nonce)
            {
                answered += 1;
                last_nonce = format!("debug-{answered}");
                let snapshot = self.snapshots.borrow().clone();
                // Each request is judged by the identity of the connection, in the current
                // system namespace.
                let scope = Scope::of(&verified.identity.namespace, &snapshot.model.root_namespace);
                let names = &asked.resource_names;
                debug!(
                    client = client.id,
                    r#type = asked.type_url,
                    ?names,
                    "debug request"
                );
                let resources =
                    self.debug_resources(&asked.type_url, names, &scope, &identity, snapshot);
                let resources = match resources.await {
                    Ok(resources) => resources,
                    Err(status) => {
                        debug!(client = client.id, %status, "debug request refused");
                        self.close_with(status).await;
                        return;
                    }
                };
                // istiod names itself on syncz responses only.
                let control_plane = if asked.type_url == SYNCZ_TYPE {
                    debug::control_plane_identifier().to_string()
                } else {
                    String::new()
                };
                let response = SotwResponse {
                    version_info: self.snapshots.borrow().generation.to_string(),
                    resources: resources.iter().map(EncodedAny::new).collect(),
                    type_url: asked.type_url.clone(),
                    nonce: last_nonce.clone(),
                    control_plane,
                };
                let Some(response) = M::debug_response(response) else {
                    return;
                };
                if self.send(response).await.is_err() {
                    return;
                }
            }
            let next = tokio::select! {
                request = self.requests.message() => request,
                _ = self.stopped.wait_for(|stopped| *stopped) => break,
                () = &mut expired => break,
            };
            request = match next {
                Ok(Some(request)) => request,
                Ok(None) => break,
                Err(ReadError::Refused { reason, status }) => {
                    let status = self.refusal(None, reason, status);
                    self.close_with(status).await;
                    return;
                }
                Err(ReadError::Transport(status)) => {
                    debug!(client = client.id, %status, "debug stream failed");
                    break;
                }
            };
        }
        debug!(client = client.id, answered, "debug client disconnected");
    }

    /// The resources answering one debug request; empty for a request that finds nothing, as
    /// istiod answers. A refusal ends the stream with its status, as istiod's.
    async fn debug_resources(
        &self,
        type_url: &str,
        names: &[String],
        scope: &Scope,
        identity: &str,
        snapshot: Arc<Snapshot>,
    ) -> Result<Vec<Any>, Status> {
        Ok(match type_url {
            SYNCZ_TYPE => debug::syncz(&self.registry, scope),
            DEBUG_TYPE => {
                let [request] = names else {
                    return Err(Status::invalid_argument(
                        "exactly one debug request is required",
                    ));
                };
                if *scope != Scope::All && !views::open_to_every_namespace(request) {
                    return Err(Status::permission_denied(format!(
                        "the debug info is not available for current identity: {identity:?}"
                    )));
                }
                let (registry, scope, request) =
                    (self.registry.clone(), scope.clone(), request.clone());
                // Some views translate (config dumps) or walk every input (configz): one at a
                // time across all streams, off the xDS workers.
                let _permit = self.debug_dumps.acquire().await.ok();
                let body = tokio::task::spawn_blocking(move || {
                    let sources = views::Sources {
                        registry: &registry,
                        snapshot: &snapshot,
                    };
                    views::answer(&request, sources, &scope).into_bytes()
                })
                .await
                .unwrap_or_default();
                vec![Any {
                    type_url: DEBUG_TYPE.to_string(),
                    value: body,
                }]
            }
            CONFIG_DUMP_TYPE => {
                let [name] = names else {
                    debug!(
                        names = names.len(),
                        "config_dump needs exactly one proxy id"
                    );
                    return Ok(Vec::new());
                };
                let connected = match self.registry.find(name) {
                    Ok(connected) if scope.sees(&connected.proxy.namespace) => connected,
                    Ok(_) => {
                        let error = FindError::NotConnected(name.clone());
                        debug!(%error, "config_dump of a proxy out of the caller's scope");
                        return Ok(Vec::new());
                    }
                    Err(error) => {
                        debug!(%error, "config_dump");
                        return Ok(Vec::new());
                    }
                };
                // The semaphore is never closed.
                let _permit = self.debug_dumps.acquire().await.ok();
                let dumped = tokio::task::spawn_blocking(move || {
                    let resources = crate::translate::translate(&snapshot.model, &connected.proxy);
                    debug::config_dump(&resources, |ty| {
                        connected
                            .types
                            .get(&ty)
                            .and_then(|status| status.sent.clone())
                            .unwrap_or_default()
                    })
                })
                .await;
                dumped.unwrap_or_default()
            }
            _ => Vec::new(),
        })
    }
}

//! How an ADS stream is admitted, and how it is refused: a new stream waits its turn in the rate of
//! new streams ([`XdsOptions::stream_rate`]), then for its first request until
//! [`XdsOptions::first_request_timeout`], counted in `rudder_xds_unidentified_streams` until that
//! request identifies it. A stream that breaks a bound, then or later, ends with a status that
//! names the bound; the refusal is counted in `rudder_xds_refused_total` and logged with the
//! peer's address. The first request then names the proxy, and the connection's credentials
//! prove (or not) who it is ([`crate::xds::auth`]); a stream asking for Secrets its identity may
//! not have says why once in the log. Owns only these steps of the stream's task
//! ([`super::AdsStream`]); what the bounds are is decided elsewhere (the limiter, the request
//! reader, the state machines), and who may read what in `auth`.
//!
//! [`XdsOptions::stream_rate`]: super::XdsOptions::stream_rate
//! [`XdsOptions::first_request_timeout`]: super::XdsOptions::first_request_timeout

use std::sync::Arc;

use tonic::Status;
use tracing::{debug, warn};

use super::{AdsStream, CLOSE_TIMEOUT, Protocol};
use crate::metrics::{Metrics, Refusal};
use crate::proxy::{Proxy, SecretAccess};
use crate::xds::auth::Verified;
use crate::xds::connection::Refused;
use crate::xds::grpc::ReadError;
use crate::xds::node::identify;

/// Counts a stream in `rudder_xds_unidentified_streams` until dropped: once its first request
/// identified it, or however it ended.
pub(super) struct Unidentified(Arc<Metrics>);

impl Unidentified {
    pub(super) fn new(metrics: &Arc<Metrics>) -> Unidentified {
        metrics.unidentified_stream_opened();
        Unidentified(metrics.clone())
    }
}

impl Drop for Unidentified {
    fn drop(&mut self) {
        self.0.unidentified_stream_closed();
    }
}

/// How a stream's wait for its first request ended, when not with one.
pub(super) enum Unopened {
    /// It broke a bound or sent no valid request.
    Refused(Refusal, Status),
    /// The server is shutting down.
    Stopped,
    /// The proxy is gone.
    Gone,
}

/// The status of a request the state machine refused.
impl From<Refused> for Status {
    fn from(refused: Refused) -> Status {
        match refused {
            Refused::TooManyNames { names, limit } => Status::resource_exhausted(format!(
                "the stream would subscribe to {names} names, over the limit of {limit} \
                 (--xds-max-subscribed-names)"
            )),
        }
    }
}

impl<M: Protocol> AdsStream<M> {
    /// The proxy a stream's first request names and the identity its connection proves; a
    /// status to end the stream with if either fails.
    pub(super) async fn identify(
        &self,
        first: &M::Request,
    ) -> Result<(Proxy, Option<Verified>), Status> {
        let verified = self.auth.authenticate(&self.credentials).await?;
        let identity = verified.as_ref().map(|verified| &verified.identity);
        let proxy = identify(M::node(first), identity)?;
        Ok((proxy, verified))
    }

    /// Waits for the stream's turn (`XdsOptions::stream_rate`), then for its first request,
    /// until `XdsOptions::first_request_timeout` after it opened.
    pub(super) async fn first_request(&mut self) -> Result<M::Request, Unopened> {
        let mut stopped = self.stopped.clone();
        let timeout = self.first_request_timeout;
        let deadline = self.opened + timeout;
        let first = async {
            let Some(turn) = self.turn else {
                let status = Status::resource_exhausted(
                    "request rate limit exceeded (--xds-max-streams-per-second)",
                );
                return Err(Unopened::Refused(Refusal::RateLimit, status));
            };
            tokio::time::sleep_until(turn).await;
            let Ok(first) = tokio::time::timeout_at(deadline, self.requests.message()).await else {
                let status = Status::deadline_exceeded(format!(
                    "no request within {timeout:?} of opening the stream (--xds-first-request-timeout)"
                ));
                return Err(Unopened::Refused(Refusal::FirstRequestTimeout, status));
            };
            match first {
                Ok(Some(request)) => Ok(request),
                Ok(None) => Err(Unopened::Gone),
                Err(ReadError::Refused { reason, status }) => {
                    Err(Unopened::Refused(reason, status))
                }
                Err(ReadError::Transport(status)) => {
                    debug!(peer = %self.peer_address(), %status, "ADS stream failed before its first request");
                    Err(Unopened::Gone)
                }
            }
        };
        tokio::select! {
            first = first => first,
            // A stream that never sends its first request must not hold shutdown up.
            _ = stopped.wait_for(|stopped| *stopped) => Err(Unopened::Stopped),
        }
    }

    /// A stream ending for breaking a bound or sending no valid request: counted, and logged
    /// with the peer's address (and the proxy, once known). The status, for the client.
    pub(super) fn refusal(&self, proxy: Option<&Proxy>, reason: Refusal, status: Status) -> Status {
        self.metrics.refused(reason);
        let proxy = proxy.map_or("", |proxy| proxy.id.as_str());
        warn!(
            peer = %self.peer_address(),
            proxy,
            connection = self.connection,
            code = ?status.code(),
            reason = status.message(),
            "ending ADS stream"
        );
        status
    }

    /// Ends the stream with `status`. A proxy that does not read may never make room for it:
    /// then its connection goes.
    pub(super) async fn close_with(&self, status: Status) {
        let sent = tokio::time::timeout(CLOSE_TIMEOUT, self.responses.send(Err(status))).await;
        if sent.is_err() {
            self.close_connection();
        }
    }

    /// The proxy's address for logs; empty if the transport does not tell.
    pub(super) fn peer_address(&self) -> String {
        self.peer.map(|peer| peer.to_string()).unwrap_or_default()
    }
}

/// Logs why a proxy asking for Secrets gets fewer than it asks for; whether it did.
pub(super) fn log_secrets_refusal(proxy: &Proxy, identity: &str) -> bool {
    match proxy.secret_access {
        SecretAccess::All => false,
        SecretAccess::None => {
            warn!(
                proxy = %proxy.id,
                "Secrets requested on a stream without a verified identity: none is served \
                 (connect over TLS with a client certificate or a service account token)"
            );
            true
        }
        SecretAccess::CaOnly => {
            warn!(
                proxy = %proxy.id,
                %identity,
                namespace = %proxy.namespace,
                "Secrets requested by an identity not allowed to read Secrets in its namespace: \
                 only CA certificates are served"
            );
            true
        }
    }
}

//! The ADS gRPC service, state of the world and delta on one port: one task per stream
//! identifies the proxy from its first request, then on every model change gets the proxy's
//! resources from the shared [`Cache`] (one translation per snapshot for all proxies that get the
//! same config) and lets its state machine ([`SotwConnection`] or [`DeltaConnection`]) decide what
//! to send. Owns the network edge only, plaintext or TLS ([`super::tls`]): protocol decisions
//! live in [`super::connection`], who a node is in [`super::node`], translation in
//! [`crate::translate`]; it never builds models. On shutdown every stream ends with
//! `UNAVAILABLE`, so that proxies reconnect at once.
//!
//! Pushes scale: a model change wakes every stream (the `watch` channel never blocks the
//! pipeline), at most [`XdsOptions::push_concurrency`] of them prepare their push at once, and each
//! sends from its own task into its own bounded queue. A proxy that stops reading fills its queue
//! and stalls its own task only; while it is stalled, newer models replace older ones in its
//! `watch` receiver, so when it reads again it gets the newest config, not every one in between.
//! A proxy whose queue stays full for [`XdsOptions::send_timeout`], or that cannot take its
//! closing status at its maximum age, has its connection closed ([`super::closer`]).
//!
//! What a client can make the server hold is bounded, each bound an [`XdsOptions`] field (a
//! `rudder serve` flag): handshakes (`super::accept`), streams per connection (HTTP/2), the rate
//! of new streams and the wait for a first request (`admission`), request size (`super::grpc`)
//! and names subscribed (the state machines).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tonic::Status;
use tracing::{debug, info, warn};

use self::admission::{Unidentified, Unopened, log_secrets_refusal};
use super::accept::{self, Accepting, Plaintext};
use super::auth::{Credentials, XdsAuth};
use super::cache::Cache;
use super::closer::Closers;
use super::connection::{Event, Outcome};
use super::debug::NodeInfo;
use super::grpc::{Ads, AdsServer, Limits, Peer, ReadError, Requests, Responses, Unfinished};
use super::rate::{Limiter, StreamRate};
use super::tls::XdsTls;
use super::versions::ResourceSet;
use super::wire::{DeltaResponse, SotwResponse};
use super::{ConnectedProxy, DeltaConnection, Registry, ResourcesHook, Snapshot, SotwConnection};
use crate::metrics::{Convergence, Metrics, Refusal};
use crate::proxy::Proxy;
use crate::translate::ResourceType;

/// The largest response: large enough for a full CDS/EDS of a big mesh; gRPC's 4 MiB default is
/// not. Requests have a bound of their own ([`XdsOptions::max_request_size`]).
const MAX_RESPONSE_SIZE: usize = 64 * 1024 * 1024;

/// istiod's `ISTIO_GPRC_MAXRECVMSGSIZE`.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 4 * 1024 * 1024;

/// Bytes of requests not yet whole that all streams together may hold: 64 requests of the
/// largest size. Envoy sends each request whole at once; a proxy's EDS subscription of a large
/// mesh is a few MiB.
pub const DEFAULT_MAX_UNFINISHED_REQUEST_BYTES: usize = 64 * DEFAULT_MAX_REQUEST_SIZE;

/// Envoy opens one ADS stream per connection; istiod's `ISTIO_GPRC_MAXSTREAMS` (100000) lets one
/// connection open as many streams as it takes to exhaust memory.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 100;

pub const DEFAULT_FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// istiod's `GRPC_KEEPALIVE_INTERVAL` and `GRPC_KEEPALIVE_TIMEOUT`.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A sidecar subscribes by name to an EDS name per cluster and an RDS name per route
/// configuration: 100000 serves a mesh of tens of thousands of services, and bounds what one
/// stream holds of names it was given to some 10 MiB.
pub const DEFAULT_MAX_SUBSCRIBED_NAMES: usize = 100_000;

/// Responses a stream may queue before its task waits for the proxy to read.
const RESPONSE_BUFFER: usize = 16;

/// istiod's default `MAX_CONNECTION_AGE`.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);

/// istiod's default `PILOT_PUSH_THROTTLE`.
pub const DEFAULT_PUSH_CONCURRENCY: usize = 100;

/// Debug config dumps (`istio.io/debug/config_dump`) and `istio.io/debug` views made at once, all
/// streams together: a dump is a translation, like the admin port's dumps, which take one at a
/// time by default.
const DEBUG_DUMP_CONCURRENCY: usize = 1;

/// How long a closing stream waits to queue its closing status for a proxy that does not read.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How the xDS server treats its streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdsOptions {
    /// Streams older than this are closed with `UNAVAILABLE`, so that Envoy reconnects (to any
    /// replica behind the address) and load spreads again after replicas come and go. Each
    /// stream's limit is shortened by up to 10% (fixed per stream), so proxies that connected
    /// together do not all reconnect together. Default: 30 minutes, like istiod.
    pub max_connection_age: Duration,
    /// Test hook: rewrites every proxy's translated resources before they are sent, so tests can
    /// make Envoy reject config (see [`ResourcesHook`]). `None` outside tests.
    pub resources_hook: Option<ResourcesHook>,
    /// How many streams may prepare a push at once: get the proxy's resources for a new model
    /// (translating them if no stream of a proxy with the same config did yet) and work out what
    /// changed. Sending is not counted, so a proxy that does not read holds no slot.
    /// Translations themselves run at most one per CPU. Default: 100, like istiod's
    /// `PILOT_PUSH_THROTTLE`.
    pub push_concurrency: usize,
    /// Serve TLS (mutual TLS if it has a client CA) rather than plaintext, like istiod's 15012.
    pub tls: Option<XdsTls>,
    /// How long a response may wait for room in the queue of a proxy that does not read before
    /// rudder gives up on the proxy and closes its connection (Envoy reconnects and gets the
    /// whole config afresh). istiod's `PILOT_XDS_SEND_TIMEOUT`, where a send that does not
    /// complete in time ends the stream too. `None`, istiod's default: no limit but the
    /// stream's maximum age.
    pub send_timeout: Option<Duration>,
    /// Who a stream's peer is and which Secrets it may read ([`super::auth`]).
    pub auth: XdsAuth,
    /// The largest request, in bytes: one whose length prefix says more ends its stream with
    /// `RESOURCE_EXHAUSTED` before any of it is buffered. Responses are not bound by it.
    /// Default: 4 MiB, istiod's `ISTIO_GPRC_MAXRECVMSGSIZE`.
    pub max_request_size: usize,
    /// Bytes of requests received but not yet whole that all streams together may hold; a
    /// stream whose next bytes do not fit ends with `RESOURCE_EXHAUSTED`. Default:
    /// [`DEFAULT_MAX_UNFINISHED_REQUEST_BYTES`].
    pub max_unfinished_request_bytes: usize,
    /// HTTP/2 streams a connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`);
    /// HTTP/2 refuses more. Default: 100 (see [`DEFAULT_MAX_STREAMS_PER_CONNECTION`]).
    pub max_streams_per_connection: u32,
    /// A stream whose first request has not arrived this long after it opened ends with
    /// `DEADLINE_EXCEEDED`. Default: 10 s.
    pub first_request_timeout: Duration,
    /// A connection that has not completed TLS (on a TLS port) and sent the HTTP/2 preface this
    /// long after it was accepted is closed. Default: 10 s.
    pub handshake_timeout: Duration,
    /// How often each connection is pinged, and how long its answer may take before the
    /// connection is closed. Default: 30 s and 10 s, istiod's `GRPC_KEEPALIVE_INTERVAL` and
    /// `GRPC_KEEPALIVE_TIMEOUT`.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// The rate of new streams (istiod's `PILOT_MAX_REQUESTS_PER_SECOND`, with no burst): a new
    /// stream waits up to a second for its turn, or ends with `RESOURCE_EXHAUSTED` (Envoy
    /// retries with backoff). `None`: no limit. Default: istiod's automatic rate, 15 + 5 per
    /// CPU, at most 100 a second.
    pub stream_rate: Option<StreamRate>,
    /// The names a stream may subscribe to (EDS, RDS, SDS), all types together: a request past
    /// it ends the stream with `RESOURCE_EXHAUSTED`. Default: 100000 (see
    /// [`DEFAULT_MAX_SUBSCRIBED_NAMES`]).
    pub max_subscribed_names: usize,
}

impl Default for XdsOptions {
    fn default() -> Self {
        XdsOptions {
            max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
            resources_hook: None,
            push_concurrency: DEFAULT_PUSH_CONCURRENCY,
            tls: None,
            send_timeout: None,
            auth: XdsAuth::default(),
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            max_unfinished_request_bytes: DEFAULT_MAX_UNFINISHED_REQUEST_BYTES,
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
            first_request_timeout: DEFAULT_FIRST_REQUEST_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            stream_rate: Some(StreamRate::automatic_here()),
            max_subscribed_names: DEFAULT_MAX_SUBSCRIBED_NAMES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    #[error("xDS server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Status of the streams still open when the server stops: Envoy reconnects at once (to another
/// replica behind the address) and keeps its config meanwhile.
const SHUTTING_DOWN: &str = "the xDS server is shutting down, reconnect";

/// Serves ADS, state of the world and delta, on `listener` until `shutdown` completes, then ends
/// every open stream (Envoy reconnects elsewhere) so the server can stop.
pub async fn serve_xds(
    listener: TcpListener,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
    registry: Registry,
    options: XdsOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), XdsError> {
    let (stop, stopped) = watch::channel(false);
    let closers = Arc::new(Closers::default());
    let rate = options
        .stream_rate
        .map_or("off".to_string(), |rate| rate.to_string());
    info!(
        max_message_size = options.max_request_size,
        max_unfinished_request_bytes = options.max_unfinished_request_bytes,
        max_streams_per_connection = options.max_streams_per_connection,
        max_streams_per_second = %rate,
        max_subscribed_names = options.max_subscribed_names,
        first_request_timeout = ?options.first_request_timeout,
        handshake_timeout = ?options.handshake_timeout,
        "xDS limits"
    );
    let accepting = Accepting {
        timeout: options.handshake_timeout,
        metrics: metrics.clone(),
        closers: closers.clone(),
    };
    let limits = Limits {
        request: options.max_request_size,
        response: MAX_RESPONSE_SIZE,
    };
    let service = AdsService {
        snapshots,
        metrics,
        registry,
        cache: Arc::new(Cache::new(options.resources_hook.clone())),
        pushes: Arc::new(Semaphore::new(options.push_concurrency.max(1))),
        debug_dumps: Arc::new(Semaphore::new(DEBUG_DUMP_CONCURRENCY)),
        closers,
        limiter: options.stream_rate.map(|rate| Arc::new(Limiter::new(rate))),
        options,
        stopped,
        next_connection: AtomicU64::new(1),
    };
    let mut router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(service.options.keepalive_interval))
        .http2_keepalive_timeout(Some(service.options.keepalive_timeout))
        .max_concurrent_streams(service.options.max_streams_per_connection);
    let tls = service.options.tls.clone();
    let unfinished = Unfinished::new(service.options.max_unfinished_request_bytes);
    let router = router.add_service(AdsServer::new(service, limits, unfinished));
    // ADS streams never end on their own; graceful shutdown would wait forever without `stop`.
    // Once the streams end, each connection gets a GOAWAY and closes.
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    match tls {
        Some(tls) => {
            let incoming = accept::incoming(listener, tls, accepting);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
        }
        None => {
            let incoming = accept::incoming(listener, Plaintext, accepting);
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await?;
        }
    }
    Ok(())
}

struct AdsService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
    registry: Registry,
    cache: Arc<Cache>,
    /// One permit per push being prepared (`XdsOptions::push_concurrency`).
    pushes: Arc<Semaphore>,
    /// One permit per debug config dump being made ([`DEBUG_DUMP_CONCURRENCY`]).
    debug_dumps: Arc<Semaphore>,
    /// Closes the connections of proxies the server gives up on.
    closers: Arc<Closers>,
    /// Spaces new streams (`XdsOptions::stream_rate`); `None`: no limit.
    limiter: Option<Arc<Limiter>>,
    options: XdsOptions,
    stopped: watch::Receiver<bool>,
    next_connection: AtomicU64,
}

impl AdsService {
    /// Starts the task of one stream; returns the responses it sends.
    fn open<M: Protocol>(
        &self,
        peer: Peer,
        requests: Requests<M::Request>,
    ) -> Responses<M::Response> {
        let (responses, outgoing) = mpsc::channel(RESPONSE_BUFFER);
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let opened = Instant::now();
        let stream = AdsStream::<M> {
            connection,
            expires: expiry(opened, self.options.max_connection_age, connection),
            unidentified: Some(Unidentified::new(&self.metrics)),
            opened,
            first_request_timeout: self.options.first_request_timeout,
            // Taken as the stream opens, before its task runs.
            turn: match &self.limiter {
                Some(limiter) => limiter.reserve(opened),
                None => Some(opened),
            },
            max_names: self.options.max_subscribed_names,
            requests,
            responses,
            snapshots: self.snapshots.clone(),
            stopped: self.stopped.clone(),
            metrics: self.metrics.clone(),
            registry: self.registry.clone(),
            peer: peer.address,
            credentials: peer.credentials,
            identity: None,
            auth: self.options.auth.clone(),
            connected_at: SystemTime::now(),
            cache: self.cache.clone(),
            pushes: self.pushes.clone(),
            debug_dumps: self.debug_dumps.clone(),
            node: NodeInfo::default(),
            closers: self.closers.clone(),
            send_timeout: self.options.send_timeout,
            convergence: Convergence::default(),
            sent_at: Mutex::default(),
            push_started: Instant::now(),
        };
        tokio::spawn(stream.run());
        outgoing
    }
}

impl Ads for AdsService {
    fn sotw(&self, peer: Peer, requests: Requests<DiscoveryRequest>) -> Responses<SotwResponse> {
        self.open::<SotwConnection>(peer, requests)
    }

    fn delta(
        &self,
        peer: Peer,
        requests: Requests<DeltaDiscoveryRequest>,
    ) -> Responses<DeltaResponse> {
        self.open::<DeltaConnection>(peer, requests)
    }
}

/// When a stream opened at `start` closes: `max_age`, less up to 10% decided by the stream's
/// number; `None` if that is beyond any clock.
fn expiry(start: Instant, max_age: Duration, connection: u64) -> Option<Instant> {
    let jitter = xxhash_rust::xxh3::xxh3_64(&connection.to_le_bytes()) % 1000;
    let age = max_age.saturating_sub(max_age / 10_000 * u32::try_from(jitter).unwrap_or(0));
    start.checked_add(age)
}

/// One ADS stream's task.
struct AdsStream<M: Protocol> {
    connection: u64,
    /// When the stream reaches its maximum age.
    expires: Option<Instant>,
    /// Counts the stream as unidentified until its first request identifies it.
    unidentified: Option<Unidentified>,
    /// When the stream opened.
    opened: Instant,
    /// `XdsOptions::first_request_timeout`.
    first_request_timeout: Duration,
    /// When the stream may read its first request, its turn in the rate of new streams;
    /// `None`: refused, its turn was more than a second away.
    turn: Option<Instant>,
    /// `XdsOptions::max_subscribed_names`.
    max_names: usize,
    requests: Requests<M::Request>,
    responses: mpsc::Sender<Result<M::Response, Status>>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    stopped: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    registry: Registry,
    /// The proxy's address, when the transport knows it.
    peer: Option<SocketAddr>,
    /// What the connection offers to prove who the proxy is.
    credentials: Credentials,
    /// The SPIFFE id it proved, once the first request is in.
    identity: Option<String>,
    auth: XdsAuth,
    connected_at: SystemTime,
    /// Translations shared by all streams.
    cache: Arc<Cache>,
    /// Bounds the pushes being prepared at once.
    pushes: Arc<Semaphore>,
    /// Bounds the debug config dumps being made at once.
    debug_dumps: Arc<Semaphore>,
    /// What the proxy's node says of itself that the registry shows, once known.
    node: NodeInfo,
    closers: Arc<Closers>,
    /// `XdsOptions::send_timeout`.
    send_timeout: Option<Duration>,
    /// Per type, when the config of the last response was seen, until the proxy ACKs it.
    convergence: Convergence,
    /// Per type, when the last response was queued (syncz's `sentTime`, CSDS `last_updated`).
    sent_at: Mutex<BTreeMap<ResourceType, SystemTime>>,
    /// When the work behind the outcome being delivered started (`pilot_xds_push_time`).
    push_started: Instant,
}

/// Holds a stream's place in the registry and the connected gauge; dropping it (however the task
/// ends, including server shutdown) releases both.
struct Registration {
    registry: Registry,
    metrics: Arc<Metrics>,
    proxy_id: String,
    connection: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.remove(&self.proxy_id, self.connection);
        self.metrics.proxy_disconnected();
    }
}

/// Why a stream stopped sending.
enum End {
    /// The proxy is gone.
    Gone,
    /// The server is shutting down.
    Stopped,
    /// The stream reached its maximum age.
    Expired,
    /// A response waited longer than the send timeout for the proxy to read.
    SendTimeout,
}

impl<M: Protocol> AdsStream<M> {
    /// The proxy's resources in the newest snapshot, with `parsed` given its workload's labels
    /// there. Holds one of the server's push permits meanwhile; sending comes after, without it.
    async fn resources(&mut self, parsed: &Proxy) -> (Proxy, Arc<ResourceSet>) {
        // The semaphore is never closed.
        let _permit = self.pushes.acquire().await.ok();
        // Taken once the permit is held: a stream waiting its turn holds no model, and skips the
        // models published while it waited.
        let snapshot = self.snapshots.borrow_and_update().clone();
        let proxy = parsed.clone().with_workload_labels(&snapshot.model);
        let resources = self.cache.resources(&snapshot, &proxy).await;
        (proxy, resources)
    }

    async fn run(mut self) {
        let first = match self.first_request().await {
            Ok(first) => first,
            Err(Unopened::Refused(reason, status)) => {
                let status = self.refusal(None, reason, status);
                self.close_with(status).await;
                return;
            }
            Err(Unopened::Stopped) => {
                let _ = self
                    .responses
                    .try_send(Err(Status::unavailable(SHUTTING_DOWN)));
                return;
            }
            Err(Unopened::Gone) => return,
        };
        if M::debug_request(&first).is_some() {
            return self.run_debug(first).await;
        }
        self.node = NodeInfo::of(M::node(&first));
        let peer = self.peer.map(|peer| peer.to_string()).unwrap_or_default();
        let (mut parsed, verified) = match self.identify(&first).await {
            Ok(identified) => identified,
            Err(status) => {
                warn!(%peer, error = status.message(), "refusing ADS stream");
                let _ = self.responses.send(Err(status)).await;
                return;
            }
        };
        self.unidentified = None;
        parsed.secret_access = self.auth.secret_access(verified.as_ref()).await;
        self.push_started = Instant::now();
        let (mut proxy, mut resources) = self.resources(&parsed).await;
        let mut state = M::new(resources.clone());
        state.limit_names(self.max_names);
        self.metrics.proxy_connected();
        let _registration = Registration {
            registry: self.registry.clone(),
            metrics: self.metrics.clone(),
            proxy_id: proxy.id.clone(),
            connection: self.connection,
        };
        let proven_by = verified
            .as_ref()
            .map_or("", |verified| verified.method.as_str());
        self.identity = verified.map(|verified| verified.identity.to_string());
        let identity = self
            .identity
            .as_deref()
            .unwrap_or("unauthenticated")
            .to_string();
        info!(
            proxy = %proxy.id,
            connection = self.connection,
            delta = M::DELTA,
            %peer,
            %identity,
            proven_by,
            secrets = proxy.secret_access.as_str(),
            "proxy connected"
        );
        // Whether the log says why this stream gets fewer Secrets than it asks for.
        let asks_for_secrets =
            |request: &M::Request| M::type_url(request) == ResourceType::Secret.type_url();
        let mut secrets_refusal_logged =
            asks_for_secrets(&first) && log_secrets_refusal(&proxy, &identity);

        let expired = until(self.expires);
        tokio::pin!(expired);
        let mut outcome = state.on_request(&first);
        let mut models_open = true;
        // Whether a new model is to be pushed.
        let mut new_model = false;
        // Why the stream ends, if the proxy is to hear it.
        let mut closing = None;
        // A request that ended the stream.
        let mut refused = None;
        loop {
            if let Some(refused) = outcome.refused.take() {
                closing = Some(self.refusal(Some(&proxy), Refusal::Subscriptions, refused.into()));
                break;
            }
            match self.deliver(&proxy, &state, outcome).await {
                Ok(()) => {}
                Err(End::Expired) => {
                    let connection = self.connection;
                    info!(proxy = %proxy.id, connection, "closing stream at its maximum age");
                    closing = Some(Status::unavailable(
                        "maximum connection age reached, reconnect",
                    ));
                    break;
                }
                Err(End::Stopped) => {
                    closing = Some(Status::unavailable(SHUTTING_DOWN));
                    break;
                }
                Err(End::SendTimeout) => {
                    self.metrics.write_timed_out();
                    warn!(
                        proxy = %proxy.id,
                        connection = self.connection,
                        "closing the connection of a proxy that does not read its config (send timeout)"
                    );
                    self.close_connection();
                    break;
                }
                Err(End::Gone) => break,
            }
            outcome = tokio::select! {
                request = self.requests.message() => match request {
                    Ok(Some(request)) => {
                        self.push_started = Instant::now();
                        if !secrets_refusal_logged && asks_for_secrets(&request) {
                            secrets_refusal_logged = log_secrets_refusal(&proxy, &identity);
                        }
                        state.on_request(&request)
                    }
                    Ok(None) => break,
                    Err(ReadError::Refused { reason, status }) => {
                        // Reported below, once the other branches' futures are gone.
                        refused = Some((reason, status));
                        break;
                    }
                    Err(ReadError::Transport(status)) => {
                        debug!(proxy = %proxy.id, %status, "ADS stream failed");
                        break;
                    }
                },
                changed = self.snapshots.changed(), if models_open => {
                    if changed.is_err() {
                        // No more models: keep serving the last one.
                        models_open = false;
                        Outcome::default()
                    } else {
                        // Prepared below, once the other branches' futures are gone.
                        new_model = true;
                        Outcome::default()
                    }
                },
                _ = self.stopped.wait_for(|stopped| *stopped) => {
                    closing = Some(Status::unavailable(SHUTTING_DOWN));
                    break;
                }
                () = &mut expired => {
                    let connection = self.connection;
                    info!(proxy = %proxy.id, connection, "closing stream at its maximum age");
                    closing = Some(Status::unavailable("maximum connection age reached, reconnect"));
                    break;
                }
            };
            if std::mem::take(&mut new_model) {
                self.push_started = Instant::now();
                let (labelled, newest) = self.resources(&parsed).await;
                proxy = labelled;
                // The very same set: nothing changed for this proxy.
                if !Arc::ptr_eq(&newest, &resources) {
                    resources = newest;
                    outcome = state.on_resources(resources.clone());
                }
            }
        }
        if let Some((reason, status)) = refused {
            closing = Some(self.refusal(Some(&proxy), reason, status));
        }
        if let Some(status) = closing {
            self.close_with(status).await;
        }
        info!(proxy = %proxy.id, connection = self.connection, "proxy disconnected");
    }

    /// Logs and counts what happened, sends the responses and publishes the new state. Waiting
    /// for room in the queue of a proxy that does not read ends when the server stops or the
    /// stream reaches its maximum age.
    async fn deliver(
        &self,
        proxy: &Proxy,
        state: &M,
        outcome: Outcome<M::Response>,
    ) -> Result<(), End> {
        for event in &outcome.events {
            match event {
                Event::Ack { ty, version } => {
                    self.convergence.acked(*ty, &self.metrics);
                    debug!(proxy = %proxy.id, r#type = ty.short_name(), version, "ACK");
                }
                Event::Nack {
                    ty,
                    version,
                    message,
                } => {
                    self.metrics.rejected(*ty, &proxy.id);
                    self.convergence.rejected(*ty);
                    warn!(
                        proxy = %proxy.id,
                        r#type = ty.short_name(),
                        version,
                        error = message,
                        "proxy rejected config (NACK)"
                    );
                }
                Event::Stale { ty, nonce } => {
                    self.metrics.nonce_expired();
                    let ty = ty.short_name();
                    debug!(proxy = %proxy.id, r#type = ty, nonce, "ignoring stale ACK/NACK");
                }
                Event::UnknownType { type_url } => {
                    debug!(proxy = %proxy.id, type_url, "ignoring request for an unserved type");
                }
            }
        }
        // The config the responses carry was seen when the current snapshot was built.
        let seen = self.snapshots.borrow().created;
        // One info line per push: `TYPE VERSION (N resources[, M removed])` per response.
        let mut pushed = Vec::new();
        for response in outcome.responses {
            let summary = M::summary(&response);
            let ty = ResourceType::from_type_url(summary.type_url);
            if let Some(ty) = ty {
                self.metrics.pushed(ty, summary.bytes);
                self.convergence.sent(ty, seen);
                self.sent_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(ty, SystemTime::now());
                let removed = match summary.removed {
                    0 => String::new(),
                    n => format!(", {n} removed"),
                };
                pushed.push(format!(
                    "{} {} ({} resources{removed})",
                    ty.short_name(),
                    summary.version,
                    summary.resources
                ));
                debug!(
                    proxy = %proxy.id,
                    r#type = ty.short_name(),
                    version = summary.version,
                    nonce = summary.nonce,
                    resources = summary.resources,
                    removed = summary.removed,
                    "push"
                );
            }
            let sending = Instant::now();
            self.send(response).await?;
            self.metrics.observe_send_time(sending.elapsed());
            if let Some(ty) = ty {
                self.metrics
                    .observe_push_time(ty, self.push_started.elapsed());
            }
        }
        if !pushed.is_empty() {
            let connection = self.connection;
            let pushed = pushed.join(", ");
            info!(proxy = %proxy.id, connection, %pushed, "push");
        }
        self.registry.update(ConnectedProxy {
            proxy: proxy.clone(),
            connection: self.connection,
            delta: M::DELTA,
            peer: self.peer,
            identity: self.identity.clone(),
            node: self.node.clone(),
            connected_at: self.connected_at,
            types: state.status(),
            watches: state.watched(),
            sent_at: self
                .sent_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        });
        Ok(())
    }

    /// Ends the stream's whole connection: what is queued for a proxy that does not read would
    /// otherwise stay in HTTP/2 buffers for as long as the proxy answers pings.
    fn close_connection(&self) {
        if let Some(peer) = self.peer
            && self.closers.close(peer)
        {
            debug!(connection = self.connection, %peer, "connection closed");
        }
    }

    /// Queues one response, waiting for room as long as the stream lives and the send timeout
    /// allows.
    async fn send(&self, response: M::Response) -> Result<(), End> {
        let permit = match self.responses.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Closed(())) => return Err(End::Gone),
            Err(mpsc::error::TrySendError::Full(())) => {
                let mut stopped = self.stopped.clone();
                let gives_up = self.send_timeout.map(|timeout| Instant::now() + timeout);
                tokio::select! {
                    permit = self.responses.reserve() => permit.map_err(|_| End::Gone)?,
                    _ = stopped.wait_for(|stopped| *stopped) => return Err(End::Stopped),
                    () = until(self.expires) => return Err(End::Expired),
                    () = until(gives_up) => return Err(End::SendTimeout),
                }
            }
        };
        permit.send(Ok(response));
        Ok(())
    }
}

/// Completes at `deadline`, or never without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

mod admission;
mod debug_stream;
mod protocol;
use protocol::Protocol;
#[cfg(test)]
mod tests;

//! The ADS gRPC service, state of the world and delta on one port: one task per stream
//! identifies the proxy from its first request, then on every model change gets the proxy's
//! resources from the shared [`Cache`] (one translation per snapshot for all proxies that get the
//! same config) and lets its state machine ([`SotwConnection`] or [`DeltaConnection`]) decide what
//! to send. Owns the network edge only: protocol decisions live in [`super::connection`],
//! translation in [`crate::translate`]; it never builds models.
//!
//! Pushes scale: a model change wakes every stream (the `watch` channel never blocks the
//! pipeline), at most [`XdsOptions::push_concurrency`] of them prepare their push at once, and each
//! sends from its own task into its own bounded queue. A proxy that stops reading fills its queue
//! and stalls its own task only; while it is stalled, newer models replace older ones in its
//! `watch` receiver, so when it reads again it gets the newest config, not every one in between.
//! A proxy whose queue stays full for [`XdsOptions::send_timeout`], or that cannot take its
//! closing status at its maximum age, has its connection closed ([`super::closer`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::protobuf::{Struct, value::Kind};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tonic::Status;
use tonic::transport::server::TcpIncoming;
use tracing::{debug, info, warn};

use super::cache::Cache;
use super::closer::Closers;
use super::connection::{Event, Outcome, StateMachine};
use super::grpc::{Ads, AdsServer, Requests, Responses};
use super::versions::ResourceSet;
use super::wire::{DeltaResponse, SotwResponse, WireMessage};
use super::{ConnectedProxy, DeltaConnection, Registry, ResourcesHook, Snapshot, SotwConnection};
use crate::metrics::{Convergence, Metrics};
use crate::proxy::Proxy;
use crate::translate::ResourceType;

/// Large enough for a full CDS/EDS of a big mesh; gRPC's 4 MiB default is not.
const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Responses a stream may queue before its task waits for the proxy to read.
const RESPONSE_BUFFER: usize = 16;

/// istiod's default `MAX_CONNECTION_AGE`.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);

/// istiod's default `PILOT_PUSH_THROTTLE`.
pub const DEFAULT_PUSH_CONCURRENCY: usize = 100;

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
    /// How long a response may wait for room in the queue of a proxy that does not read before
    /// rudder gives up on the proxy and closes its connection (Envoy reconnects and gets the
    /// whole config afresh). istiod's `PILOT_XDS_SEND_TIMEOUT`, where a send that does not
    /// complete in time ends the stream too. `None`, istiod's default: no limit but the
    /// stream's maximum age.
    pub send_timeout: Option<Duration>,
}

impl Default for XdsOptions {
    fn default() -> Self {
        XdsOptions {
            max_connection_age: DEFAULT_MAX_CONNECTION_AGE,
            resources_hook: None,
            push_concurrency: DEFAULT_PUSH_CONCURRENCY,
            send_timeout: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    #[error("xDS server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

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
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let incoming = {
        let closers = closers.clone();
        tokio_stream::StreamExt::map(incoming, move |accepted| {
            accepted.map(|connection| closers.wrap(connection))
        })
    };
    let service = AdsService {
        snapshots,
        metrics,
        registry,
        cache: Arc::new(Cache::new(options.resources_hook.clone())),
        pushes: Arc::new(Semaphore::new(options.push_concurrency.max(1))),
        closers,
        options,
        stopped,
        next_connection: AtomicU64::new(1),
    };
    let server = AdsServer::new(service, MAX_MESSAGE_SIZE);
    // ADS streams never end on their own; graceful shutdown would wait forever without `stop`.
    let shutdown = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(server)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}

struct AdsService {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
    registry: Registry,
    cache: Arc<Cache>,
    /// One permit per push being prepared (`XdsOptions::push_concurrency`).
    pushes: Arc<Semaphore>,
    /// Closes the connections of proxies the server gives up on.
    closers: Arc<Closers>,
    options: XdsOptions,
    stopped: watch::Receiver<bool>,
    next_connection: AtomicU64,
}

impl AdsService {
    /// Starts the task of one stream; returns the responses it sends.
    fn open<M: Protocol>(
        &self,
        peer: Option<SocketAddr>,
        requests: Requests<M::Request>,
    ) -> Responses<M::Response> {
        let (responses, outgoing) = mpsc::channel(RESPONSE_BUFFER);
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let stream = AdsStream::<M> {
            connection,
            expires: expiry(Instant::now(), self.options.max_connection_age, connection),
            requests,
            responses,
            snapshots: self.snapshots.clone(),
            stopped: self.stopped.clone(),
            metrics: self.metrics.clone(),
            registry: self.registry.clone(),
            peer,
            connected_at: SystemTime::now(),
            cache: self.cache.clone(),
            pushes: self.pushes.clone(),
            closers: self.closers.clone(),
            send_timeout: self.options.send_timeout,
            convergence: Convergence::default(),
            push_started: Instant::now(),
        };
        tokio::spawn(stream.run());
        outgoing
    }
}

impl Ads for AdsService {
    fn sotw(
        &self,
        peer: Option<SocketAddr>,
        requests: Requests<DiscoveryRequest>,
    ) -> Responses<SotwResponse> {
        self.open::<SotwConnection>(peer, requests)
    }

    fn delta(
        &self,
        peer: Option<SocketAddr>,
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

/// What the stream task needs of a protocol, beyond its state machine: the node in a request,
/// and what to log of a response.
trait Protocol: StateMachine<Request: prost::Message + Default> {
    const DELTA: bool;

    fn node(request: &Self::Request) -> Option<&Node>;

    fn summary(response: &Self::Response) -> Summary<'_>;
}

/// A response, for logs and metrics.
struct Summary<'a> {
    type_url: &'a str,
    version: &'a str,
    nonce: &'a str,
    resources: usize,
    removed: usize,
    /// Encoded size.
    bytes: usize,
}

impl Protocol for SotwConnection {
    const DELTA: bool = false;

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
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
}

impl Protocol for DeltaConnection {
    const DELTA: bool = true;

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
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
}

/// One ADS stream's task.
struct AdsStream<M: Protocol> {
    connection: u64,
    /// When the stream reaches its maximum age.
    expires: Option<Instant>,
    requests: Requests<M::Request>,
    responses: mpsc::Sender<Result<M::Response, Status>>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    stopped: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    registry: Registry,
    /// The proxy's address, when the transport knows it.
    peer: Option<SocketAddr>,
    connected_at: SystemTime,
    /// Translations shared by all streams.
    cache: Arc<Cache>,
    /// Bounds the pushes being prepared at once.
    pushes: Arc<Semaphore>,
    closers: Arc<Closers>,
    /// `XdsOptions::send_timeout`.
    send_timeout: Option<Duration>,
    /// Per type, when the config of the last response was seen, until the proxy ACKs it.
    convergence: Convergence,
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
    /// The proxy's resources in `snapshot`, and what its state machine sends for them. Holds one
    /// of the server's push permits meanwhile; sending comes after, without it.
    async fn prepare(
        &self,
        snapshot: &Snapshot,
        proxy: &Proxy,
        current: &mut Arc<ResourceSet>,
        state: &mut M,
    ) -> Outcome<M::Response> {
        // The semaphore is never closed.
        let _permit = self.pushes.acquire().await.ok();
        let resources = self.cache.resources(snapshot, proxy).await;
        // The very same set: nothing changed for this proxy.
        if Arc::ptr_eq(&resources, current) {
            return Outcome::default();
        }
        *current = resources.clone();
        state.on_resources(resources)
    }

    async fn run(mut self) {
        let first = match self.requests.message().await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(status) => {
                debug!(%status, "ADS stream failed before its first request");
                return;
            }
        };
        let parsed = match identify(M::node(&first)) {
            Ok(proxy) => proxy,
            Err(status) => {
                warn!(message = status.message(), "refusing ADS stream");
                let _ = self.responses.send(Err(status)).await;
                return;
            }
        };
        self.push_started = Instant::now();
        let snapshot = self.snapshots.borrow_and_update().clone();
        let mut proxy = parsed.clone().with_workload_labels(&snapshot.model);
        let mut resources = {
            let _permit = self.pushes.acquire().await.ok();
            self.cache.resources(&snapshot, &proxy).await
        };
        let mut state = M::new(resources.clone());
        self.metrics.proxy_connected();
        let _registration = Registration {
            registry: self.registry.clone(),
            metrics: self.metrics.clone(),
            proxy_id: proxy.id.clone(),
            connection: self.connection,
        };
        info!(proxy = %proxy.id, connection = self.connection, delta = M::DELTA, "proxy connected");

        let expires = self.expires;
        let expired = async move {
            match expires {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        let mut outcome = state.on_request(&first);
        let mut models_open = true;
        // Whether a new model is to be pushed.
        let mut new_model = false;
        // Why the stream ends, if the proxy is to hear it.
        let mut closing = None;
        loop {
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
                Err(End::SendTimeout) => {
                    warn!(
                        proxy = %proxy.id,
                        connection = self.connection,
                        "closing the connection of a proxy that does not read its config (send timeout)"
                    );
                    self.close_connection();
                    break;
                }
                Err(End::Gone | End::Stopped) => break,
            }
            outcome = tokio::select! {
                request = self.requests.message() => match request {
                    Ok(Some(request)) => {
                        self.push_started = Instant::now();
                        state.on_request(&request)
                    }
                    Ok(None) => break,
                    Err(status) => {
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
                _ = self.stopped.wait_for(|stopped| *stopped) => break,
                () = &mut expired => {
                    let connection = self.connection;
                    info!(proxy = %proxy.id, connection, "closing stream at its maximum age");
                    closing = Some(Status::unavailable("maximum connection age reached, reconnect"));
                    break;
                }
            };
            if std::mem::take(&mut new_model) {
                self.push_started = Instant::now();
                // The newest model: any published while this stream was busy are skipped.
                let snapshot = self.snapshots.borrow_and_update().clone();
                proxy = parsed.clone().with_workload_labels(&snapshot.model);
                outcome = self
                    .prepare(&snapshot, &proxy, &mut resources, &mut state)
                    .await;
            }
        }
        if let Some(status) = closing {
            // A proxy that does not read may never make room for it: then its connection goes.
            let sent = tokio::time::timeout(CLOSE_TIMEOUT, self.responses.send(Err(status))).await;
            if sent.is_err() {
                self.close_connection();
            }
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
            self.send(response).await?;
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
            connected_at: self.connected_at,
            types: state.status(),
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
                let expires = self.expires;
                let timeout = self.send_timeout;
                tokio::select! {
                    permit = self.responses.reserve() => permit.map_err(|_| End::Gone)?,
                    _ = stopped.wait_for(|stopped| *stopped) => return Err(End::Stopped),
                    () = async move {
                        match expires {
                            Some(deadline) => tokio::time::sleep_until(deadline).await,
                            None => std::future::pending().await,
                        }
                    } => return Err(End::Expired),
                    () = async move {
                        match timeout {
                            Some(timeout) => tokio::time::sleep(timeout).await,
                            None => std::future::pending().await,
                        }
                    } => return Err(End::SendTimeout),
                }
            }
        };
        permit.send(Ok(response));
        Ok(())
    }
}

/// The proxy a stream's first request names.
fn identify(node: Option<&Node>) -> Result<Proxy, Status> {
    let node = node.ok_or_else(|| {
        Status::invalid_argument(
            "the first request on an ADS stream must carry `node` (id and metadata)",
        )
    })?;
    let metadata = node.metadata.as_ref().map_or(Value::Null, struct_to_json);
    Proxy::parse(&node.id, &metadata).map_err(|error| Status::invalid_argument(error.to_string()))
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
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client as ads;
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse,
    };
    use envoy_types::pb::google::protobuf::{ListValue, Value as ProtoValue};
    use serde_json::json;
    use tokio_stream::wrappers::ReceiverStream;
    use tonic::Streaming;
    use tonic::transport::Channel;

    const NODE_ID: &str = "sidecar~127.0.0.1~app.default~default.svc.cluster.local";

    fn proto(kind: Kind) -> ProtoValue {
        ProtoValue { kind: Some(kind) }
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

    struct Harness {
        client: ads::AggregatedDiscoveryServiceClient<Channel>,
        snapshots: watch::Sender<Arc<Snapshot>>,
        registry: Registry,
        metrics: Arc<Metrics>,
        shutdown: tokio::sync::oneshot::Sender<()>,
        server: tokio::task::JoinHandle<Result<(), XdsError>>,
    }

    async fn start() -> Harness {
        start_with(XdsOptions::default()).await
    }

    async fn start_with(options: XdsOptions) -> Harness {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (snapshots, receiver) = watch::channel(Arc::new(Snapshot::default()));
        let metrics = Arc::new(Metrics::new());
        let registry = Registry::default();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_xds(
            listener,
            receiver,
            metrics.clone(),
            registry.clone(),
            options,
            async move {
                let _ = stop.await;
            },
        ));
        let client = ads::AggregatedDiscoveryServiceClient::connect(format!("http://{address}"))
            .await
            .unwrap();
        Harness {
            client,
            snapshots,
            registry,
            metrics,
            shutdown,
            server,
        }
    }

    fn cds_request(node: Option<Node>, version: &str, nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            node,
            type_url: ResourceType::Cluster.type_url().to_string(),
            version_info: version.to_string(),
            response_nonce: nonce.to_string(),
            ..Default::default()
        }
    }

    fn node() -> Option<Node> {
        Some(Node {
            id: NODE_ID.to_string(),
            ..Default::default()
        })
    }

    /// Opens an ADS stream: a sender for requests and the stream of responses.
    async fn open_stream(
        harness: &mut Harness,
    ) -> (mpsc::Sender<DiscoveryRequest>, Streaming<DiscoveryResponse>) {
        let (requests, outgoing) = mpsc::channel(4);
        let responses = harness
            .client
            .stream_aggregated_resources(ReceiverStream::new(outgoing))
            .await
            .unwrap()
            .into_inner();
        (requests, responses)
    }

    #[tokio::test]
    async fn serves_cds_and_stays_quiet_on_identical_models() {
        let mut harness = start().await;
        let (requests, mut responses) = open_stream(&mut harness).await;
        requests.send(cds_request(node(), "", "")).await.unwrap();
        let response = responses.message().await.unwrap().unwrap();
        assert_eq!(response.type_url, ResourceType::Cluster.type_url());
        assert!(!response.nonce.is_empty());
        assert!(!response.version_info.is_empty());

        let ack = cds_request(None, &response.version_info, &response.nonce);
        requests.send(ack).await.unwrap();
        let acked = Some(response.version_info.clone());
        let registered = async {
            loop {
                let connected = harness.registry.get(NODE_ID);
                if connected.is_some_and(|c| c.types[&ResourceType::Cluster].acked == acked) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), registered)
            .await
            .expect("the ACK shows in the registry");

        harness.snapshots.send_modify(|snapshot| {
            *snapshot = Arc::new(Snapshot {
                generation: snapshot.generation + 1,
                ..Snapshot::default()
            });
        });
        let quiet = tokio::time::timeout(Duration::from_millis(300), responses.message()).await;
        assert!(
            quiet.is_err(),
            "an identical model sends nothing: {quiet:?}"
        );

        assert!(harness.metrics.render().contains("pilot_xds 1"));
        drop(requests);
        let gone = async {
            while harness.registry.get(NODE_ID).is_some() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), gone)
            .await
            .expect("a closed stream leaves the registry");
    }

    #[tokio::test]
    async fn shutdown_ends_open_streams() {
        let mut harness = start().await;
        let (requests, mut responses) = open_stream(&mut harness).await;
        requests.send(cds_request(node(), "", "")).await.unwrap();
        responses.message().await.unwrap().unwrap();

        harness.shutdown.send(()).unwrap();
        let stopped = tokio::time::timeout(Duration::from_secs(5), harness.server)
            .await
            .expect("the server stops despite an open stream");
        stopped.unwrap().unwrap();
        assert!(matches!(responses.message().await, Ok(None) | Err(_)));
        assert!(harness.registry.connected().is_empty());
    }

    #[tokio::test]
    async fn first_request_without_node_is_refused() {
        let mut harness = start().await;
        let (requests, mut responses) = open_stream(&mut harness).await;
        requests.send(cds_request(None, "", "")).await.unwrap();
        let status = responses.message().await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("node"), "{}", status.message());
    }

    /// Opens a delta ADS stream: a sender for requests and the stream of responses.
    async fn open_delta(
        harness: &mut Harness,
    ) -> (
        mpsc::Sender<DeltaDiscoveryRequest>,
        Streaming<DeltaDiscoveryResponse>,
    ) {
        let (requests, outgoing) = mpsc::channel(4);
        let responses = harness
            .client
            .delta_aggregated_resources(ReceiverStream::new(outgoing))
            .await
            .unwrap()
            .into_inner();
        (requests, responses)
    }

    fn delta_cds_request(node: Option<Node>, nonce: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            node,
            type_url: ResourceType::Cluster.type_url().to_string(),
            response_nonce: nonce.to_string(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn serves_delta_beside_state_of_the_world() {
        let mut harness = start().await;
        let (requests, mut responses) = open_delta(&mut harness).await;
        requests.send(delta_cds_request(node(), "")).await.unwrap();
        let response = responses.message().await.unwrap().unwrap();
        assert_eq!(response.type_url, ResourceType::Cluster.type_url());
        assert!(!response.nonce.is_empty());
        requests
            .send(delta_cds_request(None, &response.nonce))
            .await
            .unwrap();
        let acked = async {
            loop {
                let connected = harness.registry.get(NODE_ID);
                if let Some(connected) = connected
                    && connected.types[&ResourceType::Cluster].acked.is_some()
                {
                    break connected;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let connected = tokio::time::timeout(Duration::from_secs(5), acked)
            .await
            .expect("the ACK shows in the registry");
        assert!(connected.delta);
        let status = &connected.types[&ResourceType::Cluster];
        assert_eq!(status.acked, status.sent);

        // A state-of-the-world stream of the same proxy reports the same version.
        let (sotw, mut sotw_responses) = open_stream(&mut harness).await;
        sotw.send(cds_request(node(), "", "")).await.unwrap();
        let full = sotw_responses.message().await.unwrap().unwrap();
        assert_eq!(Some(full.version_info), status.sent);
    }

    #[tokio::test]
    async fn streams_close_at_their_maximum_age() {
        let mut harness = start_with(XdsOptions {
            max_connection_age: Duration::from_millis(300),
            ..XdsOptions::default()
        })
        .await;
        let (requests, mut responses) = open_stream(&mut harness).await;
        requests.send(cds_request(node(), "", "")).await.unwrap();
        responses.message().await.unwrap().unwrap();
        let (delta_requests, mut delta_responses) = open_delta(&mut harness).await;
        delta_requests
            .send(delta_cds_request(node(), ""))
            .await
            .unwrap();
        delta_responses.message().await.unwrap().unwrap();

        let closed = tokio::time::timeout(Duration::from_secs(5), responses.message())
            .await
            .expect("the stream closes");
        assert_eq!(closed.unwrap_err().code(), tonic::Code::Unavailable);
        let closed = tokio::time::timeout(Duration::from_secs(5), delta_responses.message())
            .await
            .expect("the delta stream closes");
        assert_eq!(closed.unwrap_err().code(), tonic::Code::Unavailable);
        let gone = async {
            while harness.registry.get(NODE_ID).is_some() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), gone)
            .await
            .expect("closed streams leave the registry");
    }

    #[test]
    fn maximum_age_is_jittered_down_by_at_most_a_tenth() {
        let start = Instant::now();
        let age = Duration::from_secs(1800);
        let ages: std::collections::BTreeSet<Duration> = (0..100)
            .map(|connection| expiry(start, age, connection).unwrap() - start)
            .collect();
        assert!(ages.len() > 50, "ages spread: {ages:?}");
        assert!(ages.iter().all(|a| *a <= age && *a >= age - age / 10));
        assert_eq!(expiry(start, Duration::MAX, 1), None);
    }
}

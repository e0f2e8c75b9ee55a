//! Delta ADS as a client sees it on the wire: an in-process client against `serve_xds` on
//! 127.0.0.1:0, serving a model built from YAML the way `rudder serve` builds it. Covers what a
//! real Envoy does not do on demand: NACKs, stale nonces, reconnects with
//! `initial_resource_versions`, unsubscribing, and the order of warming (CDS, then EDS).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use rudder::metrics::Metrics;
use rudder::translate::ResourceType;
use rudder::xds::{Registry, Snapshot, TypeStatus, XdsOptions, serve_xds};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tonic::Streaming;

use support::ads;

const NODE_ID: &str = "sidecar~10.0.0.9~client.default~default.svc.cluster.local";
const REVIEWS: &str = "outbound|9080||reviews.default.svc.cluster.local";
const RATINGS: &str = "outbound|9080||ratings.default.svc.cluster.local";
const WAIT: Duration = Duration::from_secs(5);
/// How long a stream must stay silent to count as having nothing to send.
const QUIET: Duration = Duration::from_millis(300);

/// A Service on port 9080 (port named `port_name`, which decides the protocol) with one
/// EndpointSlice holding `ips`.
fn service(name: &str, cluster_ip: &str, port_name: &str, ips: &[&str]) -> String {
    let endpoints: String = ips
        .iter()
        .map(|ip| format!("- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  clusterIP: {cluster_ip}\n  ports: [{{name: {port_name}, port: 9080}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: {port_name}, port: 9080}}]\nendpoints:\n{endpoints}---\n"
    )
}

fn reviews(port_name: &str, ips: &[&str]) -> String {
    service("reviews", "10.96.0.1", port_name, ips)
}

fn ratings(ips: &[&str]) -> String {
    service("ratings", "10.96.0.2", "http", ips)
}

/// The snapshot `rudder serve` would publish for `yaml`, which must be valid.
fn snapshot(yaml: &str, generation: u64) -> Arc<Snapshot> {
    let snapshot = ads::snapshot(yaml, generation);
    assert!(
        snapshot.errors.is_empty(),
        "config errors: {:?}",
        snapshot.errors
    );
    snapshot
}

/// rudder's xDS server alone, in-process, fed snapshots by the test.
struct Rudder {
    address: SocketAddr,
    snapshots: watch::Sender<Arc<Snapshot>>,
    registry: Registry,
    _shutdown: oneshot::Sender<()>,
}

impl Rudder {
    async fn start(yaml: &str) -> Rudder {
        Rudder::start_with(yaml, XdsOptions::default()).await
    }

    async fn start_with(yaml: &str, options: XdsOptions) -> Rudder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("bound address");
        let (snapshots, receiver) = watch::channel(snapshot(yaml, 1));
        let registry = Registry::default();
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(serve_xds(
            listener,
            receiver,
            Arc::new(Metrics::new()),
            registry.clone(),
            options,
            async move {
                let _ = stop.await;
            },
        ));
        Rudder {
            address,
            snapshots,
            registry,
            _shutdown: shutdown,
        }
    }

    /// Publishes a new model, as the model task does after a config change.
    fn publish(&self, yaml: &str) {
        let generation = self.snapshots.borrow().generation + 1;
        self.snapshots.send_replace(snapshot(yaml, generation));
    }

    async fn connect(&self) -> Delta {
        let (requests, responses) = ads::delta_stream(self.address).await;
        Delta {
            requests,
            responses,
            node_sent: false,
        }
    }

    /// Waits until the registry shows the newest stream's `ty` in a state `done` accepts.
    async fn status_until(
        &self,
        ty: ResourceType,
        done: impl Fn(&TypeStatus) -> bool,
    ) -> TypeStatus {
        let wait = async {
            loop {
                let status = self
                    .registry
                    .get(NODE_ID)
                    .and_then(|connected| connected.types.get(&ty).cloned());
                if let Some(status) = status
                    && done(&status)
                {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("{ty:?} never reached the expected status"))
    }
}

/// One delta ADS stream, from the proxy's side.
struct Delta {
    requests: mpsc::Sender<DeltaDiscoveryRequest>,
    responses: Streaming<DeltaDiscoveryResponse>,
    node_sent: bool,
}

impl Delta {
    /// Sends a request; the first of the stream carries the node, as Envoy's does.
    async fn send(&mut self, mut request: DeltaDiscoveryRequest) {
        if !self.node_sent {
            request.node = Some(Node {
                id: NODE_ID.to_string(),
                ..Default::default()
            });
            self.node_sent = true;
        }
        self.requests
            .send(request)
            .await
            .expect("the stream is open");
    }

    async fn subscribe(&mut self, ty: ResourceType, names: &[&str]) {
        self.send(request(ty, names, &[])).await;
    }

    async fn ack(&mut self, response: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        })
        .await;
    }

    async fn nack(&mut self, response: &DeltaDiscoveryResponse, message: &str) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            error_detail: Some(RpcStatus {
                code: 3,
                message: message.to_string(),
                details: Vec::new(),
            }),
            ..Default::default()
        })
        .await;
    }

    /// The next response.
    async fn recv(&mut self) -> DeltaDiscoveryResponse {
        tokio::time::timeout(WAIT, self.responses.message())
            .await
            .expect("a response in time")
            .expect("the stream is healthy")
            .expect("the stream is open")
    }

    /// The next response, which must be of `ty`.
    async fn recv_of(&mut self, ty: ResourceType) -> DeltaDiscoveryResponse {
        let response = self.recv().await;
        assert_eq!(ResourceType::from_type_url(&response.type_url), Some(ty));
        response
    }

    /// Asserts that nothing arrives for a while.
    async fn quiet(&mut self) {
        if let Ok(message) = tokio::time::timeout(QUIET, self.responses.message()).await {
            panic!("expected no response, got {message:?}");
        }
    }
}

fn request(ty: ResourceType, subscribe: &[&str], unsubscribe: &[&str]) -> DeltaDiscoveryRequest {
    let names = |names: &[&str]| names.iter().map(|name| name.to_string()).collect();
    DeltaDiscoveryRequest {
        type_url: ty.type_url().to_string(),
        resource_names_subscribe: names(subscribe),
        resource_names_unsubscribe: names(unsubscribe),
        ..Default::default()
    }
}

/// The names and versions a response carries.
fn versions(response: &DeltaDiscoveryResponse) -> BTreeMap<String, String> {
    response
        .resources
        .iter()
        .map(|resource| (resource.name.clone(), resource.version.clone()))
        .collect()
}

fn names(response: &DeltaDiscoveryResponse) -> BTreeSet<&str> {
    response.resources.iter().map(|r| r.name.as_str()).collect()
}

fn removed(response: &DeltaDiscoveryResponse) -> BTreeSet<&str> {
    response
        .removed_resources
        .iter()
        .map(String::as_str)
        .collect()
}

/// The clusters in a CDS response that fetch endpoints over EDS.
fn eds_clusters(response: &DeltaDiscoveryResponse) -> Vec<String> {
    response
        .resources
        .iter()
        .filter_map(|resource| {
            let any = resource.resource.as_ref()?;
            let cluster = Cluster::decode(any.value.as_slice()).expect("a cluster");
            let eds = ClusterDiscoveryType::Type(DiscoveryType::Eds as i32);
            (cluster.cluster_discovery_type == Some(eds)).then_some(cluster.name)
        })
        .collect()
}

/// A stream with CDS and EDS for every EDS cluster subscribed and ACKed.
async fn warmed(rudder: &Rudder) -> (Delta, DeltaDiscoveryResponse, DeltaDiscoveryResponse) {
    let mut stream = rudder.connect().await;
    stream.subscribe(ResourceType::Cluster, &[]).await;
    let cds = stream.recv_of(ResourceType::Cluster).await;
    stream.ack(&cds).await;
    let clusters = eds_clusters(&cds);
    let clusters: Vec<&str> = clusters.iter().map(String::as_str).collect();
    stream.subscribe(ResourceType::Endpoint, &clusters).await;
    let eds = stream.recv_of(ResourceType::Endpoint).await;
    assert_eq!(names(&eds), clusters.iter().copied().collect());
    stream.ack(&eds).await;
    (stream, cds, eds)
}

fn mesh() -> String {
    reviews("http", &["10.1.0.1", "10.1.0.2"]) + &ratings(&["10.2.0.1"])
}

#[tokio::test]
async fn ack_is_recorded_and_nothing_is_resent() {
    let rudder = Rudder::start(&mesh()).await;
    let mut stream = rudder.connect().await;
    stream.subscribe(ResourceType::Cluster, &[]).await;
    let cds = stream.recv_of(ResourceType::Cluster).await;
    let clusters = names(&cds);
    assert!(
        clusters.contains(REVIEWS) && clusters.contains(RATINGS),
        "{clusters:?}"
    );
    assert!(cds.resources.iter().all(|r| r.version.len() == 32));
    stream.ack(&cds).await;
    let status = rudder
        .status_until(ResourceType::Cluster, |s| s.acked.is_some())
        .await;
    assert_eq!(status.acked, status.sent);
    assert_eq!(status.sent.as_ref(), Some(&cds.system_version_info));
    assert_eq!(status.nack, None);

    // The same model again, and a change to nothing this proxy watches: nothing on the wire.
    rudder.publish(&mesh());
    rudder.publish(&(reviews("http", &["10.1.0.1", "10.1.0.3"]) + &ratings(&["10.2.0.1"])));
    stream.quiet().await;
}

#[tokio::test]
async fn nack_is_recorded_without_a_resend_loop() {
    let rudder = Rudder::start(&mesh()).await;
    let mut stream = rudder.connect().await;
    stream.subscribe(ResourceType::Listener, &[]).await;
    let lds = stream.recv_of(ResourceType::Listener).await;
    assert!(!lds.resources.is_empty());
    stream.nack(&lds, "listener rejected").await;
    let status = rudder
        .status_until(ResourceType::Listener, |s| s.nack.is_some())
        .await;
    let nack = status.nack.expect("a NACK");
    assert_eq!(nack.message, "listener rejected");
    assert_eq!(Some(nack.version), status.sent);
    assert_eq!(status.acked, None);
    stream.quiet().await;

    // A model change that leaves the listeners as they were resends nothing.
    rudder.publish(&(reviews("http", &["10.1.0.9"]) + &ratings(&["10.2.0.1"])));
    stream.quiet().await;

    // A change to the listeners sends only what changed; its ACK clears the NACK.
    let before = versions(&lds);
    rudder.publish(&(mesh() + &service("details", "10.96.0.3", "tcp", &["10.3.0.1"])));
    let update = stream.recv_of(ResourceType::Listener).await;
    assert!(!update.resources.is_empty());
    for (name, version) in versions(&update) {
        assert_ne!(
            before.get(&name),
            Some(&version),
            "{name} was resent unchanged"
        );
    }
    stream.ack(&update).await;
    let status = rudder
        .status_until(ResourceType::Listener, |s| s.acked.is_some())
        .await;
    assert_eq!(status.nack, None);
    assert_eq!(status.acked.as_ref(), Some(&update.system_version_info));
}

#[tokio::test]
async fn reconnect_sends_only_what_differs() {
    let rudder = Rudder::start(&mesh()).await;
    let (first, cds, eds) = warmed(&rudder).await;
    drop(first);

    // While the proxy is away: reviews changes protocol (its cluster changes, its endpoints do
    // not) and ratings goes away.
    rudder.publish(&reviews("http2", &["10.1.0.1", "10.1.0.2"]));
    let mut stream = rudder.connect().await;
    let mut known = versions(&cds);
    known.insert(
        "outbound|1||gone.default.svc.cluster.local".into(),
        "0".into(),
    );
    stream
        .send(DeltaDiscoveryRequest {
            initial_resource_versions: known.into_iter().collect(),
            // A reconnecting Envoy lists the clusters it has; CDS stays wildcard.
            ..request(ResourceType::Cluster, &[REVIEWS, RATINGS], &[])
        })
        .await;
    let update = stream.recv_of(ResourceType::Cluster).await;
    assert_eq!(names(&update), BTreeSet::from([REVIEWS]));
    assert_ne!(versions(&update)[REVIEWS], versions(&cds)[REVIEWS]);
    assert_eq!(
        removed(&update),
        BTreeSet::from([RATINGS, "outbound|1||gone.default.svc.cluster.local"])
    );

    // EDS: the endpoints it has are current, but reviews' cluster changed and warms until it
    // gets them, so they go out again; nothing else does.
    stream.ack(&update).await;
    stream
        .send(DeltaDiscoveryRequest {
            initial_resource_versions: versions(&eds).into_iter().collect(),
            ..request(ResourceType::Endpoint, &[REVIEWS], &[])
        })
        .await;
    let endpoints = stream.recv_of(ResourceType::Endpoint).await;
    assert_eq!(names(&endpoints), BTreeSet::from([REVIEWS]));
    assert_eq!(versions(&endpoints)[REVIEWS], versions(&eds)[REVIEWS]);
    // ratings' endpoints, which it had, are gone with their cluster.
    assert_eq!(removed(&endpoints), BTreeSet::from([RATINGS]));
    stream.ack(&endpoints).await;
    stream.quiet().await;
}

#[tokio::test]
async fn unsubscribed_names_get_no_updates() {
    let rudder = Rudder::start(&mesh()).await;
    let (mut stream, _, _) = warmed(&rudder).await;
    stream
        .send(request(ResourceType::Endpoint, &[], &[RATINGS]))
        .await;
    stream.quiet().await;

    // ratings' endpoints change: not sent. reviews' change: only they are sent.
    rudder.publish(&(reviews("http", &["10.1.0.1", "10.1.0.2"]) + &ratings(&["10.2.0.7"])));
    stream.quiet().await;
    rudder.publish(&(reviews("http", &["10.1.0.5"]) + &ratings(&["10.2.0.8"])));
    let update = stream.recv_of(ResourceType::Endpoint).await;
    assert_eq!(names(&update), BTreeSet::from([REVIEWS]));
    stream.ack(&update).await;

    // A name that does not exist is answered with its removal.
    let missing = "outbound|9080||missing.default.svc.cluster.local";
    stream.subscribe(ResourceType::Endpoint, &[missing]).await;
    let answer = stream.recv_of(ResourceType::Endpoint).await;
    assert!(answer.resources.is_empty());
    assert_eq!(removed(&answer), BTreeSet::from([missing]));
}

#[tokio::test]
async fn stale_nonces_are_ignored() {
    let rudder = Rudder::start(&mesh()).await;
    let mut stream = rudder.connect().await;
    stream.subscribe(ResourceType::Endpoint, &[REVIEWS]).await;
    let first = stream.recv_of(ResourceType::Endpoint).await;
    rudder.publish(&(reviews("http", &["10.1.0.3"]) + &ratings(&["10.2.0.1"])));
    let second = stream.recv_of(ResourceType::Endpoint).await;

    // The proxy rejects the first response after the second went out: too late to count.
    stream.nack(&first, "old news").await;
    stream.quiet().await;
    stream.ack(&second).await;
    let status = rudder
        .status_until(ResourceType::Endpoint, |s| s.acked.is_some())
        .await;
    assert_eq!(status.acked.as_ref(), Some(&second.system_version_info));
    assert_eq!(status.nack, None);
}

#[tokio::test]
async fn changed_clusters_are_followed_by_their_endpoints() {
    let rudder = Rudder::start(&mesh()).await;
    let (mut stream, _, eds) = warmed(&rudder).await;

    // reviews' cluster changes (HTTP/2 upstream), its endpoints do not.
    rudder.publish(&(reviews("http2", &["10.1.0.1", "10.1.0.2"]) + &ratings(&["10.2.0.1"])));
    let cds = stream.recv_of(ResourceType::Cluster).await;
    assert_eq!(names(&cds), BTreeSet::from([REVIEWS]));
    let endpoints = stream.recv_of(ResourceType::Endpoint).await;
    assert_eq!(names(&endpoints), BTreeSet::from([REVIEWS]));
    assert_eq!(versions(&endpoints)[REVIEWS], versions(&eds)[REVIEWS]);
    // Listeners are not subscribed here; nothing else follows.
    stream.ack(&cds).await;
    stream.ack(&endpoints).await;
    stream.quiet().await;
}

#[tokio::test]
async fn old_streams_close_and_reconnect_where_they_left_off() {
    let options = XdsOptions {
        max_connection_age: Duration::from_millis(500),
        ..XdsOptions::default()
    };
    let rudder = Rudder::start_with(&mesh(), options).await;
    let (mut stream, cds, _) = warmed(&rudder).await;
    let closed = tokio::time::timeout(WAIT, stream.responses.message())
        .await
        .expect("the stream closes at its maximum age");
    assert_eq!(
        closed.expect_err("closed with a status").code(),
        tonic::Code::Unavailable
    );

    let mut stream = rudder.connect().await;
    stream
        .send(DeltaDiscoveryRequest {
            initial_resource_versions: versions(&cds).into_iter().collect(),
            ..request(ResourceType::Cluster, &[], &[])
        })
        .await;
    let resumed = stream.recv_of(ResourceType::Cluster).await;
    assert!(resumed.resources.is_empty() && resumed.removed_resources.is_empty());
    assert_eq!(resumed.system_version_info, cds.system_version_info);
}

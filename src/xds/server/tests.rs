//! The ADS server against a tonic client: serving, refusing, closing and shutting down streams.

use super::*;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client as ads;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryResponse, DiscoveryResponse};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

const NODE_ID: &str = "sidecar~127.0.0.1~app.default~default.svc.cluster.local";

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
    // Told to reconnect, not merely cut off.
    let status = responses.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(harness.registry.connected().is_empty());
}

#[tokio::test]
async fn shutdown_ends_streams_that_never_sent_a_request() {
    let mut harness = start().await;
    let (_requests, mut responses) = open_stream(&mut harness).await;
    harness.shutdown.send(()).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), harness.server)
        .await
        .expect("the server stops despite a silent stream");
    stopped.unwrap().unwrap();
    let status = responses.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn a_malformed_node_ends_its_stream_only() {
    let mut harness = start().await;
    let (requests, mut responses) = open_stream(&mut harness).await;
    requests.send(cds_request(node(), "", "")).await.unwrap();
    responses.message().await.unwrap().unwrap();

    let malformed = Node {
        id: format!("sidecar~127.0.0.1~{}.default~x", "a".repeat(1 << 20)),
        ..Default::default()
    };
    let (bad, mut refused) = open_stream(&mut harness).await;
    bad.send(cds_request(Some(malformed), "", ""))
        .await
        .unwrap();
    let status = refused.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("over the limit"), "{status:?}");

    // The stream opened before and one opened after are served as usual.
    assert!(harness.registry.get(NODE_ID).is_some());
    let (later, mut served) = open_stream(&mut harness).await;
    later.send(cds_request(node(), "", "")).await.unwrap();
    served.message().await.unwrap().unwrap();
    assert_eq!(harness.registry.connected().len(), 2);
    drop(requests);
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

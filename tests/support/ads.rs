//! An in-process ADS client's side of the wire tests: the snapshot `rudder serve` would publish
//! for some YAML, and raw ADS streams to an xDS server. It owns no server and checks nothing
//! about the responses; that is each test's business.

use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use rudder::diagnostic::Origin;
use rudder::inputs::yaml::parse_documents;
use rudder::inputs::{Decoded, Entry, Inputs, decode};
use rudder::model::{LastGood, build};
use rudder::xds::Snapshot;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

/// The model `rudder serve` would build from `yaml` (every document a kind rudder reads, read as
/// the file `test.yaml`), as the snapshot it would publish with its inputs and config errors.
pub fn snapshot(yaml: &str, generation: u64) -> Arc<Snapshot> {
    let mut inputs = Inputs::default();
    for document in parse_documents(yaml).expect("test YAML parses") {
        let Decoded::Object(key, object) = decode(document.value, "default").expect("decodes")
        else {
            panic!("a kind rudder does not read");
        };
        let origin = Origin::File {
            path: "test.yaml".into(),
            line: document.line,
        };
        inputs.insert(key, Entry { origin, object });
    }
    let built = build(&inputs, &LastGood::default());
    Arc::new(Snapshot {
        model: Arc::new(built.model),
        errors: built.errors,
        generation,
        inputs: Arc::new(inputs),
        ..Snapshot::default()
    })
}

async fn client(xds: SocketAddr) -> AggregatedDiscoveryServiceClient<Channel> {
    AggregatedDiscoveryServiceClient::connect(format!("http://{xds}"))
        .await
        .expect("connect")
}

/// A new delta ADS stream to the xDS server at `xds`: where to send requests, and the responses.
pub async fn delta_stream(
    xds: SocketAddr,
) -> (
    mpsc::Sender<DeltaDiscoveryRequest>,
    Streaming<DeltaDiscoveryResponse>,
) {
    let (requests, outgoing) = mpsc::channel(8);
    let responses = client(xds)
        .await
        .delta_aggregated_resources(ReceiverStream::new(outgoing))
        .await
        .expect("a delta stream")
        .into_inner();
    (requests, responses)
}

/// A new state-of-the-world ADS stream to the xDS server at `xds`.
pub async fn sotw_stream(
    xds: SocketAddr,
) -> (mpsc::Sender<DiscoveryRequest>, Streaming<DiscoveryResponse>) {
    let (requests, outgoing) = mpsc::channel(8);
    let responses = client(xds)
        .await
        .stream_aggregated_resources(ReceiverStream::new(outgoing))
        .await
        .expect("a stream")
        .into_inner();
    (requests, responses)
}

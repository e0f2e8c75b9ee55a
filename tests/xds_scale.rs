//! Pushes at scale, through `serve_xds` on 127.0.0.1:0 and in-process ADS clients that subscribe
//! and ACK the way Envoy does (benches/support/ads_client.rs): an endpoint edit pushes EDS alone;
//! a proxy that never reads holds back no one else and later gets only the newest config; and
//! hundreds of streams, state of the world and delta, all converge after an edit.

#[path = "../benches/support/ads_client.rs"]
mod ads_client;
#[path = "../benches/support/mesh.rs"]
mod mesh;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ads_client::Received;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use mesh::{MeshSpec, PORT};
use rudder::metrics::Metrics;
use rudder::translate::ResourceType;
use rudder::xds::{ConnectedProxy, Registry, Snapshot, XdsOptions, serve_xds};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

/// A functional bound, generous for a loaded CI machine; how long things took is printed.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(30);
/// How long a stream must stay silent to count as having nothing more to send.
const QUIET: Duration = Duration::from_millis(300);

/// rudder's xDS server alone, fed snapshots by the test.
struct Server {
    address: SocketAddr,
    snapshots: watch::Sender<Arc<Snapshot>>,
    registry: Registry,
    _shutdown: oneshot::Sender<()>,
}

impl Server {
    async fn start(spec: MeshSpec, options: XdsOptions) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("an address");
        let (snapshots, receiver) = watch::channel(spec.snapshot(1));
        let registry = Registry::default();
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(serve_xds(
            listener,
            receiver,
            Arc::new(Metrics::new()),
            registry.clone(),
            // These clients connect by the hundred at once and, unlike Envoy, do not retry a
            // stream refused for the rate of new streams.
            XdsOptions {
                stream_rate: None,
                ..options
            },
            async move {
                let _ = stop.await;
            },
        ));
        Server {
            address,
            snapshots,
            registry,
            _shutdown: shutdown,
        }
    }

    /// Publishes the model of `spec`, as the pipeline does after a change.
    fn publish(&self, spec: MeshSpec) {
        let generation = self.snapshots.borrow().generation + 1;
        self.snapshots.send_replace(spec.snapshot(generation));
    }

    /// Starts client `i` on a connection of its own; the client counts what it receives.
    async fn client(&self, i: usize, app: &str, delta: bool) -> Arc<Received> {
        let node = ads_client::node(&ip(i), &format!("client-{i}"), &[("app", app)]);
        let channel = ads_client::connect(self.address).await;
        let received = Arc::new(Received::default());
        let counting = received.clone();
        tokio::spawn(async move {
            if let Err(status) = ads_client::run(channel, node, delta, counting).await {
                panic!("client {i} failed: {status}");
            }
        });
        received
    }

    /// Waits until `count` proxies are connected and `done` holds for each; how long that took.
    async fn converged(&self, count: usize, done: impl Fn(&ConnectedProxy) -> bool) -> Duration {
        let start = Instant::now();
        let wait = async {
            loop {
                let connected = self.registry.connected();
                if connected.len() == count && connected.iter().all(&done) {
                    return start.elapsed();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(CONVERGENCE_LIMIT, wait)
            .await
            .unwrap_or_else(|_| panic!("{count} proxies did not converge"))
    }

    /// The CDS version every connected proxy has ACKed; panics if they differ.
    fn acked_cds(&self) -> String {
        let versions: std::collections::BTreeSet<Option<String>> = self
            .registry
            .connected()
            .iter()
            .map(|proxy| cds(proxy).acked.clone())
            .collect();
        assert_eq!(versions.len(), 1, "proxies disagree: {versions:?}");
        versions
            .into_iter()
            .next()
            .flatten()
            .expect("an ACKed CDS version")
    }
}

/// Whether a proxy has ACKed the last response of every type.
fn synced(proxy: &ConnectedProxy) -> bool {
    proxy.types.len() == 4
        && proxy
            .types
            .values()
            .all(|status| status.acked.is_some() && status.acked == status.sent)
}

fn ip(i: usize) -> String {
    format!("10.{}.{}.{}", 128 + i / 65536, (i / 256) % 256, i % 256)
}

fn cds(proxy: &ConnectedProxy) -> &rudder::xds::TypeStatus {
    &proxy.types[&ResourceType::Cluster]
}

fn eds(proxy: &ConnectedProxy) -> &rudder::xds::TypeStatus {
    &proxy.types[&ResourceType::Endpoint]
}

async fn endpoint_edits_push_eds_only(delta: bool) {
    let spec = MeshSpec::new(20);
    let server = Server::start(spec, XdsOptions::default()).await;
    let received = server.client(0, "client", delta).await;
    server.converged(1, synced).await;
    let eds_before = eds(&server.registry.connected()[0]).acked.clone();
    let before = received.counts();

    server.publish(MeshSpec {
        extra_endpoints: 1,
        ..spec
    });
    server
        .converged(1, |proxy| synced(proxy) && eds(proxy).acked != eds_before)
        .await;
    tokio::time::sleep(QUIET).await;
    let after = received.counts();
    // One EDS response, nothing else.
    assert_eq!(
        after.map(|n| n as i64),
        [before[0], before[1] + 1, before[2], before[3]].map(|n| n as i64),
        "responses by type (CDS, EDS, LDS, RDS)"
    );
    // Both protocols send only svc-0's assignment (the new endpoint has no Pod, so no subset has
    // it), not the other 79 the proxy subscribes to.
    assert_eq!(received.last(ResourceType::Endpoint), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_endpoint_edits_push_eds_only() {
    endpoint_edits_push_eds_only(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_endpoint_edits_push_eds_only() {
    endpoint_edits_push_eds_only(true).await;
}

/// The EDS names of `spec`'s clusters.
fn eds_names(spec: &MeshSpec) -> Vec<String> {
    (0..spec.services)
        .flat_map(|s| {
            let host = format!("svc-{s}.{}.svc.cluster.local", mesh::NAMESPACE);
            ["", "v0", "v1", "v2"].map(|subset| format!("outbound|{PORT}|{subset}|{host}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_never_reads_holds_back_no_one() {
    let mut spec = MeshSpec::new(200);
    let server = Server::start(spec, XdsOptions::default()).await;

    // A proxy that subscribes to everything and then never reads, on a connection of its own
    // with small flow-control windows, so that what rudder sends backs up fast.
    let channel = Endpoint::from_shared(format!("http://{}", server.address))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let (requests, outgoing) = mpsc::channel(8);
    let subscribe = |ty: ResourceType, names: Vec<String>| DiscoveryRequest {
        type_url: ty.type_url().to_string(),
        resource_names: names,
        ..Default::default()
    };
    let stuck_node = ads_client::node(&ip(999), "stuck", &[("app", "client")]);
    let stuck_id = stuck_node.id.clone();
    for request in [
        DiscoveryRequest {
            node: Some(stuck_node),
            ..subscribe(ResourceType::Cluster, Vec::new())
        },
        subscribe(ResourceType::Endpoint, eds_names(&spec)),
        subscribe(ResourceType::Listener, Vec::new()),
        subscribe(ResourceType::Route, vec![PORT.to_string()]),
    ] {
        requests.send(request).await.unwrap();
    }
    let mut stuck = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .stream_aggregated_resources(ReceiverStream::new(outgoing))
        .await
        .unwrap()
        .into_inner();

    // Proxies that read, half of them delta.
    const READERS: usize = 20;
    for i in 0..READERS {
        server.client(i, "client", i % 2 == 1).await;
    }
    let everyone = READERS + 1;
    // Every proxy but the stuck one (which never ACKs) has ACKed a CDS other than `before`.
    let readers_past = |before: Option<String>| {
        let stuck_id = stuck_id.clone();
        move |proxy: &ConnectedProxy| {
            proxy.proxy.id == stuck_id || (synced(proxy) && cds(proxy).acked != before)
        }
    };
    server.converged(everyone, readers_past(None)).await;

    // Every edit adds a subset of svc-0: new CDS and EDS for everyone.
    const EDITS: usize = 25;
    let start = Instant::now();
    for _ in 0..EDITS {
        let before = server
            .registry
            .connected()
            .into_iter()
            .find(|proxy| proxy.proxy.id != stuck_id)
            .and_then(|proxy| cds(&proxy).acked.clone());
        spec.extra_subsets += 1;
        server.publish(spec);
        server.converged(everyone, readers_past(before)).await;
    }
    eprintln!(
        "{EDITS} edits, each ACKed by {READERS} proxies while one does not read: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let latest = server
        .registry
        .connected()
        .into_iter()
        .find(|proxy| proxy.proxy.id != stuck_id)
        .and_then(|proxy| cds(&proxy).acked.clone())
        .expect("a CDS version");
    let stuck_status = server
        .registry
        .get(&stuck_id)
        .expect("the stuck proxy is connected");
    assert_ne!(
        cds(&stuck_status).sent.as_ref(),
        Some(&latest),
        "rudder could not queue everything for the stuck proxy: it must have backed up"
    );

    // Once it reads again, it gets the newest config, without every edit in between.
    let mut cds_responses = 0;
    let drained = async {
        loop {
            let response = stuck.message().await.unwrap().expect("the stream is open");
            if ResourceType::from_type_url(&response.type_url) == Some(ResourceType::Cluster) {
                cds_responses += 1;
                if response.version_info == latest {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(CONVERGENCE_LIMIT, drained)
        .await
        .expect("the stuck proxy catches up");
    eprintln!(
        "the stuck proxy, reading again, got {cds_responses} CDS responses for {EDITS} edits"
    );
    assert!(
        cds_responses < EDITS,
        "{cds_responses} CDS responses for {EDITS} edits: pending pushes are not coalesced"
    );
    drop(requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_proxies_converge_after_an_edit() {
    const SOTW: usize = 300;
    const DELTA: usize = 60;
    let spec = MeshSpec::new(100);
    // A low bound on concurrent pushes, so that streams wait for each other.
    let options = XdsOptions {
        push_concurrency: 8,
        ..XdsOptions::default()
    };
    let server = Server::start(spec, options).await;
    let start = Instant::now();
    for i in 0..SOTW + DELTA {
        // Ten workloads: ten translations per model.
        let app = format!("app-{}", i % 10);
        server.client(i, &app, i >= SOTW).await;
    }
    server.converged(SOTW + DELTA, synced).await;
    eprintln!(
        "{SOTW} SotW and {DELTA} delta proxies connected and ACKed everything in {:.2} s",
        start.elapsed().as_secs_f64()
    );

    let before = server.acked_cds();
    let start = Instant::now();
    server.publish(MeshSpec {
        extra_subsets: 1,
        ..spec
    });
    server
        .converged(SOTW + DELTA, |proxy| {
            synced(proxy) && cds(proxy).acked.as_ref() != Some(&before)
        })
        .await;
    eprintln!(
        "an edit reached and was ACKed by {} proxies in {:.2} s",
        SOTW + DELTA,
        start.elapsed().as_secs_f64()
    );
    assert_ne!(server.acked_cds(), before);
}

//! A stuck proxy: one ADS client subscribes, then never reads, on a connection with small
//! HTTP/2 windows so that what rudder sends backs up; a few healthy clients read and ACK. The
//! real binary runs with `--xds-send-timeout` (istiod's `PILOT_XDS_SEND_TIMEOUT`): edits must
//! reach the healthy clients in normal time however full the stuck one's queue is, and once a
//! response has waited the send timeout for room, rudder closes the stuck proxy's connection.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use rudder::translate::ResourceType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::ads_client::{self, Received};
use crate::harness;
use crate::mesh::{self, ServiceShape};
use crate::server::ServerProcess;
use crate::sidecar::streamz;
use crate::support::mesh::wait_until;

/// Large enough that one CDS response is far beyond the stuck client's 64 KiB window.
const SERVICES: usize = 300;
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// More edits than the responses rudder queues for one stream (16) and HTTP/2 holds.
const EDITS: usize = 24;
/// A functional bound for one edit to reach every healthy client, generous for a busy machine.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(20);
const STUCK_ID: &str = "sidecar~10.200.0.1~stuck.bench~bench.svc.cluster.local";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_proxy_delays_no_one_and_is_dropped_after_the_send_timeout() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for index in 0..SERVICES {
        mesh::write_service(dir.path(), index, ServiceShape::new(1)).expect("write the mesh");
    }
    let timeout = format!("{}s", SEND_TIMEOUT.as_secs());
    let server = ServerProcess::start_rudder(dir.path(), &["--xds-send-timeout", &timeout]);
    let admin = server.admin.expect("rudder's admin address");

    // The stuck proxy: subscribes to clusters, listeners and the port's routes, reads nothing.
    let channel = Endpoint::from_shared(format!("http://{}", server.xds))
        .expect("a URI")
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .expect("connect");
    let (requests, outgoing) = mpsc::channel(8);
    let subscribe = |ty: ResourceType, names: Vec<String>| DiscoveryRequest {
        type_url: ty.type_url().to_string(),
        resource_names: names,
        ..Default::default()
    };
    let stuck_node = ads_client::node("10.200.0.1", "stuck", &[("app", "client")]);
    assert_eq!(stuck_node.id, STUCK_ID);
    for request in [
        DiscoveryRequest {
            node: Some(stuck_node),
            ..subscribe(ResourceType::Cluster, Vec::new())
        },
        subscribe(ResourceType::Listener, Vec::new()),
        subscribe(ResourceType::Route, vec![mesh::PORT.to_string()]),
    ] {
        requests.send(request).await.expect("queue a request");
    }
    let mut stuck = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .stream_aggregated_resources(ReceiverStream::new(outgoing))
        .await
        .expect("a stream")
        .into_inner();

    // Healthy proxies, state of the world and delta, each on a connection of its own.
    let mut healthy = Vec::new();
    let failures = Arc::new(Mutex::new(Vec::new()));
    for i in 0..4 {
        let node = ads_client::node(
            &format!("10.200.1.{i}"),
            &format!("healthy-{i}"),
            &[("app", "client")],
        );
        let channel = ads_client::connect(server.xds).await;
        let received = Arc::new(Received::default());
        let counting = received.clone();
        let failures = failures.clone();
        tokio::spawn(async move {
            if let Err(status) = ads_client::run(channel, node, i % 2 == 1, counting).await {
                let mut failures = failures.lock().unwrap_or_else(PoisonError::into_inner);
                failures.push(format!("healthy client {i}: {status}"));
            }
        });
        healthy.push(received);
    }
    let initial = harness::settle(
        &healthy,
        Instant::now(),
        CONVERGENCE_LIMIT,
        |_, received| received.counts().iter().all(|count| *count > 0),
    )
    .await;
    assert!(
        initial.is_some(),
        "the healthy proxies never got their config"
    );
    let stuck_connected = || async {
        streamz(admin)
            .await
            .iter()
            .any(|stream| stream.proxy_id == STUCK_ID)
    };
    assert!(stuck_connected().await, "the stuck proxy is connected");

    // Every edit adds a service: new clusters and routes for everyone. Two more edits once the
    // stuck proxy is gone.
    let mut slowest = Duration::ZERO;
    let mut dropped_after_edit = None;
    for edit in 0..EDITS {
        if dropped_after_edit.is_some_and(|dropped| edit > dropped + 2) {
            break;
        }
        let t0 = Instant::now();
        mesh::write_service(dir.path(), SERVICES + edit, ServiceShape::new(1))
            .expect("add a service");
        let converged = harness::settle(&healthy, t0, CONVERGENCE_LIMIT, |_, received| {
            received.last_at().is_some_and(|last| last > t0)
        })
        .await
        .unwrap_or_else(|| panic!("edit {edit} did not reach every healthy proxy"));
        slowest = slowest.max(converged);
        if edit == 0 {
            assert!(
                stuck_connected().await,
                "the stuck proxy was dropped before its queue could fill"
            );
        }
        if dropped_after_edit.is_none() && !stuck_connected().await {
            dropped_after_edit = Some(edit);
        }
    }
    let gone = wait_until(SEND_TIMEOUT + CONVERGENCE_LIMIT, || async {
        !stuck_connected().await
    })
    .await;
    assert!(
        gone.is_some(),
        "the stuck proxy is still connected after {EDITS} edits and the send timeout"
    );
    // Its TCP connection is gone too, while it still reads nothing: a stream that merely ended
    // would keep it, with the responses in HTTP/2 buffers, for as long as the proxy lives.
    let disconnected = wait_until(CONVERGENCE_LIMIT, || async {
        connections_to(server.xds.port()) == healthy.len()
    })
    .await;
    assert!(
        disconnected.is_some(),
        "{} connections to rudder's xDS port for {} healthy proxies",
        connections_to(server.xds.port()),
        healthy.len()
    );
    let closed = tokio::time::timeout(CONVERGENCE_LIMIT, async {
        // What was in flight, then the end.
        loop {
            match stuck.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => break "ended".to_string(),
                Err(status) => break status.to_string(),
            }
        }
    })
    .await
    .expect("the stuck proxy's stream is closed, not just forgotten");
    eprintln!(
        "edits reached {} healthy proxies in at most {} ms each; the stuck proxy was dropped \
         after edit {:?} ({closed})",
        healthy.len(),
        slowest.as_millis(),
        dropped_after_edit
    );
    // The healthy proxies are all still there.
    let streams = streamz(admin).await;
    assert_eq!(streams.len(), healthy.len(), "{streams:?}");
    let failures = failures.lock().unwrap_or_else(PoisonError::into_inner);
    assert!(failures.is_empty(), "{failures:?}");
    drop(requests);
}

/// This machine's established IPv4 TCP connections whose remote port is `port`: the clients'
/// ends of their connections to a server on 127.0.0.1:`port`.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let remote_port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Fields: slot, local address, remote address, state (01: established), ...
            fields.len() > 3 && fields[2].ends_with(&remote_port) && fields[3] == "01"
        })
        .count()
}

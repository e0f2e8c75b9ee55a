//! SIGKILL under traffic: a stock Envoy sidecar routes requests to real upstreams without pause
//! while `rudder serve` is killed, stays down, and comes back on the same port with a rule edited
//! meanwhile. No request may fail; the edit must reach traffic once Envoy has resynced.

use std::time::{Duration, Instant};

use rudder::bootstrap::AdsApiType;

use crate::server::ServerProcess;
use crate::sidecar::{
    Net, Reviews, Traffic, reviews_upstream, sidecar_metadata, sidecar_synced, streamz,
};
use crate::support::envoy_process::EnvoyProcess;
use crate::support::in_both_modes;
use crate::support::mesh::{NODE_ID, wait_until};

/// Generous for a busy 2-core machine: Envoy retries its ADS stream with a jittered backoff.
const LIMIT: Duration = Duration::from_secs(30);
/// How long rudder stays dead while traffic goes on.
const DOWN: Duration = Duration::from_secs(3);

async fn killed_under_traffic_and_restarted(api_type: AdsApiType) {
    let net = match api_type {
        AdsApiType::Grpc => Net(240),
        AdsApiType::DeltaGrpc => Net(241),
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let _reviews = Reviews::start(net, dir.path(), "v1").await;
    let mut rudder = ServerProcess::start_rudder(dir.path(), &[]);
    let admin = rudder.admin.expect("rudder's admin address");
    let envoy = EnvoyProcess::start(NODE_ID, sidecar_metadata(), rudder.xds, api_type);
    let routed = wait_until(LIMIT, || async {
        reviews_upstream(net.port()).await.as_deref() == Some("reviews-v1")
    })
    .await;
    assert!(
        routed.is_some(),
        "Envoy never routed reviews to v1; its log:\n{}",
        envoy.log()
    );

    let mut traffic = Traffic::start(net.port());
    let flowing = wait_until(LIMIT, || async { traffic.answered() >= 20 }).await;
    assert!(flowing.is_some(), "no traffic: {}", traffic.summary());

    rudder.kill();
    let answered_before = traffic.answered();
    tokio::time::sleep(DOWN).await;
    assert!(
        traffic.answered() > answered_before,
        "no request was answered while rudder was down: {}",
        traffic.summary()
    );
    // The edit is made while no control plane runs: only the new process can carry it.
    Reviews::route_default_to(dir.path(), "v2");

    let restarted = Instant::now();
    rudder.restart();
    let port_open = restarted.elapsed();
    // Envoy retries its stream with a jittered backoff: when it comes back is its business; how
    // long rudder then takes is rudder's.
    let reconnected = wait_until(LIMIT, || async {
        streamz(admin)
            .await
            .iter()
            .any(|stream| stream.proxy_id == NODE_ID)
    })
    .await;
    assert!(
        reconnected.is_some(),
        "Envoy never reconnected; its log:\n{}",
        envoy.log()
    );
    let reconnected = restarted.elapsed();
    let acked = wait_until(LIMIT, || sidecar_synced(admin)).await;
    assert!(
        acked.is_some(),
        "Envoy did not resync with the restarted rudder; its log:\n{}",
        envoy.log()
    );
    let acked = restarted.elapsed();
    let edited = wait_until(LIMIT, || async { traffic.last_upstream() == "reviews-v2" }).await;
    assert!(
        edited.is_some(),
        "the edit never reached traffic: {}",
        traffic.summary()
    );
    let edited = restarted.elapsed();
    // A little more traffic on the new config, then stop.
    let answered = traffic.answered();
    wait_until(LIMIT, || async { traffic.answered() >= answered + 20 }).await;
    traffic.stop().await;
    eprintln!(
        "{api_type:?}: restart -> xDS port open {} ms, -> Envoy reconnected {} ms, \
         -> Envoy ACKed every type {} ms, -> edit in traffic {} ms; traffic: {}",
        port_open.as_millis(),
        reconnected.as_millis(),
        acked.as_millis(),
        edited.as_millis(),
        traffic.summary()
    );
    assert_eq!(
        traffic.failed(),
        0,
        "requests failed while rudder was killed and restarted: {}",
        traffic.summary()
    );
}

in_both_modes!(killed_under_traffic_and_restarted);

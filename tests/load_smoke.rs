//! A smoke-sized run of the load harness (`benches/load`): `rudder serve` as its own process on a
//! generated ServiceEntry mesh, simulated proxies in both ADS modes (in four label sets, so rudder
//! translates for several proxy shapes), and the three timed edits. It checks that every proxy
//! gets its config and every edit reaches every proxy; the figures are printed (`--nocapture`),
//! the full-sized runs are `cargo bench --bench load`.

#[path = "../benches/support/ads_client.rs"]
mod ads_client;
#[path = "../benches/load/harness.rs"]
mod harness;
#[path = "../benches/load/mesh.rs"]
mod mesh;
#[path = "../benches/load/server.rs"]
mod server;

use std::time::Duration;

use harness::RunSpec;
use server::ServerKind;

async fn smoke(delta: bool) {
    let spec = RunSpec {
        server: ServerKind::Rudder,
        services: 20,
        endpoints: 3,
        proxies: 10,
        delta,
        sidecar: false,
        debounce: None,
        limit: Duration::from_secs(30),
        label_sets: 4,
        loopback_listeners: false,
        envoys: false,
    };
    let report = harness::run(spec).await;
    println!("{report:?}");
    assert_eq!(report.spec.proxies, spec.proxies);
    assert!(report.initial > Duration::ZERO && report.initial_bytes_per_proxy > 0);
    assert!(report.bytes_sent >= report.initial_bytes_per_proxy * spec.proxies as u64);
    // The server process was measured.
    assert!(report.cpu_seconds > 0.0 && report.peak_rss > 0);
    for edit in &report.edits {
        assert_eq!(edit.reached, spec.proxies, "{edit:?}");
        assert!(edit.bytes_per_proxy > 0, "{edit:?}");
        assert!(edit.p50 <= edit.p99 && edit.p99 <= edit.max, "{edit:?}");
        assert!(
            edit.wire.is_some_and(|wire| wire > Duration::ZERO),
            "{edit:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_smoke_run() {
    smoke(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_smoke_run() {
    smoke(true).await;
}

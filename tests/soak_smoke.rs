//! A smoke-sized soak (`benches/soak`), so the hour-long bench does not rot: 20 services, 10
//! proxies, 12 s of churn sampled every 3 s. It checks that rows were sampled, rudder stayed up,
//! debouncing kept builds at or below changes and every proxy still receives at the end; the
//! rows and summary are printed (`--nocapture`), the real run is `cargo bench --bench soak`.

#[path = "../benches/support/ads_client.rs"]
mod ads_client;
#[path = "../benches/soak/churn.rs"]
mod churn;
#[path = "../benches/soak/fleet.rs"]
mod fleet;
#[path = "../benches/soak/harness.rs"]
mod harness;
#[path = "../benches/load/mesh.rs"]
mod mesh;
#[path = "../benches/soak/sample.rs"]
mod sample;
#[path = "../benches/load/server.rs"]
mod server;

use std::time::Duration;

use harness::{Churns, SoakSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_smoke_run() {
    let spec = SoakSpec {
        services: 20,
        proxies: 10,
        duration: Duration::from_secs(12),
        sample_every: Duration::from_secs(3),
        debounce: None,
        seed: 1,
        limit: Duration::from_secs(60),
        churns: Churns::ALL,
        delta: None,
    };
    let report = harness::run(spec).await;
    println!("{}", report.summary());
    assert!(report.samples.len() >= 4, "{report:?}");
    assert!(report.failures().is_empty(), "{}", report.summary());
    let last = report.samples.last().expect("samples");
    assert!(last.changes > 0 && last.rss > 0 && last.fds > 0, "{last:?}");
    let scraped = last.scraped.expect("rudder's metrics answered");
    assert_eq!(scraped.connected, spec.proxies as f64, "{scraped:?}");
}

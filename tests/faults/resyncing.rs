//! Resync after a crash with 1 and 100 proxies (in-process ADS clients that reconnect as Envoy
//! does) against the real binary: SIGKILL, restart on the same port, and every proxy must hold
//! its whole config again within a generous bound. The time is printed; 1000 proxies is
//! `cargo bench --bench resync`.

use std::time::Duration;

use crate::resync::{self, ResyncSpec};

async fn resync(proxies: usize, delta: bool) {
    let spec = ResyncSpec {
        services: 50,
        proxies,
        delta,
        limit: Duration::from_secs(40),
    };
    let report = resync::run(spec).await;
    eprintln!(
        "{} proxies ({}), {} services: initial {} ms; after SIGKILL, restart -> xDS port open {} ms, \
         -> all resynced {} ms",
        proxies,
        if delta { "delta" } else { "sotw" },
        spec.services,
        report.initial.as_millis(),
        report.startup.as_millis(),
        report.resync.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_proxy_resyncs_after_a_restart() {
    resync(1, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_proxies_resync_after_a_restart() {
    resync(100, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_delta_proxies_resync_after_a_restart() {
    resync(100, true).await;
}

//! Faults with real processes: `rudder serve` killed with SIGKILL under traffic and started
//! again, proxies resyncing after a restart, two replicas on one config directory with Envoy
//! failing over between them, and a proxy that stops reading its ADS stream. Envoy is the stock
//! binary; the many-proxy cases use in-process ADS clients (`benches/support/ads_client.rs`).
//! Each test has its own loopback addresses `127.0.NET.x` and port `19000 + NET` (NET 240 to
//! 245) and rudder on free ports, so the tests run in parallel.

mod support;

#[path = "../benches/support/ads_client.rs"]
mod ads_client;
#[path = "../benches/load/harness.rs"]
mod harness;
#[path = "../benches/load/mesh.rs"]
mod mesh;
#[path = "../benches/support/resync.rs"]
mod resync;
#[path = "../benches/load/server.rs"]
mod server;

#[path = "faults/replicas.rs"]
mod replicas;
#[path = "faults/restart.rs"]
mod restart;
#[path = "faults/resyncing.rs"]
mod resyncing;
#[path = "faults/sidecar.rs"]
mod sidecar;
#[path = "faults/stuck.rs"]
mod stuck;

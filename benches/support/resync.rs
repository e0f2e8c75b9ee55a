//! Resync after a crash: `rudder serve` as a process on the load harness's generated mesh,
//! `proxies` in-process ADS clients (`ads_client`) that reconnect like Envoy when their stream
//! ends, then SIGKILL and a restart on the same address, timed until every proxy holds its whole
//! config again. Shared by `benches/resync.rs` (1000 proxies) and `tests/faults.rs` (1 and 100).
//! It measures and reports; what counts as fast enough is the caller's business.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

use super::ads_client::{self, Received};
use super::harness;
use super::mesh::{self, ServiceShape};
use super::server::ServerProcess;

/// How long a client waits before connecting again, like Envoy's first retry (which it
/// jitters and backs off; a fixed short wait keeps the measurement about the server).
const RECONNECT_AFTER: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct ResyncSpec {
    pub services: usize,
    pub proxies: usize,
    pub delta: bool,
    /// A phase that takes longer fails the run.
    pub limit: Duration,
}

#[derive(Debug, Clone)]
pub struct ResyncReport {
    pub spec: ResyncSpec,
    /// From the first connection until every proxy held its config.
    pub initial: Duration,
    /// From starting the new process until its xDS port accepted connections.
    pub startup: Duration,
    /// From starting the new process until every proxy held its whole config again (the last
    /// response of the resync).
    pub resync: Duration,
}

/// Clients that reconnect whenever their stream ends; stopped when dropped.
pub struct ReconnectingClients {
    pub received: Vec<Arc<Received>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for ReconnectingClients {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl ReconnectingClients {
    /// `proxies` clients of `xds` (sidecars `client-I` with `app: client`), each on a connection
    /// of its own.
    pub fn start(xds: SocketAddr, proxies: usize, delta: bool) -> ReconnectingClients {
        let mut received = Vec::with_capacity(proxies);
        let mut tasks = Vec::with_capacity(proxies);
        for i in 0..proxies {
            let ip = format!("10.{}.{}.{}", 128 + i / 65536, (i / 256) % 256, i % 256);
            let node = ads_client::node(&ip, &format!("client-{i}"), &[("app", "client")]);
            let counts = Arc::new(Received::default());
            received.push(counts.clone());
            tasks.push(tokio::spawn(async move {
                let endpoint = Endpoint::from_shared(format!("http://{xds}")).expect("a URI");
                loop {
                    // A refused connection or an ended stream: try again, as Envoy does.
                    if let Ok(channel) = endpoint.connect().await {
                        let _ = ads_client::run(channel, node.clone(), delta, counts.clone()).await;
                    }
                    tokio::time::sleep(RECONNECT_AFTER).await;
                }
            }));
        }
        ReconnectingClients { received, tasks }
    }

    /// Waits until every client has received every type since `before` (responses per type, as
    /// [`Received::counts`]) and all have been quiet for [`harness::QUIET`]; the time from
    /// `since` to the last response.
    pub async fn resynced(
        &self,
        before: &[[usize; 4]],
        since: Instant,
        limit: Duration,
    ) -> Option<Duration> {
        harness::settle(&self.received, since, limit, |index, received| {
            received
                .counts()
                .iter()
                .zip(before[index])
                .all(|(now, then)| *now > then)
        })
        .await
    }

    /// Responses per type received so far, per client.
    pub fn counts(&self) -> Vec<[usize; 4]> {
        self.received.iter().map(|client| client.counts()).collect()
    }
}

/// One resync run: the mesh on disk, rudder, the clients, their initial config, SIGKILL, restart.
pub async fn run(spec: ResyncSpec) -> ResyncReport {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for index in 0..spec.services {
        mesh::write_service(dir.path(), index, ServiceShape::new(3)).expect("write the mesh");
    }
    let mut server = ServerProcess::start_rudder(dir.path(), &[]);
    let start = Instant::now();
    let clients = ReconnectingClients::start(server.xds, spec.proxies, spec.delta);
    let none = vec![[0; 4]; spec.proxies];
    let initial = clients
        .resynced(&none, start, spec.limit)
        .await
        .unwrap_or_else(|| panic!("{} proxies never got their config", spec.proxies));

    let before = clients.counts();
    server.kill();
    let restarted = Instant::now();
    server.restart();
    let startup = restarted.elapsed();
    let resync = clients
        .resynced(&before, restarted, spec.limit)
        .await
        .unwrap_or_else(|| {
            let behind = clients
                .counts()
                .iter()
                .zip(&before)
                .filter(|(now, then)| now.iter().zip(*then).any(|(now, then)| now <= then))
                .count();
            panic!(
                "{behind} of {} proxies did not get their whole config again",
                spec.proxies
            )
        });
    ResyncReport {
        spec,
        initial,
        startup,
        resync,
    }
}

//! The soak's proxies: in-process ADS clients (`benches/support/ads_client.rs`), half state of
//! the world and half delta, each on a connection of its own, some replaced every second by new
//! ones with node ids never seen before, so rudder must let go of the old proxies' state. A
//! stream that ends is opened again after a short wait, as Envoy does (rudder closes streams at
//! their maximum age). It connects and counts; it does not judge what the clients received.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tonic::transport::Endpoint;

use super::ads_client::{self, Received};
use super::churn::Rng;

/// How long a proxy waits before connecting again, like Envoy's first retry.
const RECONNECT_AFTER: Duration = Duration::from_millis(100);

struct Proxy {
    delta: bool,
    received: Arc<Received>,
    task: JoinHandle<()>,
}

pub struct Fleet {
    xds: SocketAddr,
    proxies: Vec<Proxy>,
    /// The next node id's number: ids are never reused.
    next_id: usize,
    /// Streams the server closed cleanly (their maximum age), each opened again.
    closed: Arc<AtomicUsize>,
    /// Connections refused and streams that failed.
    failed: Arc<AtomicUsize>,
    rng: Rng,
}

impl Fleet {
    /// `proxies` clients of `xds`, all delta or all SotW as `delta` says, or (`None`) odd ones on
    /// delta.
    pub fn connect(xds: SocketAddr, proxies: usize, delta: Option<bool>, seed: u64) -> Fleet {
        let mut fleet = Fleet {
            xds,
            proxies: Vec::with_capacity(proxies),
            next_id: 0,
            closed: Arc::default(),
            failed: Arc::default(),
            rng: Rng::new(seed),
        };
        for i in 0..proxies {
            fleet.add(delta.unwrap_or(i % 2 == 1));
        }
        fleet
    }

    fn add(&mut self, delta: bool) {
        let id = self.next_id;
        self.next_id += 1;
        let ip = format!("10.{}.{}.{}", 128 + id / 65536, (id / 256) % 256, id % 256);
        let node = ads_client::node(&ip, &format!("soak-{id}"), &[("app", "client")]);
        let received = Arc::new(Received::default());
        let counting = received.clone();
        let (closed, failed) = (self.closed.clone(), self.failed.clone());
        let endpoint = Endpoint::from_shared(format!("http://{}", self.xds)).expect("a URI");
        let task = tokio::spawn(async move {
            loop {
                let outcome = match endpoint.connect().await {
                    Ok(channel) => ads_client::run(channel, node.clone(), delta, counting.clone())
                        .await
                        .map_err(|status| status.to_string()),
                    Err(error) => Err(error.to_string()),
                };
                match outcome {
                    Ok(()) => closed.fetch_add(1, Ordering::Relaxed),
                    Err(error) => {
                        eprintln!("proxy soak-{id}: {error}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(RECONNECT_AFTER).await;
            }
        });
        self.proxies.push(Proxy {
            delta,
            received,
            task,
        });
    }

    /// Disconnects `count` proxies chosen at random and connects as many new ones, in the same
    /// ADS modes.
    pub fn replace(&mut self, count: usize) {
        for _ in 0..count.min(self.proxies.len()) {
            let gone = self.proxies.swap_remove(self.rng.below(self.proxies.len()));
            gone.task.abort();
            self.add(gone.delta);
        }
    }

    pub fn len(&self) -> usize {
        self.proxies.len()
    }

    /// Streams the server closed cleanly so far (each opened again).
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::Relaxed)
    }

    /// Connections refused and streams that failed so far.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    /// When the last response to any proxy arrived.
    pub fn last_response(&self) -> Option<Instant> {
        self.proxies
            .iter()
            .filter_map(|proxy| proxy.received.last_at())
            .max()
    }

    /// Proxies that hold every type and received something after `since`.
    pub fn served_since(&self, since: Instant) -> usize {
        self.proxies
            .iter()
            .filter(|proxy| {
                let received = &proxy.received;
                received.counts().iter().all(|count| *count > 0)
                    && received.last_at().is_some_and(|last| last > since)
            })
            .count()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for proxy in &self.proxies {
            proxy.task.abort();
        }
    }
}

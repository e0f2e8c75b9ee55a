//! What the Envoy fault tests share: a config directory with `reviews` (v1 and v2 on loopback
//! upstreams) and its routing rules, a stock Envoy sidecar of it, requests sent through that
//! sidecar without pause while a test breaks the control plane, and rudder's view of the
//! sidecar's sync state (`/debug/streamz`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rudder::admin::StreamSync;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::support::mesh::{
    Backend, JASON_EXACT, NAMESPACE, NODE_ID, Reply, get_through, replace_file,
    reviews_rules_matching, service_yaml,
};
use crate::support::upstream::Upstream;

/// The types a sidecar subscribes to.
const TYPES: [&str; 4] = ["cds", "eds", "lds", "rds"];

/// A test's own addresses `127.0.NET.x` and port `19000 + NET`.
#[derive(Clone, Copy)]
pub struct Net(pub u8);

impl Net {
    pub fn port(self) -> u16 {
        19000 + u16::from(self.0)
    }

    fn ip(self, octet: u8) -> String {
        format!("127.0.{}.{octet}", self.0)
    }
}

/// `reviews` v1 and v2, each a real upstream on this test's addresses.
pub struct Reviews {
    _v1: Upstream,
    _v2: Upstream,
}

impl Reviews {
    /// Starts the upstreams and writes the Service and rules (`jason` to v2, everyone else to
    /// `default_subset`) into `dir`.
    pub async fn start(net: Net, dir: &Path, default_subset: &str) -> Reviews {
        let v1 = Upstream::start("reviews-v1", &format!("{}:{}", net.ip(11), net.port())).await;
        let v2 = Upstream::start("reviews-v2", &format!("{}:{}", net.ip(12), net.port())).await;
        let backends = [
            Backend::new("reviews-v1", &net.ip(11), "v1"),
            Backend::new("reviews-v2", &net.ip(12), "v2"),
        ];
        let cluster_ip = format!("10.96.{}.1", net.0);
        let service = service_yaml("reviews", &cluster_ip, net.port(), &backends);
        replace_file(dir, "reviews.yaml", &service);
        Self::route_default_to(dir, default_subset);
        Reviews { _v1: v1, _v2: v2 }
    }

    /// Rewrites the rules so that requests without `end-user: jason` go to `subset`.
    pub fn route_default_to(dir: &Path, subset: &str) {
        replace_file(
            dir,
            "rules.yaml",
            &reviews_rules_matching("v2", subset, JASON_EXACT),
        );
    }
}

/// The metadata of the sidecar the tests attach: outbound listeners bound on 127.0.0.1.
pub fn sidecar_metadata() -> Value {
    json!({
        "NAMESPACE": NAMESPACE,
        "INTERCEPTION_MODE": "NONE",
        "LABELS": {"app": "client"},
    })
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

/// Which upstream answered a request for `reviews` through the sidecar on `port`.
pub async fn reviews_upstream(port: u16) -> Option<String> {
    match get_through(&http_client(), port, "reviews", "/", &[]).await {
        Reply::Upstream(echo) => Some(echo.upstream),
        _ => None,
    }
}

/// Requests for `reviews` through the sidecar, one after another, until dropped.
pub struct Traffic {
    counts: Arc<TrafficCounts>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct TrafficCounts {
    stop: AtomicBool,
    answered: AtomicU64,
    failed: AtomicU64,
    /// Answers by upstream, and the first few failures as they were seen.
    by_upstream: Mutex<BTreeMap<String, u64>>,
    failures: Mutex<Vec<String>>,
    last_upstream: Mutex<String>,
}

impl Traffic {
    pub fn start(port: u16) -> Traffic {
        let counts = Arc::new(TrafficCounts::default());
        let task = {
            let counts = counts.clone();
            let client = http_client();
            tokio::spawn(async move {
                while !counts.stop.load(Ordering::SeqCst) {
                    match get_through(&client, port, "reviews", "/", &[]).await {
                        Reply::Upstream(echo) => {
                            counts.answered.fetch_add(1, Ordering::SeqCst);
                            *lock(&counts.by_upstream)
                                .entry(echo.upstream.clone())
                                .or_default() += 1;
                            *lock(&counts.last_upstream) = echo.upstream;
                        }
                        other => {
                            counts.failed.fetch_add(1, Ordering::SeqCst);
                            let mut failures = lock(&counts.failures);
                            if failures.len() < 10 {
                                failures.push(format!("{other:?}"));
                            }
                        }
                    }
                }
            })
        };
        Traffic { counts, task }
    }

    pub fn answered(&self) -> u64 {
        self.counts.answered.load(Ordering::SeqCst)
    }

    pub fn failed(&self) -> u64 {
        self.counts.failed.load(Ordering::SeqCst)
    }

    /// The upstream that answered the last request.
    pub fn last_upstream(&self) -> String {
        lock(&self.counts.last_upstream).clone()
    }

    /// Answers by upstream, and the first failures, for messages.
    pub fn summary(&self) -> String {
        format!(
            "{} answered {:?}, {} failed {:?}",
            self.answered(),
            lock(&self.counts.by_upstream),
            self.failed(),
            lock(&self.counts.failures)
        )
    }

    /// Stops sending and waits for the request in flight.
    pub async fn stop(&mut self) {
        self.counts.stop.store(true, Ordering::SeqCst);
        let _ = (&mut self.task).await;
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// rudder's `/debug/streamz` at `admin`; empty while it does not answer.
pub async fn streamz(admin: SocketAddr) -> Vec<StreamSync> {
    let Ok(response) = reqwest::get(format!("http://{admin}/debug/streamz")).await else {
        return Vec::new();
    };
    response.json().await.unwrap_or_default()
}

/// Whether the sidecar has a stream to the rudder at `admin` on which it ACKed the last
/// response of every type.
pub async fn sidecar_synced(admin: SocketAddr) -> bool {
    streamz(admin).await.iter().any(|stream| {
        stream.proxy_id == NODE_ID
            && TYPES.iter().all(|ty| {
                stream
                    .types
                    .get(*ty)
                    .is_some_and(|sync| sync.sent.is_some() && sync.acked == sync.sent)
            })
    })
}

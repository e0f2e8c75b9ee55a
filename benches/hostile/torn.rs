//! Torn writes: `reviews`' DestinationRule rewritten in place (truncate, write the first part,
//! pause, write the rest) 50 times in 10 s, while a watcher, a state-of-the-world client of
//! the Envoy's namespace, records every CDS push. The first part alone parses and lacks subset
//! v2, so a push without `reviews`' v2 cluster carried a half-written file; none may, and the
//! Envoy's jason traffic (routed to v2) must not fail.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use prost::Message;
use rudder::translate::ResourceType;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use super::attacks::{Findings, Verdict};
use super::config::{self, DESTINATION_RULE_FILE, HOST, TRAFFIC_PORT};
use super::flags::FILE_QUIET_PERIOD;
use super::run::{Context, Window};
use super::scene::Scene;
use super::xds;

/// After the last rewrite, how long the full file may take to reach the watcher (plus the
/// quiet period, where rudder has one).
const SETTLE: Duration = Duration::from_secs(5);

/// Per CDS push: whether it had `reviews`' v2 cluster.
#[derive(Default)]
struct Pushes(Mutex<Vec<(Instant, bool)>>);

impl Pushes {
    fn all(&self) -> Vec<(Instant, bool)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub async fn rewrite(scene: &Scene, context: &Context, mut window: Window) -> Findings {
    let (rewrites, over) = context
        .scale
        .pick((50, Duration::from_secs(10)), (15, Duration::from_secs(3)));
    let pushes = Arc::new(Pushes::default());
    let watcher = match watch_clusters(scene, pushes.clone()).await {
        Ok(watcher) => watcher,
        Err(error) => return Findings::broken(error),
    };
    let path = scene.config_dir().join(DESTINATION_RULE_FILE);
    let period = over / rewrites;
    let started = Instant::now();
    let rewriting = async {
        let mut failed = Vec::new();
        for revision in 1..=rewrites {
            let [first, rest] = config::destination_rule(revision);
            if let Err(error) = torn_write(&path, &first, &rest, period / 2).await {
                failed.push(error.to_string());
            }
            tokio::time::sleep(period / 2).await;
        }
        failed
    };
    let (failed_writes, ()) = tokio::join!(rewriting, window.hold());
    let last_write = Instant::now();
    let quiet = context
        .bounds
        .duration(FILE_QUIET_PERIOD)
        .unwrap_or_default();
    tokio::time::sleep(SETTLE + quiet).await;
    watcher.abort();

    let all = pushes.all();
    let during: Vec<bool> = all
        .iter()
        .filter(|(at, _)| *at >= started)
        .map(|(_, whole)| *whole)
        .collect();
    let torn = during.iter().filter(|whole| !**whole).count();
    let settled = all.last().is_some_and(|(_, whole)| *whole);
    let detail = format!(
        "{rewrites} in-place rewrites in {:.1} s: {} CDS pushes, {torn} without subset v2",
        last_write.duration_since(started).as_secs_f64(),
        during.len()
    );
    let verdict = if during.len() < rewrites as usize {
        Verdict::Bounded
    } else {
        Verdict::Survived
    };
    let mut findings = Findings::new(verdict, detail);
    if torn > 0 {
        findings.fail(format!(
            "{torn} of {} pushes carried the half-written file (no v2 subset)",
            during.len()
        ));
    }
    if !settled {
        findings.fail(format!(
            "the last push, {:?} after the last rewrite, still lacks subset v2",
            SETTLE + quiet
        ));
    }
    if !failed_writes.is_empty() {
        findings.fail(format!("rewrites failed: {:?}", failed_writes[0]));
    }
    findings
}

/// Truncates and writes `first`, waits `pause`, then appends `rest`: the way a program that
/// does not write atomically replaces a file.
async fn torn_write(
    path: &std::path::Path,
    first: &str,
    rest: &str,
    pause: Duration,
) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(first.as_bytes())?;
    file.flush()?;
    tokio::time::sleep(pause).await;
    file.write_all(rest.as_bytes())?;
    file.flush()
}

/// A SotW CDS client of the hostile namespace that ACKs every push and records it.
async fn watch_clusters(
    scene: &Scene,
    pushes: Arc<Pushes>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let channel = Endpoint::from_shared(format!("http://{}", scene.xds))
        .map_err(|e| e.to_string())?
        .local_address(Some(scene.slot.attacker(6)))
        .connect()
        .await
        .map_err(|e| format!("connect the watcher: {e}"))?;
    let (requests, outgoing) = mpsc::channel(8);
    let type_url = ResourceType::Cluster.type_url().to_string();
    let first = xds::sotw(
        Some(xds::sidecar("10.66.2.1", "watcher")),
        ResourceType::Cluster,
        Vec::new(),
    );
    requests.send(first).await.map_err(|e| e.to_string())?;
    let mut responses = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .stream_aggregated_resources(ReceiverStream::new(outgoing))
        .await
        .map_err(|e| format!("the watcher's stream: {e}"))?
        .into_inner();
    let v2 = format!("outbound|{TRAFFIC_PORT}|v2|{HOST}");
    let first_push = Arc::new(tokio::sync::Notify::new());
    let task = {
        let first_push = first_push.clone();
        tokio::spawn(async move {
            while let Ok(Some(response)) = responses.message().await {
                let whole = response.resources.iter().any(|any| {
                    Cluster::decode(any.value.as_slice()).is_ok_and(|cluster| cluster.name == v2)
                });
                pushes
                    .0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((Instant::now(), whole));
                first_push.notify_one();
                let ack = DiscoveryRequest {
                    type_url: type_url.clone(),
                    version_info: response.version_info,
                    response_nonce: response.nonce,
                    ..Default::default()
                };
                if requests.send(ack).await.is_err() {
                    break;
                }
            }
        })
    };
    tokio::time::timeout(Duration::from_secs(20), first_push.notified())
        .await
        .map_err(|_| "the watcher got no CDS push".to_string())?;
    Ok(task)
}

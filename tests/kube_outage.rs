//! rudder through outages of a real Kubernetes API server (`scripts/dev-cluster`): while
//! kube-apiserver is stopped, rudder keeps serving the config it last listed (requests through a
//! real Envoy keep succeeding, a proxy that connects meanwhile is served), says it is out of sync
//! in its metrics (`rudder_kube_synced{kind}`) and its log, and once the API server is back it
//! relists and converges on what changed meanwhile. Then etcd restarts under the API server, with
//! the same outcome. The outage lasts `RUDDER_OUTAGE_SECS` seconds (15 by default; the issue's
//! one-minute outage is `RUDDER_OUTAGE_SECS=60 cargo test --test kube_outage -- --nocapture`).

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use prost::Message;
use support::cluster::{DevCluster, workloads};
use support::mesh::{JASON_EXACT, Mesh, Reply, get_through, reviews_rules_matching};
use support::netns::TestHost;
use support::upstream::Upstream;

const PORT: u16 = 19121;
const SUBNET: u8 = 121;
/// How long rudder has to notice an outage, and to converge after one.
const LIMIT: Duration = Duration::from_secs(60);
const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// Everything rudder logs in this test binary, kept to be searched.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn install() -> LogBuffer {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter("rudder=info")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buffer
    }

    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// rudder's `rudder_kube_synced` samples, as `(kind, value)`.
async fn kube_synced(mesh: &Mesh) -> Vec<(String, String)> {
    let metrics = mesh.admin("/metrics").await;
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("rudder_kube_synced{kind=\""))
        .filter_map(|rest| {
            let (kind, value) = rest.split_once("\"} ")?;
            Some((kind.to_string(), value.to_string()))
        })
        .collect()
}

async fn all_kinds_synced(mesh: &Mesh) -> bool {
    let kinds = kube_synced(mesh).await;
    !kinds.is_empty() && kinds.iter().all(|(_, value)| value == "1")
}

async fn kind_synced(mesh: &Mesh, kind: &str) -> Option<bool> {
    let kinds = kube_synced(mesh).await;
    let (_, value) = kinds.iter().find(|(name, _)| name == kind)?;
    Some(value == "1")
}

/// Requests through Envoy one after another, from start to [`Traffic::stop`]; any reply that is
/// not an upstream's answer counts as failed.
struct Traffic {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Traffic {
    fn start() -> Traffic {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client");
            let (mut answered, mut failed) = (0, Vec::new());
            while !*stopped.borrow_and_update() {
                match get_through(&client, PORT, "reviews", "/", &[]).await {
                    Reply::Upstream(_) => answered += 1,
                    other => failed.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (answered, failed)
        });
        Traffic { stop, task }
    }

    /// Stops; returns how many requests were answered and the failures.
    async fn stop(self) -> (usize, Vec<String>) {
        self.stop.send_replace(true);
        self.task.await.expect("the traffic task")
    }
}

/// The cluster names a proxy that connects now is sent.
async fn clusters_for_a_new_proxy(mesh: &Mesh) -> Vec<String> {
    let (requests, mut responses) = support::ads::sotw_stream(mesh.server.xds_address()).await;
    let node = Node {
        id: "sidecar~127.0.0.9~newcomer.bookinfo~bookinfo.svc.cluster.local".to_string(),
        cluster: "newcomer.bookinfo".to_string(),
        ..Node::default()
    };
    let request = DiscoveryRequest {
        node: Some(node),
        type_url: CLUSTER_TYPE.to_string(),
        ..DiscoveryRequest::default()
    };
    requests.send(request).await.expect("the stream is open");
    let response = tokio::time::timeout(LIMIT, responses.message())
        .await
        .expect("a CDS response in time")
        .expect("a CDS response")
        .expect("the stream stays open");
    response
        .resources
        .iter()
        .map(|any| {
            Cluster::decode(any.value.as_slice())
                .expect("a Cluster")
                .name
        })
        .collect()
}

/// Waits until `condition` holds, failing the test with rudder's log and Envoy's past `LIMIT`.
async fn time_until<F, Fut>(mesh: &Mesh, logs: &LogBuffer, what: &str, condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    mesh.wait_until(LIMIT, condition).await.unwrap_or_else(|| {
        panic!(
            "{what}: not within {LIMIT:?}; rudder's log:\n{}\nEnvoy's log:\n{}",
            logs.text(),
            mesh.envoy.log()
        )
    })
}

fn outage() -> Duration {
    let seconds = std::env::var("RUDDER_OUTAGE_SECS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(15);
    Duration::from_secs(seconds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_and_etcd_outages_cost_nothing() {
    let logs = LogBuffer::install();
    let cluster = DevCluster::up("kube-outage");
    let host = TestHost::create(SUBNET);
    let mut upstreams = Vec::new();
    for (name, last) in [("reviews-v1", 11), ("reviews-v2", 12), ("reviews-v1b", 14)] {
        host.add_address(last);
        let listener = host.bind(&format!("{}:{PORT}", host.address(last)));
        upstreams.push(Upstream::start_on(name, listener));
    }
    let two_pods = [("reviews-v1", "v1", 11), ("reviews-v2", "v2", 12)];
    cluster.apply(&workloads(&host, PORT, &two_pods));
    cluster.install_istio_crds();
    cluster.apply(&reviews_rules_matching("v1", "v1", JASON_EXACT));

    let mesh = Mesh::start_kubernetes(PORT, &cluster.kubeconfig).await;
    time_until(&mesh, &logs, "the first rule", || async {
        mesh.upstream_of("reviews", &[]).await == "reviews-v1"
    })
    .await;
    time_until(&mesh, &logs, "every kind in sync", || {
        all_kinds_synced(&mesh)
    })
    .await;

    let traffic = Traffic::start();

    // Outage: the API server stops. rudder notices, says so, and keeps serving.
    let stopped = Instant::now();
    tokio::task::block_in_place(|| cluster.stop_apiserver());
    let noticed = time_until(&mesh, &logs, "the not-synced metric", || async {
        kind_synced(&mesh, "VirtualService").await == Some(false)
    })
    .await;
    assert!(logs.text().contains("lost the watch"), "{}", logs.text());
    tokio::time::sleep(outage().saturating_sub(stopped.elapsed())).await;
    assert_eq!(mesh.upstream_of("reviews", &[]).await, "reviews-v1");
    let clusters = clusters_for_a_new_proxy(&mesh).await;
    let v1 = format!("outbound|{PORT}|v1|reviews.bookinfo.svc.cluster.local");
    assert!(
        clusters.contains(&v1),
        "a proxy connecting during the outage got {clusters:?}"
    );
    assert!(kind_synced(&mesh, "VirtualService").await == Some(false));
    eprintln!(
        "API server down {:?}: not-synced reported after {noticed:?}; a proxy connecting \
         meanwhile was sent {} clusters",
        stopped.elapsed(),
        clusters.len()
    );

    // The API server is back; what changes right away (a rule, and a Pod replaced) happens while
    // rudder's watches are still waiting to retry, so the relist is what brings it.
    tokio::task::block_in_place(|| cluster.start_apiserver());
    let restarted = Instant::now();
    let replaced = [("reviews-v2", "v2", 12), ("reviews-v1b", "v1", 14)];
    cluster.apply(&workloads(&host, PORT, &replaced));
    cluster.ok(&["delete", "pod", "reviews-v1", "-n", "bookinfo"], "");
    cluster.apply(&reviews_rules_matching("v1", "v2", JASON_EXACT));
    time_until(
        &mesh,
        &logs,
        "the changes made after the outage",
        || async {
            mesh.upstream_of("reviews", &[]).await == "reviews-v2"
                && mesh.upstream_of("reviews", &[("end-user", "jason")]).await == "reviews-v1b"
        },
    )
    .await;
    let converged = restarted.elapsed();
    time_until(&mesh, &logs, "every kind in sync again", || {
        all_kinds_synced(&mesh)
    })
    .await;
    let resynced = restarted.elapsed();
    assert!(logs.text().contains("in sync again"), "{}", logs.text());
    eprintln!(
        "API server back: changes made meanwhile reached Envoy after {converged:?}; every kind in \
         sync after {resynced:?}"
    );

    // etcd restarts under the running API server; later changes still arrive.
    let restarting = Instant::now();
    tokio::task::block_in_place(|| cluster.restart_etcd());
    let etcd_back = restarting.elapsed();
    cluster.apply(&reviews_rules_matching("v2", "v1", JASON_EXACT));
    let applied = Instant::now();
    time_until(&mesh, &logs, "a rule after the etcd restart", || async {
        mesh.upstream_of("reviews", &[]).await == "reviews-v1b"
            && mesh.upstream_of("reviews", &[("end-user", "jason")]).await == "reviews-v2"
    })
    .await;
    let after_etcd = applied.elapsed();
    time_until(&mesh, &logs, "every kind in sync after etcd", || {
        all_kinds_synced(&mesh)
    })
    .await;
    eprintln!(
        "etcd restarted in {etcd_back:?}; a rule applied then reached Envoy after {after_etcd:?}"
    );

    let (answered, failed) = traffic.stop().await;
    assert!(
        failed.is_empty() && answered > 0,
        "{answered} requests answered, {} failed: {failed:?}",
        failed.len()
    );
    eprintln!("{answered} requests through Envoy from the outage to the end, none failed");
    let log = logs.text();
    let lost = log.matches("lost the watch").count();
    let relisted = log.matches("in sync again").count();
    eprintln!("rudder logged {lost} lost watches and {relisted} relists");
}

//! One load run: a generated mesh on disk, a control plane process serving it, `proxies`
//! in-process ADS clients (SotW or delta, ACKing like Envoy; `benches/support/ads_client.rs`), and
//! three timed edits. Shared by the `load` bench and the smoke test in `tests/load_smoke.rs`. The
//! mesh may live elsewhere than on disk (a [`Registry`]: the load bench's Kubernetes registry is
//! `benches/load/kube.rs`); the proxies, the edits and the timing stay the same. The same run with
//! real Envoys instead of these clients is `envoys.rs`, which takes the mesh and the edits from
//! here.
//!
//! Proxy `i` carries the labels `app: client-{i % label_sets}`: as many distinct label sets as
//! `RunSpec::label_sets`, as pods of that many Deployments would, since proxies of one shape share
//! one translation in rudder and identical proxies would flatter it.
//!
//! Convergence is timed on the clients' side, so it means the same for both servers: after an
//! edit is written at t0, a proxy has converged when the last response it gets arrives (every
//! response is ACKed at once); the run waits until every proxy got one and all streams have been
//! quiet for [`QUIET`]. The wire limit is the time to write each proxy's share of the same bytes
//! over as many loopback connections, with no control plane logic at all.

#![allow(dead_code)] // Shared with tests/load_smoke.rs, tests/faults.rs and benches/resync.rs.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::google::protobuf::{Value, value::Kind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::ads_client::{self, Received};
use super::mesh::{self, ServiceShape};
use super::server::{ServerKind, ServerProcess, Source};

/// Where a run's mesh lives, and how an edit reaches the server: files in a directory ([`Files`])
/// or objects in a Kubernetes API server (`benches/load/kube.rs`).
pub trait Registry {
    /// Starts `kind` on this mesh.
    fn start(&self, kind: ServerKind, debounce: Option<Duration>) -> ServerProcess;
    /// Makes service `index` (and its rules) what `shape` says, creating it if it is new.
    fn write_service(&self, index: usize, shape: ServiceShape) -> impl Future<Output = ()>;
}

/// The mesh as files in a directory, written atomically ([`mesh::write_service`]).
pub struct Files<'a>(pub &'a Path);

impl Registry for Files<'_> {
    fn start(&self, kind: ServerKind, debounce: Option<Duration>) -> ServerProcess {
        ServerProcess::start_on(kind, Source::Files(self.0), debounce)
    }

    async fn write_service(&self, index: usize, shape: ServiceShape) {
        mesh::write_service(self.0, index, shape).expect("write a service");
    }
}

/// How long every stream must stay silent for a phase to count as over.
pub const QUIET: Duration = Duration::from_millis(1000);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunSpec {
    pub server: ServerKind,
    pub services: usize,
    pub endpoints: usize,
    pub proxies: usize,
    pub delta: bool,
    /// A Sidecar in the proxies' namespace limits their egress to the first
    /// [`mesh::SIDECAR_SCOPE`] services.
    pub sidecar: bool,
    /// The servers' quiet time before a push, if not their default (100 ms).
    pub debounce: Option<Duration>,
    /// A phase that takes longer fails the run.
    pub limit: Duration,
    /// Distinct label sets among the proxies (at least 1): proxy `i` is `app: client-{i % K}`.
    pub label_sets: usize,
    /// Every proxy declares `INTERCEPTION_MODE: NONE`, so its listeners bind on 127.0.0.1 only;
    /// set for runs compared with real Envoys (`envoys.rs`), which must not bind elsewhere.
    pub loopback_listeners: bool,
    /// Real Envoy processes instead of in-process clients: run by `envoys::run`, not [`run`].
    pub envoys: bool,
}

/// How long proxies took to converge after one edit.
#[derive(Debug, Clone)]
pub struct Convergence {
    /// Proxies that received something after the edit.
    pub reached: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Bytes one proxy received for the edit (the median).
    pub bytes_per_proxy: u64,
    /// Writing those bytes to every proxy over loopback, with nothing else to do.
    /// `None` when the process may not open that many connections (each takes two descriptors).
    pub wire: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub spec: RunSpec,
    /// From the first connection until every proxy held the whole config.
    pub initial: Duration,
    pub initial_bytes_per_proxy: u64,
    pub edits: Vec<Convergence>,
    pub cpu_seconds: f64,
    pub peak_rss: u64,
    pub bytes_sent: u64,
}

pub async fn run(spec: RunSpec) -> Report {
    assert!(!spec.envoys, "runs with real Envoys are envoys::run's");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path();
    write_mesh(config, spec);
    run_on(spec, &Files(config)).await
}

/// Writes the run's mesh (and the Sidecar if asked for) into the config directory.
pub fn write_mesh(config: &Path, spec: RunSpec) {
    let shape = ServiceShape::new(spec.endpoints);
    for index in 0..spec.services {
        mesh::write_service(config, index, shape).expect("write the mesh");
    }
    if spec.sidecar {
        mesh::write_sidecar(config).expect("write the Sidecar");
    }
}

/// A run on a mesh already in `registry`: services `svc-0` to `svc-{services - 1}`, each as
/// `ServiceShape::new(spec.endpoints)` makes it, and the Sidecar if `spec.sidecar`.
pub async fn run_on(spec: RunSpec, registry: &impl Registry) -> Report {
    let server = registry.start(spec.server, spec.debounce);

    let start = Instant::now();
    let (clients, tasks) = connect(&server, spec).await;
    let served = |received: &Received| received.counts().iter().all(|count| *count > 0);
    let initial = settle(&clients, start, spec.limit, |_, received| served(received))
        .await
        .unwrap_or_else(|| {
            panic!(
                "{}: {} of {} proxies got their config within {:?}",
                spec.server.name(),
                clients.iter().filter(|received| served(received)).count(),
                spec.proxies,
                spec.limit
            )
        });
    let initial_bytes_per_proxy = median(clients.iter().map(|received| received.bytes()).collect());

    let mut results = Vec::new();
    for (edit, index, shape) in edits(spec) {
        let apply = registry.write_service(index, shape);
        results.push(time_edit(edit, &clients, apply, spec).await);
    }
    let report = Report {
        spec,
        initial,
        initial_bytes_per_proxy,
        edits: results,
        cpu_seconds: server.cpu_seconds(),
        peak_rss: server.peak_rss(),
        bytes_sent: clients.iter().map(|received| received.bytes()).sum(),
    };
    // Clients go before the server, so its exit is not reported as their streams failing.
    for task in tasks {
        task.abort();
    }
    report
}

/// The three timed edits, in order, each the service it rewrites and how: a rule edit (svc-0's
/// split), an endpoint edit (an endpoint added to svc-0, keeping the rule edit's split) and a new
/// service.
pub fn edits(spec: RunSpec) -> [(&'static str, usize, ServiceShape); 3] {
    let shape = ServiceShape::new(spec.endpoints);
    [
        (
            "rule",
            0,
            ServiceShape {
                v1_weight: 80,
                ..shape
            },
        ),
        (
            "endpoint",
            0,
            ServiceShape {
                v1_weight: 80,
                endpoints: shape.endpoints + 1,
                ..shape
            },
        ),
        ("service", spec.services, shape),
    ]
}

/// Proxy `index`'s label set: one of `spec.label_sets` (in its node metadata, and on its Pod in
/// a cluster).
pub fn labels(spec: RunSpec, index: usize) -> String {
    format!("client-{}", index % spec.label_sets.max(1))
}

async fn connect(
    server: &ServerProcess,
    spec: RunSpec,
) -> (Vec<Arc<Received>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut clients = Vec::with_capacity(spec.proxies);
    let mut tasks = Vec::with_capacity(spec.proxies);
    for i in 0..spec.proxies {
        let app = labels(spec, i);
        let mut node = ads_client::node(&proxy_ip(i), &proxy_name(i), &[("app", &app)]);
        if spec.loopback_listeners
            && let Some(metadata) = &mut node.metadata
        {
            metadata.fields.insert(
                "INTERCEPTION_MODE".to_string(),
                Value {
                    kind: Some(Kind::StringValue("NONE".to_string())),
                },
            );
        }
        let channel = ads_client::connect(server.xds).await;
        let received = Arc::new(Received::default());
        let counting = received.clone();
        let delta = spec.delta;
        tasks.push(tokio::spawn(async move {
            if let Err(status) = ads_client::run(channel, node, delta, counting).await {
                eprintln!("client {i}: {status}");
            }
        }));
        clients.push(received);
    }
    (clients, tasks)
}

/// The IP in proxy `i`'s node id (and its Pod's, in a cluster).
pub fn proxy_ip(i: usize) -> String {
    format!("10.{}.{}.{}", 128 + i / 65536, (i / 256) % 256, i % 256)
}

/// Proxy `i`'s name (its Pod's, in a cluster), in namespace [`mesh::NAMESPACE`].
pub fn proxy_name(i: usize) -> String {
    format!("client-{i}")
}

/// Waits until `done` holds for every client (given its index too) and no response came for
/// [`QUIET`]; the time from `since` to the last response.
pub async fn settle(
    clients: &[Arc<Received>],
    since: Instant,
    limit: Duration,
    done: impl Fn(usize, &Received) -> bool,
) -> Option<Duration> {
    let deadline = since + limit;
    loop {
        let now = Instant::now();
        let last = clients
            .iter()
            .filter_map(|received| received.last_at())
            .max();
        let quiet = last.is_none_or(|last| now.duration_since(last) >= QUIET);
        if quiet
            && clients
                .iter()
                .enumerate()
                .all(|(index, received)| done(index, received))
        {
            return Some(last.map_or(Duration::ZERO, |last| last.duration_since(since)));
        }
        if now > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn time_edit(
    edit: &'static str,
    clients: &[Arc<Received>],
    apply: impl Future<Output = ()>,
    spec: RunSpec,
) -> Convergence {
    let bytes_before: Vec<u64> = clients.iter().map(|received| received.bytes()).collect();
    let t0 = Instant::now();
    apply.await;
    let got_something = |received: &Received| received.last_at().is_some_and(|last| last > t0);
    // A server that never pushes for this edit leaves some proxies unreached: reported, not fatal.
    settle(clients, t0, spec.limit, |_, received| {
        got_something(received)
    })
    .await;
    let mut times: Vec<Duration> = clients
        .iter()
        .filter(|received| got_something(received))
        .filter_map(|received| Some(received.last_at()?.duration_since(t0)))
        .collect();
    times.sort();
    eprintln!(
        "{} {}x{}: {edit} edit reached {} of {} proxies",
        spec.server.name(),
        spec.services,
        spec.proxies,
        times.len(),
        clients.len()
    );
    let bytes_per_proxy = median(
        clients
            .iter()
            .zip(&bytes_before)
            .map(|(received, before)| received.bytes() - before)
            .collect(),
    );
    convergence(times, bytes_per_proxy, spec.proxies).await
}

/// The figures of one edit from the sorted convergence times of the proxies it reached.
pub async fn convergence(
    times: Vec<Duration>,
    bytes_per_proxy: u64,
    proxies: usize,
) -> Convergence {
    Convergence {
        reached: times.len(),
        p50: percentile(&times, 0.50),
        p99: percentile(&times, 0.99),
        max: times.last().copied().unwrap_or_default(),
        bytes_per_proxy,
        wire: wire_time(proxies, bytes_per_proxy).await,
    }
}

/// The `p` quantile (0 to 1) of sorted `times`; zero if there are none.
pub fn percentile(times: &[Duration], p: f64) -> Duration {
    let index = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len().max(1)) - 1;
    times.get(index).copied().unwrap_or_default()
}

pub fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

/// The time to send `bytes` to each of `connections` readers over loopback at once; `None`
/// (and a message) if the connections cannot be opened.
pub async fn wire_time(connections: usize, bytes: u64) -> Option<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await.ok()?;
    let address = listener.local_addr().ok()?;
    // Accepting while connecting: thousands of connections would overflow the listen backlog.
    let acceptor = tokio::spawn(async move {
        let mut writers = Vec::with_capacity(connections);
        for _ in 0..connections {
            writers.push(listener.accept().await?.0);
        }
        Ok::<_, std::io::Error>(writers)
    });
    let mut readers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut stream = match TcpStream::connect(address).await {
            Ok(stream) => stream,
            Err(error) => {
                eprintln!("wire test with {connections} connections skipped: {error}");
                acceptor.abort();
                return None;
            }
        };
        readers.push(async move {
            let mut buffer = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            while let Ok(n) = stream.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            total
        });
    }
    let writers = match acceptor.await {
        Ok(Ok(writers)) => writers,
        Ok(Err(error)) => {
            eprintln!("wire test with {connections} connections skipped: {error}");
            return None;
        }
        Err(_) => return None,
    };
    let payload = Arc::new(vec![0x5au8; usize::try_from(bytes).unwrap_or(usize::MAX)]);
    let start = Instant::now();
    let readers: Vec<_> = readers.into_iter().map(tokio::spawn).collect();
    for mut stream in writers {
        let payload = payload.clone();
        tokio::spawn(async move {
            let _ = stream.write_all(&payload).await;
        });
    }
    for reader in readers {
        let _ = reader.await;
    }
    Some(start.elapsed())
}

//! What a connected proxy costs the xDS server in memory, and how long pushes to many proxies take,
//! at 1000 services (the mesh of `benches/translate.rs`: 8005 resources, 1.8 MB encoded).
//!
//! Run with `cargo bench --bench xds_memory` (optionally naming modes: `-- sotw-same delta-same`).
//! For each mode, a server process serves the mesh over ADS on loopback (`serve_xds`, in process)
//! and starts client processes (this same binary) whose ADS clients subscribe to every type the way
//! Envoy does and ACK everything, each on a connection of its own, so the clients' own memory is
//! not counted. Once 1, 100 and 500 proxies have ACKed everything, the server reads its VmRSS from
//! /proc/self/status and the bytes its heap holds (a counting global allocator: VmRSS also holds
//! what glibc keeps of memory freed before, so it depends on what came earlier). Then it publishes
//! an edit that changes CDS and EDS for every proxy and times until all 500 have ACKed it.
//!
//! Modes: `sotw-same` and `delta-same` (every proxy has the same labels, so all share one
//! translation) and `sotw-distinct` (each proxy has labels of its own, so each is translated for
//! itself and only equal resources are shared).

#[path = "support/ads_client.rs"]
mod ads_client;
#[path = "support/mesh.rs"]
mod mesh;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh::MeshSpec;
use rudder::metrics::Metrics;
use rudder::xds::{Registry, XdsOptions, serve_xds};
use tokio::net::TcpListener;
use tokio::sync::watch;

const SERVICES: usize = 1000;
const STEPS: [usize; 3] = [1, 100, 500];
const MODES: [&str; 3] = ["sotw-same", "sotw-distinct", "delta-same"];
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(600);
/// The server gives up beyond this, rather than take a shared machine's memory.
const RSS_LIMIT: u64 = 8 << 30;

fn main() {
    match std::env::var("XDS_MEMORY_ROLE").as_deref() {
        Ok("server") => server(&std::env::var("XDS_MEMORY_MODE").expect("a mode")),
        Ok("clients") => clients(),
        _ => orchestrate(),
    }
}

/// Runs one server process per mode and prints their rows as one table.
fn orchestrate() {
    let asked: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let modes: Vec<&str> = MODES
        .into_iter()
        .filter(|mode| asked.is_empty() || asked.iter().any(|a| a == mode))
        .collect();
    println!(
        "| mode | proxies | VmRSS | heap in use | per extra proxy (VmRSS / heap) | until all ACKed |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for mode in modes {
        let status = Command::new(std::env::current_exe().expect("this binary"))
            .env("XDS_MEMORY_ROLE", "server")
            .env("XDS_MEMORY_MODE", mode)
            .status()
            .expect("start the server process");
        assert!(status.success(), "mode {mode} failed");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Counts the bytes the process has allocated and not freed, besides what VmRSS says.
struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller keeps `alloc`'s contract.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller keeps `dealloc`'s contract.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, std::sync::atomic::Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller keeps `realloc`'s contract.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_heap() -> u64 {
    LIVE.load(std::sync::atomic::Ordering::Relaxed) as u64
}

/// VmRSS of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse().ok())
        .expect("VmRSS in kB");
    kb * 1024
}

/// The server's memory at one point.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss: u64,
    live: u64,
}

impl Sample {
    fn take() -> Sample {
        Sample {
            rss: rss(),
            live: live_heap(),
        }
    }

    fn row(&self) -> String {
        format!("{} | {}", mib(self.rss), mib(self.live))
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Waits until `count` proxies are connected and have ACKed the last response of every type.
async fn converged(registry: &Registry, count: usize, cds: Option<&str>) -> Duration {
    let start = Instant::now();
    loop {
        let connected = registry.connected();
        let done = connected.len() == count
            && connected.iter().all(|proxy| {
                proxy.types.len() == 4
                    && proxy
                        .types
                        .values()
                        .all(|status| status.acked.is_some() && status.acked == status.sent)
                    && cds.is_none_or(|version| {
                        proxy.types.values().next().and_then(|s| s.acked.as_deref())
                            == Some(version)
                    })
            });
        if done {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < CONVERGENCE_LIMIT,
            "{count} proxies never converged"
        );
        assert!(
            rss() < RSS_LIMIT,
            "over {} with {} proxies connected; giving up",
            mib(RSS_LIMIT),
            connected.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CDS version every proxy has ACKed, if they agree.
fn acked_cds(registry: &Registry) -> Option<String> {
    let connected = registry.connected();
    let first = connected.first()?.types.values().next()?.acked.clone();
    connected
        .iter()
        .all(|proxy| proxy.types.values().next().map(|s| &s.acked) == Some(&first))
        .then_some(first)?
}

fn server(mode: &str) {
    runtime().block_on(async {
        let spec = MeshSpec::new(SERVICES);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("an address");
        let registry = Registry::default();
        let (snapshots, receiver) = watch::channel(spec.snapshot(1));
        tokio::spawn(serve_xds(
            listener,
            receiver,
            Arc::new(Metrics::new()),
            registry.clone(),
            // Hundreds of clients connect at once and, unlike Envoy, do not retry a stream
            // refused for the rate of new streams.
            XdsOptions {
                stream_rate: None,
                ..XdsOptions::default()
            },
            std::future::pending(),
        ));
        let mut children: Vec<Child> = Vec::new();
        let mut previous: Option<(usize, Sample)> = None;
        for target in STEPS {
            let from = previous.map_or(0, |(count, _)| count);
            children.push(spawn_clients(address, from, target, mode));
            let took = converged(&registry, target, None).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let sample = Sample::take();
            let per_proxy = previous.map_or(String::new(), |(count, before)| {
                let per = |now: u64, then: u64| {
                    let extra = now.saturating_sub(then) / (target - count) as u64;
                    format!("{:.0}", extra as f64 / 1024.0)
                };
                format!(
                    "{} / {} KiB",
                    per(sample.rss, before.rss),
                    per(sample.live, before.live)
                )
            });
            println!(
                "| {mode} | {target} | {} | {per_proxy} | {:.2} s |",
                sample.row(),
                took.as_secs_f64()
            );
            std::io::stdout().flush().expect("stdout");
            previous = Some((target, sample));
        }

        // An edit every proxy gets: a new subset of svc-0 (CDS and EDS).
        let before = acked_cds(&registry).expect("every proxy has the same clusters");
        let start = Instant::now();
        snapshots.send_replace(
            MeshSpec {
                extra_subsets: 1,
                ..spec
            }
            .snapshot(2),
        );
        let changed = async {
            loop {
                if let Some(now) = acked_cds(&registry)
                    && now != before
                {
                    return now;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let cds = tokio::time::timeout(CONVERGENCE_LIMIT, changed)
            .await
            .expect("the edit reaches every proxy");
        let last = *STEPS.last().expect("steps");
        converged(&registry, last, Some(&cds)).await;
        let took = start.elapsed();
        tokio::time::sleep(Duration::from_secs(1)).await;
        println!(
            "| {mode} | {last}, after an edit | {} | | {:.2} s |",
            Sample::take().row(),
            took.as_secs_f64()
        );
        for mut child in children {
            // Closing its stdin ends a client process.
            drop(child.stdin.take());
            let _ = child.wait();
        }
    });
}

/// Starts a process with clients `from..to`, each on its own connection.
fn spawn_clients(address: SocketAddr, from: usize, to: usize, mode: &str) -> Child {
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .env("XDS_MEMORY_ROLE", "clients")
        .env("XDS_MEMORY_MODE", mode)
        .env("XDS_MEMORY_ADDRESS", address.to_string())
        .env("XDS_MEMORY_FROM", from.to_string())
        .env("XDS_MEMORY_TO", to.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a client process");
    // The client process says when its clients are connected.
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("piped stdout"))
        .read_line(&mut line)
        .expect("the client process reports");
    assert_eq!(line.trim(), "connected", "client process: {line:?}");
    child
}

fn clients() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let address: SocketAddr = var("XDS_MEMORY_ADDRESS").parse().expect("an address");
    let from: usize = var("XDS_MEMORY_FROM").parse().expect("a number");
    let to: usize = var("XDS_MEMORY_TO").parse().expect("a number");
    let mode = var("XDS_MEMORY_MODE");
    let delta = mode.starts_with("delta");
    let distinct = mode.ends_with("distinct");
    let runtime = runtime();
    runtime.block_on(async {
        let mut connecting = Vec::new();
        for i in from..to {
            connecting.push(tokio::spawn(async move {
                let ip = format!("10.{}.{}.{}", 128 + i / 65536, (i / 256) % 256, i % 256);
                let app = if distinct {
                    format!("client-{i}")
                } else {
                    "client".to_string()
                };
                let node = ads_client::node(&ip, &format!("client-{i}"), &[("app", &app)]);
                let channel = ads_client::connect(address).await;
                tokio::spawn(async move {
                    let received = Arc::new(ads_client::Received::default());
                    if let Err(status) = ads_client::run(channel, node, delta, received).await {
                        eprintln!("client {i}: {status}");
                    }
                });
            }));
        }
        for connecting in connecting {
            connecting.await.expect("a client connects");
        }
        println!("connected");
        std::io::stdout().flush().expect("stdout");
        // Run until the server process closes our stdin.
        tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        })
        .await
        .expect("stdin");
    });
}

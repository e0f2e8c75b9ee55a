//! Attacks on the admin port. Debug dumps: 16 or 40 clients ask `/debug/config_dump` for a
//! proxy that sees the whole generated mesh, without pause, while `/ready` is timed every
//! 250 ms and the Envoy's edits are timed; `/ready` must keep answering within
//! [`READY_BOUND`] (the manifest's probe gives it 5 s). Half requests: connections that send
//! half a request's headers and wait, which the admin read timeout must close.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::attacks::{Findings, Verdict};
use super::flags::{ADMIN_READ_TIMEOUT, DEBUG_CONCURRENCY};
use super::raw;
use super::run::{Context, Window};
use super::scene::Scene;

/// The longest `/ready` may take while debug endpoints are hammered.
pub const READY_BOUND: Duration = Duration::from_secs(1);
/// A proxy of the generated namespace: no Sidecar, so its dump is the whole mesh.
const DUMPED: &str = "sidecar~10.9.9.9~hammer.bench~bench.svc.cluster.local";

#[derive(Default)]
struct Hammered {
    answered: AtomicU64,
    /// Answered with a status other than 200 (a concurrency bound's refusal).
    refused: AtomicU64,
    failed: AtomicU64,
    answer_millis: AtomicU64,
}

pub async fn dump(
    scene: &Scene,
    context: &Context,
    clients: usize,
    mut window: Window,
) -> Findings {
    let stop = Arc::new(AtomicBool::new(false));
    let hammered = Arc::new(Hammered::default());
    let url = format!("http://{}/debug/config_dump?proxyID={DUMPED}", scene.admin);
    let tasks: Vec<_> = (0..clients)
        .map(|n| {
            let (stop, hammered, url) = (stop.clone(), hammered.clone(), url.clone());
            let client = reqwest::Client::builder()
                .local_address(scene.slot.attacker(n))
                .timeout(Duration::from_secs(120))
                .build();
            tokio::spawn(async move {
                let Ok(client) = client else { return };
                // Bounded by `stop`, which is set once the edits are timed.
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let answer = client.get(&url).send().await;
                    let answer = match answer {
                        Ok(response) => {
                            let status = response.status();
                            response.bytes().await.map(|_| status)
                        }
                        Err(error) => Err(error),
                    };
                    match answer {
                        Ok(status) if status.is_success() => {
                            hammered.answered.fetch_add(1, Ordering::SeqCst);
                            let millis = started.elapsed().as_millis() as u64;
                            hammered.answer_millis.fetch_add(millis, Ordering::SeqCst);
                        }
                        Ok(_) => {
                            hammered.refused.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(_) => {
                            hammered.failed.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let probing = Arc::new(AtomicBool::new(true));
    let readiness = {
        let probing = probing.clone();
        async move {
            let mut times = Vec::new();
            let mut errors = Vec::new();
            while probing.load(Ordering::SeqCst) {
                match scene.ready_time(Duration::from_secs(60)).await {
                    Ok(took) => times.push(took),
                    Err(error) => errors.push(error),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (times, errors)
        }
    };
    let edits = async {
        window.hold().await;
        probing.store(false, Ordering::SeqCst);
    };
    let ((mut times, errors), ()) = tokio::join!(readiness, edits);
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.abort();
    }
    let hammered_for = started.elapsed();
    times.sort();
    let answered = hammered.answered.load(Ordering::SeqCst);
    let refused = hammered.refused.load(Ordering::SeqCst);
    let mean = hammered.answer_millis.load(Ordering::SeqCst) as f64 / answered.max(1) as f64;
    let slowest = times.last().copied().unwrap_or_default();
    let detail = format!(
        "{answered} dumps answered in {:.0} s (mean {:.1} s), {refused} refused, {} failed \
         (--debug-concurrency {}); /ready p50 {:.3} s, max {:.3} s over {} probes",
        hammered_for.as_secs_f64(),
        mean / 1000.0,
        hammered.failed.load(Ordering::SeqCst),
        context.bounds.value(DEBUG_CONCURRENCY).unwrap_or("absent"),
        times
            .get(times.len() / 2)
            .copied()
            .unwrap_or_default()
            .as_secs_f64(),
        slowest.as_secs_f64(),
        times.len()
    );
    let verdict = if refused > 0 {
        Verdict::Refused
    } else {
        Verdict::Bounded
    };
    let mut findings = Findings::new(verdict, detail);
    if slowest > READY_BOUND {
        findings.fail(format!(
            "/ready took {:.2} s, over {READY_BOUND:?}",
            slowest.as_secs_f64()
        ));
    }
    if !errors.is_empty() {
        findings.fail(format!(
            "/ready failed {} times: {:?}",
            errors.len(),
            errors[0]
        ));
    }
    findings
}

pub async fn half_requests(scene: &Scene, context: &Context, mut window: Window) -> Findings {
    let count = context.scale.pick(200, 20);
    let mut connections = Vec::new();
    let started = Instant::now();
    for n in 0..count {
        let Ok(mut connection) = raw::tcp(scene.slot.attacker(n), scene.admin).await else {
            continue;
        };
        let half = b"GET /ready HTTP/1.1\r\nHost: rudder\r\nUser-Agent: hal";
        if connection.write_all(half).await.is_ok() {
            connections.push(connection);
        }
    }
    let ready = scene.ready_time(Duration::from_secs(10)).await;
    window.hold().await;
    let timeout = context.bounds.duration(ADMIN_READ_TIMEOUT);
    let wait = timeout.map_or(
        context
            .scale
            .pick(Duration::from_secs(30), Duration::from_secs(5)),
        |timeout| timeout + Duration::from_secs(3),
    );
    let deadline = started + wait;
    let mut open = 0;
    for connection in &mut connections {
        if !closed_by(connection, deadline).await {
            open += 1;
        }
    }
    let detail = format!(
        "{} of {count} half requests still open {:.0} s after sending (--admin-read-timeout {}); \
         /ready meanwhile: {}",
        open,
        wait.as_secs_f64(),
        timeout.map_or("absent".to_string(), |t| format!("{t:?}")),
        match &ready {
            Ok(took) => format!("{:.3} s", took.as_secs_f64()),
            Err(error) => error.clone(),
        }
    );
    let mut findings = Findings::new(Verdict::Bounded, detail);
    if open > 0 {
        findings.verdict = Verdict::Survived;
        findings.fail(format!(
            "{open} connections with half a request still open after {wait:?}"
        ));
    }
    if let Err(error) = ready {
        findings.fail(format!("/ready did not answer: {error}"));
    }
    findings
}

/// Whether the server closed the connection by `deadline` (whatever it sent first).
async fn closed_by(connection: &mut tokio::net::TcpStream, deadline: Instant) -> bool {
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline + Duration::from_secs(1) {
        let left = deadline.saturating_duration_since(Instant::now());
        let left = left.max(Duration::from_millis(100));
        match tokio::time::timeout(left, connection.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
    false
}

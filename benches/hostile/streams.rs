//! Attacks with streams rather than bytes. Idle streams: one connection opens as many HTTP/2
//! streams as it is let (100,000 in the bench) and never sends a request; rudder must limit
//! them per connection or end them at its first-request timeout. Stream flood: new streams
//! with a valid first request, thousands a second from a few connections, while the Envoy's
//! edits are timed; rudder's rate limit must answer RESOURCE_EXHAUSTED.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use prost::bytes::Bytes;
use rudder::translate::ResourceType;
use tokio::sync::{Mutex, Semaphore};

use super::attacks::{Findings, Verdict};
use super::flags::{
    XDS_FIRST_REQUEST_TIMEOUT, XDS_MAX_STREAMS_PER_CONNECTION, XDS_MAX_STREAMS_PER_SECOND,
};
use super::raw::{self, Connection, Ending, OpenError, SOTW_PATH};
use super::run::{Context, Window};
use super::scene::Scene;
use super::xds;

/// How long opening one more stream may wait before the connection counts as full.
const OPEN_WAIT: Duration = Duration::from_secs(2);
/// After the first-request timeout, how long the server gets to have ended the idle streams.
const MARGIN: Duration = Duration::from_secs(3);

pub async fn idle(scene: &Scene, context: &Context, mut window: Window) -> Findings {
    let target = context.scale.pick(100_000, 20_000);
    let open_for = context
        .scale
        .pick(Duration::from_secs(60), Duration::from_secs(15));
    let mut connection = match Connection::connect(scene.slot.attacker(2), scene.xds).await {
        Ok(connection) => connection,
        Err(error) => return Findings::broken(error),
    };
    let started = Instant::now();
    let mut responses = Vec::new();
    let mut bodies = Vec::new();
    let mut stopped_by = "the target".to_string();
    while responses.len() < target {
        if started.elapsed() > open_for {
            stopped_by = format!("the time limit {open_for:?}");
            break;
        }
        match connection.open(SOTW_PATH, OPEN_WAIT).await {
            Ok(stream) => {
                responses.push(stream.response);
                bodies.push(stream.body);
            }
            Err(OpenError::Blocked) => {
                stopped_by = format!(
                    "the connection's stream limit ({})",
                    connection.max_streams()
                );
                break;
            }
            Err(OpenError::Failed(error)) => {
                stopped_by = format!("an error: {error}");
                break;
            }
        }
    }
    let opened = responses.len();
    let opening = started.elapsed();
    window.hold().await;
    // What rudder itself holds: the client queues the streams past the server's concurrency
    // limit and sends them as earlier ones end, so the client's count of open streams says
    // little about the server.
    let unidentified = unidentified_streams(scene).await;

    // Every stream gets until the first-request timeout (plus a margin) after it was opened,
    // or a fixed wait where rudder has no such timeout.
    let timeout = context.bounds.duration(XDS_FIRST_REQUEST_TIMEOUT);
    let wait = timeout.map_or(
        context
            .scale
            .pick(Duration::from_secs(20), Duration::from_secs(5)),
        // The client queues the streams past the server's concurrency limit and sends them
        // as earlier ones end, so the last ones reach rudder late: each wave of a connection's
        // worth gets its own timeout.
        |timeout| (timeout + MARGIN) * 3,
    );
    let deadline = started + opening + wait;
    let endings: Vec<Ending> = futures::stream::iter(responses)
        .map(|response| async move {
            // Streams that ended have their ending buffered: a moment is enough to read it.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(500));
            raw::watch(response, left, 1).await
        })
        .buffer_unordered(usize::MAX)
        .collect()
        .await;
    drop(bodies);
    let still_open = endings.iter().filter(|ending| ending.open).count();
    let held = unidentified.map_or("?".to_string(), |held| held.to_string());
    let detail = format!(
        "{opened} of {target} streams opened in {:.1} s (stopped by {stopped_by}); rudder held \
         {held} without a request; {still_open} still open in the client's view {:.0} s later; \
         ends: {}",
        opening.as_secs_f64(),
        wait.as_secs_f64(),
        tally(&endings)
    );
    let verdict = if opened < target {
        Verdict::Bounded
    } else {
        Verdict::Survived
    };
    let mut findings = Findings::new(verdict, detail);
    // Streams the client still waits to send stay open in its view; what must hold is that
    // rudder holds no more than the connection's stream limit (memory is checked by the run).
    let allowed = context
        .bounds
        .value(XDS_MAX_STREAMS_PER_CONNECTION)
        .and_then(|limit| limit.parse::<usize>().ok())
        .filter(|_| timeout.is_some())
        .unwrap_or(0);
    match (timeout, unidentified) {
        (None, _) if still_open > 0 => findings.fail(format!(
            "no first-request timeout: {still_open} idle streams still open"
        )),
        (Some(_), Some(held)) if held > allowed => findings.fail(format!(
            "rudder held {held} streams without a request, more than the {allowed} one \
             connection may hold"
        )),
        (Some(_), None) => findings.fail("no rudder_xds_unidentified_streams in /metrics".into()),
        _ => {}
    }
    findings
}

/// `rudder_xds_unidentified_streams` from rudder's `/metrics`, if it has it.
async fn unidentified_streams(scene: &Scene) -> Option<usize> {
    let url = format!("http://{}/metrics", scene.admin);
    let body = reqwest::get(&url).await.ok()?.text().await.ok()?;
    body.lines().find_map(|line| {
        let value = line.strip_prefix("rudder_xds_unidentified_streams ")?;
        value.trim().parse::<f64>().ok().map(|value| value as usize)
    })
}

/// Counts of how streams ended: `CODE xN`, `reset xN`, `open xN`.
pub fn tally(endings: &[Ending]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for ending in endings {
        let key = match (ending.status, &ending.error) {
            _ if !ending.messages.is_empty() => "served".to_string(),
            (Some(code), _) => raw::code_name(code),
            (None, Some(_)) => "failed".to_string(),
            (None, None) if ending.open => "open".to_string(),
            (None, None) => "ended".to_string(),
        };
        *counts.entry(key).or_default() += 1;
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(key, count)| format!("{key} x{count}"))
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

/// Streams in flight per flooding connection, at most.
const IN_FLIGHT: usize = 100;
const FLOOD_CONNECTIONS: usize = 8;

pub async fn flood(scene: &Scene, context: &Context, mut window: Window) -> Findings {
    let per_second = context.scale.pick(2000, 1000);
    // From a second before the edits are timed until they are done, at least 10 s (3 s quick),
    // at most 120 s (60 s).
    let warm_up = Duration::from_secs(1);
    let longest = context
        .scale
        .pick(Duration::from_secs(120), Duration::from_secs(60));
    let stop = Arc::new(AtomicBool::new(false));
    let endings = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..FLOOD_CONNECTIONS {
        let from = scene.slot.attacker(n);
        let (xds, stop, endings) = (scene.xds, stop.clone(), endings.clone());
        let every = Duration::from_secs_f64(FLOOD_CONNECTIONS as f64 / per_second as f64);
        tasks.push(tokio::spawn(async move {
            flood_one(from, xds, every, n, stop, endings, started + longest).await
        }));
    }
    tokio::time::sleep(warm_up).await;
    window.hold().await;
    let least = context
        .scale
        .pick(Duration::from_secs(10), Duration::from_secs(3));
    tokio::time::sleep(least.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::SeqCst);
    let mut skipped = 0;
    let mut broken = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(count)) => skipped += count,
            Ok(Err(error)) => broken.push(error),
            Err(error) => broken.push(error.to_string()),
        }
    }
    let flooded_for = started.elapsed();
    let endings = std::mem::take(&mut *endings.lock().await);
    let limited = endings
        .iter()
        .filter(|ending| ending.status == Some(8) && !ending.message.trim().is_empty())
        .count();
    let detail = format!(
        "{} streams in {:.1} s ({:.0}/s; {skipped} more not opened, {IN_FLIGHT} in flight per \
         connection): {}",
        endings.len(),
        flooded_for.as_secs_f64(),
        endings.len() as f64 / flooded_for.as_secs_f64(),
        tally(&endings)
    );
    let verdict = if limited > 0 {
        Verdict::Refused
    } else {
        Verdict::Survived
    };
    let mut findings = Findings::new(verdict, detail);
    if limited == 0 {
        let limit = context
            .bounds
            .value(XDS_MAX_STREAMS_PER_SECOND)
            .map_or("no rate limit".to_string(), |v| format!("limit {v}/s"));
        findings.fail(format!(
            "no stream refused with RESOURCE_EXHAUSTED ({limit})"
        ));
    }
    if !broken.is_empty() {
        findings.fail(format!("flooding connections failed: {broken:?}"));
    }
    findings
}

/// One flooding connection: a new stream every `every` (skipped while [`IN_FLIGHT`] are
/// waiting), each with a valid first request, watched for a second, until `stop` or
/// `deadline`; returns the streams it skipped.
async fn flood_one(
    from: std::net::IpAddr,
    xds: std::net::SocketAddr,
    every: Duration,
    n: usize,
    stop: Arc<AtomicBool>,
    endings: Arc<Mutex<Vec<Ending>>>,
    deadline: Instant,
) -> Result<usize, String> {
    let mut connection = Connection::connect(from, xds).await?;
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut skipped = 0;
    let mut watchers = Vec::new();
    for i in 0usize.. {
        ticks.tick().await;
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            break;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let mut stream = match connection.open(SOTW_PATH, Duration::from_millis(100)).await {
            Ok(stream) => stream,
            Err(OpenError::Blocked) => {
                skipped += 1;
                continue;
            }
            Err(OpenError::Failed(_)) => {
                // The server closed the connection: open another.
                connection = Connection::connect(from, xds).await?;
                continue;
            }
        };
        let node = xds::sidecar(
            &format!("10.77.{n}.{}", i % 250 + 1),
            &format!("flood-{n}-{i}"),
        );
        let request = xds::framed(&xds::sotw(Some(node), ResourceType::Cluster, Vec::new()));
        let endings = endings.clone();
        watchers.push(tokio::spawn(async move {
            let sent =
                raw::send_all(&mut stream.body, request, false, Duration::from_secs(1)).await;
            let mut ending = raw::watch(stream.response, Duration::from_secs(1), 1).await;
            if let (Err(error), None) = (sent, &ending.status) {
                ending.error.get_or_insert(error);
            }
            // Only whether it was served is counted; the config itself is not kept.
            ending.messages.truncate(1);
            ending
                .messages
                .iter_mut()
                .for_each(|message| *message = Bytes::new());
            endings.lock().await.push(ending);
            drop(permit);
        }));
        watchers.retain(|watcher| !watcher.is_finished());
    }
    for watcher in watchers {
        let _ = watcher.await;
    }
    Ok(skipped)
}

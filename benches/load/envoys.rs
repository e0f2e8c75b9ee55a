//! The load run with real Envoys (`--envoys`): the same mesh, server and timed edits as
//! `harness.rs`, but the proxies are stock Envoy processes (`tests/support/envoy_process.rs`;
//! `$ENVOY` or `envoy` on the PATH), each with its own node id, address and label set as the
//! simulated proxies have, to calibrate those against what real proxies cost the server.
//!
//! It owns reading the Envoys' state and turning it into the harness's [`Report`]; it must not
//! time anything differently from the simulated run, so it keeps the same phases, quiet period
//! and percentiles. A simulated proxy's time is the arrival of its last response; an Envoy's is
//! when it last accepted one, from the `config` component's debug log ("gRPC config for TYPE
//! accepted", "Delta config for TYPE accepted": milliseconds, local time), which holds a line per
//! response whether or not it changed anything; the config dump's `last_updated` stamps would
//! miss unchanged resends and have none for endpoints. The log's stamps are read after the fact,
//! so polling the admin only decides when a phase is over, not the precision of the times. The
//! initial phase counts from the first xDS stream an Envoy opened ("Establishing new gRPC bidi
//! stream"), as the simulated one counts from its first connection. Whether
//! an Envoy is served (clusters, listeners and routes accepted, nothing warming) and the bytes on
//! its xDS connection (`cluster.xds-grpc.upstream_cx_rx_bytes_total`: gRPC and HTTP/2 framing
//! included) come from its `/stats`.
//!
//! The Envoys declare `INTERCEPTION_MODE: NONE`, so their listeners bind on 127.0.0.1 and nothing
//! is opened beyond loopback; the simulated proxies compared with them carry the same metadata
//! (`RunSpec::loopback_listeners`), so both get the same config.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use rudder::bootstrap::AdsApiType;
use serde_json::json;

use super::args::millis;
use super::envoy_process::EnvoyProcess;
use super::harness::{self, QUIET, Report, RunSpec};
use super::mesh;
use super::server::ServerProcess;

/// How often every Envoy's admin is read while a phase runs.
const POLL: Duration = Duration::from_millis(500);

/// What one Envoy holds.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// It accepted clusters, listeners and routes, and nothing is warming (a cluster warms until
    /// its endpoints came).
    served: bool,
    /// When it last accepted a response.
    last_update: Option<SystemTime>,
    /// When the last response arrived (before Envoy applied it): what a simulated proxy's time
    /// means, printed beside the table to tell the server's share from Envoy's own.
    last_arrival: Option<SystemTime>,
    /// Bytes received on its xDS connection.
    bytes: u64,
}

/// Envoy's arguments for the log lines [`last_accepted`] reads: one a response, written out
/// within 50 ms (the default is every 10 s) so that a quiet period shows while it lasts.
const ENVOY_ARGS: &[&str] = &[
    "--component-log-level",
    "config:debug",
    "--file-flush-interval-msec",
    "50",
];

/// The stats [`look`] reads.
const STATS: &str = "^(cluster_manager\\.(cds\\.update_success|warming_clusters)|\
     listener_manager\\.(lds\\.update_success|total_listeners_warming|total_listeners_active)|\
     http\\..*\\.rds\\..*\\.update_success|cluster\\.xds-grpc\\.upstream_cx_rx_bytes_total)$";

pub async fn run(spec: RunSpec) -> Report {
    assert!(spec.envoys && spec.loopback_listeners);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path();
    harness::write_mesh(config, spec);
    let server = ServerProcess::start(spec.server, config, spec.debounce);
    let http = reqwest::Client::new();

    let start = SystemTime::now();
    let envoys = start_envoys(&server, spec).await;
    let seen = settle(&http, &envoys, spec, |seen| seen.served)
        .await
        .unwrap_or_else(|seen| {
            panic!(
                "{}: {} of {} Envoys got their config within {:?}",
                spec.server.name(),
                seen.iter().filter(|seen| seen.served).count(),
                spec.proxies,
                spec.limit
            )
        });
    // From the first stream, as the simulated run counts from its first connection: an Envoy's
    // own start-up (forking, loading a 100 MB binary, on cores the others share) is not the
    // server's.
    let streams: Vec<Option<SystemTime>> = envoys
        .iter()
        .map(|proxy| first_stream(&proxy.envoy.log()))
        .collect();
    let first = streams.iter().flatten().min().copied().unwrap_or(start);
    let initial = latest(&seen, first);
    // How much of that is the Envoys starting one after another on shared cores rather than
    // being served: the slowest Envoy's time from its own first stream.
    let slowest_own = streams
        .iter()
        .zip(&seen)
        .filter_map(|(own, seen)| seen.last_update?.duration_since((*own)?).ok())
        .max()
        .unwrap_or_default();
    eprintln!(
        "{} {}x{} Envoys: all served {} ms after the first stream (the last response arrived at {} \
         ms); the slowest Envoy {} ms after its own",
        spec.server.name(),
        spec.services,
        spec.proxies,
        millis(initial),
        millis(
            seen.iter()
                .filter_map(|seen| seen.last_arrival?.duration_since(first).ok())
                .max()
                .unwrap_or_default()
        ),
        millis(slowest_own)
    );
    let initial_bytes_per_proxy = harness::median(seen.iter().map(|seen| seen.bytes).collect());

    let mut edits = Vec::new();
    let mut before = seen;
    for (edit, index, shape) in harness::edits(spec) {
        let apply =
            |config: &Path| mesh::write_service(config, index, shape).expect("write an edit");
        let (convergence, arrivals, after) =
            time_edit(&http, &envoys, config, &apply, spec, &before).await;
        eprintln!(
            "{} {}x{} Envoys: {edit} edit reached {} of {}; last response arrived {arrivals}",
            spec.server.name(),
            spec.services,
            spec.proxies,
            convergence.reached,
            spec.proxies
        );
        edits.push(convergence);
        before = after;
    }
    Report {
        spec,
        initial,
        initial_bytes_per_proxy,
        edits,
        cpu_seconds: server.cpu_seconds(),
        peak_rss: server.peak_rss(),
        bytes_sent: before.iter().map(|seen| seen.bytes).sum(),
    }
}

/// A started Envoy, and the thread that started it, which must outlive it: these Envoys get
/// SIGTERM from this process when the thread that forked them ends (a parent-death signal on the
/// thread; seen as every Envoy stopping ten seconds in, when tokio's idle blocking threads exit),
/// so each is started from a thread of its own that waits until the Envoy is dropped.
struct Proxy {
    envoy: EnvoyProcess,
    /// Dropped after `envoy` (fields drop in order), which lets the thread end.
    _keeper: std::sync::mpsc::Sender<()>,
}

/// Starts every Envoy at once, as the simulated proxies all connect at once.
async fn start_envoys(server: &ServerProcess, spec: RunSpec) -> Vec<Proxy> {
    let xds = server.xds;
    let api_type = if spec.delta {
        AdsApiType::DeltaGrpc
    } else {
        AdsApiType::Grpc
    };
    let starts: Vec<_> = (0..spec.proxies)
        .map(|i| {
            let node = format!(
                "sidecar~{}~client-{i}.bench~bench.svc.cluster.local",
                harness::proxy_ip(i)
            );
            let metadata = json!({
                "NAMESPACE": "bench",
                "INTERCEPTION_MODE": "NONE",
                "LABELS": {"app": harness::labels(spec, i)},
            });
            let (started, envoy) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let (keeper, dropped) = std::sync::mpsc::channel::<()>();
                let envoy =
                    EnvoyProcess::start_with_args(&node, metadata, xds, api_type, ENVOY_ARGS);
                if started
                    .send(Proxy {
                        envoy,
                        _keeper: keeper,
                    })
                    .is_ok()
                {
                    // Returns once the Proxy, and with it the Sender, is dropped.
                    let _ = dropped.recv();
                }
            });
            envoy
        })
        .collect();
    let mut proxies = Vec::with_capacity(starts.len());
    for start in starts {
        proxies.push(start.await.expect("an Envoy started"));
    }
    proxies
}

async fn time_edit(
    http: &reqwest::Client,
    envoys: &[Proxy],
    config: &Path,
    apply: &dyn Fn(&Path),
    spec: RunSpec,
    before: &[Seen],
) -> (harness::Convergence, String, Vec<Seen>) {
    let t0 = SystemTime::now();
    apply(config);
    let updated = |seen: &Seen| seen.last_update.is_some_and(|last| last > t0);
    // An edit that reaches no Envoy leaves them unreached: reported, not fatal.
    let seen = match settle(http, envoys, spec, updated).await {
        Ok(seen) | Err(seen) => seen,
    };
    let mut times: Vec<Duration> = seen
        .iter()
        .filter(|seen| updated(seen))
        .filter_map(|seen| seen.last_update?.duration_since(t0).ok())
        .collect();
    times.sort();
    let bytes = seen
        .iter()
        .zip(before)
        .map(|(after, before)| after.bytes.saturating_sub(before.bytes))
        .collect();
    let arrivals = percentiles(
        seen.iter()
            .filter_map(|seen| seen.last_arrival?.duration_since(t0).ok())
            .collect(),
    );
    let convergence = harness::convergence(times, harness::median(bytes), spec.proxies).await;
    (convergence, arrivals, seen)
}

/// Reads every Envoy until `done` holds for each and none has applied anything for [`QUIET`]:
/// what each holds then (`Err` with what they held if `spec.limit` passed first).
async fn settle(
    http: &reqwest::Client,
    envoys: &[Proxy],
    spec: RunSpec,
    done: impl Fn(&Seen) -> bool,
) -> Result<Vec<Seen>, Vec<Seen>> {
    let deadline = Instant::now() + spec.limit;
    loop {
        let mut seen = Vec::with_capacity(envoys.len());
        for Proxy { envoy, .. } in envoys {
            seen.push(look(http, envoy).await.unwrap_or_else(|error| {
                panic!(
                    "Envoy at {}: {error}; its log:\n{}",
                    envoy.admin,
                    envoy.log()
                )
            }));
        }
        let last = seen.iter().filter_map(|seen| seen.last_update).max();
        let quiet = last.is_none_or(|last| {
            SystemTime::now()
                .duration_since(last)
                .is_ok_and(|quiet| quiet >= QUIET)
        });
        if quiet && seen.iter().all(&done) {
            return Ok(seen);
        }
        if Instant::now() > deadline {
            return Err(seen);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// "p50 / p99 ms" of `times`.
fn percentiles(mut times: Vec<Duration>) -> String {
    times.sort();
    let at = |p| millis(harness::percentile(&times, p));
    format!("p50 / p99 {} / {} ms", at(0.5), at(0.99))
}

/// From `since` to the latest update any Envoy applied.
fn latest(seen: &[Seen], since: SystemTime) -> Duration {
    seen.iter()
        .filter_map(|seen| seen.last_update?.duration_since(since).ok())
        .max()
        .unwrap_or_default()
}

/// One Envoy's state, from its stats and its log.
async fn look(http: &reqwest::Client, envoy: &EnvoyProcess) -> Result<Seen, String> {
    // The filter percent-encoded whole: a regex's `\`, `^` and `|` have no place in a URL.
    let filter: String = STATS
        .bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect();
    let url = format!("http://{}/stats?filter={filter}", envoy.admin);
    let stats = http
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|error| format!("GET {url}: {error}"))?
        .text()
        .await
        .map_err(|error| format!("GET {url}: {error}"))?;
    let stat = |wanted: &dyn Fn(&str) -> bool| -> Vec<u64> {
        stats
            .lines()
            .filter_map(|line| line.split_once(": "))
            .filter(|(name, _)| wanted(name))
            .filter_map(|(_, value)| value.trim().parse().ok())
            .collect()
    };
    let log = envoy.log();
    let one = |name: &str| stat(&|stat| stat == name).first().copied().unwrap_or(0);
    let routes = stat(&|name| name.starts_with("http.") && name.contains(".rds."));
    Ok(Seen {
        served: one("cluster_manager.cds.update_success") > 0
            && one("cluster_manager.warming_clusters") == 0
            && one("listener_manager.lds.update_success") > 0
            && one("listener_manager.total_listeners_warming") == 0
            && one("listener_manager.total_listeners_active") > 0
            && routes.iter().any(|accepted| *accepted > 0),
        last_update: last_accepted(&log),
        last_arrival: last_arrival(&log),
        bytes: one("cluster.xds-grpc.upstream_cx_rx_bytes_total"),
    })
}

/// When the Envoy whose log this is last accepted a response (see [`ENVOY_ARGS`]): "gRPC config
/// for TYPE accepted", "Delta config for TYPE accepted".
fn last_accepted(log: &str) -> Option<SystemTime> {
    last_line(log, " accepted ")
}

/// When the last response arrived: "Received gRPC message for TYPE", "Received
/// DeltaDiscoveryResponse for TYPE".
fn last_arrival(log: &str) -> Option<SystemTime> {
    last_line(log, "] Received ")
}

fn last_line(log: &str, containing: &str) -> Option<SystemTime> {
    log.lines()
        .rev()
        .filter(|line| line.contains("][debug][config]") && line.contains(containing))
        .find_map(stamp)
}

/// When the Envoy whose log this is opened its first xDS stream.
fn first_stream(log: &str) -> Option<SystemTime> {
    log.lines()
        .filter(|line| line.contains("Establishing new gRPC bidi stream"))
        .find_map(stamp)
}

/// The time an Envoy log line starts with: `[2026-12-07 18:03:37.411][PID][LEVEL][COMPONENT]`,
/// in the local time zone.
fn stamp(line: &str) -> Option<SystemTime> {
    let text = line
        .strip_prefix('[')?
        .split(']')
        .next()?
        .replacen(' ', "T", 1);
    let time = text.parse::<jiff::civil::DateTime>().ok()?;
    let zoned = time.to_zoned(jiff::tz::TimeZone::system()).ok()?;
    Some(SystemTime::from(zoned.timestamp()))
}

//! One soak run: the generated mesh on disk, `rudder serve` as its own process, a fleet of ADS
//! clients, and for the whole duration three churns at once (endpoints every 200 ms, rules every
//! second, a few proxies replaced every second) while rudder is sampled every interval (one
//! table row printed per sample). At the end the churn stops and one marker edit must reach every
//! connected proxy. Shared by `cargo bench --bench soak` and `tests/soak_smoke.rs`; it measures
//! and lists what failed, the caller decides the exit.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::{MissedTickBehavior, interval};

use super::churn::ConfigChurn;
use super::fleet::Fleet;
use super::sample::{self, Sample};
use super::server::{ServerKind, ServerProcess};

const ENDPOINT_EVERY: Duration = Duration::from_millis(200);
const RULE_EVERY: Duration = Duration::from_secs(1);
const PROXIES_EVERY: Duration = Duration::from_secs(1);
/// How long every stream must be silent before the marker edit, so that what arrives after it
/// is the marker's push and not the tail of the churn.
const QUIET: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct SoakSpec {
    pub services: usize,
    pub proxies: usize,
    pub duration: Duration,
    pub sample_every: Duration,
    /// rudder's `--debounce-after`, if not its default.
    pub debounce: Option<Duration>,
    pub seed: u64,
    /// How long the first config and the marker edit may take to reach every proxy.
    pub limit: Duration,
    pub churns: Churns,
    /// Every proxy delta, or every one SotW; `None`: half each.
    pub delta: Option<bool>,
}

/// Which churns run: all of them, or some, to find which one a growth follows.
#[derive(Debug, Clone, Copy)]
pub struct Churns {
    pub endpoints: bool,
    pub rules: bool,
    pub proxies: bool,
}

impl Churns {
    pub const ALL: Churns = Churns {
        endpoints: true,
        rules: true,
        proxies: true,
    };
}

impl SoakSpec {
    /// Proxies replaced every second: a few, 2% of the fleet.
    fn replaced_per_tick(&self) -> usize {
        if self.churns.proxies {
            (self.proxies / 50).max(1)
        } else {
            0
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Marker {
    pub connected: usize,
    pub reached: usize,
    /// From the edit until the last proxy had it, if all did.
    pub took: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct SoakReport {
    pub spec: SoakSpec,
    /// Taken when every proxy held its first config, before any churn.
    pub before: Sample,
    /// One per interval.
    pub samples: Vec<Sample>,
    pub rudder_exited: bool,
    /// Proxy streams rudder closed cleanly (their maximum age); the proxies connected again.
    pub streams_closed: usize,
    /// Proxy connections refused and streams that failed.
    pub streams_failed: usize,
    /// Edits the filesystem refused (not counted as changes).
    pub failed_writes: u64,
    /// `None` if rudder was gone by then.
    pub marker: Option<Marker>,
}

impl SoakReport {
    /// What went wrong, if anything: rudder gone, a change built more than once, a proxy no
    /// longer receiving.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if self.rudder_exited {
            failures.push("rudder exited".to_string());
        }
        if let Some(last) = self.samples.last() {
            let builds = built(&self.before, last);
            let changes = last.changes - self.before.changes;
            if builds.is_none_or(|builds| builds > changes as f64) {
                failures.push(format!("{builds:?} builds for {changes} changes"));
            }
        } else {
            failures.push("no sample taken".to_string());
        }
        if self.streams_failed > 0 {
            failures.push(format!("{} proxy streams failed", self.streams_failed));
        }
        match self.marker {
            Some(marker) if marker.took.is_some() => {}
            Some(marker) => failures.push(format!(
                "the marker edit reached {} of {} proxies within {:?}",
                marker.reached, marker.connected, self.spec.limit
            )),
            None => failures.push("no marker edit".to_string()),
        }
        failures
    }

    /// The summary printed after the table.
    pub fn summary(&self) -> String {
        let mut lines = vec![format!(
            "Soak of {:.1} min: {} services, {} proxies ({}), debounce {}.",
            self.spec.duration.as_secs_f64() / 60.0,
            self.spec.services,
            self.spec.proxies,
            match self.spec.delta {
                None => "half delta",
                Some(true) => "delta",
                Some(false) => "SotW",
            },
            self.spec
                .debounce
                .map_or("rudder's default".to_string(), |d| format!("{d:?}"))
        )];
        let (Some(first), Some(last)) = (self.samples.first(), self.samples.last()) else {
            lines.push("No sample was taken.".to_string());
            return lines.join("\n");
        };
        let max_rss = self.samples.iter().map(|s| s.rss).max().unwrap_or(0);
        let max_fds = self.samples.iter().map(|s| s.fds).max().unwrap_or(0);
        lines.push(format!(
            "- VmRSS (MiB): before churn {}, first sample {}, last {}, max {}; VmHWM at the end {}",
            sample::mib(self.before.rss),
            sample::mib(first.rss),
            sample::mib(last.rss),
            sample::mib(max_rss),
            sample::mib(last.peak_rss)
        ));
        lines.push(format!(
            "- open fds: before churn {}, first sample {}, last {}, max {}",
            self.before.fds, first.fds, last.fds, max_fds
        ));
        let changes = last.changes - self.before.changes;
        let delta = |figure: fn(&sample::Scraped) -> f64| {
            Some(figure(last.scraped.as_ref()?) - figure(self.before.scraped.as_ref()?))
        };
        let total = |figure| delta(figure).map_or("n/a".to_string(), |n| format!("{n:.0}"));
        let per_change =
            |figure| delta(figure).map_or("n/a".to_string(), |n| sample::ratio(n, changes));
        lines.push(format!(
            "- changes {changes}, builds {} ({} per change), of which endpoint updates {} and \
             full builds {} ({} per change), pushes {} ({} per change)",
            total(|s| s.builds),
            per_change(|s| s.builds),
            total(|s| s.endpoint_updates),
            total(|s| s.builds - s.endpoint_updates),
            per_change(|s| s.builds - s.endpoint_updates),
            total(|s| s.pushes),
            per_change(|s| s.pushes),
        ));
        lines.push(format!(
            "- proxy streams failed: {}; closed by rudder (maximum age) and opened again: {}",
            self.streams_failed, self.streams_closed
        ));
        if self.failed_writes > 0 {
            lines.push(format!(
                "- edits the filesystem refused (not counted): {}",
                self.failed_writes
            ));
        }
        lines.push(match self.marker {
            Some(Marker {
                connected,
                took: Some(took),
                ..
            }) => format!(
                "- final marker edit reached all {connected} connected proxies in {} ms",
                took.as_millis()
            ),
            Some(marker) => format!(
                "- final marker edit reached {} of {} connected proxies",
                marker.reached, marker.connected
            ),
            None => "- no marker edit: rudder was gone".to_string(),
        });
        let failures = self.failures();
        lines.push(if failures.is_empty() {
            "- result: ok".to_string()
        } else {
            format!("- result: FAILED ({})", failures.join("; "))
        });
        lines.join("\n")
    }
}

fn built(before: &Sample, after: &Sample) -> Option<f64> {
    Some(after.scraped?.builds - before.scraped?.builds)
}

/// Runs the soak, printing the table header and a row per sample as they come.
pub async fn run(spec: SoakSpec) -> SoakReport {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config =
        ConfigChurn::write_mesh(dir.path(), spec.services, spec.seed).expect("write the mesh");
    let changes = config.changes();
    let mut server = ServerProcess::start(ServerKind::Rudder, dir.path(), spec.debounce);
    let admin = reqwest::Client::new();

    let mut fleet = Fleet::connect(server.xds, spec.proxies, spec.delta, spec.seed ^ 0x50ac);
    let connected = Instant::now();
    let all_served = wait_until(spec.limit, || fleet.served_since(connected) == fleet.len()).await;
    assert!(
        all_served,
        "{} of {} proxies got their first config within {:?}",
        fleet.served_since(connected),
        fleet.len(),
        spec.limit
    );

    let start = Instant::now();
    let before = sample::take(&server, &admin, Duration::ZERO, 0).await;
    println!("{}", sample::HEADER);
    println!("{}", sample::row(&before, None));

    let (stop, stopped) = watch::channel(false);
    let config_task = tokio::spawn(churn_config(config, spec.churns, stopped.clone()));
    let replaced = spec.replaced_per_tick();
    let fleet_task = tokio::spawn(churn_proxies(fleet, replaced, stopped));

    let mut samples: Vec<Sample> = Vec::new();
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::from_std(start + spec.sample_every),
        spec.sample_every,
    );
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut rudder_exited = false;
    while start.elapsed() < spec.duration {
        ticker.tick().await;
        let taken = sample::take(
            &server,
            &admin,
            start.elapsed(),
            changes.load(Ordering::Relaxed),
        )
        .await;
        println!("{}", sample::row(&taken, samples.last().or(Some(&before))));
        samples.push(taken);
        if server.exited() {
            rudder_exited = true;
            break;
        }
    }
    let _ = stop.send(true);
    config = config_task.await.expect("the config churn ends");
    fleet = fleet_task.await.expect("the proxy churn ends");

    let marker = if rudder_exited {
        None
    } else {
        Some(mark(&mut config, &fleet, spec.limit).await)
    };
    rudder_exited |= server.exited();
    SoakReport {
        spec,
        before,
        samples,
        rudder_exited,
        streams_closed: fleet.closed(),
        streams_failed: fleet.failed(),
        failed_writes: config.failed_writes(),
        marker,
    }
}

async fn churn_config(
    mut config: ConfigChurn,
    churns: Churns,
    mut stopped: watch::Receiver<bool>,
) -> ConfigChurn {
    let mut endpoints = interval(ENDPOINT_EVERY);
    let mut rules = interval(RULE_EVERY);
    endpoints.set_missed_tick_behavior(MissedTickBehavior::Delay);
    rules.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => return config,
            _ = endpoints.tick(), if churns.endpoints => {
                config.change_endpoints();
            }
            _ = rules.tick(), if churns.rules => config.change_rules(),
        }
    }
}

async fn churn_proxies(
    mut fleet: Fleet,
    replaced: usize,
    mut stopped: watch::Receiver<bool>,
) -> Fleet {
    let mut ticks = interval(PROXIES_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The first tick is immediate; the fleet has only just been served.
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = stopped.changed() => return fleet,
            _ = ticks.tick() => fleet.replace(replaced),
        }
    }
}

/// Waits for the proxies to be quiet, writes the marker edit and waits until every connected
/// proxy holds its config and got something after the edit.
async fn mark(config: &mut ConfigChurn, fleet: &Fleet, limit: Duration) -> Marker {
    wait_until(limit, || {
        fleet
            .last_response()
            .is_none_or(|last| last.elapsed() >= QUIET)
    })
    .await;
    let edited = Instant::now();
    if !config.mark() {
        return Marker {
            connected: fleet.len(),
            reached: 0,
            took: None,
        };
    }
    let reached_all = wait_until(limit, || fleet.served_since(edited) == fleet.len()).await;
    Marker {
        connected: fleet.len(),
        reached: fleet.served_since(edited),
        took: reached_all
            .then(|| fleet.last_response())
            .flatten()
            .map(|last| last.duration_since(edited)),
    }
}

/// Polls `done` until it holds (true) or `limit` passes (false).
async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

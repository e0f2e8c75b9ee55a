//! One attack run, the same for the bench and the quick tests: a fresh [`Scene`], rule edits
//! timed before the attack, then the attack with the same edits timed while it holds (the
//! attack says when it is in place through its [`Window`]), rudder's memory sampled throughout,
//! and a judgement: rudder alive, peak RSS within [`RunSpec::rss_allowance`] of what it was
//! before the attack, edits within twice their unattacked time (at least
//! [`RunSpec::edit_floor`]), no request through the Envoy failed, and whatever the attack itself
//! found. It returns a [`Row`]; printing and exiting are the caller's.

#![allow(dead_code)] // tests/hostile.rs runs at the quick scale only.

use std::time::Duration;

use tokio::sync::{oneshot, watch};

use super::attacks::{Attack, Findings, Verdict};
use super::flags::Bounds;
use super::rudder::Exit;
use super::scene::{Scene, SceneSpec, Slot};

/// How big and how long: the bench's figures, or the quick tests' small ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Bench,
    Quick,
}

impl Scale {
    pub fn pick<T>(self, bench: T, quick: T) -> T {
        match self {
            Scale::Bench => bench,
            Scale::Quick => quick,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub attack: Attack,
    pub scale: Scale,
    pub slot: Slot,
    /// Generated services besides the Envoy's own namespace; `None`: the attack's default.
    pub services: Option<usize>,
    pub binary: std::path::PathBuf,
    pub bounds: Bounds,
    pub cgroup: bool,
    /// Edits timed before the attack, and again during it.
    pub edits: usize,
    /// How long one edit may take to reach the Envoy.
    pub edit_limit: Duration,
    /// The least allowance for an edit under attack, so that a fast unattacked edit does not
    /// make noise a failure.
    pub edit_floor: Duration,
    /// How much rudder's RSS may grow over what it was before the attack.
    pub rss_allowance: u64,
}

impl RunSpec {
    pub fn new(attack: Attack, scale: Scale, slot: Slot, binary: std::path::PathBuf) -> RunSpec {
        RunSpec {
            attack,
            scale,
            slot,
            services: None,
            bounds: Bounds::probe(&binary, scale == Scale::Quick),
            binary,
            cgroup: super::rudder::cgroups_available(),
            edits: scale.pick(5, 3),
            edit_limit: scale.pick(Duration::from_secs(60), Duration::from_secs(20)),
            edit_floor: Duration::from_secs(1),
            rss_allowance: rss_allowance(attack, scale),
        }
    }
}

/// How much RSS an attack may add: 256 MiB (128 MiB quick), and for the debug dumps what one
/// `config_dump` of a proxy that sees the whole mesh holds while it is built (one at a time, by
/// `--debug-concurrency`): measured at +452 MiB for 2,000 services, so 768 MiB at bench size.
fn rss_allowance(attack: Attack, scale: Scale) -> u64 {
    let mib = match attack {
        Attack::DebugDump16 | Attack::DebugDump40 => scale.pick(768, 128),
        _ => scale.pick(256, 128),
    };
    mib << 20
}

/// What the attack needs besides the scene.
pub struct Context {
    pub scale: Scale,
    pub bounds: Bounds,
}

/// The attack's side of the edit timing: it calls [`Window::hold`] once its hostile state is in
/// place, and keeps that state until `hold` returns.
pub struct Window {
    engaged: Option<oneshot::Sender<()>>,
    done: watch::Receiver<bool>,
}

impl Window {
    /// Lets the edits be timed now; returns once they are done.
    pub async fn hold(&mut self) {
        if let Some(engaged) = self.engaged.take() {
            let _ = engaged.send(());
        }
        let _ = self.done.wait_for(|done| *done).await;
    }
}

#[derive(Debug, Clone)]
pub struct Row {
    pub attack: Attack,
    pub services: usize,
    pub rss_before: u64,
    pub peak_rss: u64,
    pub rss_after: u64,
    /// `None`: the edit did not reach the Envoy within the limit.
    pub unattacked: Vec<Option<Duration>>,
    pub attacked: Vec<Option<Duration>>,
    pub answered: u64,
    pub failed_requests: u64,
    pub verdict: Verdict,
    pub detail: String,
    /// Empty when the attack was refused or bounded.
    pub failures: Vec<String>,
}

pub async fn run(spec: &RunSpec) -> Row {
    let services = spec
        .services
        .unwrap_or_else(|| spec.attack.default_services(spec.scale));
    let scene_spec = SceneSpec {
        slot: spec.slot,
        services,
        binary: spec.binary.clone(),
        bounds: spec.bounds.clone(),
        cgroup: spec.cgroup,
        nofile: spec.attack.nofile(),
        tls: spec.attack.tls(),
    };
    let mut scene = match Scene::start(&scene_spec).await {
        Ok(scene) => scene,
        Err(error) => return Row::not_started(spec.attack, services, error),
    };
    let mut editor = scene.editor();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut unattacked = Vec::new();
    for _ in 0..spec.edits {
        unattacked.push(editor.edit(spec.edit_limit).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let rss_before = scene.rudder.rss();
    let attack_started = scene.rudder.elapsed();
    let (engaged, engaged_rx) = oneshot::channel();
    let (done, done_rx) = watch::channel(false);
    let window = Window {
        engaged: Some(engaged),
        done: done_rx,
    };
    let context = Context {
        scale: spec.scale,
        bounds: spec.bounds.clone(),
    };
    let timer = async {
        let mut times = Vec::new();
        if engaged_rx.await.is_ok() {
            for _ in 0..spec.edits {
                times.push(editor.edit(spec.edit_limit).await);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let _ = done.send(true);
        times
    };
    let (findings, attacked) = tokio::join!(spec.attack.run(&scene, &context, window), timer);
    let peak_rss = scene.rudder.peak_since(attack_started);
    tokio::time::sleep(
        spec.scale
            .pick(Duration::from_secs(5), Duration::from_secs(2)),
    )
    .await;
    let rss_after = scene.rudder.rss();
    scene.traffic.stop().await;
    let (answered, failed_requests) = scene.traffic.counts();
    let exit = scene.rudder.exit();

    let mut row = Row {
        attack: spec.attack,
        services,
        rss_before,
        peak_rss,
        rss_after,
        unattacked,
        attacked,
        answered,
        failed_requests,
        verdict: findings.verdict,
        detail: findings.detail.clone(),
        failures: Vec::new(),
    };
    row.judge(spec, &findings, &exit, &scene);
    row
}

impl Row {
    fn not_started(attack: Attack, services: usize, error: String) -> Row {
        Row {
            attack,
            services,
            rss_before: 0,
            peak_rss: 0,
            rss_after: 0,
            unattacked: Vec::new(),
            attacked: Vec::new(),
            answered: 0,
            failed_requests: 0,
            verdict: Verdict::Survived,
            detail: String::new(),
            failures: vec![format!("the scene did not start: {error}")],
        }
    }

    fn judge(&mut self, spec: &RunSpec, findings: &Findings, exit: &Exit, scene: &Scene) {
        let mut failures = Vec::new();
        match exit {
            Exit::Running => {}
            Exit::OomKilled => failures.push("rudder was OOM-killed".to_string()),
            Exit::Exited(status) => failures.push(format!(
                "rudder exited ({status}); its log ends: {}",
                super::scene::tail(&scene.rudder.log_text(), 3)
            )),
        }
        let bound = self.rss_before + spec.rss_allowance;
        if self.peak_rss > bound {
            failures.push(format!(
                "peak RSS {} MiB over the bound {} MiB (before + {} MiB)",
                mib(self.peak_rss),
                mib(bound),
                mib(spec.rss_allowance)
            ));
        }
        failures.extend(self.edit_failures(spec, findings.edit_grace));
        if self.failed_requests > 0 {
            failures.push(format!(
                "{} of {} requests through the Envoy failed (first: {:?})",
                self.failed_requests,
                self.answered + self.failed_requests,
                scene.traffic.first_failures()
            ));
        }
        failures.extend(findings.failures.iter().cloned());
        self.failures = failures;
    }

    fn edit_failures(&self, spec: &RunSpec, grace: Duration) -> Vec<String> {
        let mut failures = Vec::new();
        let missed = |edits: &[Option<Duration>]| edits.iter().filter(|e| e.is_none()).count();
        if missed(&self.unattacked) > 0 {
            failures.push(format!(
                "{} unattacked edits did not reach the Envoy within {:?}",
                missed(&self.unattacked),
                spec.edit_limit
            ));
        }
        if self.attacked.is_empty() {
            failures.push("no edit was timed under attack".to_string());
        } else if missed(&self.attacked) > 0 {
            failures.push(format!(
                "{} of {} edits under attack did not reach the Envoy within {:?}",
                missed(&self.attacked),
                self.attacked.len(),
                spec.edit_limit
            ));
        }
        let allowance =
            (2 * max(&self.unattacked).unwrap_or_default()).max(spec.edit_floor) + grace;
        if let Some(slowest) = max(&self.attacked)
            && slowest > allowance
        {
            failures.push(format!(
                "an edit under attack took {:.2} s, over {:.2} s (2x unattacked, at least {:?}{})",
                slowest.as_secs_f64(),
                allowance.as_secs_f64(),
                spec.edit_floor,
                if grace.is_zero() {
                    String::new()
                } else {
                    format!(", + {grace:?} the attack may hold fds")
                }
            ));
        }
        failures
    }

    /// `refused`, `bounded`, `survived`, or `FAILED (why; why)`.
    pub fn outcome(&self) -> String {
        if self.failures.is_empty() {
            self.verdict.name().to_string()
        } else {
            format!("FAILED ({})", self.failures.join("; "))
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

pub const HEADER: &str = "| attack | services | RSS before (MiB) | peak RSS (MiB) | RSS after (MiB) | \
     edit unattacked p50 / max (s) | edit attacked p50 / max (s) | failed requests | what the attacker saw | outcome |\n\
     | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |";

impl Row {
    pub fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} of {} | {} | {} |",
            self.attack.name(),
            self.services,
            mib_or_gone(self.rss_before),
            mib_or_gone(self.peak_rss),
            mib_or_gone(self.rss_after),
            edits(&self.unattacked),
            edits(&self.attacked),
            self.failed_requests,
            self.answered + self.failed_requests,
            self.detail.replace('|', "/"),
            self.outcome().replace('|', "/"),
        )
    }
}

fn max(edits: &[Option<Duration>]) -> Option<Duration> {
    edits.iter().flatten().max().copied()
}

/// `p50 / max`, with `>limit` for edits that never arrived.
fn edits(edits: &[Option<Duration>]) -> String {
    if edits.is_empty() {
        return "n/a".to_string();
    }
    let mut times: Vec<f64> = edits
        .iter()
        .map(|edit| edit.map_or(f64::INFINITY, |d| d.as_secs_f64()))
        .collect();
    times.sort_by(f64::total_cmp);
    let show = |t: f64| {
        if t.is_finite() {
            format!("{t:.2}")
        } else {
            "never".to_string()
        }
    };
    format!(
        "{} / {}",
        show(times[times.len() / 2]),
        show(times[times.len() - 1])
    )
}

/// `-` where there was no process to measure (not started, or gone).
fn mib_or_gone(bytes: u64) -> String {
    if bytes == 0 {
        "-".to_string()
    } else {
        mib(bytes)
    }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / f64::from(1 << 20))
}

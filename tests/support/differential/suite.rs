//! The main of both differential test files (`harness = false`): picks scenarios (arguments that
//! are not flags filter them by substring), runs them one after the other against the variant's
//! source, prints one verdict per scenario and the failures, writes the report
//! (`RUDDER_DIFF_REPORT=FILE`) and keeps docs/differential.md in step
//! (`RUDDER_UPDATE_DIFFERENTIAL=1` on a full run rewrites the variant's part of it). Knows
//! nothing of how a scenario is served.

use std::process::ExitCode;

use super::allowlist::{Allowlist, Variant};
use super::kube::KubeEnv;
use super::report::{markdown, markdown_path, report, summary};
use super::scenario::{ScenarioDir, names};
use super::{Outcome, Source, run_scenario};

/// Runs the suite's `variant`: the scenarios whose `variants` name it.
pub fn main(variant: Variant) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filters = Vec::new();
    let mut list = false;
    let mut skip_value = false;
    for arg in &args {
        if skip_value {
            skip_value = false;
        } else if arg == "--list" {
            list = true;
        } else if ["--test-threads", "--skip", "--format", "--color", "-Z"].contains(&arg.as_str())
        {
            skip_value = true;
        } else if !arg.starts_with('-') {
            filters.push(arg.clone());
        }
    }
    let all: Vec<String> = names()
        .into_iter()
        .filter(|name| runs_in(name, variant))
        .collect();
    let selected: Vec<&String> = all
        .iter()
        .filter(|name| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if list {
        for name in &selected {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    // Envoy listens with SO_REUSEPORT, so the Envoys of two runs at once (either variant) would
    // share the scenarios' ports and answer each other's probes: runs on one machine take turns.
    let _turn = match take_turn() {
        Ok(lock) => lock,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let allowlist = match Allowlist::load() {
        Ok(allowlist) => allowlist,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    let kube = (variant == Variant::Kube && !selected.is_empty()).then(KubeEnv::up);
    let source = match &kube {
        Some(env) => Source::Kube(env),
        None => Source::Files,
    };
    println!(
        "\nrunning {} differential scenarios ({variant} variant)",
        selected.len()
    );
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut failed = Vec::new();
    for name in &selected {
        let started = std::time::Instant::now();
        let outcome = match ScenarioDir::load(name) {
            Ok(scenario) => runtime.block_on(run_scenario(&scenario, &allowlist, &source)),
            Err(error) => Outcome {
                name: name.to_string(),
                compared: 0,
                found: Vec::new(),
                error: Some(error),
            },
        };
        let failures = outcome.failures(&allowlist, variant);
        let verdict = if failures.is_empty() { "ok" } else { "FAILED" };
        println!(
            "scenario {name} ... {verdict} ({} fields, {} differences, {:.1}s)",
            outcome.compared,
            outcome.found.len(),
            started.elapsed().as_secs_f64()
        );
        if !failures.is_empty() {
            failed.push((name.to_string(), failures));
        }
        outcomes.push(outcome);
    }
    drop(kube);
    // Patterns for every scenario are stale only when every scenario of the variant ran and none
    // matched them.
    let mut stale = Vec::new();
    if selected.len() == all.len() {
        let used: std::collections::BTreeSet<_> =
            outcomes.iter().flat_map(Outcome::matched).collect();
        for (id, one) in allowlist.match_ids() {
            if one.for_every_scenario() && one.checked_by(variant) && !used.contains(&id) {
                stale.push(format!(
                    "stale: {} matched nothing in any scenario of the {variant} variant; remove it",
                    allowlist.describe(id)
                ));
            }
        }
    }
    let report = report(&outcomes, &allowlist, &stale);
    if let Ok(path) = std::env::var("RUDDER_DIFF_REPORT") {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        if let Err(error) = std::fs::write(&path, text) {
            eprintln!("could not write the report to {path}: {error}");
        }
    }
    let page = markdown_path();
    let current = std::fs::read_to_string(&page).unwrap_or_default();
    if selected.len() == all.len() && std::env::var_os("RUDDER_UPDATE_DIFFERENTIAL").is_some() {
        let text = markdown(&current, variant, &report, &allowlist, &outcomes);
        if let Err(error) = std::fs::write(&page, text) {
            eprintln!("could not write {}: {error}", page.display());
        }
    } else {
        // The figures change with every scenario; the entries must at least all be there.
        for entry in &allowlist.entries {
            if !current.contains(&format!("`{}`", entry.id)) {
                stale.push(format!(
                    "docs/differential.md does not list allowlist entry {} \
                     (RUDDER_UPDATE_DIFFERENTIAL=1 on a full run rewrites it)",
                    entry.id
                ));
            }
        }
    }
    for (name, failures) in &failed {
        println!("\n---- scenario {name} ----");
        for failure in failures {
            println!("  {failure}");
        }
    }
    for line in &stale {
        println!("\n{line}");
    }
    println!("\n{}", summary(&report));
    if failed.is_empty() && stale.is_empty() {
        println!("differential: ok");
        ExitCode::SUCCESS
    } else {
        println!(
            "differential: FAILED ({} scenarios, {} stale entries)",
            failed.len(),
            stale.len()
        );
        ExitCode::FAILURE
    }
}

/// Whether a scenario runs in `variant`; one that does not load does, so that its error shows.
fn runs_in(name: &str, variant: Variant) -> bool {
    ScenarioDir::load(name).map_or(true, |dir| dir.scenario.variants.contains(&variant))
}

/// An exclusive lock held for the whole run, waited for if another run holds it.
fn take_turn() -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    use nix::fcntl::{Flock, FlockArg};
    let path = std::env::temp_dir().join("rudder-differential.lock");
    let describe = |error: nix::errno::Errno| format!("the run lock {}: {error}", path.display());
    let file = std::fs::File::create(&path)
        .map_err(|error| format!("the run lock {}: {error}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
            println!(
                "waiting for another differential run to finish ({})",
                path.display()
            );
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, error)| describe(error))
        }
        Err((_, error)) => Err(describe(error)),
    }
}

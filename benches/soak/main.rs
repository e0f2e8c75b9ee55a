//! The soak: rudder serving a mesh whose endpoints, rules and proxies change all the time, for an
//! hour by default, to show that its memory and open descriptors stay flat and that debouncing
//! keeps model builds at or below one per change.
//!
//! ```text
//! cargo bench --bench soak -- [--minutes 60] [--sample-secs 60] [--services 200]
//!                             [--proxies 200] [--debounce-ms 100] [--seed 1]
//!                             [--churn endpoints,rules,proxies] [--modes sotw,delta]
//! ```
//! `rudder serve` runs as its own process on the load harness's ServiceEntry/WorkloadEntry mesh
//! (`benches/load/mesh.rs`, three endpoints per service) written to a temporary directory;
//! `--proxies` in-process ADS clients (half SotW, half delta) hold its config. While it runs, an
//! endpoint set changes every 200 ms, a VirtualService or DestinationRule is edited (or an extra
//! service created or deleted) every second, and every second 2% of the proxies disconnect and as
//! many new ones (new node ids) connect; every file is written atomically (temp file + rename).
//! Every `--sample-secs` one Markdown row gives rudder's VmRSS, VmHWM, open fds, connected
//! proxies, and the changes, model builds and pushes so far and per change in the interval
//! (`/metrics`). At the end the churn stops, one marker edit must reach every connected proxy,
//! and a summary follows. The exit status is 1 if rudder died, builds outnumbered changes, a
//! proxy's stream failed or the marker did not reach every proxy. `--debounce-ms` is
//! rudder's `--debounce-after`; `--seed` picks another repeatable sequence of edits; `--churn` runs only some of the churns and
//! `--modes sotw` or `--modes delta` one ADS mode only, to tell what a growth follows.

#[path = "../support/ads_client.rs"]
mod ads_client;
#[path = "../support/args.rs"]
mod args;
mod churn;
mod fleet;
mod harness;
#[path = "../load/mesh.rs"]
mod mesh;
mod sample;
#[path = "../load/server.rs"]
mod server;

use std::time::Duration;

use args::{modes, option};
use harness::{Churns, SoakSpec};

fn number<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    option(args, name).map_or(Ok(default), |text| {
        text.parse().map_err(|_| format!("{name} takes a number"))
    })
}

/// `--churn`, a comma-separated list of `endpoints`, `rules` and `proxies`; all by default.
fn churns(args: &[String]) -> Result<Churns, String> {
    let Some(list) = option(args, "--churn") else {
        return Ok(Churns::ALL);
    };
    let mut churns = Churns {
        endpoints: false,
        rules: false,
        proxies: false,
    };
    for churn in list.split(',') {
        match churn {
            "endpoints" => churns.endpoints = true,
            "rules" => churns.rules = true,
            "proxies" => churns.proxies = true,
            other => {
                return Err(format!(
                    "unknown churn {other:?} (endpoints, rules, proxies)"
                ));
            }
        }
    }
    Ok(churns)
}

fn parse_spec() -> Result<SoakSpec, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let minutes: f64 = number(&args, "--minutes", 60.0)?;
    let sample_secs: f64 = number(&args, "--sample-secs", 60.0)?;
    if !(minutes > 0.0 && sample_secs > 0.0) {
        return Err("--minutes and --sample-secs must be above 0".to_string());
    }
    let services = number(&args, "--services", 200)?;
    let proxies = number(&args, "--proxies", 200)?;
    if services == 0 || proxies == 0 {
        return Err("--services and --proxies must be above 0".to_string());
    }
    let debounce = option(&args, "--debounce-ms")
        .map(|ms| ms.parse().map(Duration::from_millis))
        .transpose()
        .map_err(|_| "--debounce-ms takes a number".to_string())?;
    Ok(SoakSpec {
        services,
        proxies,
        duration: Duration::from_secs_f64(minutes * 60.0),
        sample_every: Duration::from_secs_f64(sample_secs),
        debounce,
        seed: number(&args, "--seed", 1)?,
        limit: Duration::from_secs(120),
        churns: churns(&args)?,
        delta: match modes(&args, "sotw,delta")?[..] {
            [delta] => Some(delta),
            _ => None,
        },
    })
}

fn main() {
    let spec = match parse_spec() {
        Ok(spec) => spec,
        Err(message) => {
            eprintln!("soak: {message}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let report = runtime.block_on(harness::run(spec));
    println!("\n{}", report.summary());
    if !report.failures().is_empty() {
        std::process::exit(1);
    }
}

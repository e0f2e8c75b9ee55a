//! The load harness: rudder and istiod serving the same generated mesh to many simulated proxies,
//! timed and measured the same way (see `harness`). Prints one Markdown table row per run.
//!
//! ```text
//! cargo bench --bench load -- [--servers rudder,istiod] [--sizes 100x100,1000x100,...]
//!                             [--modes sotw,delta] [--endpoints 3] [--limit-secs 600]
//! ```
//! `--sizes` lists SERVICESxPROXIES pairs. istiod is built on first use by `scripts/istiod`
//! (minutes, then cached); if it cannot be built or started, its rows say so and rudder's still run.

#[path = "../support/ads_client.rs"]
mod ads_client;
mod harness;
mod mesh;
mod server;

use std::time::Duration;

use harness::{Report, RunSpec};
use server::ServerKind;

const DEFAULT_SIZES: &str = "100x100,1000x100,10000x100,100x2000,1000x2000,100x10000";

struct Options {
    servers: Vec<ServerKind>,
    sizes: Vec<(usize, usize)>,
    modes: Vec<bool>,
    endpoints: usize,
    limit: Duration,
}

fn option<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|arg| arg == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn parse_options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let servers = option(&args, "--servers")
        .unwrap_or("rudder,istiod")
        .split(',')
        .map(|name| ServerKind::parse(name).ok_or(format!("unknown server {name:?}")))
        .collect::<Result<_, _>>()?;
    let sizes = option(&args, "--sizes")
        .unwrap_or(DEFAULT_SIZES)
        .split(',')
        .map(|size| {
            let (services, proxies) = size
                .split_once('x')
                .ok_or(format!("size {size:?} is not SERVICESxPROXIES"))?;
            let number = |text: &str| {
                text.parse::<usize>()
                    .map_err(|_| format!("size {size:?} is not SERVICESxPROXIES"))
            };
            Ok((number(services)?, number(proxies)?))
        })
        .collect::<Result<_, String>>()?;
    let modes = option(&args, "--modes")
        .unwrap_or("sotw")
        .split(',')
        .map(|mode| match mode {
            "sotw" => Ok(false),
            "delta" => Ok(true),
            other => Err(format!("unknown mode {other:?} (sotw or delta)")),
        })
        .collect::<Result<_, _>>()?;
    let endpoints = option(&args, "--endpoints")
        .unwrap_or("3")
        .parse()
        .map_err(|_| "--endpoints takes a number".to_string())?;
    let limit = option(&args, "--limit-secs")
        .unwrap_or("600")
        .parse()
        .map(Duration::from_secs)
        .map_err(|_| "--limit-secs takes a number".to_string())?;
    Ok(Options {
        servers,
        sizes,
        modes,
        endpoints,
        limit,
    })
}

fn millis(duration: Duration) -> String {
    format!("{:.0}", duration.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

fn row(report: &Report) -> String {
    let spec = report.spec;
    let mut cells = vec![
        spec.server.name().to_string(),
        if spec.delta { "delta" } else { "sotw" }.to_string(),
        spec.services.to_string(),
        spec.proxies.to_string(),
        millis(report.initial),
        mib(report.initial_bytes_per_proxy * spec.proxies as u64),
    ];
    for edit in &report.edits {
        let reached = if edit.reached == spec.proxies {
            String::new()
        } else {
            format!(" ({} reached)", edit.reached)
        };
        cells.push(format!(
            "{} / {} / {}{reached}",
            millis(edit.p50),
            millis(edit.p99),
            millis(edit.max)
        ));
        let ratio = edit.max.as_secs_f64() / edit.wire.as_secs_f64().max(1e-6);
        cells.push(format!(
            "{} KiB, {} ms, {ratio:.1}x",
            edit.bytes_per_proxy / 1024,
            millis(edit.wire)
        ));
    }
    cells.push(format!("{:.1}", report.cpu_seconds));
    cells.push(mib(report.peak_rss));
    cells.push(mib(report.bytes_sent));
    format!("| {} |", cells.join(" | "))
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("load: {message}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "| server | mode | services | proxies | initial: all served (ms) | initial bytes (MiB) | \
         rule edit p50/p99/max (ms) | rule bytes/proxy, wire, max/wire | \
         endpoint edit p50/p99/max (ms) | endpoint bytes/proxy, wire, max/wire | \
         new service p50/p99/max (ms) | new service bytes/proxy, wire, max/wire | CPU s | peak RSS (MiB) | sent (MiB) |"
    );
    println!("|{}", " --- |".repeat(15));
    for &(services, proxies) in &options.sizes {
        for &delta in &options.modes {
            for &server in &options.servers {
                let spec = RunSpec {
                    server,
                    services,
                    endpoints: options.endpoints,
                    proxies,
                    delta,
                    limit: options.limit,
                };
                // A run that fails (istiod missing, a limit passed) is reported and the rest go on.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    runtime.block_on(harness::run(spec))
                }));
                match result {
                    Ok(report) => println!("{}", row(&report)),
                    Err(_) => println!(
                        "| {} | {} | {services} | {proxies} | failed: see the message above |",
                        server.name(),
                        if delta { "delta" } else { "sotw" }
                    ),
                }
            }
        }
    }
}

//! Resync after a crash, at scale: `rudder serve` as a process on a generated mesh, N in-process
//! ADS clients that reconnect when their stream ends, SIGKILL, restart on the same address, and
//! the time until every client holds its whole config again (`benches/support/resync.rs`; the
//! CI-sized runs are in `tests/faults.rs`). Prints one Markdown table row per run.
//!
//! ```text
//! cargo bench --bench resync -- [--proxies 1,100,1000] [--services 100] [--modes sotw,delta]
//!                               [--limit-secs 300]
//! ```

#[path = "support/ads_client.rs"]
mod ads_client;
#[path = "support/args.rs"]
mod args;
#[path = "load/harness.rs"]
mod harness;
#[path = "load/mesh.rs"]
mod mesh;
#[path = "support/resync.rs"]
mod resync;
#[path = "load/server.rs"]
mod server;

use args::{limit, millis, modes, option};
use resync::ResyncSpec;

fn numbers(text: &str, name: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|n| n.parse().map_err(|_| format!("{name} takes numbers")))
        .collect()
}

fn specs() -> Result<Vec<ResyncSpec>, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let proxies = numbers(
        option(&args, "--proxies").unwrap_or("1,100,1000"),
        "--proxies",
    )?;
    let services = numbers(option(&args, "--services").unwrap_or("100"), "--services")?;
    let [services] = services[..] else {
        return Err("--services takes one number".to_string());
    };
    let modes = modes(&args, "sotw,delta")?;
    let limit = limit(&args, 300)?;
    Ok(proxies
        .iter()
        .flat_map(|&proxies| {
            modes.iter().map(move |&delta| ResyncSpec {
                services,
                proxies,
                delta,
                limit,
            })
        })
        .collect())
}

fn main() {
    let specs = match specs() {
        Ok(specs) => specs,
        Err(message) => {
            eprintln!("resync: {message}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "| mode | services | proxies | initial: all served (ms) | restart: xDS port open (ms) | \
         restart: all resynced (ms) |"
    );
    println!("|{}", " --- |".repeat(6));
    for spec in specs {
        let report = runtime.block_on(resync::run(spec));
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            if spec.delta { "delta" } else { "sotw" },
            spec.services,
            spec.proxies,
            millis(report.initial),
            millis(report.startup),
            millis(report.resync),
        );
    }
}

//! The hostile-client bench (issue 16): each attack against a fresh `rudder serve` (the release
//! binary) with a real Envoy attached and traffic through it, one Markdown row per attack.
//!
//! ```text
//! cargo build --release
//! cargo bench --bench hostile -- [--attack NAME]... [--services N] [--no-cgroup] [--list]
//! ```
//! Every attack runs by default; `--attack` (repeatable) picks some, `--list` names them.
//! `--services` replaces each attack's generated mesh size (2,000 for the debug dumps, 50 for
//! the rest; `benches/support/mesh.rs`). rudder runs in a memory cgroup of its own limited to 2 GiB, as
//! `manifests/rudder.yaml` sets, when the machine allows one (root, cgroup v1), so running out
//! of memory kills rudder and not the machine; `--no-cgroup` only samples its RSS. The binary
//! is `$RUDDER_BIN`, else `$CARGO_TARGET_DIR/release/rudder`, else `target/release/rudder`.
//! rudder keeps its own defaults for every bound (see `flags.rs`). A row's outcome is
//! `refused`, `bounded` or `survived`, or `FAILED (...)` with every reason: rudder died, peak
//! RSS above its RSS before the attack + 256 MiB (+ 768 MiB for the debug dumps: one dump of
//! the whole mesh in flight), an edit under attack slower than twice the
//! slowest unattacked one (at least 1 s), a request through the Envoy failed, or what the
//! attack itself checks. The exit status is 1 if any row failed.

#[path = "../../tests/support/certs.rs"]
#[allow(dead_code)]
mod certs;
#[path = "../../tests/support/envoy.rs"]
#[allow(dead_code)]
mod envoy;
#[path = "../../tests/support/envoy_process.rs"]
#[allow(dead_code)]
mod envoy_process;
#[path = "../support/mesh.rs"]
mod mesh;
#[path = "../../tests/support/upstream.rs"]
#[allow(dead_code)]
mod upstream;

#[path = "../support/args.rs"]
mod args;

mod admin;
mod attacks;
mod config;
mod fds;
mod flags;
mod messages;
mod raw;
mod rudder;
mod run;
mod scene;
mod sds;
mod streams;
mod torn;
mod xds;

use std::path::PathBuf;

use attacks::Attack;
use run::{RunSpec, Scale};
use scene::Slot;

struct Options {
    attacks: Vec<Attack>,
    services: Option<usize>,
    cgroup: bool,
}

fn parse_options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--list") {
        for attack in Attack::ALL {
            println!("{}", attack.name());
        }
        std::process::exit(0);
    }
    let mut attacks = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if arg == "--attack" {
            let name = args.get(i + 1).ok_or("--attack takes a name")?;
            let attack = Attack::parse(name)
                .ok_or_else(|| format!("unknown attack {name:?} (--list names them)"))?;
            attacks.push(attack);
        }
    }
    if attacks.is_empty() {
        attacks = Attack::ALL.to_vec();
    }
    let services = args::option(&args, "--services")
        .map(|n| {
            n.parse()
                .map_err(|_| "--services takes a number".to_string())
        })
        .transpose()?;
    Ok(Options {
        attacks,
        services,
        cgroup: !args.iter().any(|arg| arg == "--no-cgroup"),
    })
}

/// The release binary `cargo build --release` made.
fn release_binary() -> Result<PathBuf, String> {
    let binary = std::env::var_os("RUDDER_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(|dir| PathBuf::from(dir).join("release/rudder"))
        })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/rudder"));
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "no rudder binary at {} (run `cargo build --release` first)",
            binary.display()
        ))
    }
}

fn main() {
    let (options, binary) = match parse_options().and_then(|o| Ok((o, release_binary()?))) {
        Ok(found) => found,
        Err(message) => {
            eprintln!("hostile: {message}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut failed = 0;
    let mut printed_header = false;
    for attack in &options.attacks {
        let mut spec = RunSpec::new(*attack, Scale::Bench, Slot(0), binary.clone());
        spec.services = options.services;
        spec.cgroup &= options.cgroup;
        if !printed_header {
            println!(
                "rudder {} ({}); cgroup: {}; bounds: {}\n",
                binary.display(),
                modified(&binary),
                if spec.cgroup {
                    "2 GiB memory limit"
                } else {
                    "none, RSS sampled"
                },
                spec.bounds.describe()
            );
            println!("{}", run::HEADER);
            printed_header = true;
        }
        let row = runtime.block_on(run::run(&spec));
        // The scene's upstreams let go of their addresses as their tasks end.
        std::thread::sleep(std::time::Duration::from_secs(1));
        println!("{}", row.markdown());
        if !row.passed() {
            failed += 1;
        }
    }
    println!("\n{} of {} attacks failed.", failed, options.attacks.len());
    if failed > 0 {
        std::process::exit(1);
    }
}

fn modified(binary: &std::path::Path) -> String {
    std::fs::metadata(binary)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or("unknown age".to_string(), |t| {
            format!("built at unix time {}", t.as_secs())
        })
}

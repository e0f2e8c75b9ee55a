//! The load harness: rudder and istiod serving the same generated mesh to many simulated proxies,
//! timed and measured the same way (see `harness`). Prints one Markdown table row per run.
//!
//! ```text
//! cargo bench --bench load -- [--servers rudder,istiod] [--sizes 100x100,1000x100,...]
//!                             [--modes sotw,delta] [--endpoints 3] [--limit-secs 600]
//!                             [--repeat 3] [--sidecar] [--debounce-ms 100]
//!                             [--registry file|kube]
//!                             [--label-sets 1,p/10] [--envoys]
//! ```
//! `--sizes` lists SERVICESxPROXIES pairs. `--label-sets` lists K values, each a number or `p/N`
//! (the proxy count divided by N, at least 1): proxy `i` carries `app: client-{i % K}`, so there
//! are K distinct label sets, as pods of K Deployments have (default 1: all proxies alike, which
//! lets rudder share one translation among them all). `--envoys` runs every configuration a
//! second time with real Envoy processes as the proxies (`envoys.rs`; `$ENVOY` or `envoy` on the
//! PATH), to calibrate the simulated ones: their rows say `(Envoys)` in the mode column, and all
//! proxies of such an invocation, simulated or real, declare `INTERCEPTION_MODE: NONE` so that
//! the Envoys bind on loopback only and both kinds get the same config. Each (size, mode, K,
//! proxy kind) is a configuration of its own. Each configuration runs `--repeat` times, the servers
//! taking turns, and a last table gives the median of every cell over those runs and the ratio
//! rudder / istiod of each median. `--sidecar` adds a Sidecar that scopes the proxies' egress to
//! ten services. `--debounce-ms` sets both servers' quiet time before a push (`--debounce-after`,
//! `PILOT_DEBOUNCE_AFTER`; 100 ms by default). istiod is built on first use by `scripts/istiod`
//! (minutes, then cached); if it cannot be built or started, its rows say so and rudder's still
//! run.
//!
//! `--registry` says where the mesh lives. `file` (the default): ServiceEntries and
//! WorkloadEntries in a directory both servers read (istiod in file mode). `kube`: Services,
//! EndpointSlices and Pods with the same rules in a real kube-apiserver started once for the whole
//! invocation (`scripts/dev-cluster`), which both servers watch in turn, istiod in Kubernetes mode,
//! its production path; every edit goes through the API server, and each run starts on a fresh
//! copy of the mesh (see `kube`). Creating the mesh is timed and printed to stderr.

#[path = "../support/ads_client.rs"]
mod ads_client;
#[path = "../support/args.rs"]
mod args;
// The tests' way of running a real Envoy, shared rather than copied.
#[allow(dead_code)]
#[path = "../../tests/support/envoy.rs"]
mod envoy;
#[allow(dead_code)]
#[path = "../../tests/support/envoy_process.rs"]
mod envoy_process;
mod envoys;
mod harness;
mod kube;
mod mesh;
mod server;

use std::time::Duration;

use args::{limit, millis, modes, option};
use harness::{Convergence, Report, RunSpec};
use server::ServerKind;

const DEFAULT_SIZES: &str = "100x100,1000x100,10000x100,100x2000,1000x2000,100x10000";

struct Options {
    servers: Vec<ServerKind>,
    sizes: Vec<(usize, usize)>,
    modes: Vec<bool>,
    endpoints: usize,
    limit: Duration,
    repeat: usize,
    sidecar: bool,
    debounce: Option<Duration>,
    kube: bool,
    label_sets: Vec<LabelSets>,
    envoys: bool,
}

/// One `--label-sets` value.
#[derive(Debug, Clone, Copy)]
enum LabelSets {
    Count(usize),
    /// `p/N`: the proxy count divided by N.
    PerProxies(usize),
}

impl LabelSets {
    fn parse(text: &str) -> Result<LabelSets, String> {
        let number = |text: &str| text.parse::<usize>().ok().filter(|n| *n > 0);
        let parsed = match text.strip_prefix("p/") {
            Some(divisor) => number(divisor).map(LabelSets::PerProxies),
            None => number(text).map(LabelSets::Count),
        };
        parsed.ok_or(format!(
            "label sets {text:?} is neither a number above 0 nor p/N"
        ))
    }

    /// How many distinct label sets `proxies` proxies get: at least 1, at most one each.
    fn resolve(self, proxies: usize) -> usize {
        let sets = match self {
            LabelSets::Count(sets) => sets,
            LabelSets::PerProxies(divisor) => proxies / divisor,
        };
        sets.clamp(1, proxies.max(1))
    }
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
    let modes = modes(&args, "sotw")?;
    let endpoints = option(&args, "--endpoints")
        .unwrap_or("3")
        .parse()
        .map_err(|_| "--endpoints takes a number".to_string())?;
    let limit = limit(&args, 600)?;
    let repeat = option(&args, "--repeat")
        .unwrap_or("1")
        .parse::<usize>()
        .ok()
        .filter(|repeat| *repeat > 0)
        .ok_or("--repeat takes a number above 0".to_string())?;
    Ok(Options {
        servers,
        sizes,
        modes,
        endpoints,
        limit,
        repeat,
        sidecar: args.iter().any(|arg| arg == "--sidecar"),
        debounce: option(&args, "--debounce-ms")
            .map(|ms| ms.parse().map(Duration::from_millis))
            .transpose()
            .map_err(|_| "--debounce-ms takes a number".to_string())?,
        kube: match option(&args, "--registry").unwrap_or("file") {
            "file" => false,
            "kube" => true,
            other => return Err(format!("--registry takes file or kube, not {other:?}")),
        },
        label_sets: option(&args, "--label-sets")
            .unwrap_or("1")
            .split(',')
            .map(LabelSets::parse)
            .collect::<Result<_, _>>()?,
        envoys: args.iter().any(|arg| arg == "--envoys"),
    })
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// The mode column: the ADS mode, and whether the proxies were real Envoys.
fn mode(spec: &RunSpec) -> String {
    let mode = if spec.delta { "delta" } else { "sotw" };
    if spec.envoys {
        format!("{mode} (Envoys)")
    } else {
        mode.to_string()
    }
}

fn row(report: &Report) -> String {
    let spec = report.spec;
    let mut cells = vec![
        spec.server.name().to_string(),
        mode(&spec),
        spec.services.to_string(),
        spec.proxies.to_string(),
        spec.label_sets.to_string(),
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
        let wire = match edit.wire {
            Some(wire) => format!(
                "{} ms, {:.1}x",
                millis(wire),
                edit.max.as_secs_f64() / wire.as_secs_f64().max(1e-6)
            ),
            None => "n/a".to_string(),
        };
        cells.push(format!("{} KiB, {wire}", edit.bytes_per_proxy / 1024));
    }
    cells.push(format!("{:.1}", report.cpu_seconds));
    cells.push(mib(report.peak_rss));
    cells.push(mib(report.bytes_sent));
    format!("| {} |", cells.join(" | "))
}

const HEADER: &str = "| server | mode | services | proxies | label sets | initial: all served (ms) | initial bytes (MiB) | \
     rule edit p50/p99/max (ms) | rule bytes/proxy, wire, max/wire | \
     endpoint edit p50/p99/max (ms) | endpoint bytes/proxy, wire, max/wire | \
     new service p50/p99/max (ms) | new service bytes/proxy, wire, max/wire | CPU s | peak RSS (MiB) | sent (MiB) |";

fn print_header() {
    println!("{HEADER}");
    println!("|{}", " --- |".repeat(16));
}

fn median_of<T: Copy + PartialOrd>(values: impl Iterator<Item = T>) -> T {
    let mut values: Vec<T> = values.collect();
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}

/// Every figure of `reports` (runs of one configuration, at least one) replaced by its median.
fn median_report(reports: &[Report]) -> Report {
    let median = |figure: &dyn Fn(&Report) -> f64| median_of(reports.iter().map(figure));
    let edits = (0..reports[0].edits.len())
        .map(|i| {
            let edit = |figure: &dyn Fn(&Convergence) -> Duration| {
                median_of(reports.iter().map(|report| figure(&report.edits[i])))
            };
            Convergence {
                reached: reports
                    .iter()
                    .map(|report| report.edits[i].reached)
                    .min()
                    .unwrap_or(0),
                p50: edit(&|c| c.p50),
                p99: edit(&|c| c.p99),
                max: edit(&|c| c.max),
                bytes_per_proxy: median_of(reports.iter().map(|r| r.edits[i].bytes_per_proxy)),
                wire: reports
                    .iter()
                    .map(|report| report.edits[i].wire)
                    .collect::<Option<Vec<_>>>()
                    .map(|wires| median_of(wires.into_iter())),
            }
        })
        .collect();
    Report {
        spec: reports[0].spec,
        initial: median_of(reports.iter().map(|report| report.initial)),
        initial_bytes_per_proxy: median_of(reports.iter().map(|r| r.initial_bytes_per_proxy)),
        edits,
        cpu_seconds: median(&|report| report.cpu_seconds),
        peak_rss: median_of(reports.iter().map(|report| report.peak_rss)),
        bytes_sent: median_of(reports.iter().map(|report| report.bytes_sent)),
    }
}

/// rudder's median over istiod's, for the figures the goals name.
fn ratio_line(rudder: &Report, istiod: &Report) -> String {
    let ratio = |a: f64, b: f64| format!("{:.2}", a / b.max(1e-9));
    let seconds = |duration: Duration| duration.as_secs_f64();
    let edits: Vec<String> = ["rule edit", "endpoint edit", "new service"]
        .iter()
        .zip(rudder.edits.iter().zip(&istiod.edits))
        .map(|(name, (r, i))| format!("{name} p99 {}", ratio(seconds(r.p99), seconds(i.p99))))
        .collect();
    let spec = rudder.spec;
    format!(
        "rudder / istiod at {}x{} {}, {} label set(s): CPU {}, peak RSS {}, all served {}, {}",
        spec.services,
        spec.proxies,
        mode(&spec),
        spec.label_sets,
        ratio(rudder.cpu_seconds, istiod.cpu_seconds),
        ratio(rudder.peak_rss as f64, istiod.peak_rss as f64),
        ratio(seconds(rudder.initial), seconds(istiod.initial)),
        edits.join(", ")
    )
}

/// Each proxy is a connection on both ends, and the wire test opens as many again; the servers
/// started from here inherit the limit.
fn raise_open_file_limit(wanted: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft >= wanted {
        return;
    }
    // Raising the hard limit takes privilege; without it, go as far as the hard limit allows.
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted.max(hard)).is_err() {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("load: {message}");
            std::process::exit(2);
        }
    };
    let most_proxies = options.sizes.iter().map(|&(_, proxies)| proxies).max();
    raise_open_file_limit(most_proxies.unwrap_or(0) as u64 * 4 + 4096);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let cluster = options.kube.then(|| kube::KubeCluster::up(&runtime));
    println!(
        "registry: {}\n",
        match &cluster {
            Some(_) => "Kubernetes (Services, EndpointSlices, Pods in kube-apiserver)",
            None => "files (ServiceEntries, WorkloadEntries)",
        }
    );
    print_header();
    let mut medians = Vec::new();
    for spec in configurations(&options) {
        let mut runs: Vec<Vec<Report>> = vec![Vec::new(); options.servers.len()];
        // The servers take turns, so a slow spell of the machine falls on both.
        for _ in 0..options.repeat {
            for (server_runs, &server) in runs.iter_mut().zip(&options.servers) {
                let spec = RunSpec { server, ..spec };
                // A run that fails (istiod missing, a limit passed) is reported and the rest go
                // on.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    runtime.block_on(async {
                        match &cluster {
                            _ if spec.envoys => envoys::run(spec).await,
                            Some(cluster) => kube::run(spec, cluster).await,
                            None => harness::run(spec).await,
                        }
                    })
                }));
                match result {
                    Ok(report) => {
                        println!("{}", row(&report));
                        server_runs.push(report);
                    }
                    Err(_) => println!(
                        "| {} | {} | {} | {} | {} | failed: see the message above |",
                        server.name(),
                        mode(&spec),
                        spec.services,
                        spec.proxies,
                        spec.label_sets
                    ),
                }
            }
        }
        medians.push(
            runs.iter()
                .filter(|reports| !reports.is_empty())
                .map(|reports| median_report(reports))
                .collect::<Vec<_>>(),
        );
    }
    println!(
        "\nMedians of {} run(s) per configuration:\n",
        options.repeat
    );
    print_header();
    for configuration in &medians {
        for report in configuration {
            println!("{}", row(report));
        }
    }
    println!();
    for configuration in &medians {
        let find = |kind: ServerKind| configuration.iter().find(|r| r.spec.server == kind);
        if let (Some(rudder), Some(istiod)) = (find(ServerKind::Rudder), find(ServerKind::Istiod)) {
            println!("{}", ratio_line(rudder, istiod));
        }
    }
    // Each simulated median beside the same configuration's with real Envoys.
    let all: Vec<&Report> = medians.iter().flatten().collect();
    for simulated in all.iter().filter(|report| !report.spec.envoys) {
        let real = all.iter().find(|report| {
            report.spec.envoys
                && RunSpec {
                    envoys: false,
                    ..report.spec
                } == simulated.spec
        });
        if let Some(real) = real {
            println!("{}", calibration_line(simulated, real));
        }
    }
}

/// Every configuration the options ask for, in the order they run (the server left to the
/// caller): sizes, then modes, then label sets, then simulated before real proxies.
fn configurations(options: &Options) -> Vec<RunSpec> {
    let mut specs = Vec::new();
    for &(services, proxies) in &options.sizes {
        for &delta in &options.modes {
            for label_sets in &options.label_sets {
                for envoys in [false, true].into_iter().take(1 + options.envoys as usize) {
                    specs.push(RunSpec {
                        server: ServerKind::Rudder,
                        services,
                        endpoints: options.endpoints,
                        proxies,
                        delta,
                        sidecar: options.sidecar,
                        debounce: options.debounce,
                        limit: options.limit,
                        label_sets: label_sets.resolve(proxies),
                        loopback_listeners: options.envoys,
                        envoys,
                    });
                }
            }
        }
    }
    specs
}

/// The simulated proxies' median over the real Envoys', for the figures calibration compares.
fn calibration_line(simulated: &Report, real: &Report) -> String {
    let ratio = |a: f64, b: f64| format!("{:.2}", a / b.max(1e-9));
    let seconds = |duration: Duration| duration.as_secs_f64();
    let spec = simulated.spec;
    let (sim_rule, real_rule) = (&simulated.edits[0], &real.edits[0]);
    format!(
        "simulated / Envoys, {} at {}x{} {}, {} label set(s): all served {}, rule edit p50 {}, \
         p99 {}, CPU {}, peak RSS {}",
        spec.server.name(),
        spec.services,
        spec.proxies,
        mode(&spec),
        spec.label_sets,
        ratio(seconds(simulated.initial), seconds(real.initial)),
        ratio(seconds(sim_rule.p50), seconds(real_rule.p50)),
        ratio(seconds(sim_rule.p99), seconds(real_rule.p99)),
        ratio(simulated.cpu_seconds, real.cpu_seconds),
        ratio(simulated.peak_rss as f64, real.peak_rss as f64),
    )
}

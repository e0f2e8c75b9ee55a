//! The control plane under test as a process of its own: `rudder serve` (the binary Cargo built
//! beside this harness) or istiod's `pilot-discovery` (through `scripts/istiod`), each on a config
//! directory or a Kubernetes API server ([`Source`]), with its CPU time and memory read from
//! /proc. rudder can be killed (SIGKILL) and started again on the same addresses, for the fault
//! tests and the resync bench.

#![allow(dead_code)] // Shared with tests/load_smoke.rs and tests/faults.rs, which run rudder only.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    Rudder,
    /// Another rudder binary (`$RUDDER_BASELINE_BIN`, an older build, say), run as `Rudder` is:
    /// before/after figures from one invocation.
    Baseline,
    Istiod,
}

impl ServerKind {
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Rudder => "rudder",
            ServerKind::Baseline => "rudder-baseline",
            ServerKind::Istiod => "istiod",
        }
    }

    pub fn parse(name: &str) -> Option<ServerKind> {
        [ServerKind::Rudder, ServerKind::Baseline, ServerKind::Istiod]
            .into_iter()
            .find(|kind| kind.name() == name)
    }
}

/// Where a server reads its config.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A directory of YAML files (rudder's `--config-dir`, istiod's file mode).
    Files(&'a Path),
    /// The API server this kubeconfig names (rudder's `--kubeconfig`, istiod's Kubernetes mode).
    Kube(&'a Path),
}

pub struct ServerProcess {
    pub xds: SocketAddr,
    /// rudder's admin address (istiod's is not used).
    pub admin: Option<SocketAddr>,
    pid: u32,
    /// rudder's process; istiod runs detached and is stopped through its script.
    child: Option<Child>,
    /// How rudder was started, to start it again the same way.
    rudder: Option<RudderCommand>,
    istiod_run_dir: Option<PathBuf>,
}

/// `rudder serve` on one config source and fixed addresses, with extra flags.
#[derive(Debug, Clone)]
struct RudderCommand {
    binary: PathBuf,
    /// `--config-dir DIR` or `--kubeconfig FILE`.
    source: [OsString; 2],
    xds: SocketAddr,
    admin: SocketAddr,
    args: Vec<String>,
}

impl RudderCommand {
    fn spawn(&self) -> Child {
        Command::new(&self.binary)
            .args(["--log-level", "warn", "serve"])
            .args(&self.source)
            .args(["--xds-address", &self.xds.to_string()])
            .args(["--admin-address", &self.admin.to_string()])
            // As istiod is run below: these clients connect by the thousand and, unlike Envoy, do
            // not retry a stream refused for the rate of new streams.
            .args(["--xds-max-streams-per-second", "off"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start rudder serve")
    }
}

const READY_LIMIT: Duration = Duration::from_secs(120);

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A loopback port nothing listens on, and not handed out before by this process: the port is
/// released before the server binds it, so servers started side by side (the smoke tests) could
/// otherwise be given the same one.
fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .expect("a free loopback port");
        if GIVEN
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(port)
        {
            return port;
        }
    }
}

impl ServerProcess {
    /// `debounce` replaces both servers' default quiet time before a push (100 ms).
    pub fn start(kind: ServerKind, config_dir: &Path, debounce: Option<Duration>) -> ServerProcess {
        Self::start_on(kind, Source::Files(config_dir), debounce)
    }

    /// [`ServerProcess::start`] on any [`Source`].
    pub fn start_on(kind: ServerKind, source: Source, debounce: Option<Duration>) -> ServerProcess {
        match kind {
            ServerKind::Rudder | ServerKind::Baseline => {
                let debounce = debounce.map(|debounce| format!("{}ms", debounce.as_millis()));
                let args: Vec<&str> = match &debounce {
                    Some(debounce) => vec!["--debounce-after", debounce],
                    None => Vec::new(),
                };
                let binary = match kind {
                    ServerKind::Baseline => std::env::var_os("RUDDER_BASELINE_BIN")
                        .map(PathBuf::from)
                        .expect("rudder-baseline runs the binary $RUDDER_BASELINE_BIN names"),
                    _ => PathBuf::from(env!("CARGO_BIN_EXE_rudder")),
                };
                Self::start_rudder_on(binary, source, &args)
            }
            ServerKind::Istiod => {
                let server = Self::start_istiod(source, debounce);
                server.wait_for_xds(kind);
                server
            }
        }
    }

    /// `rudder serve` on `config_dir` with extra flags `args`, on free loopback ports.
    pub fn start_rudder(config_dir: &Path, args: &[&str]) -> ServerProcess {
        Self::start_rudder_on(
            PathBuf::from(env!("CARGO_BIN_EXE_rudder")),
            Source::Files(config_dir),
            args,
        )
    }

    fn start_rudder_on(binary: PathBuf, source: Source, args: &[&str]) -> ServerProcess {
        let source = match source {
            Source::Files(dir) => ["--config-dir".into(), dir.into()],
            Source::Kube(kubeconfig) => ["--kubeconfig".into(), kubeconfig.into()],
        };
        let command = RudderCommand {
            binary,
            source,
            xds: ([127, 0, 0, 1], free_port()).into(),
            admin: ([127, 0, 0, 1], free_port()).into(),
            args: args.iter().map(ToString::to_string).collect(),
        };
        let child = command.spawn();
        let server = ServerProcess {
            xds: command.xds,
            admin: Some(command.admin),
            pid: child.id(),
            child: Some(child),
            rudder: Some(command),
            istiod_run_dir: None,
        };
        server.wait_for_xds(ServerKind::Rudder);
        server
    }

    fn wait_for_xds(&self, kind: ServerKind) {
        let deadline = Instant::now() + READY_LIMIT;
        while TcpStream::connect(self.xds).is_err() {
            assert!(
                Instant::now() < deadline,
                "{} never opened its xDS port {}",
                kind.name(),
                self.xds
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills rudder with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill(&mut self) {
        let child = self.child.as_mut().expect("only rudder is killed");
        child.kill().expect("SIGKILL rudder");
        child.wait().expect("reap rudder");
    }

    /// Starts rudder again, the same way and on the same addresses, once its xDS port is open.
    pub fn restart(&mut self) {
        let command = self.rudder.as_ref().expect("only rudder is restarted");
        let child = command.spawn();
        self.pid = child.id();
        self.child = Some(child);
        self.wait_for_xds(ServerKind::Rudder);
    }

    fn start_istiod(source: Source, debounce: Option<Duration>) -> ServerProcess {
        // istiod closes streams beyond a rate of new ones (PILOT_MAX_REQUESTS_PER_SECOND): Envoy
        // would come back after a backoff, these clients do not, and the connection rate is not
        // what is measured.
        let mut environment = "PILOT_MAX_REQUESTS_PER_SECOND=100000".to_string();
        if let Some(debounce) = debounce {
            environment.push_str(&format!(" PILOT_DEBOUNCE_AFTER={}ms", debounce.as_millis()));
        }
        let run_dir =
            std::env::temp_dir().join(format!("rudder-load-istiod-{}", std::process::id()));
        let mut up = Command::new(repository().join("scripts/istiod"));
        up.arg("up");
        match source {
            Source::Files(dir) => up.arg(dir),
            // Kubernetes mode: see `scripts/istiod` for what it needs of the cluster.
            Source::Kube(kubeconfig) => up.env("RUDDER_ISTIOD_KUBECONFIG", kubeconfig),
        };
        let output = up
            .env("RUDDER_ISTIOD_DIR", &run_dir)
            .env("RUDDER_ISTIOD_OWNER_PID", std::process::id().to_string())
            .env("RUDDER_ISTIOD_ARGS", "--log_output_level=default:warn")
            .env("RUDDER_ISTIOD_ENV", environment)
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/istiod up");
        assert!(output.status.success(), "scripts/istiod up failed");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let xds = stdout
            .lines()
            .last()
            .and_then(|line| line.trim().parse().ok())
            .unwrap_or_else(|| panic!("scripts/istiod up printed no address: {stdout:?}"));
        let pid = std::fs::read_to_string(run_dir.join("pids/istiod.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse().ok())
            .expect("istiod's pid file");
        ServerProcess {
            xds,
            admin: None,
            pid,
            child: None,
            rudder: None,
            istiod_run_dir: Some(run_dir),
        }
    }

    /// User and system CPU time the server has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i)?.parse::<u64>().ok())
            .sum();
        ticks as f64 / clock_ticks_per_second()
    }

    /// The highest resident set size so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        status_kib(self.pid, "VmHWM:") * 1024
    }

    /// The resident set size now (VmRSS), in bytes.
    pub fn rss(&self) -> u64 {
        status_kib(self.pid, "VmRSS:") * 1024
    }

    /// How many file descriptors the server holds open (entries of /proc/PID/fd).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, Iterator::count)
    }

    /// Whether rudder's process has ended (istiod's is not watched: always false).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| !matches!(child.try_wait(), Ok(None)))
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(run_dir) = &self.istiod_run_dir {
            let _ = Command::new(repository().join("scripts/istiod"))
                .arg("down")
                .env("RUDDER_ISTIOD_DIR", run_dir)
                .stderr(Stdio::null())
                .status();
        }
    }
}

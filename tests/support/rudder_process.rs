//! `rudder serve` as a process of its own (the binary Cargo built for the tests), with its log
//! read line by line as it comes, for the tests of the real binary: shutdown on SIGTERM, limits
//! on the xDS port. Killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct RudderProcess {
    child: Child,
    /// Lines of its log, as they come.
    log: mpsc::Receiver<String>,
    /// Every line read so far.
    seen: Vec<String>,
}

impl RudderProcess {
    /// `rudder serve --config-dir CONFIG_DIR` with `args` (its addresses among them), logging at
    /// `info` whatever `RUST_LOG` says.
    pub fn start(config_dir: &Path, args: &[&str]) -> RudderProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rudder"));
        command
            .arg("serve")
            .arg("--config-dir")
            .arg(config_dir)
            .env("NO_COLOR", "1");
        Self::spawn(command, args)
    }

    /// `rudder serve` with only `args`, and `env` set (`KUBECONFIG` and `NO_COLOR` only if `env`
    /// sets them).
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> RudderProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rudder"));
        command
            .arg("serve")
            .env_remove("KUBECONFIG")
            .env_remove("NO_COLOR")
            .envs(env.iter().copied());
        Self::spawn(command, args)
    }

    /// Like [`RudderProcess::start`], with at most `limit` open files (soft and hard limit, so
    /// rudder cannot raise it).
    pub fn start_with_open_files(config_dir: &Path, args: &[&str], limit: u32) -> RudderProcess {
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_rudder"))
            .args(["serve", "--config-dir"])
            .arg(config_dir)
            .env("NO_COLOR", "1");
        Self::spawn(shell, args)
    }

    /// Runs `command` (`rudder serve` and its first arguments) with `args` after them.
    fn spawn(mut command: Command, args: &[&str]) -> RudderProcess {
        let mut child = command
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rudder");
        let stderr = child.stderr.take().expect("rudder's stderr");
        let (lines, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        RudderProcess {
            child,
            log,
            seen: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads the log until a line contains `text`; that line.
    pub fn wait_for_line(&mut self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.seen.iter().find(|line| line.contains(text)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "rudder never logged {text:?}; its log:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything logged so far.
    pub fn log(&mut self) -> String {
        self.seen.extend(self.log.try_iter());
        self.seen.join("\n")
    }

    /// The xDS and admin addresses from the `serving` line.
    pub fn addresses(&mut self) -> (SocketAddr, SocketAddr) {
        let line = self.wait_for_line("serving", Duration::from_secs(20));
        let address = |name: &str| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix(name)?.strip_prefix('='))
                .and_then(|address| address.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
        };
        (address("xds_address"), address("admin_address"))
    }

    /// Sends SIGTERM; how rudder exited and how long after, which must be less than `limit`.
    pub fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let signalled = Instant::now();
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success());
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for rudder") {
                return (status, signalled.elapsed());
            }
            if signalled.elapsed() > limit {
                panic!(
                    "rudder still runs {limit:?} after SIGTERM; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RudderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

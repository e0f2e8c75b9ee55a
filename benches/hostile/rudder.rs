//! `rudder serve` as the process under attack: started from a given binary on fixed addresses,
//! optionally in a memory cgroup of its own (cgroup v1, the limit `manifests/rudder.yaml` sets)
//! so that running out of memory kills rudder rather than the machine, and optionally with a
//! lower open-file limit. Its log goes to a file the attacks read; its memory is sampled from
//! /proc every 100 ms on a thread of its own. It starts, watches and stops the process; judging
//! what it saw is the harness's business.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What `manifests/rudder.yaml` gives rudder.
pub const MEMORY_LIMIT: u64 = 2 << 30;
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// How to start rudder.
#[derive(Debug, Clone)]
pub struct Launch {
    pub binary: PathBuf,
    pub config_dir: PathBuf,
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    /// Extra `serve` flags.
    pub args: Vec<String>,
    /// Run in a memory cgroup limited to [`MEMORY_LIMIT`].
    pub cgroup: bool,
    /// RLIMIT_NOFILE (soft and hard), if lowered.
    pub nofile: Option<u64>,
    pub log: PathBuf,
}

pub struct Rudder {
    child: Child,
    pub pid: u32,
    pub log: PathBuf,
    cgroup: Option<MemoryCgroup>,
    sampler: Sampler,
}

/// How rudder ended, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Running,
    /// Killed by the cgroup's OOM killer.
    OomKilled,
    Exited(String),
}

impl Rudder {
    pub fn start(launch: &Launch) -> std::io::Result<Rudder> {
        let log = File::create(&launch.log)?;
        let cgroup = if launch.cgroup {
            Some(MemoryCgroup::create(MEMORY_LIMIT)?)
        } else {
            None
        };
        let mut command = Command::new(&launch.binary);
        command
            .args(["--log-level", "info", "serve", "--config-dir"])
            .arg(&launch.config_dir)
            .args(["--xds-address", &launch.xds.to_string()])
            .args(["--admin-address", &launch.admin.to_string()])
            .args(&launch.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let procs = cgroup.as_ref().map(MemoryCgroup::procs).transpose()?;
        let nofile = launch.nofile;
        // SAFETY: between fork and exec only system calls run: a write to an open file and
        // setrlimit; nothing allocates or takes a lock.
        unsafe {
            command.pre_exec(move || {
                if let Some(mut procs) = procs.as_ref() {
                    // "0" moves the writing process itself into the cgroup.
                    procs.write_all(b"0")?;
                }
                if let Some(limit) = nofile {
                    nix::sys::resource::setrlimit(
                        nix::sys::resource::Resource::RLIMIT_NOFILE,
                        limit,
                        limit,
                    )
                    .map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        let pid = child.id();
        Ok(Rudder {
            child,
            pid,
            log: launch.log.clone(),
            cgroup,
            sampler: Sampler::start(pid),
        })
    }

    pub fn exit(&mut self) -> Exit {
        let status = match self.child.try_wait() {
            Ok(None) => return Exit::Running,
            Ok(Some(status)) => status,
            Err(error) => return Exit::Exited(format!("cannot wait for it: {error}")),
        };
        let oom = self.cgroup.as_ref().is_some_and(|c| c.oom_kills() > 0);
        if oom && status.signal() == Some(9) {
            Exit::OomKilled
        } else {
            Exit::Exited(status.to_string())
        }
    }

    /// VmRSS now, in bytes (0 once gone).
    pub fn rss(&self) -> u64 {
        status_kib(self.pid, "VmRSS:") * 1024
    }

    /// Whether the process still runs (a dead one, reaped or not, has no VmRSS).
    pub fn alive(pid: u32) -> bool {
        status_kib(pid, "VmRSS:") > 0
    }

    /// The samples taken so far: (since start, VmRSS bytes).
    pub fn samples(&self) -> Vec<(Duration, u64)> {
        self.sampler.samples()
    }

    /// The highest VmRSS sampled since `since` (a time since start), or VmHWM if higher and
    /// `since` is zero.
    pub fn peak_since(&self, since: Duration) -> u64 {
        let sampled = self
            .samples()
            .iter()
            .filter(|(at, _)| *at >= since)
            .map(|(_, rss)| *rss)
            .max()
            .unwrap_or(0);
        sampled.max(self.rss())
    }

    /// Time since the sampler started.
    pub fn elapsed(&self) -> Duration {
        self.sampler.started.elapsed()
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, Iterator::count)
    }

    /// The soft RLIMIT_NOFILE rudder runs with, as /proc says.
    pub fn fd_limit(&self) -> Option<u64> {
        std::fs::read_to_string(format!("/proc/{}/limits", self.pid))
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("Max open files"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// rudder's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Rudder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.sampler.stop();
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

/// VmRSS every [`SAMPLE_EVERY`] until stopped or the process is gone.
struct Sampler {
    started: Instant,
    samples: Arc<Mutex<Vec<(Duration, u64)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let started = Instant::now();
        let samples: Arc<Mutex<Vec<(Duration, u64)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (samples, stop) = (samples.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let rss = status_kib(pid, "VmRSS:") * 1024;
                    if rss == 0 {
                        break;
                    }
                    lock(&samples).push((started.elapsed(), rss));
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        Sampler {
            started,
            samples,
            stop,
            thread: Some(thread),
        }
    }

    fn samples(&self) -> Vec<(Duration, u64)> {
        lock(&self.samples).clone()
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A child of this process's own memory cgroup (v1), removed when dropped.
struct MemoryCgroup {
    dir: PathBuf,
}

impl MemoryCgroup {
    fn create(limit: u64) -> std::io::Result<MemoryCgroup> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let own = std::fs::read_to_string("/proc/self/cgroup")?
            .lines()
            .find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                controllers
                    .split(',')
                    .any(|c| c == "memory")
                    .then(|| path.to_string())
            })
            .ok_or_else(|| std::io::Error::other("no cgroup v1 memory controller"))?;
        let name = format!(
            "rudder-hostile-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = Path::new("/sys/fs/cgroup/memory")
            .join(own.trim_start_matches('/'))
            .join(name);
        std::fs::create_dir(&dir)?;
        let cgroup = MemoryCgroup { dir };
        std::fs::write(cgroup.dir.join("memory.limit_in_bytes"), limit.to_string())?;
        Ok(cgroup)
    }

    fn procs(&self) -> std::io::Result<File> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))
    }

    /// `oom_kill` of memory.oom_control: processes its OOM killer killed.
    fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("memory.oom_control"))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("oom_kill "))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Empty once rudder is reaped; the kernel may take a moment to notice.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether a memory cgroup can be made here (root, cgroup v1 memory controller).
pub fn cgroups_available() -> bool {
    MemoryCgroup::create(MEMORY_LIMIT).is_ok()
}

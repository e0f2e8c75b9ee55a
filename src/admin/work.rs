//! Heavy debug work (a config dump translates a proxy's whole config; configz and syncz
//! serialize every input and every stream) runs on a thread of its own, never on the async
//! workers that serve xDS and `/ready`, at a lower CPU priority than theirs (nice +10), and at
//! most `--debug-concurrency` at once. A request that finds every slot taken waits
//! `--debug-queue-timeout` at most, then is refused, so a flood of debug requests costs at most
//! that many threads of spare CPU and never an unbounded queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// The bound on debug work; cheap to clone.
#[derive(Debug, Clone)]
pub struct DebugWork {
    slots: Arc<Semaphore>,
    concurrency: usize,
    queue_timeout: Duration,
}

/// How much lower than the rest of rudder debug threads run: at nice 10, the kernel gives them
/// about a tenth of the CPU a busy xDS worker gets when both want it.
const NICE: i32 = 10;

/// Every slot stayed taken for the whole queue timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "debug endpoints busy: {concurrency} request(s) already running (--debug-concurrency); none finished within {queue_timeout:?} (--debug-queue-timeout)"
)]
pub struct Busy {
    pub concurrency: usize,
    pub queue_timeout: Duration,
}

impl DebugWork {
    /// `concurrency` is at least 1.
    pub fn new(concurrency: usize, queue_timeout: Duration) -> DebugWork {
        let concurrency = concurrency.max(1);
        DebugWork {
            slots: Arc::new(Semaphore::new(concurrency)),
            concurrency,
            queue_timeout,
        }
    }

    /// Runs `work` on a debug thread once a slot is free. The slot is held by the thread, so a
    /// client that hangs up does not free it before the work is done.
    pub async fn run<T, F>(&self, work: F) -> Result<T, Busy>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let busy = Busy {
            concurrency: self.concurrency,
            queue_timeout: self.queue_timeout,
        };
        let slot = tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| busy)?
            // The semaphore is never closed.
            .map_err(|_| busy)?;
        let (done, result) = tokio::sync::oneshot::channel();
        // A thread of its own rather than tokio's blocking pool: its priority is lowered for
        // good, which must not happen to pool threads that later read config files.
        let spawned = std::thread::Builder::new()
            .name("rudder-debug".to_string())
            .spawn(move || {
                let _slot = slot;
                lower_priority();
                let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start a debug thread");
            return Err(busy);
        }
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(busy),
        }
    }
}

/// Lowers the calling thread's CPU priority (`setpriority(PRIO_PROCESS, 0)`: on Linux the nice
/// value is per thread); best effort.
fn lower_priority() {
    if let Err(error) = rustix::process::setpriority_process(None, NICE) {
        tracing::debug!(%error, "cannot lower the debug thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn over_the_bound_a_request_is_refused_after_the_queue_timeout() {
        let work = DebugWork::new(1, Duration::from_millis(50));
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let running = tokio::spawn({
            let work = work.clone();
            async move {
                work.run(move || {
                    started_tx.send(()).unwrap();
                    released.recv().unwrap();
                    1
                })
                .await
            }
        });
        tokio::task::spawn_blocking(move || started.recv().unwrap())
            .await
            .unwrap();
        assert_eq!(
            work.run(|| 2).await,
            Err(Busy {
                concurrency: 1,
                queue_timeout: Duration::from_millis(50)
            })
        );
        release.send(()).unwrap();
        assert_eq!(running.await.unwrap(), Ok(1));
        assert_eq!(work.run(|| 3).await, Ok(3));
    }

    #[tokio::test]
    async fn debug_work_runs_below_rudder_s_priority() {
        let work = DebugWork::new(1, Duration::from_secs(1));
        let own = rustix::process::getpriority_process(None).unwrap();
        let nice = work
            .run(|| rustix::process::getpriority_process(None))
            .await
            .unwrap()
            .unwrap();
        assert!(nice >= NICE, "{nice}");
        // The caller's own thread is left as it was.
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), own);
    }
}

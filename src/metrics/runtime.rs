//! The runtime figures Istio's Control Plane dashboard reads under the Go runtime's metric names,
//! taken from what stands for them in rudder: `go_goroutines` is the number of live tokio tasks,
//! `go_memstats_heap_inuse_bytes` and `go_memstats_heap_alloc_bytes` are the bytes the C
//! allocator has handed out and not had back (glibc's `mallinfo2`: in-use chunks plus
//! directly mapped blocks). Read when scraped; nothing is counted on the allocation path.
//!
//! Not exported, as the README's metrics section says: `go_memstats_alloc_bytes_total`,
//! `go_memstats_mallocs_total` (counting every allocation would cost on every allocation) and
//! `go_memstats_stack_inuse_bytes` (thread stacks are mapped, not allocated, and their use is
//! not known).

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, Opts};

/// A Prometheus collector for the runtime figures (see the module doc).
pub(super) struct RuntimeCollector {
    goroutines: IntGauge,
    heap_inuse: IntGauge,
    heap_alloc: IntGauge,
    descs: Vec<Desc>,
}

impl RuntimeCollector {
    pub(super) fn new() -> RuntimeCollector {
        let gauge = |name: &str, help: &str| {
            IntGauge::with_opts(Opts::new(name, help)).expect(super::VALID)
        };
        let goroutines = gauge(
            "go_goroutines",
            "Tasks alive on rudder's async runtime (the Go runtime's goroutines in istiod).",
        );
        let heap_inuse = gauge(
            "go_memstats_heap_inuse_bytes",
            "Heap bytes in use: allocated by the C allocator and not freed.",
        );
        let heap_alloc = gauge(
            "go_memstats_heap_alloc_bytes",
            "Heap bytes allocated and still in use (the same figure as go_memstats_heap_inuse_bytes).",
        );
        let descs = [&goroutines, &heap_inuse, &heap_alloc]
            .into_iter()
            .flat_map(|gauge| gauge.desc().into_iter().cloned())
            .collect();
        RuntimeCollector {
            goroutines,
            heap_inuse,
            heap_alloc,
            descs,
        }
    }
}

impl Collector for RuntimeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Scraped from the admin server, which runs on the runtime; a scrape from elsewhere
        // (a test rendering without a runtime) leaves the gauge as it was.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let tasks = runtime.metrics().num_alive_tasks();
            self.goroutines
                .set(i64::try_from(tasks).unwrap_or(i64::MAX));
        }
        if let Some(in_use) = heap_in_use() {
            let in_use = i64::try_from(in_use).unwrap_or(i64::MAX);
            self.heap_inuse.set(in_use);
            self.heap_alloc.set(in_use);
        }
        [&self.goroutines, &self.heap_inuse, &self.heap_alloc]
            .into_iter()
            .flat_map(|gauge| gauge.collect())
            .collect()
    }
}

/// Bytes handed out by glibc's allocator and not freed: chunks in use in every arena plus blocks
/// mapped directly for large allocations.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use() -> Option<u64> {
    // SAFETY: mallinfo2 takes no arguments, only reads the allocator's own bookkeeping (under
    // its arena locks) and returns a plain struct by value.
    let info = unsafe { libc::mallinfo2() };
    let in_use = info.uordblks.checked_add(info.hblkhd)?;
    u64::try_from(in_use).ok()
}

/// Other C libraries have no `mallinfo2`; the heap gauges stay at zero there.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_tasks_and_heap_when_scraped() {
        let collector = RuntimeCollector::new();
        // The test's own future is not a task; this one is.
        let task = tokio::spawn(std::future::pending::<()>());
        let kept: Vec<u8> = vec![1; 8 << 20];
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(collector))
            .expect("registers once");
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("renders");
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|value| value.parse().ok())
                .unwrap_or_default()
        };
        assert!(value("go_goroutines") >= 1.0, "a task is alive");
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            let in_use = value("go_memstats_heap_inuse_bytes");
            assert!(in_use >= 8.0 * 1024.0 * 1024.0, "{in_use} in\n{text}");
        }
        drop(kept);
        task.abort();
    }
}

//! Median timings for the benchmarks of pure stages (shared through `#[path]`).

#![allow(dead_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

/// The median of `runs` timings of `work`.
pub fn median<R>(runs: usize, work: impl Fn() -> R) -> Duration {
    median_with_setup(runs, || (), |()| work())
}

/// The median of `runs` timings of `work`, each on a fresh input from `setup` (not timed).
pub fn median_with_setup<T, R>(
    runs: usize,
    setup: impl Fn() -> T,
    work: impl Fn(T) -> R,
) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let input = setup();
            let start = Instant::now();
            let output = work(input);
            let took = start.elapsed();
            drop(black_box(output));
            took
        })
        .collect();
    times.sort();
    times[runs / 2]
}

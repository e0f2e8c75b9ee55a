//! The rate of new ADS streams, as istiod limits it (`PILOT_MAX_REQUESTS_PER_SECOND`): a token
//! bucket of one token (no burst) refilled at the rate, where a new stream waits at most
//! [`MAX_WAIT`] for its turn and is refused if its turn is further away. Owns the arithmetic
//! only: the server sleeps and refuses.
//!
//! Hand-written rather than taken from a crate such as `governor`: what is needed is Go's
//! `rate.Limiter.Wait` with a deadline, a reservation that is refused at once when its turn is
//! beyond the deadline and otherwise served in order. `governor` only answers "not until T",
//! so waiting streams would wake and race for each token, and none could tell up front whether
//! its wait fits in a second.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// The longest a new stream waits for its turn (istiod's `WaitForRequestLimit`).
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// istiod's automatic rate (`PILOT_MAX_REQUESTS_PER_SECOND` unset or 0): 15 + 5 per CPU, at
/// most 100.
const AUTOMATIC_BASE: f64 = 15.0;
const AUTOMATIC_PER_CPU: f64 = 5.0;
const AUTOMATIC_MAX: f64 = 100.0;

/// A rate of new streams: one every `interval`.
#[derive(Debug, Clone, Copy)]
pub struct StreamRate {
    /// As given, for messages.
    per_second: f64,
    interval: Duration,
}

/// Two rates are the same if they space streams the same.
impl PartialEq for StreamRate {
    fn eq(&self, other: &Self) -> bool {
        self.interval == other.interval
    }
}

impl Eq for StreamRate {}

impl StreamRate {
    /// `per_second` streams per second; `None` unless it is a positive number.
    pub fn per_second(per_second: f64) -> Option<StreamRate> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return None;
        }
        let interval = Duration::try_from_secs_f64(1.0 / per_second).ok()?;
        Some(StreamRate {
            per_second,
            interval,
        })
    }

    /// istiod's default for a machine with `cpus` CPUs: 15 + 5 per CPU, at most 100 a second.
    pub fn automatic(cpus: usize) -> StreamRate {
        let per_second = (AUTOMATIC_BASE + AUTOMATIC_PER_CPU * cpus as f64).min(AUTOMATIC_MAX);
        StreamRate {
            per_second,
            interval: Duration::from_secs_f64(1.0 / per_second),
        }
    }

    /// istiod's default for the CPUs this process may use.
    pub fn automatic_here() -> StreamRate {
        StreamRate::automatic(std::thread::available_parallelism().map_or(1, usize::from))
    }
}

impl std::fmt::Display for StreamRate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/s", self.per_second)
    }
}

/// The turns handed out so far.
#[derive(Debug)]
pub(super) struct Limiter {
    interval: Duration,
    /// The earliest the next stream may go.
    next: Mutex<Option<Instant>>,
}

impl Limiter {
    pub fn new(rate: StreamRate) -> Limiter {
        Limiter {
            interval: rate.interval,
            next: Mutex::new(None),
        }
    }

    /// The turn of a stream that opens at `now`: when it may go, or `None` if that is more than
    /// [`MAX_WAIT`] away (it is refused, and takes no turn). A stream that is given a turn and
    /// goes away before it keeps the turn taken, as istiod's does once its wait has begun.
    pub fn reserve(&self, now: Instant) -> Option<Instant> {
        // Each update is one assignment, so the value is consistent even if a holder panicked.
        let mut next = self.next.lock().unwrap_or_else(PoisonError::into_inner);
        let turn = next.map_or(now, |next| next.max(now));
        if turn > now + MAX_WAIT {
            return None;
        }
        *next = Some(turn + self.interval);
        Some(turn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_positive_numbers_and_istiods_automatic_one() {
        assert_eq!(StreamRate::per_second(0.0), None);
        assert_eq!(StreamRate::per_second(-1.0), None);
        assert_eq!(StreamRate::per_second(f64::NAN), None);
        assert_eq!(StreamRate::per_second(f64::INFINITY), None);
        let half = StreamRate::per_second(0.5).unwrap();
        assert_eq!(half.interval, Duration::from_secs(2));
        assert_eq!(half.to_string(), "0.5/s");
        assert_eq!(StreamRate::automatic(1).to_string(), "20/s");
        assert_eq!(StreamRate::automatic(2).to_string(), "25/s");
        assert_eq!(StreamRate::automatic(32).to_string(), "100/s");
    }

    #[test]
    fn streams_wait_their_turn_for_at_most_a_second() {
        let limiter = Limiter::new(StreamRate::per_second(4.0).unwrap());
        let start = Instant::now();
        let quarter = Duration::from_millis(250);
        // No burst: one now, then one every 250 ms, as far as a second ahead.
        let turns: Vec<Option<Instant>> = (0..6).map(|_| limiter.reserve(start)).collect();
        let expected: Vec<Option<Instant>> = (0..5)
            .map(|i| Some(start + quarter * i))
            .chain([None])
            .collect();
        assert_eq!(turns, expected);
        // A refused stream takes no turn: the next one, once the sixth is within a second, gets
        // it.
        let later = start + Duration::from_millis(260);
        assert_eq!(limiter.reserve(later), Some(start + quarter * 5));
        // Once idle, a stream goes at once, and the one after it waits a whole interval.
        let idle = start + Duration::from_secs(60);
        assert_eq!(limiter.reserve(idle), Some(idle));
        assert_eq!(limiter.reserve(idle), Some(idle + quarter));
    }
}

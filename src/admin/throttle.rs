//! Rate-limited warnings: a client can make the admin server refuse it as often as it likes, and
//! each refusal must not become a log line. Owns only the counting; callers log.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Lets one warning through per interval and counts those held back meanwhile.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug)]
struct ThrottleState {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub const fn new(interval: Duration) -> LogThrottle {
        LogThrottle {
            interval,
            state: Mutex::new(ThrottleState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` if a warning may be logged at `now`, `n` being how many were held back since
    /// the last one; `None` if this one is held back.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                state.suppressed += 1;
                None
            }
            _ => {
                state.last = Some(now);
                Some(std::mem::take(&mut state.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_with_the_count_held_back() {
        let throttle = LogThrottle::new(Duration::from_secs(1));
        let start = Instant::now();
        assert_eq!(throttle.allow(start), Some(0));
        assert_eq!(throttle.allow(start + Duration::from_millis(10)), None);
        assert_eq!(throttle.allow(start + Duration::from_millis(999)), None);
        assert_eq!(throttle.allow(start + Duration::from_secs(1)), Some(2));
        assert_eq!(throttle.allow(start + Duration::from_secs(3)), Some(0));
    }
}

//! Coalescing config changes before a rebuild, as istiod debounces them: the model is rebuilt once
//! changes have been quiet for [`Debounce::quiet`] (100 ms), or [`Debounce::max`] (10 s) after the
//! first change still pending, whichever comes first. A burst of edits (a rollout, a `kubectl
//! apply` of many objects) makes one build and one push, and a stream of changes that never pauses
//! still reaches proxies every `max`.
//!
//! [`Debouncer`] is the decision alone, a state machine driven by explicit instants; the pipeline
//! task in [`super`] waits on sources and on its deadline.

use std::time::Duration;

use tokio::time::Instant;

/// istiod's `PILOT_DEBOUNCE_AFTER`.
pub const DEFAULT_QUIET: Duration = Duration::from_millis(100);
/// istiod's `PILOT_DEBOUNCE_MAX`.
pub const DEFAULT_MAX: Duration = Duration::from_secs(10);

/// How config changes are coalesced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    /// Rebuild once no change came for this long. Zero rebuilds on every change.
    pub quiet: Duration,
    /// Rebuild at the latest this long after the first change waiting for a build.
    pub max: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Debounce {
            quiet: DEFAULT_QUIET,
            max: DEFAULT_MAX,
        }
    }
}

/// Changes waiting for a build.
#[derive(Debug, Clone)]
pub struct Debouncer {
    options: Debounce,
    /// The first and the last change since the last build.
    pending: Option<(Instant, Instant)>,
}

impl Debouncer {
    pub fn new(options: Debounce) -> Debouncer {
        Debouncer {
            options,
            pending: None,
        }
    }

    /// Records a change seen at `now`.
    pub fn change(&mut self, now: Instant) {
        let first = self.pending.map_or(now, |(first, _)| first);
        self.pending = Some((first, now));
    }

    /// When the pending changes are to be built; `None` when nothing is pending.
    pub fn deadline(&self) -> Option<Instant> {
        let (first, last) = self.pending?;
        // Past any clock: never, for that bound.
        let quiet = last.checked_add(self.options.quiet);
        let max = first.checked_add(self.options.max);
        match (quiet, max) {
            (Some(quiet), Some(max)) => Some(quiet.min(max)),
            (one, other) => one.or(other).or(Some(last)),
        }
    }

    /// If the pending changes are due at `now`, takes them: returns when the first of them was
    /// seen, and the caller builds.
    pub fn take_due(&mut self, now: Instant) -> Option<Instant> {
        if self.deadline()? > now {
            return None;
        }
        self.pending.take().map(|(first, _)| first)
    }

    /// When the first pending change was seen.
    pub fn first_pending(&self) -> Option<Instant> {
        self.pending.map(|(first, _)| first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn debouncer() -> Debouncer {
        Debouncer::new(Debounce::default())
    }

    #[test]
    fn nothing_pending_nothing_due() {
        let mut debouncer = debouncer();
        let now = Instant::now();
        assert_eq!(debouncer.deadline(), None);
        assert_eq!(debouncer.take_due(now + Duration::from_secs(60)), None);
    }

    #[test]
    fn builds_after_a_quiet_period() {
        let mut debouncer = debouncer();
        let start = Instant::now();
        debouncer.change(start);
        assert_eq!(debouncer.deadline(), Some(start + 100 * MS));
        assert_eq!(debouncer.take_due(start + 99 * MS), None);
        // Another change restarts the quiet period.
        debouncer.change(start + 50 * MS);
        assert_eq!(debouncer.take_due(start + 100 * MS), None);
        assert_eq!(debouncer.take_due(start + 150 * MS), Some(start));
        assert_eq!(debouncer.deadline(), None);
    }

    #[test]
    fn a_thousand_changes_in_a_burst_make_one_build() {
        let mut debouncer = debouncer();
        let start = Instant::now();
        let mut builds = 0;
        for i in 0..1000 {
            let now = start + i * MS;
            debouncer.change(now);
            builds += usize::from(debouncer.take_due(now).is_some());
        }
        let end = start + 999 * MS;
        assert_eq!(debouncer.deadline(), Some(end + 100 * MS));
        builds += usize::from(debouncer.take_due(end + 100 * MS).is_some());
        assert_eq!(builds, 1);
    }

    #[test]
    fn changes_that_never_pause_build_every_max() {
        let mut debouncer = debouncer();
        let start = Instant::now();
        let mut built_at = Vec::new();
        // A change every 50 ms for 25 s: never quiet for 100 ms.
        for i in 0..500 {
            let now = start + i * 50 * MS;
            if debouncer.take_due(now).is_some() {
                built_at.push(now - start);
            }
            debouncer.change(now);
        }
        assert_eq!(built_at, [Duration::from_secs(10), Duration::from_secs(20)]);
    }

    #[test]
    fn zero_quiet_builds_every_change() {
        let mut debouncer = Debouncer::new(Debounce {
            quiet: Duration::ZERO,
            max: DEFAULT_MAX,
        });
        let now = Instant::now();
        debouncer.change(now);
        assert_eq!(debouncer.take_due(now), Some(now));
        assert_eq!(debouncer.first_pending(), None);
    }
}

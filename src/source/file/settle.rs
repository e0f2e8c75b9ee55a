//! When a followed file's change applies: at once if it arrived whole (renamed into place, or a
//! symlink swap), otherwise once the same bytes were read twice at least the quiet period apart.
//! A writer that truncates a file and writes it in several steps leaves it half-written in
//! between, and half a YAML file often parses (into fewer objects); waiting for the bytes to stop
//! changing keeps such states away from proxies. Pure: the caller reads the files and the clock.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::diagnostic::ConfigError;

/// How a followed file's change is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settle {
    /// A file written in place applies once its bytes stayed the same this long
    /// (`--file-quiet-period`).
    pub quiet: Duration,
    /// A file still changing this long after its first unapplied change is reported (its last
    /// good objects keep serving meanwhile).
    pub report_after: Duration,
}

/// A writer that pauses longer than this in the middle of a file has its first part applied.
/// 250 ms is the delay istiod's file watcher waits after a change before it reads the directory
/// (`watchDebounceDelay`), so an in-place edit reaches proxies about as fast as with istiod;
/// files renamed into place and ConfigMap updates do not wait.
pub const DEFAULT_QUIET_PERIOD: Duration = Duration::from_millis(250);

impl Default for Settle {
    /// The quiet period above; reported after 10 s (istiod's `PILOT_DEBOUNCE_MAX`, the longest a
    /// change waits to be built).
    fn default() -> Settle {
        Settle {
            quiet: DEFAULT_QUIET_PERIOD,
            report_after: Duration::from_secs(10),
        }
    }
}

/// A change read but not applied yet.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub bytes: Vec<u8>,
    /// When these bytes were first read.
    pub since: Instant,
    /// When the first change not applied was read.
    pub first: Instant,
    /// Set once the file has been changing for [`Settle::report_after`].
    pub unsettled: Option<ConfigError>,
}

impl Pending {
    /// When the file is to be read again: when its bytes may have settled, or when it is due
    /// to be reported.
    pub fn next_check(&self, settle: Settle) -> Option<Instant> {
        let report = self
            .unsettled
            .is_none()
            .then_some(self.first + settle.report_after);
        [Some(self.since + settle.quiet), report]
            .into_iter()
            .flatten()
            .min()
    }
}

/// How one scan applies what it reads.
#[derive(Debug, Clone, Copy)]
pub(super) enum Apply<'a> {
    /// Whatever is read (`rudder validate`, the first load).
    AtOnce,
    /// Changes wait to be stable unless they arrived whole.
    Settling {
        now: Instant,
        settle: Settle,
        /// Files renamed into place and not written since, as [`path_key`]s.
        renamed: &'a BTreeSet<PathBuf>,
    },
}

/// Takes `bytes`, read at `now` and different from the applied ones: returns them if they apply
/// now (they arrived `whole`, or `pending` held the same bytes for the quiet period), else
/// keeps them in `pending`.
pub(super) fn take(
    pending: &mut Option<Pending>,
    bytes: Vec<u8>,
    whole: bool,
    now: Instant,
    settle: Settle,
) -> Option<Vec<u8>> {
    if whole {
        *pending = None;
        return Some(bytes);
    }
    match pending {
        Some(waiting) if waiting.bytes == bytes => {
            if now >= waiting.since + settle.quiet {
                *pending = None;
                return Some(bytes);
            }
        }
        Some(waiting) => {
            waiting.bytes = bytes;
            waiting.since = now;
        }
        None => {
            *pending = Some(Pending {
                bytes,
                since: now,
                first: now,
                unsettled: None,
            });
        }
    }
    None
}

/// A file's path as both a directory scan and a file event name it: its directory's canonical
/// path joined with its name (the file itself may be a symlink, which is not followed).
pub fn path_key(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(parent).ok()?.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Settle = Settle {
        quiet: Duration::from_millis(100),
        report_after: Duration::from_secs(1),
    };

    fn ms(start: Instant, millis: u64) -> Instant {
        start + Duration::from_millis(millis)
    }

    #[test]
    fn a_change_applies_once_it_read_the_same_after_the_quiet_period() {
        let start = Instant::now();
        let mut pending = None;
        assert_eq!(
            take(&mut pending, b"half".to_vec(), false, start, SETTLE),
            None
        );
        assert_eq!(
            pending.as_ref().and_then(|p| p.next_check(SETTLE)),
            Some(ms(start, 100))
        );
        // The rest was written meanwhile: the quiet period starts again.
        let full = b"half and the rest".to_vec();
        assert_eq!(
            take(&mut pending, full.clone(), false, ms(start, 60), SETTLE),
            None
        );
        assert_eq!(
            take(&mut pending, full.clone(), false, ms(start, 120), SETTLE),
            None
        );
        assert_eq!(
            pending.as_ref().and_then(|p| p.next_check(SETTLE)),
            Some(ms(start, 160))
        );
        assert_eq!(
            take(&mut pending, full.clone(), false, ms(start, 160), SETTLE),
            Some(full)
        );
        assert!(pending.is_none());
    }

    #[test]
    fn a_change_that_arrived_whole_applies_at_once() {
        let start = Instant::now();
        let mut pending = None;
        assert_eq!(
            take(&mut pending, b"a".to_vec(), false, start, SETTLE),
            None
        );
        assert_eq!(
            take(&mut pending, b"b".to_vec(), true, ms(start, 1), SETTLE),
            Some(b"b".to_vec())
        );
        assert!(pending.is_none());
    }

    #[test]
    fn a_file_that_keeps_changing_is_due_for_a_report() {
        let start = Instant::now();
        let mut pending = None;
        for step in 0..20u64 {
            let bytes = step.to_string().into_bytes();
            assert_eq!(
                take(&mut pending, bytes, false, ms(start, step * 60), SETTLE),
                None
            );
        }
        let waiting = pending.expect("still waiting");
        assert_eq!(waiting.first, start);
        // Its next check is the report, due since 1 s after the first change.
        assert_eq!(waiting.next_check(SETTLE), Some(ms(start, 1000)));
    }

    #[test]
    fn keys_name_a_file_by_its_canonical_directory() {
        let dir = tempfile::tempdir().unwrap();
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        let nested = dir.path().join("sub");
        std::fs::create_dir(&nested).unwrap();
        assert_eq!(
            path_key(&nested.join("..").join("a.yaml")),
            Some(canonical.join("a.yaml"))
        );
        assert_eq!(path_key(&dir.path().join("missing/a.yaml")), None);
    }
}

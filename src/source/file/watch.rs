//! Following config directories: file events (notify) wake a rescan of the [`FileSource`], which
//! publishes what the files hold whenever it changes. Owns the OS watch, gathering one write's
//! events into one rescan, the evidence that a file arrived whole (renamed into place and not
//! written since), and the timer that reads again the files still settling. Must not parse or
//! judge files: that is [`FileSource`]'s.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::{FileSource, FileSourceError, Settle, load_dirs, path_key};
use crate::inputs::Inputs;
use crate::source::publish_if_changed;

/// Gathers the events of one write (create, write, rename) into one rescan. Kept short: the
/// serve loop's own debounce (`--debounce-after`) already turns a burst of rescans into one push,
/// and every millisecond here adds to every file edit's time to reach the proxies.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// At most this many renamed files are remembered between two scans; beyond, a renamed file
/// waits its quiet period like any other (the safe side).
const MAX_RENAMED: usize = 4096;

/// Files renamed into place since the last scan and not written since, as [`path_key`]s.
type Renamed = Arc<Mutex<BTreeSet<PathBuf>>>;

/// Follows config directories and publishes what they hold whenever it changes.
pub struct FileWatcher {
    source: FileSource,
    settle: Settle,
    changes: mpsc::Receiver<()>,
    renamed: Renamed,
    tx: watch::Sender<Arc<Inputs>>,
    /// Dropping the watcher ends the OS watches, so it lives as long as this.
    _watcher: RecommendedWatcher,
}

impl FileWatcher {
    /// Checks that every dir exists, starts watching them (recursively), then reads them and
    /// publishes the first `Inputs` (everything read applies) before returning. The first read
    /// runs on the calling thread; call this at startup, before serving.
    pub fn start(
        dirs: Vec<PathBuf>,
        settle: Settle,
        tx: watch::Sender<Arc<Inputs>>,
    ) -> Result<Self, FileSourceError> {
        if settle.quiet.is_zero() {
            return Err(FileSourceError::NoQuietPeriod);
        }
        for dir in &dirs {
            match fs::metadata(dir) {
                Ok(metadata) if metadata.is_dir() => {}
                Ok(_) => return Err(FileSourceError::NotADirectory { path: dir.clone() }),
                Err(source) => {
                    return Err(FileSourceError::Unreadable {
                        path: dir.clone(),
                        source,
                    });
                }
            }
        }
        // notify calls back on its own thread; a full channel already means "rescan pending".
        let (changed, changes) = mpsc::channel(1);
        let renamed = Renamed::default();
        let handler = {
            let renamed = renamed.clone();
            move |result: notify::Result<Event>| {
                match result {
                    // The kernel's queue overflowed: events, writes after a rename among them,
                    // were lost.
                    Ok(event) if event.need_rescan() => {
                        lock(&renamed).clear();
                        tracing::warn!("config directory events were lost; rescanning");
                    }
                    Ok(event) if is_change(&event.kind) => note(&mut lock(&renamed), &event),
                    Ok(_) => return,
                    Err(error) => {
                        lock(&renamed).clear();
                        tracing::warn!(%error, "config directory watch error; rescanning");
                    }
                }
                let _ = changed.try_send(());
            }
        };
        let mut watcher = notify::recommended_watcher(handler).map_err(FileSourceError::Start)?;
        for dir in &dirs {
            watcher
                .watch(dir, RecursiveMode::Recursive)
                .map_err(|source| FileSourceError::Watch {
                    path: dir.clone(),
                    source,
                })?;
        }
        // Watching starts before the first read, so no change can fall between the two.
        let source = load_dirs(&dirs);
        publish_if_changed(&tx, Arc::new(source.inputs()));
        Ok(Self {
            source,
            settle,
            changes,
            renamed,
            tx,
            _watcher: watcher,
        })
    }

    /// Rescans after every burst of changes, and reads files still settling again when they
    /// are due, until every receiver of the channel is gone. File I/O runs on tokio's blocking
    /// pool.
    pub async fn run(mut self) {
        loop {
            let due = self.source.next_check(self.settle);
            let rescan = tokio::select! {
                change = self.changes.recv() => {
                    if change.is_none() {
                        return;
                    }
                    tokio::time::sleep(DEBOUNCE).await;
                    while self.changes.try_recv().is_ok() {}
                    true
                }
                () = sleep_until(due) => false,
                () = self.tx.closed() => return,
            };
            // Taken before any file is read, so every rename it holds happened before the reads.
            let renamed = if rescan {
                std::mem::take(&mut *lock(&self.renamed))
            } else {
                BTreeSet::new()
            };
            let mut source = std::mem::take(&mut self.source);
            let settle = self.settle;
            let reloaded = tokio::task::spawn_blocking(move || {
                let now = Instant::now();
                if rescan {
                    source.rescan(now, settle, &renamed);
                } else {
                    source.recheck(now, settle);
                }
                let inputs = source.inputs();
                (source, inputs)
            })
            .await;
            match reloaded {
                Ok((source, inputs)) => {
                    self.source = source;
                    publish_if_changed(&self.tx, Arc::new(inputs));
                }
                Err(error) => match error.try_into_panic() {
                    Ok(panic) => std::panic::resume_unwind(panic),
                    // The runtime is shutting down.
                    Err(_) => return,
                },
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

fn lock(renamed: &Renamed) -> std::sync::MutexGuard<'_, BTreeSet<PathBuf>> {
    // Each change to the set is whole, so it is consistent even after a panic.
    renamed.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps `renamed` up to date with one event: a rename's target arrived whole; any write to a
/// file (or its removal, or its being renamed away) since makes it a file like any other.
fn note(renamed: &mut BTreeSet<PathBuf>, event: &Event) {
    match &event.kind {
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
            if renamed.len() < MAX_RENAMED
                && let Some(key) = event.paths.first().and_then(|path| path_key(path))
            {
                renamed.insert(key);
            }
        }
        // `Both` repeats a `To` inotify also sent; other backends' `Any` says too little.
        EventKind::Modify(ModifyKind::Name(RenameMode::Both | RenameMode::Any)) => {}
        EventKind::Modify(ModifyKind::Metadata(_)) => {}
        _ if renamed.is_empty() => {}
        _ => {
            for key in event.paths.iter().filter_map(|path| path_key(path)) {
                renamed.remove(&key);
            }
        }
    }
}

/// Our own reads show up as open and close events; rescanning on them would never stop.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::inputs::{Kind, Object, ObjectKey};
    use crate::source::file::tests::{key, service, write};

    fn names(inputs: &Inputs) -> Vec<String> {
        inputs.entries.keys().map(|key| key.name.clone()).collect()
    }

    #[test]
    fn watching_a_missing_dir_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = watch::channel(Arc::new(Inputs::default()));
        let error = FileWatcher::start(vec![dir.path().join("missing")], Settle::default(), tx)
            .err()
            .unwrap();
        assert!(
            matches!(error, FileSourceError::Unreadable { .. }),
            "{error}"
        );
    }

    /// Waits until the published inputs define exactly `names`.
    async fn published(rx: &mut watch::Receiver<Arc<Inputs>>, expected: &[&str]) {
        let want: Vec<ObjectKey> = expected.iter().map(|name| key(name)).collect();
        let wait = rx.wait_for(|inputs| inputs.entries.keys().cloned().collect::<Vec<_>>() == want);
        let deadline = Duration::from_secs(2);
        if tokio::time::timeout(deadline, wait).await.is_err() {
            panic!(
                "not published within {deadline:?}: {expected:?}, have {:?}",
                names(&rx.borrow())
            );
        }
    }

    #[tokio::test]
    async fn watcher_follows_creates_renames_new_dirs_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.yaml", &service("a"));
        let (tx, mut rx) = watch::channel(Arc::new(Inputs::default()));
        let watcher = FileWatcher::start(vec![d.to_path_buf()], Settle::default(), tx).unwrap();
        assert_eq!(names(&rx.borrow_and_update()), ["a"]);
        let task = tokio::spawn(watcher.run());

        write(d, "b.yaml", &service("b"));
        published(&mut rx, &["a", "b"]).await;

        // An editor's atomic save: write elsewhere, rename over the file.
        write(d, ".b.yaml.swp", &service("b2"));
        fs::rename(d.join(".b.yaml.swp"), d.join("b.yaml")).unwrap();
        published(&mut rx, &["a", "b2"]).await;

        fs::create_dir(d.join("later")).unwrap();
        write(d, "later/c.yaml", &service("c"));
        published(&mut rx, &["a", "b2", "c"]).await;

        fs::remove_file(d.join("a.yaml")).unwrap();
        published(&mut rx, &["b2", "c"]).await;

        // An unchanged result is not published again.
        write(d, "notes.txt", "not config");
        write(d, "later/c.yaml", &service("c"));
        tokio::time::sleep(DEBOUNCE * 3).await;
        assert!(!rx.has_changed().unwrap());

        drop(rx);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
    }

    /// The kubelet updates a ConfigMap volume by swapping the hidden `..data` symlink.
    #[tokio::test]
    async fn watcher_follows_a_configmap_volume_update() {
        use std::os::unix::fs::symlink;

        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "..v1/svc.yaml", &service("a"));
        symlink("..v1", d.join("..data")).unwrap();
        symlink("..data/svc.yaml", d.join("svc.yaml")).unwrap();
        let (tx, mut rx) = watch::channel(Arc::new(Inputs::default()));
        // A quiet period longer than the test: the swap must not wait for it.
        let settle = Settle {
            quiet: Duration::from_secs(60),
            ..Settle::default()
        };
        let watcher = FileWatcher::start(vec![d.to_path_buf()], settle, tx).unwrap();
        let origins: Vec<String> = rx
            .borrow_and_update()
            .entries
            .values()
            .map(|entry| entry.origin.to_string())
            .collect();
        assert_eq!(origins, [format!("{}:1", d.join("svc.yaml").display())]);
        tokio::spawn(watcher.run());

        write(d, "..v2/svc.yaml", &service("b"));
        symlink("..v2", d.join("..data_tmp")).unwrap();
        fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        fs::remove_dir_all(d.join("..v1")).unwrap();
        published(&mut rx, &["b"]).await;
    }

    #[tokio::test]
    async fn a_file_renamed_into_place_applies_without_the_quiet_period() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.yaml", &service("a"));
        let (tx, mut rx) = watch::channel(Arc::new(Inputs::default()));
        let settle = Settle {
            quiet: Duration::from_secs(60),
            ..Settle::default()
        };
        let watcher = FileWatcher::start(vec![d.to_path_buf()], settle, tx).unwrap();
        tokio::spawn(watcher.run());
        for name in ["a2", "a3"] {
            write(d, ".a.yaml.tmp", &service(name));
            fs::rename(d.join(".a.yaml.tmp"), d.join("a.yaml")).unwrap();
            published(&mut rx, &[name]).await;
        }
        // A new file renamed in, too.
        write(d, ".b.yaml.tmp", &service("b"));
        fs::rename(d.join(".b.yaml.tmp"), d.join("b.yaml")).unwrap();
        published(&mut rx, &["a3", "b"]).await;
    }

    /// The `reviews` DestinationRule with subsets v1 and v2 at revision `revision`, split where
    /// a truncated copy still parses, without v2.
    fn reviews_rule(revision: usize) -> (String, String) {
        let head = format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  \
             name: reviews\n  namespace: default\n  labels: {{revision: \"{revision}\"}}\n\
             spec:\n  host: reviews\n  subsets:\n  - name: v1\n    labels: {{version: v1}}\n"
        );
        let tail = "  - name: v2\n    labels: {version: v2}\n".to_string();
        (head, tail)
    }

    /// The revision and the subsets of the published `reviews` rule.
    fn reviews(inputs: &Inputs) -> Option<(String, usize)> {
        let key = ObjectKey::new(Kind::DestinationRule, "default", "reviews");
        let Ok(Object::DestinationRule(rule)) = &inputs.entries.get(&key)?.object else {
            return None;
        };
        let revision = rule.metadata.labels.get("revision")?.clone();
        Some((revision, rule.spec.subsets.len()))
    }

    /// A file rewritten in place in two writes, the second after a pause shorter than the quiet
    /// period, 50 times: no published inputs ever hold the first half alone, and the last
    /// version applies.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_rewritten_in_place_is_never_applied_half_written() {
        const REWRITES: usize = 50;
        let quiet = Duration::from_millis(300);
        let pause = Duration::from_millis(30);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reviews.yaml");
        let (head, tail) = reviews_rule(0);
        fs::write(&path, head + &tail).unwrap();
        let (tx, mut rx) = watch::channel(Arc::new(Inputs::default()));
        let settle = Settle {
            quiet,
            ..Settle::default()
        };
        let watcher = FileWatcher::start(vec![dir.path().to_path_buf()], settle, tx).unwrap();
        assert_eq!(reviews(&rx.borrow_and_update()), Some(("0".into(), 2)));
        tokio::spawn(watcher.run());
        let seen = tokio::spawn(async move {
            let mut seen = Vec::new();
            while rx.changed().await.is_ok() {
                let rule = reviews(&rx.borrow_and_update());
                let last = rule
                    .as_ref()
                    .is_some_and(|(revision, _)| revision == &REWRITES.to_string());
                seen.push(rule);
                if last {
                    break;
                }
            }
            seen
        });

        let writer = tokio::task::spawn_blocking(move || {
            for revision in 1..=REWRITES {
                let (head, tail) = reviews_rule(revision);
                let mut file = fs::File::create(&path).unwrap();
                file.write_all(head.as_bytes()).unwrap();
                file.flush().unwrap();
                std::thread::sleep(pause);
                file.write_all(tail.as_bytes()).unwrap();
                drop(file);
                // Now and then the file rests long enough to apply.
                let rest = if revision % 10 == 5 {
                    quiet * 2
                } else {
                    pause * 2
                };
                std::thread::sleep(rest);
            }
        });
        writer.await.unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(10), seen)
            .await
            .expect("the last version is published")
            .unwrap();
        println!("published: {seen:?}");
        assert!(
            seen.iter().all(|rule| matches!(rule, Some((_, 2)))),
            "a half-written file was published: {seen:?}"
        );
        // The versions that rested were applied on the way.
        assert!(seen.len() >= 3, "{seen:?}");
    }
}

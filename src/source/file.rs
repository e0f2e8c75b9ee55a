//! The config-directory source: reads every `*.yaml`, `*.yml` and `*.json` file under a set of
//! directories (recursively), decodes their documents into [`Inputs`], and follows changes
//! ([`FileWatcher`]).
//!
//! It owns the per-file state: for each file, what its last successful parse decoded to. A file
//! that stops parsing (or cannot be read) is reported once, at `FILE:LINE`, and keeps serving its
//! last good objects while every other file applies; a deleted file's objects go away.
//! It must not judge objects beyond their shape; that is the model's job.
//!
//! Choices:
//! - Hidden entries (names starting with `.`) are skipped while walking. This follows the layout
//!   of a Kubernetes ConfigMap volume, where the visible `name.yaml` entries are symlinks into a
//!   hidden `..data` -> `..2024_…` directory pair that the kubelet swaps atomically; reading the
//!   hidden copies too would define every object twice. It also skips `.git` and editor swap
//!   files. Symlinks are followed; a directory reached twice through links is walked once.
//! - A path given explicitly (a root) is read whatever its name, so `rudder validate x.txt` works.
//! - Every change rescans all roots rather than mapping events to paths: a config directory is
//!   small, it stays correct under renames, atomic symlink swaps and directories created later,
//!   and files whose bytes did not change are not parsed again.
//! - Half-written files are never applied: a file rewritten in place is read while it is being
//!   written, and a truncated YAML file often still parses (into fewer objects). While following
//!   changes ([`Settle`]), a changed file applies only once its bytes stayed the same for the
//!   quiet period (read, wait, read again), unless it arrived whole: renamed into place (the
//!   watcher saw the rename and no write to the file after it) or reached through a symlink that
//!   now points elsewhere (a ConfigMap volume's `..data` swap; the kubelet writes the new
//!   directory completely before swapping). A file that never settles is reported after
//!   [`Settle::report_after`] and its last good objects keep serving. Reads for `rudder validate`
//!   and the first load at startup apply what they read.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::diagnostic::{ConfigError, Origin};
use crate::inputs::yaml::{RawDocument, parse_documents};
use crate::inputs::{Decoded, Entry, Inputs, ObjectKey, decode};

mod settle;
mod watch;

use settle::{Apply, Pending};
pub use settle::{DEFAULT_QUIET_PERIOD, Settle, path_key};
pub use watch::FileWatcher;

/// Namespaced objects without one land here, as with `kubectl apply`.
const DEFAULT_NAMESPACE: &str = "default";
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// How soon a file or directory that could not be read (out of file descriptors, say) is tried
/// again: no event will say when reading would work, and until then its last good objects serve
/// while an edit of it waits.
const READ_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Why following config directories could not start.
#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("config directory {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("config directory {}: not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("--file-quiet-period must be more than 0s")]
    NoQuietPeriod,
    #[error("cannot start watching config directories: {0}")]
    Start(#[source] notify::Error),
    #[error("cannot watch {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
}

/// The files under a set of roots (directories, or files named directly), as last read.
#[derive(Debug, Clone, Default)]
pub struct FileSource {
    roots: Vec<PathBuf>,
    files: BTreeMap<PathBuf, FileState>,
    /// Roots and directories that could not be listed on the last scan.
    problems: Vec<ConfigError>,
    /// When to scan again because a file or directory could not be read; `None` if all could.
    retry_at: Option<Instant>,
}

#[derive(Debug, Clone, Default)]
struct FileState {
    /// The bytes last applied, so that an unchanged file is not parsed again; `None` after a
    /// failed read, so the next successful one is parsed.
    bytes: Option<Vec<u8>>,
    /// What the path resolved to (symlinks followed) when its bytes were last applied.
    resolved: Option<PathBuf>,
    /// What the documents of the last successful parse decoded to; `None` until one succeeds.
    last_good: Option<Vec<Document>>,
    /// Why the latest read or parse failed.
    error: Option<ConfigError>,
    /// The latest read failed (not for want of the file): it is to be tried again.
    unreadable: bool,
    /// Bytes read that differ from the applied ones and wait to stay the same.
    pending: Option<Pending>,
}

/// One document of a file, decoded.
#[derive(Debug, Clone)]
enum Document {
    Object(ObjectKey, Arc<Entry>),
    Problem(ConfigError),
}

/// Reads every config file under `dirs`.
pub fn load_dirs(dirs: &[PathBuf]) -> FileSource {
    let mut source = FileSource::new(dirs.to_vec());
    source.reload();
    source
}

/// The file- and document-level problems of the config under `paths` (files or directories),
/// read as the source reads them: syntax errors, unreadable files, documents that are not
/// objects, duplicates. Sorted by origin. Problems inside objects are left to the model.
pub fn validate_paths(paths: &[PathBuf]) -> Vec<ConfigError> {
    let mut problems = load_dirs(paths).inputs().problems;
    problems.sort();
    problems
}

impl FileSource {
    /// A source that has read nothing yet; see [`FileSource::reload`].
    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self {
            roots,
            ..Self::default()
        }
    }

    /// Rescans every root and re-reads every file, parsing only those whose bytes changed, and
    /// applies what it read.
    pub fn reload(&mut self) {
        self.scan(Apply::AtOnce);
    }

    /// Rescans every root as [`FileSource::reload`] does, but a changed file applies only once
    /// it settled (see the module's doc): `renamed` holds the files renamed into place since
    /// the last scan (as [`path_key`]s), which apply at once.
    pub fn rescan(&mut self, now: Instant, settle: Settle, renamed: &BTreeSet<PathBuf>) {
        self.scan(Apply::Settling {
            now,
            settle,
            renamed,
        });
    }

    /// Re-reads the files whose change waits to settle; everything, if a read failed and is due
    /// to be tried again.
    pub fn recheck(&mut self, now: Instant, settle: Settle) {
        let renamed = BTreeSet::new();
        let how = Apply::Settling {
            now,
            settle,
            renamed: &renamed,
        };
        if self.retry_at.is_some_and(|due| due <= now) {
            self.scan(how);
            return;
        }
        let waiting: Vec<PathBuf> = self
            .files
            .iter()
            .filter(|(_, state)| state.pending.is_some())
            .map(|(path, _)| path.clone())
            .collect();
        for path in waiting {
            if let Some(state) = self.files.get_mut(&path)
                && !refresh(&path, state, how)
            {
                self.files.remove(&path);
            }
        }
    }

    /// When a file waiting to settle, or one that could not be read, is to be read again, if
    /// any is.
    pub fn next_check(&self, settle: Settle) -> Option<Instant> {
        self.files
            .values()
            .filter_map(|state| state.pending.as_ref()?.next_check(settle))
            .chain(self.retry_at)
            .min()
    }

    fn scan(&mut self, how: Apply<'_>) {
        let mut scan = Scan::default();
        for root in &self.roots {
            scan.root(root);
        }
        // Files under a directory that could not be listed are kept rather than dropped: a
        // permission glitch should not withdraw their objects.
        for dir in &scan.unlisted {
            scan.found.extend(
                self.files
                    .keys()
                    .filter(|path| path.starts_with(dir))
                    .cloned(),
            );
        }
        self.files.retain(|path, _| scan.found.contains(path));
        for path in scan.found {
            let state = self.files.entry(path.clone()).or_default();
            if !refresh(&path, state, how) {
                self.files.remove(&path);
            }
        }
        self.problems = scan.problems;
        let failed = !scan.unlisted.is_empty() || self.files.values().any(|state| state.unreadable);
        self.retry_at = failed.then(|| Instant::now() + READ_RETRY);
    }

    /// What the files hold: files in path order, each with its last good documents.
    pub fn inputs(&self) -> Inputs {
        let mut inputs = Inputs {
            problems: self.problems.clone(),
            ..Inputs::default()
        };
        for state in self.files.values() {
            inputs.problems.extend(state.error.iter().cloned());
            let unsettled = state.pending.as_ref().and_then(|p| p.unsettled.as_ref());
            inputs.problems.extend(unsettled.cloned());
            for document in state.last_good.iter().flatten() {
                match document {
                    Document::Object(key, entry) => inputs.insert(key.clone(), Arc::clone(entry)),
                    Document::Problem(problem) => inputs.problems.push(problem.clone()),
                }
            }
        }
        inputs
    }
}

/// Re-reads one file into its state, applying its bytes as `how` says; false when the file is
/// gone.
fn refresh(path: &Path, state: &mut FileState, how: Apply<'_>) -> bool {
    let bytes = match fs::read(path) {
        Ok(bytes) => {
            state.unreadable = false;
            bytes
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => return false,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read config file");
            state.unreadable = true;
            state.bytes = None;
            state.error =
                Some(ConfigError::new(format!("cannot read: {error}")).at(origin(path, 1)));
            return true;
        }
    };
    if state.bytes.as_ref() == Some(&bytes) {
        // Back to what applies (or never changed): nothing waits.
        state.pending = None;
        return true;
    }
    let resolved = fs::canonicalize(path).ok();
    let Apply::Settling {
        now,
        settle,
        renamed,
    } = how
    else {
        state.apply(path, bytes, resolved);
        return true;
    };
    let swapped = state.resolved.is_some() && resolved != state.resolved;
    let renamed = path_key(path).is_some_and(|key| renamed.contains(&key));
    if let Some(bytes) = settle::take(&mut state.pending, bytes, swapped || renamed, now, settle) {
        state.apply(path, bytes, resolved);
    } else if let Some(pending) = &mut state.pending
        && pending.unsettled.is_none()
        && now >= pending.first + settle.report_after
    {
        let message = format!(
            "still being written: changed again within every {:?} (--file-quiet-period) for {:?}; its last good objects keep serving",
            settle.quiet, settle.report_after
        );
        tracing::warn!(path = %path.display(), "config file {message}");
        pending.unsettled = Some(ConfigError::new(message).at(origin(path, 1)));
    }
    true
}

impl FileState {
    /// Applies bytes read from the file (that resolved to `resolved`).
    fn apply(&mut self, path: &Path, bytes: Vec<u8>, resolved: Option<PathBuf>) {
        self.parse(path, &bytes);
        self.bytes = Some(bytes);
        self.resolved = resolved;
        self.pending = None;
    }

    /// Takes in a file's new bytes: their documents if they parse, else the error (the last good
    /// documents stay).
    fn parse(&mut self, path: &Path, bytes: &[u8]) {
        match parse_file(path, bytes) {
            Ok(documents) => {
                self.last_good = Some(documents);
                self.error = None;
            }
            Err(error) => self.error = Some(*error),
        }
    }
}

/// The inputs one file's bytes give, read exactly as a config directory reads them, without the
/// file system: the fuzz targets (`fuzz/`) drive the parser through this.
#[doc(hidden)]
pub fn inputs_of_file(path: &Path, bytes: &[u8]) -> Inputs {
    let mut state = FileState::default();
    state.parse(path, bytes);
    let source = FileSource {
        files: BTreeMap::from([(path.to_path_buf(), state)]),
        ..FileSource::default()
    };
    source.inputs()
}

fn parse_file(path: &Path, bytes: &[u8]) -> Result<Vec<Document>, Box<ConfigError>> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let line = 1 + bytes[..error.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        ConfigError::new("not valid UTF-8").at(origin(path, line))
    })?;
    let documents = parse_documents(text).map_err(|error| {
        ConfigError::new(format!("{} (column {})", error.message, error.column))
            .at(origin(path, error.line))
    })?;
    Ok(documents
        .into_iter()
        .filter_map(|document| decode_document(path, document))
        .collect())
}

fn decode_document(path: &Path, document: RawDocument) -> Option<Document> {
    let origin = origin(path, document.line);
    match decode(document.value, DEFAULT_NAMESPACE) {
        Ok(Decoded::Object(key, object)) => {
            Some(Document::Object(key, Arc::new(Entry { origin, object })))
        }
        Ok(Decoded::Skipped { api_version, kind }) => {
            tracing::debug!(%origin, api_version, kind, "skipping a kind rudder does not read");
            None
        }
        Err(error) => Some(Document::Problem(ConfigError::from(error).at(origin))),
    }
}

fn origin(path: &Path, line: usize) -> Origin {
    Origin::File {
        path: path.to_path_buf(),
        line,
    }
}

/// The result of walking the roots.
#[derive(Default)]
struct Scan {
    found: BTreeSet<PathBuf>,
    /// Directories that exist but could not be listed.
    unlisted: Vec<PathBuf>,
    /// Canonical directories already walked, to stop at symlink cycles.
    walked: BTreeSet<PathBuf>,
    problems: Vec<ConfigError>,
}

impl Scan {
    fn root(&mut self, root: &Path) {
        match fs::metadata(root) {
            Ok(metadata) if metadata.is_dir() => self.dir(root),
            Ok(_) => {
                self.found.insert(root.to_path_buf());
            }
            Err(error) => {
                tracing::warn!(path = %root.display(), %error, "cannot read config path");
                self.problems
                    .push(ConfigError::new(format!("{}: {error}", root.display())));
            }
        }
    }

    fn dir(&mut self, dir: &Path) {
        if let Ok(canonical) = fs::canonicalize(dir)
            && !self.walked.insert(canonical)
        {
            return;
        }
        let listing = fs::read_dir(dir).and_then(|entries| {
            entries
                .map(|entry| entry.map(|entry| entry.path()))
                .collect::<io::Result<Vec<_>>>()
        });
        let mut paths = match listing {
            Ok(paths) => paths,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return,
            Err(error) => {
                tracing::warn!(path = %dir.display(), %error, "cannot list config directory");
                self.problems
                    .push(ConfigError::new(format!("{}: {error}", dir.display())));
                self.unlisted.push(dir.to_path_buf());
                return;
            }
        };
        paths.sort();
        for path in paths.into_iter().filter(|path| !is_hidden(path)) {
            match fs::metadata(&path) {
                Ok(metadata) if metadata.is_dir() => self.dir(&path),
                Ok(metadata) if metadata.is_file() && is_config_file(&path) => {
                    self.found.insert(path);
                }
                Ok(_) => {}
                // A dangling symlink, or a file deleted since the listing.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                // Reading will report it, keeping the file's last good objects.
                Err(_) if is_config_file(&path) => {
                    self.found.insert(path);
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot read config path")
                }
            }
        }
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.as_encoded_bytes().starts_with(b"."))
}

fn is_config_file(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| {
            EXTENSIONS
                .iter()
                .any(|known| extension.eq_ignore_ascii_case(known))
        })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::inputs::Kind;

    /// Shared with the watcher's tests.
    pub(super) fn service(name: &str) -> String {
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n")
    }

    /// Shared with the watcher's tests.
    pub(super) fn write(dir: &Path, relative: &str, text: &str) -> PathBuf {
        let path = dir.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    /// Shared with the watcher's tests.
    pub(super) fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::Service, "default", name)
    }

    /// Every entry as `name -> path:line`.
    fn origins(inputs: &Inputs) -> Vec<(String, String)> {
        inputs
            .entries
            .iter()
            .map(|(key, entry)| (key.name.clone(), entry.origin.to_string()))
            .collect()
    }

    fn problems(inputs: &Inputs) -> Vec<String> {
        inputs.problems.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn loads_every_config_file_under_the_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = write(
            d,
            "a.yaml",
            &format!("# two\n{}---\n{}", service("a1"), service("a2")),
        );
        let b = write(
            d,
            "sub/deeper/b.json",
            r#"{"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "b", "namespace": "ns"}}"#,
        );
        let c = write(
            d,
            "c.YML",
            &format!(
                "apiVersion: v1\nkind: List\nitems:\n- {}",
                service("c").replace('\n', "\n  ")
            ),
        );
        write(d, "notes.txt", &service("ignored-extension"));
        write(d, ".hidden.yaml", &service("ignored-hidden"));
        write(d, "..data/d.yaml", &service("ignored-hidden-dir"));
        write(
            d,
            "other.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: skipped}\n",
        );

        let other = tempfile::tempdir().unwrap();
        let e = write(other.path(), "e.yaml", &service("e"));

        let inputs = load_dirs(&[d.to_path_buf(), other.path().to_path_buf()]).inputs();
        assert_eq!(problems(&inputs), Vec::<String>::new());
        let at = |path: &Path, line: usize| format!("{}:{line}", path.display());
        assert_eq!(
            origins(&inputs),
            vec![
                ("a1".into(), at(&a, 2)),
                ("a2".into(), at(&a, 7)),
                ("c".into(), at(&c, 4)),
                ("e".into(), at(&e, 1)),
                ("b".into(), at(&b, 1)),
            ]
        );
        assert!(
            inputs
                .entries
                .contains_key(&ObjectKey::new(Kind::Service, "ns", "b"))
        );
    }

    #[test]
    fn a_broken_file_keeps_its_last_good_objects_while_others_apply() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = write(d, "a.yaml", &service("a"));
        let b = write(d, "b.yaml", &service("b"));
        let mut source = load_dirs(&[d.to_path_buf()]);
        let before = source.inputs();

        write(
            d,
            "a.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: [x\n",
        );
        write(d, "b.yaml", &service("b2"));
        source.reload();
        let inputs = source.inputs();
        assert_eq!(inputs.entries.get(&key("a")), before.entries.get(&key("a")));
        assert!(!inputs.entries.contains_key(&key("b")));
        assert!(inputs.entries.contains_key(&key("b2")));
        assert_eq!(
            problems(&inputs),
            vec![format!(
                "{}:4: unclosed bracket '[' (column 9)",
                a.display()
            )]
        );

        // Unchanged and still broken: the same single error, not parsed again.
        source.reload();
        assert_eq!(source.inputs(), inputs);

        write(d, "a.yaml", &format!("# fixed\n{}", service("a")));
        source.reload();
        let fixed = source.inputs();
        assert_eq!(problems(&fixed), Vec::<String>::new());
        assert_eq!(
            fixed
                .entries
                .get(&key("a"))
                .map(|entry| entry.origin.to_string()),
            Some(format!("{}:2", a.display()))
        );

        fs::remove_file(&b).unwrap();
        source.reload();
        assert_eq!(
            origins(&source.inputs()),
            vec![("a".into(), format!("{}:2", a.display()))]
        );
    }

    #[test]
    fn a_file_that_never_parsed_contributes_only_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = write(
            dir.path(),
            "bad.yaml",
            &format!("{}---\na: [1\n", service("a")),
        );
        let inputs = load_dirs(&[dir.path().to_path_buf()]).inputs();
        assert!(inputs.entries.is_empty());
        assert_eq!(inputs.problems.len(), 1);
        assert_eq!(inputs.problems[0].origin, Some(origin(&bad, 6)));
    }

    #[test]
    fn invalid_utf8_is_reported_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yaml");
        fs::write(&bad, b"a: 1\nb: \xff\n").unwrap();
        let inputs = load_dirs(&[dir.path().to_path_buf()]).inputs();
        assert_eq!(
            problems(&inputs),
            vec![format!("{}:2: not valid UTF-8", bad.display())]
        );
    }

    #[test]
    fn document_problems_and_duplicates_are_reported_where_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = write(
            d,
            "a.yaml",
            &format!(
                "{}---\nfoo: bar\n---\napiVersion: v1\nkind: Service\n",
                service("x")
            ),
        );
        let b = write(d, "b.yaml", &format!("\n{}", service("x")));
        let inputs = load_dirs(&[d.to_path_buf()]).inputs();
        assert_eq!(
            problems(&inputs),
            vec![
                format!(
                    "{}:6: not a Kubernetes object: apiVersion and kind are required",
                    a.display()
                ),
                format!("{}:8: metadata.name: Service without a name", a.display()),
                format!(
                    "{}:2: Service default/x: duplicate definition; {}:1 already defines it",
                    b.display(),
                    a.display()
                ),
            ]
        );
    }

    #[test]
    fn validate_paths_takes_files_and_dirs_and_sorts() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let z = write(d, "z.yaml", "a: [\n");
        let a = write(d, "sub/a.yaml", "kind: Service\n");
        let named = write(d, "named.txt", "b: ]\n");
        let missing = d.join("missing");
        let problems: Vec<String> =
            validate_paths(&[named.clone(), d.join("sub"), z.clone(), missing.clone()])
                .iter()
                .map(ToString::to_string)
                .collect();
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(
            problems[0].starts_with(&format!("{}: ", missing.display())),
            "{problems:#?}"
        );
        assert!(
            problems[1].starts_with(&format!("{}:1: ", named.display())),
            "{problems:#?}"
        );
        assert_eq!(
            problems[2],
            format!(
                "{}:1: not a Kubernetes object: apiVersion and kind are required",
                a.display()
            )
        );
        assert!(
            problems[3].starts_with(&format!("{}:1: ", z.display())),
            "{problems:#?}"
        );
    }

    #[test]
    fn a_changed_file_waits_for_its_quiet_period_unless_renamed_into_place() {
        let settle = Settle {
            quiet: Duration::from_millis(100),
            report_after: Duration::from_secs(1),
        };
        let at = |start: Instant, millis: u64| start + Duration::from_millis(millis);
        let names = |source: &FileSource| -> Vec<String> {
            source
                .inputs()
                .entries
                .keys()
                .map(|key| key.name.clone())
                .collect()
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = write(d, "a.yaml", &service("a"));
        let mut source = load_dirs(&[d.to_path_buf()]);
        let start = Instant::now();
        let none = BTreeSet::new();

        // Written in place: read again after the quiet period, the same, then applied.
        write(d, "a.yaml", &service("a2"));
        source.rescan(start, settle, &none);
        assert_eq!(names(&source), ["a"]);
        assert_eq!(source.next_check(settle), Some(at(start, 100)));
        source.recheck(at(start, 100), settle);
        assert_eq!(names(&source), ["a2"]);
        assert_eq!(source.next_check(settle), None);

        // Renamed into place: applied at once.
        write(d, "a.yaml", &service("a3"));
        let renamed = BTreeSet::from([path_key(&a).unwrap()]);
        source.rescan(at(start, 200), settle, &renamed);
        assert_eq!(names(&source), ["a3"]);

        // Never quiet for long enough: reported, and the last good objects keep serving.
        for step in 0..=10 {
            write(d, "a.yaml", &service(&format!("x{step}")));
            source.rescan(at(start, 300 + step * 100), settle, &none);
        }
        assert_eq!(names(&source), ["a3"]);
        let reported = problems(&source.inputs());
        assert_eq!(reported.len(), 1, "{reported:?}");
        assert!(
            reported[0].starts_with(&format!("{}:1: still being written", a.display())),
            "{reported:?}"
        );
        source.recheck(at(start, 1400), settle);
        assert_eq!(names(&source), ["x10"]);
        assert_eq!(problems(&source.inputs()), Vec::<String>::new());

        // A new file written in place waits too; a deleted one goes at once.
        write(d, "b.yaml", &service("b"));
        source.rescan(at(start, 1500), settle, &none);
        assert_eq!(names(&source), ["x10"]);
        fs::remove_file(&a).unwrap();
        source.rescan(at(start, 1600), settle, &none);
        assert_eq!(names(&source), ["b"]);
    }
}

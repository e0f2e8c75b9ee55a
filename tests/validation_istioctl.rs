//! `rudder validate` gives the verdict `istioctl validate` gives, object by object, on a corpus
//! drawn from the Istio release scripts/istiod pins: its samples, the objects its tests and
//! analyzers read, and the CRD test data its own tests mark valid or invalid (all read from the
//! `istio.io/istio` module in the Go module cache when the test runs, not committed).
//!
//! Each Istio object is written to a file of its own and checked by both tools: istioctl built
//! from that release (`scripts/istiod build-istioctl`), and rudder checking it alone. An object
//! is valid for istioctl when it exits 0, for rudder when it reports no error (warnings allowed).
//! Every disagreement is either listed, with its reason, in
//! `testdata/validation-istioctl/disagreements.yaml`, or fails the test; a listed disagreement
//! that no longer happens fails it too, so fixes shrink the list. Objects of the kinds rudder
//! does not translate yet (security, telemetry, extensions) are only reported by rudder, so
//! istioctl's refusals of them are counted apart rather than listed one by one.
//!
//! `RUDDER_VALIDATION_REPORT=FILE` writes every object's verdicts and the totals the README
//! quotes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use rudder::inputs::Kind;
use serde::Deserialize;
use serde_json::Value;
use support::istio_module::{istio_module, istioctl_binary};

/// The directories of the Istio module the corpus is read from.
const CORPUS_ROOTS: &[&str] = &[
    "samples",
    "tests/testdata/config",
    "tests/testdata/networking",
    "pkg/test/datasets/validation/dataset",
    "pkg/config/validation/testdata/crds",
    "pkg/config/analysis/analyzers/testdata",
    "pilot/pkg/xds/testdata",
    "istioctl/pkg/analyze/testdata",
];

const DISAGREEMENTS: &str = "testdata/validation-istioctl/disagreements.yaml";

/// One Istio object of the corpus.
struct Object {
    /// `PATH#N`: the file in the Istio module and the object's place among its documents.
    source: String,
    kind: String,
    name: String,
    text: String,
}

/// What one tool said about one object.
#[derive(Debug, Clone)]
struct Verdict {
    valid: bool,
    output: String,
}

/// A listed disagreement: the object, either the two verdicts or a warning of istioctl's that
/// rudder does not give, and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Disagreement {
    object: String,
    istioctl: Option<Validity>,
    rudder: Option<Validity>,
    warning: Option<String>,
    reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Validity {
    Valid,
    Invalid,
}

impl Validity {
    fn of(valid: bool) -> Self {
        if valid { Self::Valid } else { Self::Invalid }
    }
}

/// Every YAML file under `dir`, sorted.
fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            yaml_files(&path, found);
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            found.push(path);
        }
    }
}

/// The documents of a multi-document YAML text, as written.
fn documents(text: &str) -> Vec<String> {
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line.starts_with("---") {
            documents.push(String::new());
        } else if let Some(current) = documents.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents
}

/// The Istio objects of the corpus: documents whose `apiVersion` is in an `*.istio.io` group.
/// Templates (Helm, `{{ }}`) and documents that are not YAML objects are skipped.
fn corpus(module: &Path) -> Vec<Object> {
    let mut files = Vec::new();
    for root in CORPUS_ROOTS {
        yaml_files(&module.join(root), &mut files);
    }
    let mut objects = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if text.contains("{{") {
            continue;
        }
        let relative = file
            .strip_prefix(module)
            .expect("under the module")
            .display()
            .to_string();
        for (index, document) in documents(&text).into_iter().enumerate() {
            let Ok(value) = serde_saphyr::from_str::<Value>(&document) else {
                continue;
            };
            let api_version = value["apiVersion"].as_str().unwrap_or_default();
            let (Some(kind), Some(name)) =
                (value["kind"].as_str(), value["metadata"]["name"].as_str())
            else {
                continue;
            };
            if !api_version
                .split_once('/')
                .is_some_and(|(group, _)| group.ends_with(".istio.io"))
            {
                continue;
            }
            objects.push(Object {
                source: format!("{relative}#{index}"),
                kind: kind.to_string(),
                name: name.to_string(),
                text: document,
            });
        }
    }
    objects
}

fn istioctl_verdict(istioctl: &Path, file: &Path) -> Verdict {
    let output = Command::new(istioctl)
        .args(["validate", "--namespace", "default", "-f"])
        .arg(file)
        // istioctl reads no cluster for `validate`; an empty kubeconfig keeps it from trying.
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("run istioctl validate");
    Verdict {
        valid: output.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

fn rudder_verdict(file: &Path) -> Verdict {
    let output = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .arg("validate")
        .arg(file)
        .env_remove("RUST_LOG")
        .output()
        .expect("run rudder validate");
    let code = output.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "rudder validate {} exited {code:?}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Verdict {
        valid: code == Some(0),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Runs `check` on every file, on as many threads as the machine has cores.
fn verdicts(files: &[PathBuf], check: impl Fn(&Path) -> Verdict + Sync) -> Vec<Verdict> {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|chunk| {
                let check = &check;
                scope.spawn(move || chunk.iter().map(|file| check(file)).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("a checking thread"))
            .collect()
    })
}

/// The messages of the warnings `istioctl validate` printed (`\t* Kind/namespace/name: message`).
fn istioctl_warnings(output: &str) -> Vec<&str> {
    let Some((_, warnings)) = output.split_once("has warnings:") else {
        return Vec::new();
    };
    warnings
        .lines()
        .filter_map(|line| line.trim().strip_prefix("* "))
        .filter_map(|line| line.split_once(": ").map(|(_, message)| message.trim()))
        .collect()
}

/// rudder's output without the istioctl analyze codes its warnings may start with
/// (`warning: [IST0130] ...`), which `istioctl validate` does not print.
fn without_codes(output: &str) -> String {
    let mut text = output.to_string();
    while let Some(start) = text.find("[IST") {
        let end = start + "[IST0000] ".len();
        if text.get(start..end).is_none_or(|tag| !tag.ends_with("] ")) {
            break;
        }
        text.replace_range(start..end, "");
    }
    text
}

fn translated(kind: &str) -> bool {
    Kind::ALL
        .iter()
        .any(|known| known.name() == kind && known.untranslated_effect().is_none())
}

#[test]
fn rudder_validate_agrees_with_istioctl_validate() {
    let module = istio_module();
    let objects = corpus(&module);
    assert!(
        objects.len() >= 200,
        "the corpus has only {} Istio objects",
        objects.len()
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files: Vec<PathBuf> = objects
        .iter()
        .enumerate()
        .map(|(index, object)| {
            let path = dir.path().join(format!("{index:04}.yaml"));
            std::fs::write(&path, &object.text).expect("write an object");
            path
        })
        .collect();
    let istioctl = istioctl_binary();
    let by_istioctl = verdicts(&files, |file| istioctl_verdict(&istioctl, file));
    let by_rudder = verdicts(&files, rudder_verdict);

    let listed: Vec<Disagreement> = serde_saphyr::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(DISAGREEMENTS))
            .expect("read the disagreements list"),
    )
    .expect("the disagreements list is YAML");
    let listed_warnings: BTreeMap<(&str, &str), &Disagreement> = listed
        .iter()
        .filter_map(|entry| Some(((entry.object.as_str(), entry.warning.as_deref()?), entry)))
        .collect();
    let mut explained_warnings = BTreeSet::new();
    let listed: BTreeMap<&str, &Disagreement> = listed
        .iter()
        .filter(|entry| entry.warning.is_none())
        .map(|entry| (entry.object.as_str(), entry))
        .collect();

    let mut report = String::new();
    let mut unexplained = Vec::new();
    let mut explained = BTreeSet::new();
    let mut agree = 0;
    let (mut compared_warnings, mut same_warnings) = (0, 0);
    let mut untranslated_disagreements = 0;
    let mut by_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for ((object, istioctl), rudder) in objects.iter().zip(&by_istioctl).zip(&by_rudder) {
        let counts = by_kind.entry(object.kind.as_str()).or_default();
        counts.0 += 1;
        let _ = writeln!(
            report,
            "{} {} {}: istioctl {:?}, rudder {:?}",
            object.source,
            object.kind,
            object.name,
            Validity::of(istioctl.valid),
            Validity::of(rudder.valid),
        );
        let translated_kind = translated(&object.kind);
        for warning in istioctl_warnings(&istioctl.output) {
            if !translated_kind {
                continue;
            }
            compared_warnings += 1;
            if without_codes(&rudder.output).contains(&format!("warning: {warning}")) {
                same_warnings += 1;
                continue;
            }
            let key = (object.source.as_str(), warning);
            if listed_warnings.contains_key(&key) {
                explained_warnings.insert(key);
            } else {
                unexplained.push(format!(
                    "{} ({} {}): istioctl warns {warning:?}, rudder does not\n--- rudder\n{}",
                    object.source, object.kind, object.name, rudder.output
                ));
            }
        }
        if istioctl.valid == rudder.valid {
            agree += 1;
            counts.1 += 1;
            continue;
        }
        if !translated(&object.kind) {
            untranslated_disagreements += 1;
            continue;
        }
        match listed.get(object.source.as_str()) {
            Some(entry)
                if entry.istioctl == Some(Validity::of(istioctl.valid))
                    && entry.rudder == Some(Validity::of(rudder.valid)) =>
            {
                explained.insert(object.source.as_str());
            }
            _ => unexplained.push(format!(
                "{} ({} {}): istioctl says {:?}, rudder says {:?}\n--- object\n{}--- istioctl\n{}--- rudder\n{}",
                object.source,
                object.kind,
                object.name,
                Validity::of(istioctl.valid),
                Validity::of(rudder.valid),
                object.text,
                istioctl.output,
                rudder.output,
            )),
        }
    }
    let mut stale: Vec<String> = listed
        .keys()
        .filter(|object| !explained.contains(*object))
        .map(ToString::to_string)
        .collect();
    stale.extend(
        listed_warnings
            .keys()
            .filter(|key| !explained_warnings.contains(*key))
            .map(|(object, warning)| format!("{object}: {warning}")),
    );

    let _ = writeln!(
        report,
        "\n{} objects; {agree} same verdict; {} listed disagreements; {untranslated_disagreements} \
         disagreements on kinds rudder does not translate yet",
        objects.len(),
        explained.len()
    );
    let _ = writeln!(
        report,
        "{compared_warnings} warnings of istioctl on translated kinds; rudder gives {same_warnings} \
         of them"
    );
    for (kind, (total, same)) in &by_kind {
        let _ = writeln!(report, "{kind}: {same}/{total} same verdict");
    }
    support::tool_comparison::conclude(
        &support::tool_comparison::Outcome {
            report: &report,
            report_env: "RUDDER_VALIDATION_REPORT",
            listed_in: DISAGREEMENTS,
            what: "disagreements with istioctl validate",
            unexplained: &unexplained,
            stale: &stale,
        },
        listed
            .values()
            .chain(listed_warnings.values())
            .map(|entry| entry.reason.as_str()),
    );
}

//! `rudder validate` reports what `istioctl analyze --use-kube=false` reports, for the analyzer
//! messages rudder gives (`src/model/validate/analysis.rs`): file by file, over the analyzer test
//! data of the Istio release scripts/istiod pins (`pkg/config/analysis/analyzers/testdata`, read
//! from the Go module cache when the test runs) and rudder's own cases (`testdata/analyze/`).
//!
//! A finding is a message code with the object it is about (`IST0109 VirtualService foo/a`);
//! istioctl's come from its JSON output, rudder's from the `[ISTnnnn]` its messages start with.
//! For the codes rudder implements, the two sets must be equal; every finding only one tool gives
//! is either listed, with its reason, in `testdata/analyze-istioctl/disagreements.yaml`, or fails
//! the test, and a listed finding that no longer differs fails it too. Files istioctl cannot read
//! (mesh config files the analyzer tests pass apart) are skipped and counted.
//!
//! `RUDDER_ANALYZE_REPORT=FILE` writes every file's findings and the totals the README quotes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;
use support::istio_module::{istio_module, istioctl_binary};

/// The codes rudder gives (`analysis::Code`).
const CODES: &[&str] = &[
    "IST0002", "IST0101", "IST0109", "IST0111", "IST0112", "IST0128", "IST0129", "IST0130",
    "IST0131", "IST0132", "IST0134", "IST0145",
];

/// Codes of analyzers `istioctl analyze --use-kube=false` skips, because they also read Pods or
/// Services, which it does not take from files: the analyzer, and the name of the message in its tests. For these,
/// rudder is compared with the expectations of Istio's own analyzer tests
/// (`pkg/config/analysis/analyzers/analyzers_test.go`) on the files they run the analyzer on.
const SKIPPED_IN_FILE_MODE: &[(&str, &str, &str)] = &[
    (
        "IST0111",
        "sidecar.SelectorAnalyzer",
        "MultipleSidecarsWithoutWorkloadSelectors",
    ),
    (
        "IST0112",
        "virtualservice.DestinationHostAnalyzer",
        "VirtualServiceDestinationPortSelectorRequired",
    ),
    (
        "IST0145",
        "gateway.ConflictingGatewayAnalyzer",
        "ConflictingGateways",
    ),
];

const DISAGREEMENTS: &str = "testdata/analyze-istioctl/disagreements.yaml";

/// A finding only one tool gives, and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Disagreement {
    /// `istio:PATH` (under the analyzer test data) or `rudder:PATH` (under testdata/analyze).
    file: String,
    /// `CODE Kind namespace/name`.
    finding: String,
    /// Which tool gives it.
    only: Tool,
    reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Tool {
    Istioctl,
    Rudder,
}

/// The YAML files directly in `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("read {}: {error}", dir.display()))
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// istioctl's findings for `file`, or `None` when it cannot read the file.
fn istioctl_findings(istioctl: &Path, file: &Path) -> Option<BTreeSet<String>> {
    let output = Command::new(istioctl)
        .args([
            "analyze",
            "--use-kube=false",
            "--all-namespaces",
            "-o",
            "json",
        ])
        .arg(file)
        // No cluster is read; an empty kubeconfig keeps istioctl from looking for one.
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("run istioctl analyze");
    let messages: Vec<Value> = serde_json::from_slice(&output.stdout).ok()?;
    Some(
        messages
            .iter()
            .filter_map(|message| {
                let code = message["code"].as_str()?;
                let origin = message["origin"].as_str()?;
                Some(format!("{code} {}", with_namespace(origin)))
            })
            .filter(|finding| compared_in_file_mode(finding))
            .collect(),
    )
}

/// rudder's findings for `file`: lines `ORIGIN: Kind ns/name: field: [warning: ][CODE] ...`.
fn rudder_findings(file: &Path) -> BTreeSet<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_rudder"))
        .arg("validate")
        .arg(file)
        .env_remove("RUST_LOG")
        .output()
        .expect("run rudder validate");
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "rudder validate {} exited {:?}: {}",
        file.display(),
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (_, coded) = line.split_once(": [IST")?;
            let code = format!("IST{}", coded.get(..4)?);
            let object = line.split(": ").nth(1)?;
            Some(format!("{code} {object}"))
        })
        .collect()
}

#[test]
fn rudder_validate_gives_the_findings_of_istioctl_analyze() {
    let module = istio_module();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files: Vec<(String, PathBuf)> =
        yaml_files(&module.join("pkg/config/analysis/analyzers/testdata"))
            .into_iter()
            .map(|path| (format!("istio:{}", file_name(&path)), path))
            .chain(
                yaml_files(&root.join("testdata/analyze"))
                    .into_iter()
                    .map(|path| (format!("rudder:{}", file_name(&path)), path)),
            )
            .collect();
    let istioctl = istioctl_binary();
    let expectations = analyzer_test_expectations(&module);

    let listed: Vec<Disagreement> = serde_saphyr::from_str(
        &std::fs::read_to_string(root.join(DISAGREEMENTS)).expect("read the disagreements list"),
    )
    .expect("the disagreements list is YAML");
    let listed: BTreeMap<(String, String, Tool), &Disagreement> = listed
        .iter()
        .map(|entry| {
            (
                (entry.file.clone(), entry.finding.clone(), entry.only),
                entry,
            )
        })
        .collect();
    let mut explained = BTreeSet::new();

    let mut report = String::new();
    let mut unexplained = Vec::new();
    let (mut compared, mut skipped, mut agreed) = (0, 0, 0);
    let mut by_code: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (name, path) in &files {
        let Some(mut by_istioctl) = istioctl_findings(&istioctl, path) else {
            skipped += 1;
            let _ = writeln!(report, "{name}: skipped (istioctl cannot read it)");
            continue;
        };
        compared += 1;
        if let Some(expected) = name
            .strip_prefix("istio:")
            .and_then(|file| expectations.get(file))
        {
            by_istioctl.extend(expected.iter().cloned());
        }
        let by_rudder = rudder_findings(path);
        for finding in by_istioctl.union(&by_rudder) {
            let code = CODES
                .iter()
                .find(|code| finding.starts_with(**code))
                .expect("a finding of a compared code");
            let counts = by_code.entry(code).or_default();
            counts.0 += 1;
            let only = match (by_istioctl.contains(finding), by_rudder.contains(finding)) {
                (true, true) => {
                    agreed += 1;
                    counts.1 += 1;
                    let _ = writeln!(report, "{name}: {finding}: both");
                    continue;
                }
                (true, false) => Tool::Istioctl,
                _ => Tool::Rudder,
            };
            let _ = writeln!(report, "{name}: {finding}: only {only:?}");
            let key = (name.clone(), finding.clone(), only);
            if listed.contains_key(&key) {
                explained.insert(key);
            } else {
                unexplained.push(format!(
                    "- file: {name}\n  finding: {finding}\n  only: {only:?}"
                ));
            }
        }
    }
    let stale: Vec<String> = listed
        .keys()
        .filter(|key| !explained.contains(*key))
        .map(|(file, finding, only)| format!("{file}: {finding} (only {only:?})"))
        .collect();
    let findings: usize = by_code.values().map(|(total, _)| total).sum();
    let _ = writeln!(
        report,
        "\n{} files: {compared} compared, {skipped} skipped; {findings} findings of the codes \
         rudder gives, {agreed} from both tools, {} listed disagreements",
        files.len(),
        explained.len()
    );
    for (code, (total, same)) in &by_code {
        let _ = writeln!(report, "{code}: {same}/{total} from both");
    }
    support::tool_comparison::conclude(
        &support::tool_comparison::Outcome {
            report: &report,
            report_env: "RUDDER_ANALYZE_REPORT",
            listed_in: DISAGREEMENTS,
            what: "findings of only one tool",
            unexplained: &unexplained,
            stale: &stale,
        },
        listed.values().map(|entry| entry.reason.as_str()),
    );
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// `Kind namespace/name`: istioctl writes objects of the default namespace, when their file
/// gives none, as `Kind name`.
fn with_namespace(origin: &str) -> String {
    match origin.split_once(' ') {
        Some((kind, name)) if !name.contains('/') => format!("{kind} default/{name}"),
        _ => origin.to_string(),
    }
}

fn compared_in_file_mode(finding: &str) -> bool {
    CODES.iter().any(|code| finding.starts_with(code))
        && !SKIPPED_IN_FILE_MODE
            .iter()
            .any(|(code, _, _)| finding.starts_with(code))
}

/// The findings Istio's analyzer tests expect of the analyzers istioctl skips in file mode, by
/// test data file: rows `inputFiles: []string{"testdata/FILE"}`, `analyzer: &ANALYZER{}`,
/// `expected: []message{{msg.NAME, "Kind namespace/name"}, ...}`.
fn analyzer_test_expectations(module: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let path = module.join("pkg/config/analysis/analyzers/analyzers_test.go");
    let text = std::fs::read_to_string(&path).expect("read analyzers_test.go");
    let mut expected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in text.split("\n\t{\n") {
        let Some((_, files)) = row.split_once("inputFiles: []string{") else {
            continue;
        };
        let files: Vec<&str> = files
            .split('}')
            .next()
            .unwrap_or_default()
            .split(',')
            .map(|file| file.trim().trim_matches('"'))
            .collect();
        let [file] = files[..] else {
            continue;
        };
        let Some(file) = file.strip_prefix("testdata/") else {
            continue;
        };
        let Some((_, analyzer)) = row.split_once("analyzer:") else {
            continue;
        };
        let analyzer = analyzer.trim().trim_start_matches('&');
        for (code, name, message) in SKIPPED_IN_FILE_MODE {
            if !analyzer.starts_with(&format!("{name}{{}}")) {
                continue;
            }
            let found = expected.entry(file.to_string()).or_default();
            for line in row.lines() {
                let Some((_, origin)) = line.trim().split_once(&format!("{{msg.{message}, \""))
                else {
                    continue;
                };
                let origin = origin.trim_end_matches("\"},");
                found.insert(format!("{code} {}", with_namespace(origin)));
            }
        }
    }
    assert!(
        !expected.is_empty(),
        "no expectations of the analyzers istioctl skips in file mode were found in {}",
        path.display()
    );
    expected
}

//! What the differential suite's scenarios exercise, checked without running them: every field
//! group of the coverage table that rudder carries out is set by at least one scenario, or is
//! listed in `testdata/differential/uncovered.yaml` with the reason; every translated kind is
//! used; sidecars and gateways, both interception modes, attach. docs/differential-coverage.md
//! shows, per group, which rows are exercised and by which scenarios; it must match what the
//! scenarios say (`RUDDER_UPDATE_DIFFERENTIAL=1 cargo test --test differential_coverage`
//! rewrites it).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use rudder::coverage::exercised::{Row, carried_out_rows, rows_set};
use rudder::inputs::Kind;
use rudder::inputs::yaml::parse_documents;
use serde::Deserialize;

use support::differential::scenario::{ProxyKind, ScenarioDir, names, root};

/// A group no scenario sets, and why that is acceptable.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Uncovered {
    kind: String,
    group: String,
    reason: String,
}

/// What the scenarios exercise: each row with the scenarios that set it, and the proxy shapes.
#[derive(Default)]
struct Exercised {
    rows: BTreeMap<Row, BTreeSet<String>>,
    kinds: BTreeSet<Kind>,
    proxy_kinds: BTreeSet<String>,
    interceptions: BTreeSet<String>,
}

fn exercised() -> Exercised {
    let mut out = Exercised::default();
    for name in names() {
        let scenario = ScenarioDir::load(&name).unwrap_or_else(|error| panic!("{error}"));
        for proxy in &scenario.scenario.proxies {
            let kind = match proxy.kind {
                ProxyKind::Sidecar => "sidecar",
                ProxyKind::Router => "router",
            };
            out.proxy_kinds.insert(kind.to_string());
            out.interceptions.insert(proxy.interception.clone());
        }
        for file in &scenario.config_files {
            let text = std::fs::read_to_string(file)
                .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            let documents = parse_documents(&text)
                .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            for document in documents {
                let field = |name: &str| document.value.get(name).and_then(|v| v.as_str());
                let (Some(api_version), Some(kind)) = (field("apiVersion"), field("kind")) else {
                    continue;
                };
                let Some(kind) = Kind::from_type(api_version, kind) else {
                    continue;
                };
                out.kinds.insert(kind);
                let spec = document.value.get("spec").cloned().unwrap_or_default();
                for row in rows_set(kind, &spec) {
                    out.rows.entry(row).or_default().insert(name.clone());
                }
            }
        }
    }
    out
}

fn uncovered_path() -> PathBuf {
    root().join("uncovered.yaml")
}

fn page_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/differential-coverage.md")
}

/// The groups, in table order, each with its rows.
fn groups() -> Vec<((Kind, String), Vec<Row>)> {
    let mut groups: Vec<((Kind, String), Vec<Row>)> = Vec::new();
    for row in carried_out_rows() {
        let key = (row.kind, row.group.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rows)) => rows.push(row),
            None => groups.push((key, vec![row])),
        }
    }
    groups
}

#[test]
fn scenarios_exercise_every_field_group() {
    let exercised = exercised();
    let text = std::fs::read_to_string(uncovered_path()).expect("uncovered.yaml");
    let uncovered: Vec<Uncovered> = serde_saphyr::from_str(&text).expect("uncovered.yaml parses");
    let listed: BTreeMap<(String, String), &str> = uncovered
        .iter()
        .map(|entry| {
            (
                (entry.kind.clone(), entry.group.clone()),
                entry.reason.as_str(),
            )
        })
        .collect();
    let groups = groups();

    let mut failures = Vec::new();
    for ((kind, group), rows) in &groups {
        let covered = rows.iter().any(|row| exercised.rows.contains_key(row));
        let key = (kind.to_string(), group.clone());
        match (covered, listed.contains_key(&key)) {
            (false, false) => failures.push(format!(
                "{kind} `{group}`: no scenario sets any of its fields; add one, or list it in \
                 uncovered.yaml with the reason"
            )),
            (true, true) => failures.push(format!(
                "{kind} `{group}` is listed in uncovered.yaml but scenarios set it; remove it"
            )),
            _ => {}
        }
    }
    for (kind, group) in listed.keys() {
        if !groups
            .iter()
            .any(|((k, g), _)| k.to_string() == *kind && g == group)
        {
            failures.push(format!(
                "uncovered.yaml lists {kind} `{group}`, which is no group of the coverage table"
            ));
        }
    }
    for kind in Kind::ALL
        .iter()
        .filter(|kind| rudder::coverage::spec_fields(**kind).is_some())
    {
        if !exercised.kinds.contains(kind) {
            failures.push(format!("no scenario has a {kind}"));
        }
    }
    for wanted in ["sidecar", "router"] {
        if !exercised.proxy_kinds.contains(wanted) {
            failures.push(format!("no scenario attaches a {wanted}"));
        }
    }
    for wanted in ["NONE", "REDIRECT"] {
        if !exercised.interceptions.contains(wanted) {
            failures.push(format!(
                "no scenario attaches a proxy with {wanted} interception"
            ));
        }
    }

    let page = page(&groups, &exercised, &listed);
    if std::env::var_os("RUDDER_UPDATE_DIFFERENTIAL").is_some() {
        std::fs::write(page_path(), &page).expect("write docs/differential-coverage.md");
    } else if std::fs::read_to_string(page_path()).unwrap_or_default() != page {
        failures.push(
            "docs/differential-coverage.md is out of date: \
             RUDDER_UPDATE_DIFFERENTIAL=1 cargo test --test differential_coverage"
                .to_string(),
        );
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// docs/differential-coverage.md.
fn page(
    groups: &[((Kind, String), Vec<Row>)],
    exercised: &Exercised,
    listed: &BTreeMap<(String, String), &str>,
) -> String {
    let rows_total: usize = groups.iter().map(|(_, rows)| rows.len()).sum();
    let rows_covered = groups
        .iter()
        .flat_map(|(_, rows)| rows)
        .filter(|row| exercised.rows.contains_key(row))
        .count();
    let groups_covered = groups
        .iter()
        .filter(|(_, rows)| rows.iter().any(|row| exercised.rows.contains_key(row)))
        .count();
    let mut out = format!(
        "# What the differential scenarios exercise\n\n\
         Which fields of the [coverage table](coverage.md) the\n\
         [differential suite](differential.md)'s {} scenarios set, generated by\n\
         `RUDDER_UPDATE_DIFFERENTIAL=1 cargo test --test differential_coverage` (the test fails\n\
         when this page is out of date, or when a group is set by no scenario and not listed with\n\
         a reason in `testdata/differential/uncovered.yaml`). Only fields rudder carries out\n\
         (supported or partial) count. A group is one table of fields as coverage.md lists it,\n\
         named by where it is first listed; a group shared by several places (the string match\n\
         of `uri`, `method`, `headers`...) counts wherever it is set.\n\n\
         **{groups_covered} of {} groups and {rows_covered} of {rows_total} fields are set by at\n\
         least one scenario.**\n",
        names().len(),
        groups.len(),
    );
    let mut current = None;
    for ((kind, group), rows) in groups {
        if current != Some(*kind) {
            current = Some(*kind);
            let _ = write!(
                out,
                "\n### {kind}\n\n| group | fields set | not set | scenarios (up to 3) |\n\
                 | --- | --- | --- | --- |\n"
            );
        }
        let (set, unset): (Vec<&Row>, Vec<&Row>) = rows
            .iter()
            .partition(|row| exercised.rows.contains_key(*row));
        let mut scenarios: BTreeSet<&str> = BTreeSet::new();
        for row in &set {
            scenarios.extend(exercised.rows[*row].iter().map(String::as_str));
        }
        let shown: Vec<&str> = scenarios.iter().copied().take(3).collect();
        let scenarios_cell = match listed.get(&(kind.to_string(), group.clone())) {
            Some(reason) if set.is_empty() => format!("none: {}", one_line(reason)),
            _ => shown.join(", "),
        };
        let fields = |rows: &[&Row]| {
            rows.iter()
                .map(|row| format!("`{}`", row.field))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = writeln!(
            out,
            "| `{group}` | {} of {} | {} | {scenarios_cell} |",
            set.len(),
            rows.len(),
            fields(&unset),
        );
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

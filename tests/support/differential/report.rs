//! The suite's figures and its report file (`RUDDER_DIFF_REPORT=path`): scenarios run, fields
//! compared, differences found by class (each occurrence, and the allowlist entries behind them),
//! and every difference with both sides' values. Only summarises outcomes.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::Outcome;
use super::allowlist::Allowlist;

/// The report as JSON.
pub fn report(outcomes: &[Outcome], allowlist: &Allowlist, stale: &[String]) -> Value {
    let mut by_class: BTreeMap<String, usize> = BTreeMap::new();
    let mut entries_by_class: BTreeMap<String, usize> = BTreeMap::new();
    let mut used = std::collections::BTreeSet::new();
    let mut differences = Vec::new();
    for outcome in outcomes {
        used.extend(outcome.matched().into_iter().map(|(entry, _)| entry));
        for found in &outcome.found {
            let entry = found.entry.map(|(index, _)| &allowlist.entries[index]);
            let class = entry.map_or("unexplained".to_string(), |entry| entry.class.to_string());
            *by_class.entry(class.clone()).or_default() += 1;
            differences.push(json!({
                "scenario": outcome.name,
                "proxy": found.proxy,
                "path": found.difference.path.to_string(),
                "class": class,
                "allowlist": entry.map(|entry| entry.id.clone()),
                "rudder": found.difference.rudder,
                "istiod": found.difference.istiod,
            }));
        }
    }
    for index in used {
        *entries_by_class
            .entry(allowlist.entries[index].class.to_string())
            .or_default() += 1;
    }
    let per_scenario: BTreeMap<&str, Value> = outcomes
        .iter()
        .map(|outcome| {
            (
                outcome.name.as_str(),
                json!({
                    "compared_fields": outcome.compared,
                    "differences": outcome.found.len(),
                    "error": outcome.error,
                }),
            )
        })
        .collect();
    json!({
        "scenarios": outcomes.len(),
        "compared_fields": outcomes.iter().map(|o| o.compared).sum::<usize>(),
        "differences": differences.len(),
        "differences_by_class": by_class,
        "allowlist_entries_used_by_class": entries_by_class,
        "stale_allowlist_entries": stale,
        "per_scenario": per_scenario,
        "found": differences,
    })
}

/// One line of figures for the end of a run.
pub fn summary(report: &Value) -> String {
    format!(
        "{} scenarios, {} fields compared, {} differences (by class: {}; allowlist entries used: {})",
        report["scenarios"],
        report["compared_fields"],
        report["differences"],
        report["differences_by_class"],
        report["allowlist_entries_used_by_class"],
    )
}

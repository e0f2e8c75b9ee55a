//! `testdata/differential/allowlist.yaml`: the differences between rudder and istiod that are
//! accepted, each with a path pattern, the scenarios it applies to, a class and a reason. Matches
//! differences to entries; says nothing about which entries went unused (the harness does, since
//! only it knows which scenarios ran).
//!
//! Patterns are paths as `compare::Path` prints them, where a step may hold `*` (any characters
//! within that step; `[*]` is any element, by name or position, or any field) and a step `**` stands for any
//! number of steps: `clusters[*].common_lb_config`, `routes[*].virtual_hosts[*].domains`,
//! `probes[retry-503].**`. A match may also require each side's value (its compact JSON, or
//! `(absent)`) to fit a glob, so that it accepts only the difference it describes, and may be
//! scoped to one variant of the suite (`variant: kube`: only when the registry comes from
//! Kubernetes, tests/differential_kube.rs).

use std::fmt;

use serde::Deserialize;

use super::compare::{Difference, Step};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Changes what a request does.
    Behaviour,
    /// The same behaviour, written differently (names, stat names, metadata, defaults spelled out).
    Shape,
    /// What istiod sends for istio-agent, which a stock Envoy has no use for.
    AgentOnly,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Behaviour => "behaviour",
            Class::Shape => "shape",
            Class::AgentOnly => "agent-only",
        })
    }
}

/// Which variant of the suite a run is: the registry from files (ServiceEntries, istiod's file
/// mode) or from a Kubernetes API server (Services, EndpointSlices, Pods; istiod's Kubernetes mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    File,
    Kube,
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Variant::File => "file",
            Variant::Kube => "kube",
        })
    }
}

/// One accepted difference: where it shows (one or more patterns, each for some scenarios).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// A short name for it, used in messages.
    pub id: String,
    pub class: Class,
    pub reason: String,
    #[serde(rename = "where")]
    pub matches: Vec<Match>,
}

/// A place a difference shows.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub pattern: String,
    /// Scenario names, or `["*"]` for all.
    pub scenarios: Vec<String>,
    /// Only on proxies of this kind (`sidecar` or `router`), if set.
    #[serde(default)]
    pub proxy_kind: Option<String>,
    /// Only when rudder's value, as compact JSON (`(absent)` when it has none), matches this glob.
    #[serde(default)]
    pub rudder: Option<String>,
    /// Only when istiod's value matches this glob, the same way.
    #[serde(default)]
    pub istiod: Option<String>,
    /// Only in this variant of the suite, if set; else in both.
    #[serde(default)]
    pub variant: Option<Variant>,
}

impl Match {
    pub fn for_every_scenario(&self) -> bool {
        self.scenarios.iter().any(|s| s == "*")
    }

    /// Whether a run of `variant` answers for this match going stale: the file variant for
    /// matches of both variants (it runs every scenario), each variant for its own.
    pub fn checked_by(&self, variant: Variant) -> bool {
        self.variant.unwrap_or(Variant::File) == variant
    }

    pub fn applies_to(&self, scenario: &str, proxy_kind: &str, variant: Variant) -> bool {
        self.variant.is_none_or(|own| own == variant)
            && (self.for_every_scenario() || self.scenarios.iter().any(|s| s == scenario))
            && self
                .proxy_kind
                .as_deref()
                .is_none_or(|kind| kind == proxy_kind)
    }
}

/// An entry and one of its matches, by position.
pub type MatchId = (usize, usize);

pub struct Allowlist {
    pub entries: Vec<Entry>,
    patterns: Vec<Vec<Vec<PatternStep>>>,
}

#[derive(Debug)]
enum PatternStep {
    /// `**`
    Any,
    Field(String),
    /// `[...]`: matches a key, an index or a field.
    Element(String),
}

impl Allowlist {
    pub fn path() -> std::path::PathBuf {
        super::scenario::root().join("allowlist.yaml")
    }

    pub fn load() -> Result<Allowlist, String> {
        let path = Self::path();
        let text = std::fs::read_to_string(&path)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        let entries: Vec<Entry> = serde_saphyr::from_str(&text)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        let mut ids = std::collections::BTreeSet::new();
        for entry in &entries {
            if !ids.insert(entry.id.as_str()) {
                return Err(format!(
                    "{}: two entries named {}",
                    path.display(),
                    entry.id
                ));
            }
        }
        let patterns = entries
            .iter()
            .map(|entry| entry.matches.iter().map(|m| parse(&m.pattern)).collect())
            .collect::<Result<_, _>>()?;
        Ok(Allowlist { entries, patterns })
    }

    /// The first match that accepts `difference` in `scenario`, on a proxy of `proxy_kind`, in a
    /// run of `variant`.
    pub fn find(
        &self,
        scenario: &str,
        proxy_kind: &str,
        variant: Variant,
        difference: &Difference,
    ) -> Option<MatchId> {
        let values = |glob: &Option<String>, value: &Option<serde_json::Value>| {
            glob.as_deref().is_none_or(|glob| {
                let text = value
                    .as_ref()
                    .map_or("(absent)".to_string(), |v| v.to_string());
                glob_matches(glob, &text)
            })
        };
        self.entries.iter().enumerate().find_map(|(e, entry)| {
            entry.matches.iter().enumerate().find_map(|(m, one)| {
                (one.applies_to(scenario, proxy_kind, variant)
                    && matches(&self.patterns[e][m], &difference.path.0)
                    && values(&one.rudder, &difference.rudder)
                    && values(&one.istiod, &difference.istiod))
                .then_some((e, m))
            })
        })
    }

    /// How a stale match is named in failures.
    pub fn describe(&self, (e, m): MatchId) -> String {
        let entry = &self.entries[e];
        format!(
            "allowlist entry {} ({}), pattern {:?}",
            entry.id, entry.class, entry.matches[m].pattern
        )
    }

    /// Every match, by position.
    pub fn match_ids(&self) -> impl Iterator<Item = (MatchId, &Match)> {
        self.entries.iter().enumerate().flat_map(|(e, entry)| {
            entry
                .matches
                .iter()
                .enumerate()
                .map(move |(m, one)| ((e, m), one))
        })
    }
}

fn parse(pattern: &str) -> Result<Vec<PatternStep>, String> {
    let mut steps = Vec::new();
    let mut rest = pattern;
    while !rest.is_empty() {
        if let Some(inner) = rest.strip_prefix('[') {
            let end = inner
                .find(']')
                .ok_or_else(|| format!("allowlist pattern {pattern:?}: unclosed ["))?;
            steps.push(PatternStep::Element(inner[..end].to_string()));
            rest = &inner[end + 1..];
        } else {
            let rest_field = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_field.find(['.', '[']).unwrap_or(rest_field.len());
            let field = &rest_field[..end];
            if field.is_empty() {
                return Err(format!("allowlist pattern {pattern:?}: empty step"));
            }
            steps.push(if field == "**" {
                PatternStep::Any
            } else {
                PatternStep::Field(field.to_string())
            });
            rest = &rest_field[end..];
        }
    }
    Ok(steps)
}

fn matches(pattern: &[PatternStep], path: &[Step]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((PatternStep::Any, rest)) => (0..=path.len()).any(|skip| matches(rest, &path[skip..])),
        Some((step, rest)) => {
            let Some((first, path_rest)) = path.split_first() else {
                return false;
            };
            let ok = match (step, first) {
                (PatternStep::Field(glob), Step::Field(name)) => glob_matches(glob, name),
                (PatternStep::Element(glob), Step::Key(key) | Step::Field(key)) => {
                    glob_matches(glob, key)
                }
                (PatternStep::Element(glob), Step::Index(index)) => {
                    glob_matches(glob, &index.to_string())
                }
                _ => false,
            };
            ok && matches(rest, path_rest)
        }
    }
}

/// `*` matches any run of characters.
fn glob_matches(glob: &str, text: &str) -> bool {
    match glob.split_once('*') {
        None => glob == text,
        Some((prefix, rest)) => {
            let Some(text) = text.strip_prefix(prefix) else {
                return false;
            };
            (0..=text.len())
                .filter(|i| text.is_char_boundary(*i))
                .any(|i| glob_matches(rest, &text[i..]))
        }
    }
}

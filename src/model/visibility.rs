//! meshConfig `serviceEntryVisibility`: a mesh-wide cap on how far ServiceEntries are seen, as
//! istiod 1.31 applies it to sidecars and gateways when `applyToSidecars` is set
//! (`PushContext.serviceExportTo`, `model/serviceentry_visibility.go`).
//!
//! Each ServiceEntry gets the visibility of the first policy whose rules all match the labels of
//! its namespace (a policy without rules matches every namespace; a rule without a
//! `namespaceSelector`, or whose selector Kubernetes refuses, matches none), else
//! `defaultVisibility`. `NAMESPACE` narrows its `exportTo` to its own namespace, or to no one when
//! `exportTo` did not include it; `NONE` hides it; `PUBLIC` leaves `exportTo` alone. Kubernetes
//! Services are never capped. Without `applyToSidecars` only ambient proxies would apply it, and
//! rudder serves none.
//!
//! It owns the policy evaluation and the cap, not the parsing (`mesh_config`) nor the label
//! selectors (`discovery`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;

use super::discovery::selects;
use super::{ExportTo, Registry, Service};
use crate::inputs::{Inputs, Kind, Object};

/// `serviceEntryVisibility` as istiod's API spells it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceEntryVisibility {
    pub default_visibility: Visibility,
    pub apply_to_sidecars: bool,
    pub policies: Vec<Policy>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Policy {
    pub visibility: Visibility,
    pub matching_rules: Vec<MatchRule>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MatchRule {
    pub namespace_selector: Option<LabelSelector>,
}

/// `VISIBILITY_UNSPECIFIED` (0) is `PUBLIC`; the enum's numbers are taken too, as istiod's
/// decoder takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub enum Visibility {
    #[default]
    Public,
    Namespace,
    None,
}

impl TryFrom<serde_json::Value> for Visibility {
    type Error = String;

    fn try_from(value: serde_json::Value) -> Result<Self, String> {
        match value.as_str().map(str::to_string).or_else(|| {
            let names = ["VISIBILITY_UNSPECIFIED", "NONE", "NAMESPACE", "PUBLIC"];
            let index = usize::try_from(value.as_u64()?).ok()?;
            names.get(index).map(|name| (*name).to_string())
        }) {
            Some(name) => match name.as_str() {
                "VISIBILITY_UNSPECIFIED" | "PUBLIC" => Ok(Visibility::Public),
                "NAMESPACE" => Ok(Visibility::Namespace),
                "NONE" => Ok(Visibility::None),
                other => Err(format!("unknown visibility {other:?}")),
            },
            None => Err(format!("{value} is not a visibility")),
        }
    }
}

impl ServiceEntryVisibility {
    /// The visibility of a ServiceEntry in a namespace with these labels.
    pub fn visibility_for(&self, labels: &BTreeMap<String, String>) -> Visibility {
        let matches = |rule: &MatchRule| {
            rule.namespace_selector.as_ref().is_some_and(|selector| {
                super::discovery::validate(selector).is_ok() && selects(selector, labels)
            })
        };
        self.policies
            .iter()
            .find(|policy| policy.matching_rules.iter().all(matches))
            .map_or(self.default_visibility, |policy| policy.visibility)
    }
}

/// Caps the `exportTo` of every ServiceEntry service, as `visibility` says for its namespace's
/// labels (from the Namespaces the inputs hold; none for a namespace they lack).
pub fn cap_service_entries(
    services: &mut BTreeMap<String, Service>,
    inputs: &Inputs,
    visibility: Option<&ServiceEntryVisibility>,
) {
    let Some(visibility) = visibility.filter(|v| v.apply_to_sidecars) else {
        return;
    };
    let labels: BTreeMap<&str, BTreeMap<String, String>> = inputs
        .of_kind(Kind::Namespace)
        .filter_map(|(key, entry)| match &entry.object {
            Ok(Object::Namespace(namespace)) => Some((
                key.name.as_str(),
                namespace.metadata.labels.clone().unwrap_or_default(),
            )),
            _ => None,
        })
        .collect();
    let none = BTreeMap::new();
    for service in services.values_mut() {
        if service.registry != Registry::ServiceEntry {
            continue;
        }
        let namespace_labels = labels.get(service.namespace.as_str()).unwrap_or(&none);
        service.export_to = capped(
            &service.export_to,
            &service.namespace,
            visibility.visibility_for(namespace_labels),
        );
    }
}

/// istiod's `serviceExportTo`: `exportTo` narrowed by a visibility (never widened).
fn capped(export_to: &ExportTo, namespace: &str, visibility: Visibility) -> ExportTo {
    let nobody = || ExportTo::Namespaces(BTreeSet::new());
    match visibility {
        Visibility::Public => export_to.clone(),
        Visibility::None => nobody(),
        Visibility::Namespace if export_to.includes(namespace) => {
            ExportTo::Namespaces([namespace.to_string()].into())
        }
        Visibility::Namespace => nobody(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visibility(json: serde_json::Value) -> ServiceEntryVisibility {
        serde_json::from_value(json).expect("a serviceEntryVisibility")
    }

    #[test]
    fn the_first_policy_whose_rules_all_match_decides() {
        let config = visibility(serde_json::json!({
            "applyToSidecars": true,
            "defaultVisibility": "NAMESPACE",
            "policies": [
                {"visibility": "NONE", "matchingRules": [
                    {"namespaceSelector": {"matchLabels": {"team": "legacy"}}},
                    {"namespaceSelector": {"matchLabels": {"env": "prod"}}},
                ]},
                {"visibility": 3, "matchingRules": [
                    {"namespaceSelector": {"matchLabels": {"env": "prod"}}},
                ]},
                // A rule without a selector never matches.
                {"visibility": "NONE", "matchingRules": [{}]},
            ],
        }));
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let for_labels = |pairs| config.visibility_for(&labels(pairs));
        assert_eq!(
            for_labels(&[("team", "legacy"), ("env", "prod")]),
            Visibility::None
        );
        assert_eq!(for_labels(&[("env", "prod")]), Visibility::Public);
        assert_eq!(for_labels(&[]), Visibility::Namespace);
        let no_rules = visibility(serde_json::json!({"policies": [{"visibility": "NONE"}]}));
        assert_eq!(no_rules.visibility_for(&labels(&[])), Visibility::None);
    }

    #[test]
    fn visibility_only_narrows_export_to() {
        let only =
            |names: &[&str]| ExportTo::Namespaces(names.iter().map(ToString::to_string).collect());
        let cases = [
            (ExportTo::Public, Visibility::Namespace, only(&["shop"])),
            (
                only(&["shop", "web"]),
                Visibility::Namespace,
                only(&["shop"]),
            ),
            (only(&["web"]), Visibility::Namespace, only(&[])),
            (ExportTo::Public, Visibility::None, only(&[])),
            (only(&["web"]), Visibility::Public, only(&["web"])),
        ];
        for (export_to, visibility, expected) in cases {
            assert_eq!(
                capped(&export_to, "shop", visibility),
                expected,
                "{export_to:?} {visibility:?}"
            );
        }
    }
}

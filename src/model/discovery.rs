//! meshConfig `discoverySelectors`: which namespaces' Kubernetes objects the model reads, as
//! istiod's discovery namespace filter (`pkg/kube/namespace/filter.go`) decides it.
//!
//! With no selectors every namespace is discovered. Otherwise a namespace is discovered when its
//! Namespace object is known and its labels match any of the selectors (an empty selector `{}`
//! matches every namespace, a `null` one none), and the Kubernetes objects of every other
//! namespace are left out of the build: Services, EndpointSlices, Pods, Secrets and Istio config
//! alike. istiod 1.31 filters Istio config the same way as services (its crdclient composes the
//! same filter; the former `ENABLE_ENHANCED_RESOURCE_SCOPING` switch is gone), with no exception
//! for the root or the system namespace: a mesh-wide Sidecar in an undiscovered root namespace is
//! ignored there too. Cluster-scoped objects (Namespaces, Nodes) always stay, and so do objects
//! from config files (`--config-dir`), which istiod's file config store does not filter.
//!
//! It owns the label selector semantics (Kubernetes' `labels.Selector`, over the Kubernetes
//! `LabelSelector` type that meshConfig's own mirrors) and nothing else: it must not parse the
//! mesh config (`mesh_config` does) nor watch anything (the sources do; a Namespace relabelled
//! or a ConfigMap edited is simply a new build).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::diagnostic::Origin;
use crate::inputs::{Inputs, Kind, Object};

/// One of meshConfig's `discoverySelectors`; `None` is a `null` entry, which selects nothing.
pub type DiscoverySelector = Option<LabelSelector>;

/// Whether `labels` match `selector`, as Kubernetes' `labels.Selector` does: every `matchLabels`
/// pair and every `matchExpressions` requirement holds (`NotIn` and `DoesNotExist` hold for a
/// label that is absent).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let pairs = selector.match_labels.iter().flatten();
    let expressions = selector.match_expressions.iter().flatten();
    pairs
        .into_iter()
        .all(|(key, value)| labels.get(key) == Some(value))
        && expressions.into_iter().all(|requirement| {
            let values = requirement.values.as_deref().unwrap_or_default();
            let label = labels.get(&requirement.key);
            match requirement.operator.as_str() {
                "In" => label.is_some_and(|value| values.contains(value)),
                "NotIn" => label.is_none_or(|value| !values.contains(value)),
                "Exists" => label.is_some(),
                "DoesNotExist" => label.is_none(),
                // Refused by `validate`; a selector that cannot be read selects nothing.
                _ => false,
            }
        })
}

/// What Kubernetes' `labels.NewRequirement` refuses in a selector, as istiod's
/// `LabelSelectorAsSelector` reports it: the field and why.
pub fn validate(selector: &LabelSelector) -> Result<(), (String, String)> {
    for (key, value) in selector.match_labels.iter().flatten() {
        let field = format!("matchLabels[{key}]");
        label_key(key).map_err(|message| (field.clone(), message))?;
        label_value(value).map_err(|message| (field, message))?;
    }
    for (index, requirement) in selector.match_expressions.iter().flatten().enumerate() {
        check_requirement(requirement)
            .map_err(|message| (format!("matchExpressions[{index}]"), message))?;
    }
    Ok(())
}

fn check_requirement(requirement: &LabelSelectorRequirement) -> Result<(), String> {
    label_key(&requirement.key)?;
    let values = requirement.values.as_deref().unwrap_or_default();
    match requirement.operator.as_str() {
        "In" | "NotIn" if values.is_empty() => {
            return Err("for 'in', 'notin' operators, values set can't be empty".to_string());
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            return Err(
                "values set must be empty for exists and does not exist operators".to_string(),
            );
        }
        "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
        other => return Err(format!("{other:?} is not a valid label selector operator")),
    }
    values.iter().try_for_each(|value| label_value(value))
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let bad = || Err(format!("{key:?} is not a valid label key"));
    if let Some(prefix) = prefix {
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return bad();
        }
    }
    if name.is_empty() || !is_label_name(name) {
        return bad();
    }
    Ok(())
}

/// A label value: empty, or a name of at most 63 characters.
fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(format!("{value:?} is not a valid label value"))
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn is_label_name(name: &str) -> bool {
    let alphanumeric = |b: u8| b.is_ascii_alphanumeric();
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            bytes.len() <= 63
                && alphanumeric(first)
                && alphanumeric(last)
                && bytes
                    .iter()
                    .all(|&b| alphanumeric(b) || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// The namespaces the selectors discover among the Namespaces the inputs hold; `None` when there
/// are no selectors, which discovers every namespace.
pub fn discovered(inputs: &Inputs, selectors: &[DiscoverySelector]) -> Option<BTreeSet<String>> {
    if selectors.is_empty() {
        return None;
    }
    let namespaces = inputs.of_kind(Kind::Namespace).filter_map(|(key, entry)| {
        let Ok(Object::Namespace(namespace)) = &entry.object else {
            return None;
        };
        let labels = namespace.metadata.labels.clone().unwrap_or_default();
        let selected = selectors
            .iter()
            .flatten()
            .any(|selector| selects(selector, &labels));
        selected.then(|| key.name.clone())
    });
    Some(namespaces.collect())
}

/// The inputs a build reads: without selectors, all of them; with them, all but the Kubernetes
/// objects of namespaces they do not discover.
pub fn in_scope<'i>(inputs: &'i Inputs, selectors: &[DiscoverySelector]) -> Cow<'i, Inputs> {
    let Some(namespaces) = discovered(inputs, selectors) else {
        return Cow::Borrowed(inputs);
    };
    let entries = inputs
        .entries
        .iter()
        .filter(|(key, entry)| {
            key.namespace.is_empty()
                || !matches!(entry.origin, Origin::Kubernetes)
                || namespaces.contains(&key.namespace)
        })
        .map(|(key, entry)| (key.clone(), entry.clone()))
        .collect();
    Cow::Owned(Inputs {
        entries,
        problems: inputs.problems.clone(),
        mesh_config: inputs.mesh_config.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::{Entry, from_test_yaml};

    fn selector(yaml: &str) -> LabelSelector {
        let document = crate::inputs::yaml::parse_documents(yaml)
            .expect("YAML")
            .into_iter()
            .next()
            .map_or(serde_json::Value::Null, |document| document.value);
        serde_json::from_value(document).expect("a selector")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_as_kubernetes_does() {
        let prod = labels(&[("env", "prod"), ("app", "spark")]);
        let bare = labels(&[]);
        let cases = [
            ("{}", true, true),
            ("matchLabels: {env: prod}", true, false),
            ("matchLabels: {env: prod, region: us}", false, false),
            (
                "matchExpressions: [{key: app, operator: In, values: [cassandra, spark]}]",
                true,
                false,
            ),
            (
                "matchExpressions: [{key: app, operator: NotIn, values: [spark]}]",
                false,
                true,
            ),
            (
                "matchExpressions: [{key: env, operator: Exists}]",
                true,
                false,
            ),
            (
                "matchExpressions: [{key: env, operator: DoesNotExist}]",
                false,
                true,
            ),
        ];
        for (yaml, on_prod, on_bare) in cases {
            let selector = selector(yaml);
            assert_eq!(selects(&selector, &prod), on_prod, "{yaml} on prod");
            assert_eq!(selects(&selector, &bare), on_bare, "{yaml} on bare");
        }
    }

    #[test]
    fn invalid_selectors_are_refused_as_kubernetes_refuses_them() {
        for (yaml, message) in [
            (
                "matchExpressions: [{key: app, operator: in, values: [a]}]",
                "\"in\" is not a valid label selector operator",
            ),
            (
                "matchExpressions: [{key: app, operator: In}]",
                "for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                "matchExpressions: [{key: app, operator: Exists, values: [a]}]",
                "values set must be empty for exists and does not exist operators",
            ),
            (
                "matchLabels: {'bad key': x}",
                "\"bad key\" is not a valid label key",
            ),
            (
                "matchLabels: {app: 'no spaces'}",
                "\"no spaces\" is not a valid label value",
            ),
        ] {
            let error = validate(&selector(yaml)).expect_err(yaml);
            assert_eq!(error.1, message, "{yaml}");
        }
        let fine = "matchLabels: {istio.io/rev: canary, app: ''}\n\
                    matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system]}]";
        assert_eq!(validate(&selector(fine)), Ok(()));
    }

    #[test]
    fn only_kubernetes_objects_of_undiscovered_namespaces_are_left_out() {
        let mut inputs = from_test_yaml(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {mesh: enabled}}\n---\n\
             apiVersion: v1\nkind: Namespace\nmetadata: {name: lab}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n\
             spec: {ports: [{port: 80}]}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: lab}\n\
             spec: {ports: [{port: 80}]}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: ghost, namespace: gone}\n\
             spec: {ports: [{port: 80}]}\n",
        );
        // As the Kubernetes source gives them; a file's objects are never filtered.
        let file_service = inputs
            .entries
            .keys()
            .find(|key| key.name == "db")
            .cloned()
            .expect("db");
        for (key, entry) in inputs.entries.iter_mut() {
            if *key != file_service {
                std::sync::Arc::make_mut(entry).origin = Origin::Kubernetes;
            }
        }
        let names = |inputs: &Inputs| -> Vec<String> {
            inputs.entries.keys().map(ToString::to_string).collect()
        };
        assert!(matches!(in_scope(&inputs, &[]), Cow::Borrowed(_)));
        let scoped = in_scope(&inputs, &[Some(selector("matchLabels: {mesh: enabled}"))]);
        assert_eq!(
            names(&scoped),
            [
                "Namespace lab",
                "Namespace shop",
                "Service lab/db",
                "Service shop/web"
            ]
        );
        // A null selector selects nothing; `{}` everything known (not `gone`, which has no
        // Namespace).
        let entry = |name: &str| -> Option<&Entry> {
            scoped
                .entries
                .iter()
                .find(|(key, _)| key.name == name)
                .map(|(_, e)| &**e)
        };
        assert!(entry("web").is_some());
        let none = in_scope(&inputs, &[None]);
        assert_eq!(
            names(&none),
            ["Namespace lab", "Namespace shop", "Service lab/db"]
        );
        let all = in_scope(&inputs, &[None, Some(LabelSelector::default())]);
        assert_eq!(names(&all).len(), 4, "{:?}", names(&all));
    }
}

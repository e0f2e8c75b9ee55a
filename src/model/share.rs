//! A new model's objects that equal the previous model's are replaced by the previous model's
//! `Arc`s, so that what is keyed by an object's identity (translation's memo,
//! `translate::Memo`) finds them unchanged after a rebuild, and an edit to one object costs the
//! translations of that object alone.
//!
//! Must not change any value: only which of two equal copies the model keeps.

use std::collections::HashMap;
use std::sync::Arc;

use super::Model;

impl Model {
    /// This model, holding `previous`' copy of every service, DestinationRule, VirtualService
    /// and mesh config that is equal in both.
    pub fn sharing_unchanged(mut self, previous: &Model) -> Model {
        for (host, service) in &mut self.services {
            if let Some(before) = previous.services.get(host)
                && before == service
            {
                *service = before.clone();
            }
        }
        self.all_destination_rules = Arc::new(share_by_name(
            &self.all_destination_rules,
            &previous.all_destination_rules,
            |rule| (&rule.namespace, &rule.name),
        ));
        self.virtual_services = Arc::new(share_by_name(
            &self.virtual_services,
            &previous.virtual_services,
            |vs| (&vs.namespace, &vs.name),
        ));
        if previous.mesh == self.mesh {
            self.mesh = previous.mesh.clone();
        }
        self
    }
}

/// `objects`, each replaced by the one of `before` with the same namespace and name if equal.
fn share_by_name<T: PartialEq>(
    objects: &[Arc<T>],
    before: &[Arc<T>],
    name: impl Fn(&T) -> (&String, &String),
) -> Vec<Arc<T>> {
    let before: HashMap<(&String, &String), &Arc<T>> =
        before.iter().map(|object| (name(object), object)).collect();
    objects
        .iter()
        .map(|object| match before.get(&name(object)) {
            Some(&previous) if previous == object => previous.clone(),
            _ => object.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::{TWO_SERVICES_YAML, from_test_yaml};
    use crate::model::{LastGood, build};

    /// Appended to [`TWO_SERVICES_YAML`].
    const RULES: &str = "
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
";

    #[test]
    fn equal_objects_are_shared_and_changed_ones_kept() {
        let model = |yaml: &str| build(&from_test_yaml(yaml), &LastGood::default()).model;
        let mesh = format!("{TWO_SERVICES_YAML}{RULES}");
        let before = model(&mesh);
        let edited = mesh.replace(
            "host: ratings\n  subsets: [{name: v1",
            "host: ratings\n  subsets: [{name: v2",
        );
        let after = model(&edited);
        let expected = after.clone();
        let after = after.sharing_unchanged(&before);
        assert!(after == expected, "no value changes");
        let rule = |model: &Model, name: &str| {
            model
                .all_destination_rules
                .iter()
                .find(|rule| rule.name == name)
                .cloned()
                .expect("the rule")
        };
        assert!(Arc::ptr_eq(
            &rule(&after, "reviews"),
            &rule(&before, "reviews")
        ));
        assert!(!Arc::ptr_eq(
            &rule(&after, "ratings"),
            &rule(&before, "ratings")
        ));
        for (host, service) in &after.services {
            assert!(Arc::ptr_eq(service, &before.services[host]), "{host}");
        }
        assert!(Arc::ptr_eq(&after.mesh, &before.mesh));
        assert!(Arc::ptr_eq(
            &after.virtual_services[0],
            &before.virtual_services[0]
        ));
    }
}

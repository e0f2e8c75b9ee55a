//! What changed between two [`Inputs`], object by object: the change set the model's incremental
//! paths start from (`model::endpoint_update`). Entries shared between the two (the same `Arc`,
//! as sources keep for objects they did not re-read) cost a pointer comparison; others are
//! compared by content, so a file rewritten with one object changed changes only that object.
//! This module only compares: it decides nothing about what a change affects.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Entry, Inputs, ObjectKey};

/// The objects that differ between two inputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Objects added, removed, or whose content (decoded object or refusal) changed.
    pub objects: BTreeSet<ObjectKey>,
    /// Objects whose content is the same but whose origin (file or line) moved: only what is
    /// reported about them can change.
    pub moved: BTreeSet<ObjectKey>,
    /// Whether anything besides objects changed: problems that belong to no object, or the mesh
    /// config. Such a change can affect anything.
    pub global: bool,
}

impl Changes {
    /// What changed from `before` to `after`, in one ordered walk over both (no lookups).
    pub fn between(before: &Inputs, after: &Inputs) -> Changes {
        let mut changes = Changes {
            global: before.problems != after.problems || before.mesh_config != after.mesh_config,
            ..Changes::default()
        };
        let mut old = before.entries.iter().peekable();
        let mut new = after.entries.iter().peekable();
        loop {
            let order = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((a, _)), Some((b, _))) => a.cmp(b),
            };
            match order {
                Ordering::Less => {
                    if let Some((key, _)) = old.next() {
                        changes.objects.insert(key.clone());
                    }
                }
                Ordering::Greater => {
                    if let Some((key, _)) = new.next() {
                        changes.objects.insert(key.clone());
                    }
                }
                Ordering::Equal => {
                    if let (Some((key, a)), Some((_, b))) = (old.next(), new.next()) {
                        changes.compare(key, a, b);
                    }
                }
            }
        }
        changes
    }

    fn compare(&mut self, key: &ObjectKey, before: &Arc<Entry>, after: &Arc<Entry>) {
        if Arc::ptr_eq(before, after) {
            return;
        }
        if before.object != after.object {
            self.objects.insert(key.clone());
        } else if before.origin != after.origin {
            self.moved.insert(key.clone());
        }
    }

    /// Whether nothing changed at all.
    pub fn is_empty(&self) -> bool {
        !self.global && self.objects.is_empty() && self.moved.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::diagnostic::Origin;
    use crate::inputs::{Decoded, Kind, decode};

    fn entry(object: serde_json::Value, line: usize) -> (ObjectKey, Arc<Entry>) {
        let Ok(Decoded::Object(key, object)) = decode(object, "default") else {
            panic!("test objects decode");
        };
        let origin = Origin::File {
            path: "test.yaml".into(),
            line,
        };
        (key, Arc::new(Entry { origin, object }))
    }

    fn service(name: &str, port: u16, line: usize) -> (ObjectKey, Arc<Entry>) {
        entry(
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"ports": [{"name": "http", "port": port}]},
            }),
            line,
        )
    }

    fn inputs(entries: impl IntoIterator<Item = (ObjectKey, Arc<Entry>)>) -> Inputs {
        Inputs {
            entries: entries.into_iter().collect(),
            ..Inputs::default()
        }
    }

    #[test]
    fn added_removed_edited_and_moved_objects_are_told_apart() {
        let kept = service("kept", 80, 1);
        let before = inputs([
            kept.clone(),
            service("edited", 80, 2),
            service("moved", 80, 3),
            service("removed", 80, 4),
            service("rewritten", 80, 5),
        ]);
        let after = inputs([
            kept,
            service("added", 80, 1),
            service("edited", 81, 2),
            service("moved", 80, 30),
            service("rewritten", 80, 5),
        ]);
        let changes = Changes::between(&before, &after);
        let names = |keys: &BTreeSet<ObjectKey>| -> Vec<String> {
            keys.iter().map(|key| key.name.clone()).collect()
        };
        assert_eq!(names(&changes.objects), ["added", "edited", "removed"]);
        assert_eq!(names(&changes.moved), ["moved"]);
        assert!(!changes.global);
        assert!(changes.objects.iter().all(|key| key.kind == Kind::Service));
    }

    #[test]
    fn problems_and_the_mesh_config_are_global_changes() {
        let mut after = Inputs::default();
        after
            .problems
            .push(crate::diagnostic::ConfigError::new("unreadable"));
        let changes = Changes::between(&Inputs::default(), &after);
        assert!(changes.global);
        assert!(Changes::between(&after, &after).is_empty());
    }
}

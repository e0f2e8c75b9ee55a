//! What a delta stream's proxy has of one type, as a map from name to version, kept small: it is
//! held as the differences from a shared [`TypeSet`], normally the set last pushed. A proxy that
//! has all of a type's current resources, the usual case, costs its stream no per-resource
//! memory, and the version of what it has is the set's own, computed once for all streams.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::xds::versions::{Hash, Name, TypeSet, set_version};

/// A map from resource name to the version the proxy has (`None`: a version that is not
/// rudder's).
#[derive(Debug, Default)]
pub(super) struct Known {
    base: Arc<TypeSet>,
    /// Where the proxy differs from `base`.
    diff: BTreeMap<Name, Diff>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Diff {
    /// It has this version.
    Has(Option<Hash>),
    /// It does not have the base's resource of that name.
    Missing,
}

impl Known {
    /// The version of `name` the proxy has, if it has it.
    pub fn get(&self, name: &str) -> Option<Option<Hash>> {
        match self.diff.get(name) {
            Some(Diff::Has(version)) => Some(*version),
            Some(Diff::Missing) => None,
            None => self.base.get(name).map(|resource| Some(resource.hash())),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn insert(&mut self, name: Name, version: Option<Hash>) {
        let base = self.base.get(&name).map(|resource| resource.hash());
        if base.is_some() && base == version {
            self.diff.remove(&name);
        } else {
            self.diff.insert(name, Diff::Has(version));
        }
    }

    pub fn remove(&mut self, name: &str) {
        if self.base.contains(name) {
            self.diff.insert(self.base.name(name), Diff::Missing);
        } else {
            self.diff.remove(name);
        }
    }

    /// The names the proxy has, in order.
    pub fn names(&self) -> impl Iterator<Item = &Name> {
        self.entries().map(|(name, _)| name)
    }

    /// What the proxy has, by name in order: `base` overlaid with `diff`, in one pass.
    fn entries(&self) -> impl Iterator<Item = (&Name, Option<Hash>)> {
        let base = self
            .base
            .iter()
            .map(|(name, resource)| (name, Diff::Has(Some(resource.hash()))));
        merge(base, self.diff.iter().map(|(name, diff)| (name, *diff))).filter_map(
            |(name, base, diff)| match diff.or(base)? {
                Diff::Has(version) => Some((name, version)),
                Diff::Missing => None,
            },
        )
    }

    /// The set version of what the proxy has (of the versions that are rudder's).
    pub fn version(&self) -> String {
        if self.diff.is_empty() {
            return self.base.version().to_string();
        }
        let ours: Vec<(&Name, Hash)> = self
            .entries()
            .filter_map(|(name, version)| Some((name, version?)))
            .collect();
        set_version(ours.iter().map(|(name, hash)| (*name, hash)))
    }

    /// Holds the same map as differences from `base`: none, once the proxy has all of it.
    pub fn rebase(&mut self, base: &Arc<TypeSet>) {
        if Arc::ptr_eq(&self.base, base) {
            return;
        }
        let theirs = base.iter().map(|(name, resource)| (name, resource.hash()));
        let diff = merge(self.entries(), theirs)
            .filter_map(|(name, ours, theirs)| match (ours, theirs) {
                (Some(ours), Some(theirs)) if ours == Some(theirs) => None,
                (Some(ours), _) => Some((name.clone(), Diff::Has(ours))),
                (None, _) => Some((name.clone(), Diff::Missing)),
            })
            .collect();
        self.base = base.clone();
        self.diff = diff;
    }
}

/// Two iterators sorted by name, walked together: every name with what each has for it.
fn merge<'a, A, B>(
    one: impl Iterator<Item = (&'a Name, A)>,
    other: impl Iterator<Item = (&'a Name, B)>,
) -> impl Iterator<Item = (&'a Name, Option<A>, Option<B>)> {
    let (mut one, mut other) = (one.peekable(), other.peekable());
    std::iter::from_fn(move || {
        let order = match (one.peek(), other.peek()) {
            (None, None) => return None,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        Some(match order {
            std::cmp::Ordering::Less => one.next().map(|(name, a)| (name, Some(a), None))?,
            std::cmp::Ordering::Greater => other.next().map(|(name, b)| (name, None, Some(b)))?,
            std::cmp::Ordering::Equal => {
                let (name, a) = one.next()?;
                let (_, b) = other.next()?;
                (name, Some(a), Some(b))
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::ResourceType;
    use crate::xds::fixtures::{A, B, cla, resources};
    use crate::xds::versions::ResourceSet;

    fn endpoints(set: &ResourceSet) -> Arc<TypeSet> {
        set.of(ResourceType::Endpoint).clone()
    }

    fn hash(set: &TypeSet, name: &str) -> Hash {
        set.get(name).unwrap().hash()
    }

    #[test]
    fn behaves_as_a_map_whatever_the_base() {
        let current = endpoints(&ResourceSet::new(resources()));
        let mut changed = resources();
        changed.endpoints.insert(A.into(), cla(A, 7).into());
        let other = endpoints(&ResourceSet::new(changed));

        let mut known = Known::default();
        assert_eq!(known.names().count(), 0);
        known.insert(A.into(), Some(hash(&current, A)));
        known.insert("foreign".into(), None);
        let version = known.version();
        for base in [&other, &current, &other] {
            known.rebase(base);
            assert_eq!(known.get(A), Some(Some(hash(&current, A))));
            assert_eq!(known.get("foreign"), Some(None));
            assert_eq!(known.get(B), None);
            let mut names: Vec<&str> = known.names().map(|name| &**name).collect();
            names.sort();
            assert_eq!(names, ["foreign", A]);
            assert_eq!(known.version(), version);
        }

        known.remove(A);
        known.remove("foreign");
        assert_eq!(known.names().count(), 0);
        assert_eq!(known.version(), set_version::<str>([]));
    }

    #[test]
    fn a_proxy_with_everything_differs_in_nothing() {
        let current = endpoints(&ResourceSet::new(resources()));
        let mut known = Known::default();
        for (name, resource) in current.iter() {
            known.insert(name.clone(), Some(resource.hash()));
        }
        known.rebase(&current);
        assert!(known.diff.is_empty());
        assert_eq!(known.version(), current.version());
        // Sending a newer version of one resource differs in that one only.
        known.insert(A.into(), Some(7));
        assert_eq!(known.diff.len(), 1);
        assert_ne!(known.version(), current.version());
        known.insert(A.into(), Some(hash(&current, A)));
        assert!(known.diff.is_empty());
    }
}

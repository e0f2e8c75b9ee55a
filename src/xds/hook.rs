//! A test hook on what the xDS server sends: [`ResourcesHook`] rewrites the translated resources
//! of a proxy before its stream's state machine sees them. It exists so that tests can make a
//! real Envoy reject (NACK) config that rudder's translation, being correct, never produces, and
//! then watch the rejection surface in metrics, `/debug/syncz` and `rudder proxy-status`.
//! Production code never sets it (`XdsOptions::default()` has none).

use std::fmt;
use std::sync::Arc;

use crate::model::Model;
use crate::proxy::Proxy;
use crate::translate::{self, Resources};

type Rewrite = dyn Fn(&Proxy, &mut Resources) + Send + Sync;

/// A function applied to every translation of every proxy, after `translate` and before
/// versioning. Compared by identity.
#[derive(Clone)]
pub struct ResourcesHook(Arc<Rewrite>);

impl ResourcesHook {
    pub fn new(rewrite: impl Fn(&Proxy, &mut Resources) + Send + Sync + 'static) -> Self {
        ResourcesHook(Arc::new(rewrite))
    }

    pub fn apply(&self, proxy: &Proxy, resources: &mut Resources) {
        (self.0)(proxy, resources);
    }
}

impl fmt::Debug for ResourcesHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResourcesHook")
    }
}

impl PartialEq for ResourcesHook {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ResourcesHook {}

/// What `proxy` is served from `model`: its translation, rewritten by `hook` if there is one.
pub fn translate(model: &Model, proxy: &Proxy, hook: Option<&ResourcesHook>) -> Resources {
    let mut resources = translate::translate(model, proxy);
    if let Some(hook) = hook {
        hook.apply(proxy, &mut resources);
    }
    resources
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn rewrites_the_translation() {
        let proxy = Proxy::parse(
            "sidecar~10.0.0.1~a.default~default.svc.cluster.local",
            &Value::Null,
        )
        .unwrap();
        let model = Model::default();
        let plain = translate(&model, &proxy, None);
        assert!(!plain.clusters.is_empty());
        let hook = ResourcesHook::new(|_, resources| resources.clusters.clear());
        assert!(translate(&model, &proxy, Some(&hook)).clusters.is_empty());
        assert_eq!(hook, hook.clone());
        assert_ne!(hook, ResourcesHook::new(|_, _| {}));
    }
}

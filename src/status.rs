//! Validation feedback in the cluster: an Istio object rudder rejects gets a status saying why,
//! in the fields istiod uses (`status.conditions` and `status.validationMessages`), and loses it
//! once it is valid again. Only the replica holding the `rudder-status` Lease writes; every
//! replica serves xDS. The Lease's namespace may not exist when rudder starts (rudder run outside
//! the cluster, the namespace created later): joining the election is retried until it works, so
//! statuses are written from the moment the namespace appears.
//!
//! What to write is decided by a pure function of the current errors and the statuses the objects
//! carry ([`status_patches`]); the writer task only applies the difference, so a status write
//! (which the watch sees again) never causes another.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube_lease_manager::LeaseManagerBuilder;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::diagnostic::{ConfigError, Origin};
use crate::inputs::{Kind, ObjectKey};
use crate::source::kube::Statuses;
use crate::xds::Snapshot;

/// The Lease that elects the status writer.
pub const LEASE_NAME: &str = "rudder-status";
/// Istio's analysis code for a config that fails validation.
const SCHEMA_VALIDATION_ERROR: (&str, &str) = ("IST0106", "SchemaValidationError");
const CONDITION: &str = "Accepted";
/// How long to wait before trying to join the election again (creating the Lease failed).
const ELECTION_RETRY: Duration = Duration::from_secs(5);

/// The status fields rudder owns on one object, as a JSON merge patch of `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPatch {
    pub object: ObjectKey,
    pub status: Value,
}

/// The status rudder wants on an object: rejected with `messages`, or none of its fields.
fn desired(messages: Option<&Vec<String>>) -> Value {
    match messages {
        Some(messages) => json!({
            "conditions": [{
                "type": CONDITION,
                "status": "False",
                "reason": "Invalid",
                "message": messages.join("; "),
            }],
            "validationMessages": [{
                "type": {"code": SCHEMA_VALIDATION_ERROR.0, "name": SCHEMA_VALIDATION_ERROR.1},
                "level": "ERROR",
                "documentationUrl": "https://istio.io/latest/docs/reference/config/analysis/ist0106/",
            }],
        }),
        None => json!({"conditions": null, "validationMessages": null}),
    }
}

/// What `status` says of the fields rudder owns; absent fields and nulls read the same.
fn owned(status: &Value) -> (Value, Value) {
    let field = |name: &str| status.get(name).cloned().unwrap_or(Value::Null);
    (field("conditions"), field("validationMessages"))
}

/// The patches that bring every Istio object read from the cluster to the status its errors call
/// for. Objects whose status is already right get none.
pub fn status_patches(errors: &[ConfigError], statuses: &Statuses) -> Vec<StatusPatch> {
    let mut messages: BTreeMap<&ObjectKey, Vec<String>> = BTreeMap::new();
    // Warnings (settings rudder does not carry out) leave the object accepted.
    for error in errors.iter().filter(|error| !error.is_warning()) {
        if let (Some(object), Some(Origin::Kubernetes)) = (&error.object, &error.origin) {
            let text = match &error.field {
                Some(field) => format!("{field}: {}", error.message),
                None => error.message.clone(),
            };
            messages.entry(object).or_default().push(text);
        }
    }
    statuses
        .iter()
        .filter_map(|(object, current)| {
            let status = desired(messages.get(object));
            (owned(current) != owned(&status)).then(|| StatusPatch {
                object: object.clone(),
                status,
            })
        })
        .collect()
}

/// Writes statuses while this replica leads, until the snapshot channel closes.
pub async fn run_status_writer(
    client: Client,
    lease_namespace: String,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    mut statuses: watch::Receiver<Arc<Statuses>>,
) {
    let Some(mut leading) = elect(client.clone(), &lease_namespace, &mut snapshots).await else {
        return;
    };
    let mut resources: BTreeMap<Kind, ApiResource> = BTreeMap::new();
    loop {
        if *leading.borrow_and_update() {
            let errors = snapshots.borrow_and_update().errors.clone();
            let current = statuses.borrow_and_update().clone();
            for patch in status_patches(&errors, &current) {
                apply(&client, &mut resources, &patch).await;
            }
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { return },
            changed = statuses.changed() => if changed.is_err() { return },
            changed = leading.changed() => if changed.is_err() { return },
        }
    }
}

/// Joins the election, trying again every [`ELECTION_RETRY`] until it works; the receiver says
/// whether this replica leads. `None` once the snapshot channel closes (rudder is stopping).
async fn elect(
    client: Client,
    namespace: &str,
    snapshots: &mut watch::Receiver<Arc<Snapshot>>,
) -> Option<watch::Receiver<bool>> {
    let mut failed = false;
    loop {
        let manager = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
            .with_namespace(namespace)
            .with_duration(15)
            .with_grace(5)
            .build()
            .await;
        match manager {
            Ok(manager) => {
                if failed {
                    tracing::info!(namespace, "joined the status writer election");
                }
                let (leading, task) = manager.watch().await;
                // The election runs as long as the receiver lives; its end needs no handling.
                drop(task);
                return Some(leading);
            }
            Err(error) if !failed => {
                tracing::warn!(
                    %error,
                    namespace,
                    "cannot join the status writer election (does the namespace exist?); no status \
                     is written until it works, trying again every {}s",
                    ELECTION_RETRY.as_secs()
                );
                failed = true;
            }
            Err(error) => tracing::debug!(%error, namespace, "still cannot join the election"),
        }
        tokio::select! {
            () = tokio::time::sleep(ELECTION_RETRY) => {}
            changed = snapshots.changed() => if changed.is_err() { return None },
        }
    }
}

async fn apply(client: &Client, resources: &mut BTreeMap<Kind, ApiResource>, patch: &StatusPatch) {
    let kind = patch.object.kind;
    let resource = match resources.get(&kind) {
        Some(resource) => resource.clone(),
        None => match crate::source::kube::istio_resource(client, kind).await {
            Some(resource) => resources.entry(kind).or_insert(resource).clone(),
            None => return,
        },
    };
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &patch.object.namespace, &resource);
    let body = json!({"status": patch.status});
    match api
        .patch_status(
            &patch.object.name,
            &PatchParams::default(),
            &Patch::Merge(&body),
        )
        .await
    {
        Ok(_) => tracing::debug!(object = %patch.object, "status written"),
        // The object may be gone already; the next change retries anything else.
        Err(error) => tracing::warn!(object = %patch.object, %error, "cannot write status"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::VirtualService, "default", name)
    }

    fn error(object: ObjectKey, origin: Origin) -> ConfigError {
        ConfigError::new("invalid RE2 regex")
            .field("spec.http[0].match[0].uri.regex")
            .at(origin)
            .on(object)
    }

    #[test]
    fn rejected_objects_get_a_status_and_valid_ones_lose_it() {
        let statuses: Statuses = [
            (vs("bad"), Value::Null),
            (vs("fixed"), desired(Some(&vec!["old problem".to_string()]))),
            (vs("fine"), json!({"observedGeneration": 3})),
        ]
        .into();
        let patches = status_patches(&[error(vs("bad"), Origin::Kubernetes)], &statuses);
        assert_eq!(patches.len(), 2, "{patches:?}");
        assert_eq!(patches[0].object, vs("bad"));
        assert_eq!(
            patches[0].status["conditions"][0]["message"],
            "spec.http[0].match[0].uri.regex: invalid RE2 regex"
        );
        assert_eq!(
            patches[0].status["validationMessages"][0]["type"]["code"],
            "IST0106"
        );
        assert_eq!(patches[1].object, vs("fixed"));
        assert_eq!(
            patches[1].status,
            json!({"conditions": null, "validationMessages": null})
        );
    }

    #[test]
    fn a_status_already_right_is_not_written_again() {
        let errors = [error(vs("bad"), Origin::Kubernetes)];
        let first = status_patches(&errors, &[(vs("bad"), Value::Null)].into());
        let written: Statuses = [(vs("bad"), first[0].status.clone())].into();
        assert!(status_patches(&errors, &written).is_empty());
    }

    #[test]
    fn warnings_leave_an_object_accepted() {
        let warning = error(vs("partly"), Origin::Kubernetes).warning();
        let statuses: Statuses = [(vs("partly"), Value::Null)].into();
        assert!(status_patches(&[warning], &statuses).is_empty());
    }

    #[test]
    fn errors_from_files_are_not_written_to_the_cluster() {
        let file = Origin::File {
            path: "a.yaml".into(),
            line: 1,
        };
        let statuses: Statuses = [(vs("bad"), Value::Null)].into();
        assert!(status_patches(&[error(vs("bad"), file)], &statuses).is_empty());
    }
}

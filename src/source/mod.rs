//! Config sources: the parts of rudder that read the outside world and publish what they find as
//! [`crate::inputs::Inputs`]. A source owns its I/O and its per-origin bookkeeping (such as the
//! last good parse of each file); it must not look across objects or build the model.

pub mod file;
pub mod kube;
pub mod mesh;

use tokio::sync::watch;

/// Publishes `current` unless it equals what receivers already have: a no-op update wakes nobody.
fn publish_if_changed<T: PartialEq>(sender: &watch::Sender<T>, current: T) {
    sender.send_if_modified(|published| {
        let changed = *published != current;
        if changed {
            *published = current;
        }
        changed
    });
}

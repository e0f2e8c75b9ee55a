//! Config sources: the parts of rudder that read the outside world and publish what they find as
//! [`crate::inputs::Inputs`]. A source owns its I/O and its per-origin bookkeeping (such as the
//! last good parse of each file); it must not look across objects or build the model.

pub mod file;
pub mod kube;

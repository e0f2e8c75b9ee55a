//! rudder: an Istio-compatible Envoy control plane.
//!
//! Config flows through a pipeline of plain values; only the sources and the servers do I/O:
//!
//! ```text
//!  source::file ─┐                 model::build                 translate::translate
//!  (YAML dirs)   ├─> inputs::Inputs ─────────────> model::Model ───────────────────────> translate::Resources
//!  source::kube ─┘   objects by       (+ last good   services,     (+ proxy::Proxy)      clusters, endpoints,
//!  (kube-rs)         kind/ns/name      versions)     endpoints,                          listeners, routes
//!                                                    routing rules                              │
//!                                                                                               v
//!                            xds::sotw / xds::delta (sans-IO state machines) <─ xds::server (tonic ADS)
//! ```
//!
//! `serve` wires the stages together: sources publish `Inputs`, the model is rebuilt and published
//! through a `tokio::sync::watch` channel only when it changed, and every xDS connection gets its
//! proxy's resources from `xds::cache` (one translation and one encoded copy per distinct proxy
//! shape, shared by all proxies of that shape) and pushes what changed. A change that touches
//! only endpoints (`inputs::Changes`, `model::endpoint_update`) updates the last model instead of
//! rebuilding it, and the cache then re-makes only the affected ClusterLoadAssignments. `admin` serves readiness, metrics and config dumps; `status` reports
//! rejected objects back to the cluster.

pub mod address;
pub mod admin;
pub mod bootstrap;
pub mod coverage;
pub mod demo;
pub mod diagnostic;
pub mod duration;
pub mod envoy_json;
pub mod inputs;
pub mod istio;
pub mod kube_auth;
pub mod logging;
pub mod mesh_config;
pub mod metrics;
pub mod model;
pub mod proxy;
pub mod proxy_status;
pub mod serve;
pub mod source;
pub mod status;
pub mod translate;
pub mod xds;

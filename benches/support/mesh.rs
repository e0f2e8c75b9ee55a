//! Generated meshes for the xDS scale tests and benchmarks (shared by `benches/xds_memory.rs` and
//! `tests/xds_scale.rs` through `#[path]`): `services` services on port 8080 in namespace `bench`,
//! each with three versioned Pods behind an EndpointSlice, a DestinationRule with a subset per
//! version and a VirtualService with a header match and a 90/10 split (the shape of
//! `benches/translate.rs`), plus two knobs that make an edit of a known kind.

#![allow(dead_code)]

use std::sync::Arc;

use rudder::diagnostic::Origin;
use rudder::inputs::{Decoded, Entry, Inputs, decode};
use rudder::model::{LastGood, build};
use rudder::xds::Snapshot;
use serde_json::{Value, json};

pub const NAMESPACE: &str = "bench";
pub const PORT: u16 = 8080;
const PODS_PER_SERVICE: usize = 3;

/// A mesh and the edits applied to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshSpec {
    pub services: usize,
    /// Extra ready endpoints (without Pods) in `svc-0`'s EndpointSlice: changing it changes
    /// endpoints only (EDS).
    pub extra_endpoints: usize,
    /// Extra subsets in `svc-0`'s DestinationRule: changing it adds or removes clusters (CDS, and
    /// the EDS of those clusters).
    pub extra_subsets: usize,
}

impl MeshSpec {
    pub fn new(services: usize) -> MeshSpec {
        MeshSpec {
            services,
            extra_endpoints: 0,
            extra_subsets: 0,
        }
    }

    pub fn objects(&self) -> Vec<Value> {
        let mut objects = Vec::new();
        for s in 0..self.services {
            let name = format!("svc-{s}");
            objects.push(json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {
                    "clusterIP": format!("10.96.{}.{}", s / 250, s % 250 + 1),
                    "ports": [{"name": "http", "port": PORT}],
                },
            }));
            let mut endpoints = Vec::new();
            for p in 0..PODS_PER_SERVICE {
                let ip = format!("10.{}.{}.{}", 1 + s / 250, s % 250, p + 1);
                objects.push(json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {
                        "name": format!("{name}-{p}"), "namespace": NAMESPACE,
                        "labels": {"app": name, "version": format!("v{p}")},
                    },
                    "status": {"podIP": ip},
                }));
                endpoints.push(json!({"addresses": [ip], "conditions": {"ready": true}}));
            }
            let mut subsets: Vec<Value> = (0..PODS_PER_SERVICE)
                .map(|p| json!({"name": format!("v{p}"), "labels": {"version": format!("v{p}")}}))
                .collect();
            if s == 0 {
                for e in 0..self.extra_endpoints {
                    let ip = format!("10.200.{}.{}", e / 250, e % 250 + 1);
                    endpoints.push(json!({"addresses": [ip], "conditions": {"ready": true}}));
                }
                for x in 0..self.extra_subsets {
                    let version = format!("x{x}");
                    subsets.push(json!({"name": version, "labels": {"version": version}}));
                }
            }
            objects.push(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {
                    "name": format!("{name}-x"), "namespace": NAMESPACE,
                    "labels": {"kubernetes.io/service-name": name},
                },
                "addressType": "IPv4", "ports": [{"name": "http", "port": PORT}],
                "endpoints": endpoints,
            }));
            objects.push(json!({
                "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"host": name, "subsets": subsets},
            }));
            objects.push(json!({
                "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"hosts": [name], "http": [
                    {
                        "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                        "route": [{"destination": {"host": name, "subset": "v1"}}],
                    },
                    {"route": [
                        {"destination": {"host": name, "subset": "v0"}, "weight": 90},
                        {"destination": {"host": name, "subset": "v2"}, "weight": 10},
                    ]},
                ]},
            }));
        }
        objects
    }

    pub fn inputs(&self) -> Inputs {
        inputs_of(self.objects(), NAMESPACE)
    }

    /// The snapshot `rudder serve` would publish for this mesh.
    pub fn snapshot(&self, generation: u64) -> Arc<Snapshot> {
        let built = build(&self.inputs(), &LastGood::default());
        assert!(
            built.errors.is_empty(),
            "generated config is valid: {:?}",
            built.errors
        );
        Arc::new(Snapshot {
            model: Arc::new(built.model),
            errors: built.errors,
            generation,
            ..Snapshot::default()
        })
    }
}

/// Generated objects as Inputs, as if read in this order from one file; objects without a
/// namespace land in `namespace`.
pub fn inputs_of(objects: Vec<Value>, namespace: &str) -> Inputs {
    let mut inputs = Inputs::default();
    for (line, object) in objects.into_iter().enumerate() {
        let decoded = decode(object, namespace).expect("generated objects decode");
        let Decoded::Object(key, object) = decoded else {
            panic!("a generated object of a kind rudder does not read");
        };
        let origin = Origin::File {
            path: "mesh.yaml".into(),
            line: line + 1,
        };
        inputs.insert(key, Entry { origin, object });
    }
    inputs
}

//! How long the pure stages take for meshes of growing size: `model::build` from Inputs, then
//! `translate` and wire encoding for one sidecar. Run with `cargo bench --bench translate`; the
//! results table in benches/README.md comes from this command.

#[path = "support/mesh.rs"]
mod mesh;
#[path = "support/timing.rs"]
mod timing;

use std::hint::black_box;

use rudder::inputs::Inputs;
use rudder::model::{LastGood, build};
use rudder::proxy::Proxy;
use rudder::translate::{ResourceType, translate};
use serde_json::{Value, json};

const SIZES: [usize; 4] = [10, 100, 1000, 2000];
const PODS_PER_SERVICE: usize = 3;

/// A mesh of `services` services on port 8080, each with three versioned Pods, an
/// EndpointSlice, a DestinationRule with a subset per version and a header-routing
/// VirtualService.
fn mesh(services: usize) -> Inputs {
    let mut objects: Vec<Value> = Vec::new();
    for s in 0..services {
        let name = format!("svc-{s}");
        objects.push(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"clusterIP": format!("10.96.{}.{}", s / 250, s % 250 + 1), "ports": [{"name": "http", "port": 8080}]},
        }));
        let mut endpoints = Vec::new();
        for p in 0..PODS_PER_SERVICE {
            let ip = format!("10.{}.{}.{}", 1 + s / 250, s % 250, p + 1);
            objects.push(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("{name}-{p}"), "namespace": "bench", "labels": {"app": name, "version": format!("v{p}")}},
                "status": {"podIP": ip},
            }));
            endpoints.push(json!({"addresses": [ip], "conditions": {"ready": true}}));
        }
        objects.push(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-x"), "namespace": "bench", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}], "endpoints": endpoints,
        }));
        let subsets: Vec<Value> = (0..PODS_PER_SERVICE)
            .map(|p| json!({"name": format!("v{p}"), "labels": {"version": format!("v{p}")}}))
            .collect();
        objects.push(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"host": name, "subsets": subsets},
        }));
        objects.push(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"hosts": [name], "http": [
                {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [{"destination": {"host": name, "subset": "v1"}}]},
                {"route": [{"destination": {"host": name, "subset": "v0"}, "weight": 90}, {"destination": {"host": name, "subset": "v2"}, "weight": 10}]},
            ]},
        }));
    }
    mesh::inputs_of(objects, "bench")
}

fn main() {
    let proxy = Proxy::parse(
        "sidecar~10.0.0.1~client.bench~bench.svc.cluster.local",
        &Value::Null,
    )
    .expect("a valid node id");
    println!(
        "| services | endpoints | model::build | translate (1 sidecar) | encode | resources | encoded bytes |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for services in SIZES {
        let inputs = mesh(services);
        let runs = if services >= 1000 { 5 } else { 21 };
        let built = build(&inputs, &LastGood::default());
        assert!(
            built.errors.is_empty(),
            "benchmark config is valid: {:?}",
            built.errors
        );
        let build_time = timing::median(runs, || {
            black_box(build(black_box(&inputs), &LastGood::default()));
        });
        let translate_time = timing::median(runs, || {
            black_box(translate(black_box(&built.model), &proxy));
        });
        let resources = translate(&built.model, &proxy);
        let encode_time = timing::median(runs, || {
            for ty in ResourceType::ALL {
                black_box(resources.encode(ty));
            }
        });
        let (count, bytes) = ResourceType::ALL.iter().fold((0, 0), |(count, bytes), ty| {
            let encoded = resources.encode(*ty);
            (
                count + encoded.len(),
                bytes + encoded.values().map(|any| any.value.len()).sum::<usize>(),
            )
        });
        println!(
            "| {services} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {count} | {bytes} |",
            services * PODS_PER_SERVICE,
            build_time.as_secs_f64() * 1e3,
            translate_time.as_secs_f64() * 1e3,
            encode_time.as_secs_f64() * 1e3,
        );
    }
}

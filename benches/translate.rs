//! Criterion benchmarks of the pure stages for meshes of 100, 1000 and 10000 services (the shape
//! of `benches/support/mesh.rs`: three versioned Pods per service, a DestinationRule with three
//! subsets, a VirtualService with a header route and a 90/10 split): `model::build` from Inputs,
//! `translate` for one sidecar, and encoding its resources for the wire. Before the timings it
//! prints each mesh's resource count and encoded size. Run with `cargo bench --bench translate`;
//! the results table in benches/README.md comes from this command.

#[path = "support/mesh.rs"]
mod mesh;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mesh::MeshSpec;
use rudder::model::{LastGood, Model, build};
use rudder::proxy::Proxy;
use rudder::translate::{ResourceType, translate};
use serde_json::Value;

const SIZES: [usize; 3] = [100, 1000, 10000];

fn sidecar() -> Proxy {
    Proxy::parse(
        "sidecar~10.0.0.1~client.bench~bench.svc.cluster.local",
        &Value::Null,
    )
    .expect("a valid node id")
}

fn model_of(spec: &MeshSpec) -> Model {
    let built = build(&spec.inputs(), &LastGood::default());
    assert!(
        built.errors.is_empty(),
        "benchmark config is valid: {:?}",
        built.errors
    );
    built.model
}

fn stages(c: &mut Criterion) {
    let proxy = sidecar();
    let mut group = c.benchmark_group("stages");
    // The largest meshes take most of a second per build; ten samples keep a run short.
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for services in SIZES {
        let spec = MeshSpec::new(services);
        let inputs = spec.inputs();
        let model = model_of(&spec);
        let resources = translate(&model, &proxy);
        let (count, bytes) = ResourceType::ALL.iter().fold((0, 0), |(count, bytes), ty| {
            let encoded = resources.encode(*ty);
            let size: usize = encoded.values().map(|any| any.value.len()).sum();
            (count + encoded.len(), bytes + size)
        });
        println!("{services} services: {count} resources, {bytes} encoded bytes per sidecar");

        group.bench_with_input(
            BenchmarkId::new("model_build", services),
            &inputs,
            |b, inputs| b.iter(|| build(black_box(inputs), &LastGood::default())),
        );
        group.bench_with_input(
            BenchmarkId::new("translate_sidecar", services),
            &model,
            |b, model| b.iter(|| translate(black_box(model), &proxy)),
        );
        group.bench_with_input(
            BenchmarkId::new("encode", services),
            &resources,
            |b, resources| {
                b.iter(|| ResourceType::ALL.map(|ty| black_box(resources).encode(ty)));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);

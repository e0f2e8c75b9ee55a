//! What one push costs the xDS server per distinct proxy, at growing mesh sizes: translating for
//! the proxy, then turning the translation into the shared, encoded and hashed set streams serve
//! (`ResourceSet`). The first proxy's set encodes and hashes every resource; a proxy with other
//! labels whose resources are mostly the same finds them interned (an equality check each, no
//! encoding or hashing); after an endpoint edit, only the changed resources are encoded and hashed
//! again. Proxies with the same labels share one set and cost nothing more.
//!
//! Run with `cargo bench --bench xds_cache`; the table in benches/README.md comes from it.

#[path = "support/mesh.rs"]
mod mesh;

use std::hint::black_box;
use std::time::{Duration, Instant};

use mesh::MeshSpec;
use rudder::proxy::Proxy;
use rudder::translate::translate;
use rudder::xds::versions::{Interner, ResourceSet};
use serde_json::json;

const SIZES: [usize; 3] = [100, 1000, 2000];

/// The median of `runs` timings of `work`, each on a fresh input from `setup` (not timed).
fn median<T, R>(runs: usize, setup: impl Fn() -> T, work: impl Fn(T) -> R) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let input = setup();
            let start = Instant::now();
            let output = work(input);
            let took = start.elapsed();
            drop(black_box(output));
            took
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

fn main() {
    let sidecar = |app: &str| {
        let metadata = json!({"NAMESPACE": mesh::NAMESPACE, "LABELS": {"app": app}});
        let id = format!("sidecar~10.0.0.1~{app}.bench~bench.svc.cluster.local");
        Proxy::parse(&id, &metadata).expect("a valid node id")
    };
    let (one, other) = (sidecar("one"), sidecar("other"));
    println!(
        "| services | resources | translate | first set (encode + hash all) | another proxy's set (interned) | set after an endpoint edit |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    for services in SIZES {
        let runs = if services >= 1000 { 5 } else { 21 };
        let spec = MeshSpec::new(services);
        let snapshot = spec.snapshot(1);
        let edited = MeshSpec {
            extra_endpoints: 1,
            ..spec
        }
        .snapshot(2);
        let translated = translate(&snapshot.model, &one);
        let translate_time = median(runs, || (), |()| translate(&snapshot.model, &one));
        let first = median(runs, || translated.clone(), ResourceSet::new);
        let interner = Interner::default();
        let held = ResourceSet::interned(translated.clone(), &interner, None);
        let for_other = translate(&snapshot.model, &other);
        let shared = median(
            runs,
            || for_other.clone(),
            |resources| ResourceSet::interned(resources, &interner, None),
        );
        let after_edit = translate(&edited.model, &one);
        let edit = median(
            runs,
            || after_edit.clone(),
            |resources| ResourceSet::interned(resources, &interner, Some(&held)),
        );
        println!(
            "| {services} | {} | {} | {} | {} | {} |",
            held.len(),
            ms(translate_time),
            ms(first),
            ms(shared),
            ms(edit)
        );
    }
}

//! What one push costs the xDS server per distinct proxy, at growing mesh sizes: translating for
//! the proxy, then turning the translation into the shared, encoded and hashed set streams serve
//! (`ResourceSet`). The first proxy's set encodes and hashes every resource; a proxy with other
//! labels translates through the memo the first filled (`translate::Memo`: clusters,
//! assignments and route configurations it shares are not built again) and finds those
//! resources interned by pointer; after an endpoint edit, only the changed resources are encoded
//! and hashed again. Proxies with the same labels share one set and cost nothing more.
//!
//! Run with `cargo bench --bench xds_cache`; the table in benches/README.md comes from it.

#[path = "support/mesh.rs"]
mod mesh;

#[path = "support/timing.rs"]
mod timing;

use std::time::Duration;

use mesh::MeshSpec;
use rudder::proxy::Proxy;
use rudder::translate::{Memo, translate, translate_with_view};
use rudder::xds::versions::{Interner, ResourceSet};
use serde_json::json;

const SIZES: [usize; 3] = [100, 1000, 2000];

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
        "| services | resources | translate | first set (encode + hash all) | another proxy: translate (memo) | another proxy's set (interned) | set after an endpoint edit |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for services in SIZES {
        let runs = if services >= 1000 { 5 } else { 21 };
        let spec = MeshSpec::new(services);
        let snapshot = spec.snapshot(1);
        let edited = MeshSpec {
            extra_endpoints: 1,
            ..spec
        }
        .snapshot(2);
        let memo = Memo::default();
        let translated = translate_with_view(&snapshot.model, &one, &memo).0;
        let translate_time =
            timing::median_with_setup(runs, || (), |()| translate(&snapshot.model, &one));
        let other_translate_time = timing::median_with_setup(
            runs,
            || (),
            |()| translate_with_view(&snapshot.model, &other, &memo),
        );
        let first = timing::median_with_setup(runs, || translated.clone(), ResourceSet::new);
        let interner = Interner::default();
        let held = ResourceSet::interned(translated.clone(), &interner, None);
        let for_other = translate_with_view(&snapshot.model, &other, &memo).0;
        let shared = timing::median_with_setup(
            runs,
            || for_other.clone(),
            |resources| ResourceSet::interned(resources, &interner, None),
        );
        let after_edit = translate(&edited.model, &one);
        let edit = timing::median_with_setup(
            runs,
            || after_edit.clone(),
            |resources| ResourceSet::interned(resources, &interner, Some(&held)),
        );
        println!(
            "| {services} | {} | {} | {} | {} | {} | {} |",
            held.len(),
            ms(translate_time),
            ms(first),
            ms(other_translate_time),
            ms(shared),
            ms(edit)
        );
    }
}

//! Any bytes as one config file, through the whole pipeline: parsed into inputs, built into a
//! model (twice, the second time with the first build's objects as last good, as `serve` does on
//! the next change), translated for a sidecar under interception, a sidecar without it and an
//! ingress gateway, and encoded for the wire and as JSON for the admin dumps. Nothing may panic,
//! and the same inputs must build the same model.

#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rudder::envoy_json::resources_to_json;
use rudder::model::{LastGood, build};
use rudder::proxy::Proxy;
use rudder::source::file::inputs_of_file;
use rudder::translate::{ResourceType, translate};
use serde_json::json;

/// The proxies the golden cases use by default, so their inputs make good seeds.
static PROXIES: LazyLock<Vec<Proxy>> = LazyLock::new(|| {
    let sidecar = "sidecar~10.0.0.1~client.default~default.svc.cluster.local";
    let router = "router~10.0.0.9~ingress-abc.istio-system~istio-system.svc.cluster.local";
    [
        (sidecar, json!(null)),
        (sidecar, json!({"INTERCEPTION_MODE": "NONE"})),
        (router, json!({"LABELS": {"istio": "ingressgateway"}})),
    ]
    .iter()
    .map(|(id, metadata)| Proxy::parse(id, metadata).expect("a valid node id"))
    .collect()
});

fuzz_target!(|bytes: &[u8]| {
    let inputs = inputs_of_file(Path::new("fuzz.yaml"), bytes);
    let first = build(&inputs, &LastGood::default());
    let built = build(&inputs, &first.last_good);
    assert!(
        built.model == first.model,
        "the same inputs built two models"
    );
    for proxy in PROXIES.iter() {
        let proxy = proxy.clone().with_workload_labels(&built.model);
        let resources = translate(&built.model, &proxy);
        for ty in ResourceType::ALL {
            let _ = resources.encode(ty);
            resources_to_json(&resources, ty).expect("translated resources render as JSON");
        }
    }
});

//! What a Sidecar saves one proxy: a mesh of 200 services in 20 namespaces (10 each, in
//! `istio-system` and `ns-1` to `ns-19`; every service with an HTTP port among ten, a TCP port,
//! two Pods, a DestinationRule with two subsets and a VirtualService), translated for a proxy in
//! `ns-1` without a Sidecar and with one importing `./*` and `istio-system/*`. Prints, per case,
//! the resources of each type, the virtual hosts, the encoded bytes and the median translate
//! time. Run with `cargo bench --bench sidecar_scope`; the table in benches/README.md comes from
//! this command.

#[path = "support/mesh.rs"]
mod mesh;
#[path = "support/timing.rs"]
mod timing;

use std::hint::black_box;

use rudder::inputs::Inputs;
use rudder::model::{LastGood, build};
use rudder::proxy::Proxy;
use rudder::translate::{ResourceType, Resources, translate};
use serde_json::{Value, json};

const NAMESPACES: usize = 20;
const SERVICES_PER_NAMESPACE: usize = 10;
const PODS_PER_SERVICE: usize = 2;

fn namespace(n: usize) -> String {
    if n == 0 {
        "istio-system".to_string()
    } else {
        format!("ns-{n}")
    }
}

fn service_objects(n: usize, s: usize) -> Vec<Value> {
    let ns = namespace(n);
    let name = format!("svc-{s}");
    let index = n * SERVICES_PER_NAMESPACE + s;
    let http_port = 8000 + s;
    let mut objects = vec![json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": format!("10.96.{n}.{}", s + 1), "ports": [
            {"name": "http", "port": http_port}, {"name": "tcp-db", "port": 5432},
        ]},
    })];
    let mut endpoints = Vec::new();
    for p in 0..PODS_PER_SERVICE {
        let ip = format!("10.{}.{}.{}", 1 + index / 250, index % 250, p + 1);
        objects.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{name}-{p}"), "namespace": ns, "labels": {"app": name, "version": format!("v{p}")}},
            "status": {"podIP": ip},
        }));
        endpoints.push(json!({"addresses": [ip], "conditions": {"ready": true}}));
    }
    objects.push(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{name}-x"), "namespace": ns, "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": http_port}, {"name": "tcp-db", "port": 5432}],
        "endpoints": endpoints,
    }));
    let subsets: Vec<Value> = (0..PODS_PER_SERVICE)
        .map(|p| json!({"name": format!("v{p}"), "labels": {"version": format!("v{p}")}}))
        .collect();
    objects.push(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"host": name, "subsets": subsets},
    }));
    objects.push(json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"hosts": [name], "http": [
            {"match": [{"headers": {"end-user": {"exact": "jason"}}}], "route": [{"destination": {"host": name, "subset": "v1"}}]},
            {"route": [{"destination": {"host": name, "subset": "v0"}}]},
        ]},
    }));
    objects
}

fn mesh(with_sidecar: bool) -> Inputs {
    let mut objects: Vec<Value> = (0..NAMESPACES)
        .flat_map(|n| (0..SERVICES_PER_NAMESPACE).flat_map(move |s| service_objects(n, s)))
        .collect();
    if with_sidecar {
        objects.push(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": "default", "namespace": namespace(1)},
            "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}]},
        }));
    }
    mesh::inputs_of(objects, "default")
}

fn encoded_bytes(resources: &Resources) -> usize {
    ResourceType::ALL
        .iter()
        .map(|ty| {
            resources
                .encode(*ty)
                .values()
                .map(|any| any.value.len())
                .sum::<usize>()
        })
        .sum()
}

fn main() {
    let proxy = Proxy::parse(
        "sidecar~10.0.0.1~client.ns-1~ns-1.svc.cluster.local",
        &Value::Null,
    )
    .expect("a valid node id");
    println!(
        "| proxy in ns-1 | clusters | endpoints (CLAs) | listeners | route configs | virtual hosts | encoded bytes | translate |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for with_sidecar in [false, true] {
        let built = build(&mesh(with_sidecar), &LastGood::default());
        assert!(built.errors.is_empty(), "{:?}", built.errors);
        assert_eq!(
            built.model.services.len(),
            NAMESPACES * SERVICES_PER_NAMESPACE
        );
        let resources = translate(&built.model, &proxy);
        let time = timing::median(21, || {
            black_box(translate(black_box(&built.model), &proxy));
        });
        let virtual_hosts: usize = resources
            .routes
            .values()
            .map(|route| route.virtual_hosts.len())
            .sum();
        println!(
            "| {} | {} | {} | {} | {} | {virtual_hosts} | {} | {:.2} ms |",
            if with_sidecar {
                "Sidecar `./*`, `istio-system/*`"
            } else {
                "no Sidecar"
            },
            resources.clusters.len(),
            resources.endpoints.len(),
            resources.listeners.len(),
            resources.routes.len(),
            encoded_bytes(&resources),
            time.as_secs_f64() * 1e3,
        );
    }
}

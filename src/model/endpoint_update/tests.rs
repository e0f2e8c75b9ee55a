//! The endpoint update against the full build: random edit sequences over a mesh with every case
//! the update must handle or refuse (Kubernetes Services with several slices, a headless one,
//! Pods named by endpoints or found by address, Pods sharing an address, ServiceEntries selecting
//! WorkloadEntries and Pods, a host two entries define, a DNS entry, a Gateway's workloads), each
//! edit checked both ways.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::diagnostic::Origin;
use crate::inputs::{Decoded, Entry, decode};
use crate::model::{Built, Settings, build_with};

/// A small deterministic generator (xorshift64), so a failure replays.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn entry(object: Value) -> (ObjectKey, Arc<Entry>) {
    let Ok(Decoded::Object(key, object)) = decode(object, "shop") else {
        panic!("test objects decode");
    };
    let origin = Origin::File {
        path: "mesh.yaml".into(),
        line: 1,
    };
    (key, Arc::new(Entry { origin, object }))
}

fn service(name: &str, headless: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "clusterIP": if headless { "None" } else { "10.96.0.9" },
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 90}],
        },
    })
}

fn pod(index: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("pod-{index}"), "namespace": "shop",
            "labels": {"app": "a", "version": format!("v{}", index % 2)},
        },
        "spec": {"nodeName": format!("node-{}", index % 2), "containers": []},
        "status": {"podIP": format!("10.1.0.{index}")},
    })
}

/// A random Pod `pod-INDEX`: selected by a Service, an entry, a Gateway or nothing, on a Node or
/// not, at an address another Pod may have too, or at none yet.
fn random_pod(random: &mut Random, index: usize) -> Value {
    let mut labels = json!({
        "app": *random.pick(&["a", "b", "vm1", "dup", "nobody"]),
        "version": format!("v{}", random.below(2)),
    });
    if random.below(8) == 0 {
        labels["istio"] = json!("ingressgateway");
    }
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("pod-{index}"), "namespace": "shop", "labels": labels},
        "spec": {"containers": []},
    });
    if random.below(3) > 0 {
        pod["spec"]["nodeName"] = json!(format!("node-{}", random.below(3)));
    }
    if random.below(5) > 0 {
        pod["status"] = json!({"podIP": format!("10.1.0.{}", random.below(8))});
    }
    pod
}

fn gateway() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "ingress", "namespace": "shop"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": ["*"],
                "tls": {"mode": "SIMPLE", "credentialName": "missing"},
            }],
        },
    })
}

fn node(index: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": format!("node-{index}"),
            "labels": {"topology.kubernetes.io/region": "r", "topology.kubernetes.io/zone": format!("z{index}")},
        },
    })
}

fn service_entry(name: &str, host: &str, resolution: &str, app: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "hosts": [host],
            "ports": [{"name": "http", "number": 8080, "protocol": "HTTP"}],
            "resolution": resolution,
            "workloadSelector": {"labels": {"app": app}},
        },
    })
}

fn destination_rule(host: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": host.replace('.', "-"), "namespace": "shop"},
        "spec": {"host": host, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
    })
}

/// A random EndpointSlice `name`: for one of the Services (or one that does not exist), ready or
/// not, naming a Pod or not, sometimes with an address that is not an IP.
fn slice(random: &mut Random, name: &str) -> Value {
    let service = *random.pick(&["a", "b", "headless", "missing", "vm1.example.com"]);
    let endpoints: Vec<Value> = (0..random.below(4))
        .map(|_| {
            let index = random.below(6);
            let mut endpoint = json!({
                "addresses": [format!("10.1.0.{index}")],
                "conditions": {"ready": random.below(4) > 0},
            });
            if random.below(2) == 0 {
                endpoint["targetRef"] = json!({"kind": "Pod", "name": format!("pod-{index}")});
            }
            endpoint
        })
        .collect();
    let port = *random.pick(&["http", "grpc"]);
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": name, "namespace": "shop",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": *random.pick(&["IPv4", "IPv4", "IPv4", "FQDN"]),
        "ports": [{"name": port, "port": 8000 + random.below(3)}],
        "endpoints": endpoints,
    })
}

/// A random WorkloadEntry `name`, selected by one entry or another (or none), sometimes without
/// an address (which the build warns about).
fn workload_entry(random: &mut Random, name: &str) -> Value {
    let app = *random.pick(&["vm1", "vm2", "dup", "dns", "nobody"]);
    let address = match random.below(8) {
        0 => String::new(),
        n => format!("10.2.0.{n}"),
    };
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "address": address,
            "labels": {"app": app, "version": format!("v{}", random.below(2))},
            "weight": random.below(3),
        },
    })
}

fn mesh() -> BTreeMap<ObjectKey, Arc<Entry>> {
    let mut objects = vec![
        service("a", false),
        service("b", false),
        service("headless", true),
        node(0),
        node(1),
        service_entry("vm1", "vm1.example.com", "STATIC", "vm1"),
        service_entry("vm2", "vm2.example.com", "STATIC", "vm2"),
        service_entry("dup-1", "dup.example.com", "STATIC", "dup"),
        service_entry("dup-2", "dup.example.com", "STATIC", "dup"),
        service_entry("dns", "dns.example.com", "DNS", "dns"),
        destination_rule("a"),
        destination_rule("vm1.example.com"),
        gateway(),
    ];
    objects.extend((0..6).map(pod));
    objects.into_iter().map(entry).collect()
}

/// One edit of the mesh; mostly endpoint edits, now and then one of something else.
fn edit(random: &mut Random, objects: &mut BTreeMap<ObjectKey, Arc<Entry>>) {
    let name = format!("x-{}", random.below(5));
    let (key, object) = match random.below(20) {
        0 => entry(service("b", random.below(2) == 0)),
        1..=7 => entry(slice(random, &name)),
        8..=13 => {
            let index = random.below(8);
            entry(random_pod(random, index))
        }
        _ => entry(workload_entry(random, &name)),
    };
    if random.below(5) == 0 {
        objects.remove(&key);
    } else {
        objects.insert(key, object);
    }
}

/// The update of `built` to `next`, with the accepted objects and the index it leaves.
fn update_from(
    built: &Built,
    next: &Inputs,
    changes: &Changes,
) -> (Option<EndpointUpdate>, LastGood, EndpointIndex) {
    let mut accepted = built.last_good.clone();
    let mut index = EndpointIndex::new(&built.last_good);
    let outcome = update(
        &built.model,
        &mut accepted,
        &mut index,
        &built.errors,
        next,
        changes,
    );
    (outcome, accepted, index)
}

#[test]
fn endpoint_updates_equal_full_builds_over_random_edits() {
    let settings = Settings::default();
    let mut objects = mesh();
    let inputs_of = |objects: &BTreeMap<ObjectKey, Arc<Entry>>| Inputs {
        entries: objects.clone(),
        ..Inputs::default()
    };
    let mut inputs = inputs_of(&objects);
    let mut built = build_with(&inputs, &LastGood::default(), &settings);
    let mut random = Random(0x5eed_1234_abcd_0001);
    let (mut updated, mut refused, mut pods) = (0, 0, 0);
    for step in 0..4000 {
        edit(&mut random, &mut objects);
        let next = inputs_of(&objects);
        let changes = Changes::between(&inputs, &next);
        let full = build_with(&next, &built.last_good, &settings);
        let (outcome, accepted, index) = update_from(&built, &next, &changes);
        match outcome {
            Some(update) => {
                updated += 1;
                if changes.objects.iter().any(|key| key.kind == Kind::Pod) {
                    pods += 1;
                }
                assert_eq!(
                    update.workloads_changed,
                    full.model.workloads != built.model.workloads,
                    "workloads changed, step {step}"
                );
                assert_eq!(update.model, full.model, "model after step {step}");
                assert_eq!(
                    accepted, full.last_good,
                    "accepted objects after step {step}"
                );
                assert_eq!(
                    index,
                    EndpointIndex::new(&full.last_good),
                    "index, step {step}"
                );
                assert_eq!(full.errors, built.errors, "errors after step {step}");
                let changed: BTreeSet<String> = full
                    .model
                    .services
                    .iter()
                    .filter(|(host, service)| built.model.services.get(*host) != Some(*service))
                    .map(|(host, _)| host.clone())
                    .collect();
                assert_eq!(update.hosts, changed, "changed hosts, step {step}");
            }
            None => {
                refused += 1;
                assert_eq!(
                    accepted, built.last_good,
                    "untouched when refused, step {step}"
                );
            }
        }
        inputs = next;
        built = full;
    }
    // Both outcomes must be exercised, the update about half the time, Pods among them.
    assert!(
        updated > 1200 && refused > 100 && pods > 300,
        "{updated} updated ({pods} with a Pod), {refused} refused"
    );
}

#[test]
fn a_changed_rule_needs_a_full_build() {
    let objects = mesh();
    let inputs = Inputs {
        entries: objects.clone(),
        ..Inputs::default()
    };
    let built = build_with(&inputs, &LastGood::default(), &Settings::default());
    let mut next = inputs.clone();
    let (key, rule) = entry(destination_rule("b"));
    next.entries.insert(key, rule);
    let changes = Changes::between(&inputs, &next);
    assert!(update_from(&built, &next, &changes).0.is_none());
}

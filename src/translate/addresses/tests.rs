use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::inputs::golden_case_inputs;
use crate::model::{LastGood, build};
use crate::translate::translate;

/// Every golden case, with sidecars at each endpoint address of its model and at one address
/// nothing has: two proxies whose labels, namespace and address key agree get the same
/// translation. What the xDS cache relies on to share one among them.
#[test]
fn proxies_with_one_address_key_get_one_translation() {
    let mut compared = 0;
    for (input, inputs) in golden_case_inputs() {
        let model = build(&inputs, &LastGood::default()).model;
        let reads = AddressReads::of(&model);
        let mut addresses: Vec<IpAddr> = model
            .services
            .values()
            .flat_map(|service| &service.endpoints)
            .filter_map(|endpoint| match &endpoint.address {
                EndpointAddress::Ip(ip) => Some(*ip),
                _ => None,
            })
            .chain(model.workloads.keys().copied())
            .collect();
        addresses.extend(
            ["10.250.0.1", "10.250.0.2", "fd00::1"]
                .map(|ip| ip.parse::<IpAddr>().expect("an address")),
        );
        addresses.sort();
        addresses.dedup();
        let namespaces = ["default", "bookinfo"];
        let mut groups: BTreeMap<String, Vec<(Proxy, crate::translate::Resources)>> =
            BTreeMap::new();
        for namespace in namespaces {
            for (index, ip) in addresses.iter().enumerate() {
                let id =
                    format!("sidecar~{ip}~pod-{index}.{namespace}~{namespace}.svc.cluster.local");
                let metadata = json!({"NAMESPACE": namespace});
                let proxy = Proxy::parse(&id, &metadata)
                    .expect("a node id")
                    .with_workload_labels(&model);
                let key = format!(
                    "{:?}",
                    (
                        &proxy.namespace,
                        &proxy.labels,
                        &proxy.locality,
                        reads.key(&model, &proxy)
                    )
                );
                let resources = translate(&model, &proxy);
                groups.entry(key).or_default().push((proxy, resources));
            }
        }
        for group in groups.values() {
            let (first, expected) = &group[0];
            for (proxy, resources) in &group[1..] {
                assert!(
                    resources == expected,
                    "{}: {} and {} share a key but not a translation",
                    input.display(),
                    first.id,
                    proxy.id
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 10, "only {compared} pairs compared");
}

fn sidecar_at(ip: &str, namespace: &str, model: &Model) -> Proxy {
    let id = format!("sidecar~{ip}~pod.{namespace}~{namespace}.svc.cluster.local");
    Proxy::parse(&id, &json!({"NAMESPACE": namespace}))
        .expect("a node id")
        .with_workload_labels(model)
}

/// Two proxies alike but for their addresses: whether their keys differ, and whether their
/// translations do.
fn differences(yaml: &str, (one, two): (&str, &str)) -> (bool, bool) {
    let model = build(&crate::inputs::from_test_yaml(yaml), &LastGood::default()).model;
    let reads = AddressReads::of(&model);
    let (one, two) = (
        sidecar_at(one, "data", &model),
        sidecar_at(two, "data", &model),
    );
    (
        reads.key(&model, &one) != reads.key(&model, &two),
        translate(&model, &one) != translate(&model, &two),
    )
}

const HEADLESS: &str = "
apiVersion: v1
kind: Service
metadata: {name: cache, namespace: data}
spec:
  clusterIP: None
  ports: [{name: tcp-redis, port: 6379}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: cache-x
  namespace: data
  labels: {kubernetes.io/service-name: cache}
addressType: IPv4
ports: [{name: tcp-redis, port: 6379}]
endpoints:
- addresses: [10.0.3.5, 10.0.3.6]
";

const TO_WORKLOAD_ADDRESS: &str = "
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: data}
spec:
  ingress:
  - port: {number: 8080, protocol: HTTP, name: http}
    defaultEndpoint: 0.0.0.0:8080
";

#[test]
fn addresses_are_in_the_key_exactly_where_the_translation_reads_them() {
    // A headless service's per-endpoint listeners leave out the proxy's own address.
    assert_eq!(
        differences(HEADLESS, ("10.0.3.5", "10.0.3.6")),
        (true, true)
    );
    assert_eq!(
        differences(HEADLESS, ("10.250.0.1", "10.250.0.2")),
        (false, false)
    );
    // A default endpoint on the workload's address is the proxy's own address.
    assert_eq!(
        differences(TO_WORKLOAD_ADDRESS, ("10.250.0.1", "10.250.0.2")),
        (true, true)
    );
}

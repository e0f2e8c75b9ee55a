use serde_json::{Value, json};

use super::*;
use crate::inputs::golden_case_inputs;
use crate::model::{LastGood, Model, build};
use crate::proxy::{Proxy, SecretAccess};
use crate::translate::{Resources, translate, translate_with_view};

/// Proxies that read every part of a proxy translation reads: both kinds, two namespaces,
/// labels that select and labels that do not, IPv4 and IPv6, with and without a locality, and
/// the case's own proxy.
fn proxies(case: &std::path::Path, model: &Model) -> Vec<Proxy> {
    let mut proxies: Vec<Proxy> = [
        ("sidecar~10.250.0.1~a.default~default.svc.cluster.local", json!({"NAMESPACE": "default", "LABELS": {"app": "client"}})),
        ("sidecar~10.250.0.2~b.default~default.svc.cluster.local", json!({"NAMESPACE": "default", "LABELS": {"app": "other", "version": "v2"}})),
        ("sidecar~fd00::1~c.bookinfo~bookinfo.svc.cluster.local", json!({"NAMESPACE": "bookinfo", "LABELS": {"app": "reviews"}})),
        ("sidecar~10.250.0.3~d.default~default.svc.cluster.local", json!({"NAMESPACE": "default", "LABELS": {"app": "client", "topology.kubernetes.io/region": "us-west", "topology.kubernetes.io/zone": "zone-b"}})),
        ("router~10.250.0.4~gw.istio-system~istio-system.svc.cluster.local", json!({"NAMESPACE": "istio-system", "LABELS": {"istio": "ingressgateway"}})),
    ]
    .into_iter()
    .map(|(id, metadata)| Proxy::parse(id, &metadata).expect("a node id"))
    .collect();
    if let Ok(text) = std::fs::read_to_string(case.join("proxy.yaml")) {
        let value: Value = serde_saphyr::from_str(&text).expect("proxy.yaml parses");
        let id = value["id"].as_str().expect("proxy.yaml has an id");
        let metadata = value.get("metadata").cloned().unwrap_or(Value::Null);
        proxies.push(Proxy::parse(id, &metadata).expect("the case's proxy id parses"));
    }
    for proxy in &mut proxies {
        proxy.secret_access = SecretAccess::All;
    }
    proxies
        .into_iter()
        .map(|proxy| proxy.with_workload_labels(model))
        .collect()
}

/// One memo shared by every proxy of every golden case (so across models and proxies of
/// every kind) changes no translation: each equals the one made with a memo of its own.
#[test]
fn a_shared_memo_changes_no_translation() {
    let memo = Memo::default();
    let mut shared_clusters = 0;
    for (case, inputs) in golden_case_inputs() {
        let model = build(&inputs, &LastGood::default()).model;
        let mut first: Option<Resources> = None;
        for proxy in proxies(&case, &model) {
            let (memoized, _) = translate_with_view(&model, &proxy, &memo);
            let alone = translate(&model, &proxy);
            assert!(
                memoized == alone,
                "{}: {} translates differently with a shared memo",
                case.display(),
                proxy.id
            );
            if let Some(first) = &first {
                shared_clusters += memoized
                    .clusters
                    .iter()
                    .filter(|(name, cluster)| {
                        first
                            .clusters
                            .get(*name)
                            .is_some_and(|other| Arc::ptr_eq(other, cluster))
                    })
                    .count();
            }
            first.get_or_insert(memoized);
        }
        memo.sweep();
    }
    assert!(
        shared_clusters > 100,
        "only {shared_clusters} clusters shared"
    );
}

/// A memo entry lives while a translation holds its resource.
#[test]
fn entries_live_while_a_translation_holds_them() {
    let inputs = crate::inputs::from_test_yaml(
        "
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  ports: [{name: http, port: 9080}]
",
    );
    let model = build(&inputs, &LastGood::default()).model;
    let proxy = Proxy::parse(
        "sidecar~10.0.0.1~a.default~default.svc.cluster.local",
        &Value::Null,
    )
    .expect("a node id");
    let memo = Memo::default();
    let before = translate_with_view(&model, &proxy, &memo).0;
    let remembered = memo.len();
    assert!(
        remembered >= 2,
        "a cluster and its assignment: {remembered}"
    );
    memo.sweep();
    assert_eq!(memo.len(), remembered);
    let again = translate_with_view(&model, &proxy, &memo).0;
    let cluster = "outbound|9080||reviews.default.svc.cluster.local";
    assert!(Arc::ptr_eq(
        &before.clusters[cluster],
        &again.clusters[cluster]
    ));
    drop((before, again));
    memo.sweep();
    assert_eq!(memo.len(), 0);
    assert_eq!(
        translate_with_view(&model, &proxy, &memo).0,
        translate(&model, &proxy)
    );
}

/// After a rebuild that keeps unchanged objects' identity (`Model::sharing_unchanged`), an edit
/// to one DestinationRule rebuilds the clusters of its host alone.
#[test]
fn a_rule_edit_rebuilds_the_clusters_of_its_host_alone() {
    let rule = "
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
";
    let yaml = format!("{}{rule}", crate::inputs::TWO_SERVICES_YAML);
    let model =
        |yaml: &str| build(&crate::inputs::from_test_yaml(yaml), &LastGood::default()).model;
    let before = model(&yaml);
    let after = model(&yaml.replace("ROUND_ROBIN", "RANDOM")).sharing_unchanged(&before);
    let proxy = Proxy::parse(
        "sidecar~10.0.0.1~a.default~default.svc.cluster.local",
        &Value::Null,
    )
    .expect("a node id");
    let memo = Memo::default();
    let first = translate_with_view(&before, &proxy, &memo).0;
    memo.sweep();
    let second = translate_with_view(&after, &proxy, &memo).0;
    let same = |name: &str| Arc::ptr_eq(&first.clusters[name], &second.clusters[name]);
    assert!(same("outbound|9080||reviews.default.svc.cluster.local"));
    assert!(!same("outbound|9080||ratings.default.svc.cluster.local"));
    assert_eq!(second, translate(&after, &proxy));
}

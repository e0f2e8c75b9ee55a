//! Changes that alter no Envoy resource push nothing. On a real API server (scripts/dev-cluster)
//! with Istio's CRDs, rudder serves three stock Envoys (a sidecar over delta ADS, two gateways
//! over state-of-the-world ADS); then edits that cannot change any proxy's config are made with
//! kubectl (annotations, a label nothing selects, a Pod's status, an unrelated ConfigMap, an
//! Istio object's annotation) and rudder must send no xDS response at all (`pilot_xds_pushes`
//! unchanged). A real edit afterwards must push, so that the count is known to move, and must
//! reach the sidecar as an EDS update of the changed service's clusters alone, made by rudder's
//! endpoint path (no model build, no other type pushed). In a
//! cluster such edits never stop (status, leases, managedFields), so each one pushing to every
//! proxy would be a push storm.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rudder::bootstrap::AdsApiType;
use rudder::serve::{ServeOptions, Server};
use serde_json::{Value, json};
use support::cluster::DevCluster;
use support::envoy_process::EnvoyProcess;
use support::mesh::local_serve_options;

const CLUSTER: &str = "outbound|9080|v1|reviews.bookinfo.svc.cluster.local";

/// Services, Pods, an EndpointSlice and rules. Nothing receives traffic, so the addresses need
/// not exist (Kubernetes refuses loopback ones).
const WORKLOADS: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: bookinfo}
---
apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  clusterIP: 10.96.77.1
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v1, namespace: bookinfo, labels: {app: reviews, version: v1}}
spec:
  containers: [{name: app, image: example.invalid/app}]
---
apiVersion: v1
kind: Pod
metadata: {name: productpage-v1, namespace: bookinfo, labels: {app: productpage, version: v1}}
spec:
  containers: [{name: app, image: example.invalid/app}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-1
  namespace: bookinfo
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
ports: [{name: http, port: 9080}]
endpoints:
- addresses: [10.77.0.11]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: reviews-v1, namespace: bookinfo}
---
apiVersion: v1
kind: Service
metadata: {name: details, namespace: bookinfo}
spec:
  clusterIP: 10.96.77.2
  selector: {app: details}
  ports: [{name: http, port: 9080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: details-1
  namespace: bookinfo
  labels: {kubernetes.io/service-name: details}
addressType: IPv4
ports: [{name: http, port: 9080}]
endpoints:
- addresses: [10.77.0.21]
  conditions: {ready: true}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
";

async fn metrics(server: &Server) -> String {
    reqwest::get(format!("http://{}/metrics", server.admin_address()))
        .await
        .expect("admin answers")
        .text()
        .await
        .expect("a body")
}

/// `rudder_config_builds_total`: how many models were built (reported, not asserted: a build
/// that changes nothing is cost, not a push).
async fn builds(server: &Server) -> u64 {
    counter(server, "rudder_config_builds_total").await
}

/// A counter without labels from rudder's /metrics (0 if absent).
async fn counter(server: &Server, name: &str) -> u64 {
    metrics(server)
        .await
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

/// Builds that updated endpoints without building the model anew.
const ENDPOINT_UPDATES: &str = "rudder_config_endpoint_updates_total";

/// `pilot_xds_pushes` by type, from rudder's /metrics.
async fn pushes(server: &Server) -> BTreeMap<String, u64> {
    metrics(server)
        .await
        .lines()
        .filter_map(|line| line.strip_prefix("pilot_xds_pushes{type=\""))
        .filter_map(|rest| {
            let (ty, value) = rest.split_once("\"} ")?;
            Some((ty.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The push counts once they have not moved for `quiet` (within 30 s).
async fn settled_pushes(server: &Server, quiet: Duration) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = pushes(server).await;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = pushes(server).await;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return last;
        }
        assert!(Instant::now() < deadline, "pushes never settled: {last:?}");
    }
}

async fn envoy_stats(envoy: &EnvoyProcess) -> String {
    reqwest::get(format!(
        "http://{}/stats?filter=update_success",
        envoy.admin
    ))
    .await
    .expect("Envoy's admin answers")
    .text()
    .await
    .expect("a body")
}

fn has_endpoint(dump: &Value) -> bool {
    dump.to_string().contains(CLUSTER) && dump.to_string().contains("10.77.0.11")
}

async fn eds_dump(envoy: &EnvoyProcess, what: &str) {
    let admin = &envoy.admin;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let dump: Value = reqwest::get(format!("http://{admin}/config_dump?include_eds"))
            .await
            .expect("Envoy's admin answers")
            .json()
            .await
            .expect("JSON");
        if has_endpoint(&dump) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never got {CLUSTER} with its endpoint; its log:\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_that_alter_no_resource_push_nothing() {
    let cluster = DevCluster::up("kube-noop");
    cluster.install_istio_crds();
    cluster.apply(WORKLOADS);
    // A short debounce keeps the waits short; what is pushed does not depend on it.
    let debounce = rudder::serve::Debounce {
        quiet: Duration::from_millis(100),
        max: Duration::from_millis(500),
    };
    let server = Server::start(ServeOptions {
        kubernetes: Some(cluster.kubernetes_options()),
        debounce,
        ..local_serve_options(Vec::new())
    })
    .await
    .expect("rudder starts");
    let xds = server.xds_address();

    // REDIRECT: the sidecar binds only 15001 and 15006. Gateways without Gateway objects bind
    // nothing, so the three Envoys can share the host.
    let sidecar = EnvoyProcess::start(
        "sidecar~10.77.0.5~productpage-v1.bookinfo~bookinfo.svc.cluster.local",
        json!({"NAMESPACE": "bookinfo", "INTERCEPTION_MODE": "REDIRECT",
               "LABELS": {"app": "productpage", "version": "v1"}}),
        xds,
        AdsApiType::DeltaGrpc,
    );
    let gateways: Vec<EnvoyProcess> = ["a", "b"]
        .iter()
        .map(|name| {
            EnvoyProcess::start(
                &format!(
                    "router~10.77.0.{}~gateway-{name}.istio-system~istio-system.svc.cluster.local",
                    if *name == "a" { 6 } else { 7 }
                ),
                json!({"NAMESPACE": "istio-system", "LABELS": {"istio": format!("gateway-{name}")}}),
                xds,
                AdsApiType::Grpc,
            )
        })
        .collect();
    eds_dump(&sidecar, "the sidecar").await;
    for gateway in &gateways {
        eds_dump(gateway, "a gateway").await;
    }
    // Longer than the debounce's longest wait, so that a change's push has happened by then.
    let quiet = debounce.max + Duration::from_millis(1500);
    let mut before = settled_pushes(&server, quiet).await;
    let builds_before = builds(&server).await;
    eprintln!("pushes once the three Envoys hold their config: {before:?}");

    let edits: &[(&str, &[&str])] = &[
        (
            "a Service annotation",
            &[
                "annotate",
                "service",
                "reviews",
                "-n",
                "bookinfo",
                "example.com/owner=team-a",
            ],
        ),
        (
            "a Pod label nothing selects",
            &[
                "label",
                "pod",
                "reviews-v1",
                "-n",
                "bookinfo",
                "example.com/unselected=yes",
            ],
        ),
        (
            "a Pod annotation",
            &[
                "annotate",
                "pod",
                "productpage-v1",
                "-n",
                "bookinfo",
                "example.com/note=x",
            ],
        ),
        (
            "a Pod's status",
            &[
                "patch",
                "pod",
                "reviews-v1",
                "-n",
                "bookinfo",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"message":"checked"}}"#,
            ],
        ),
        (
            "an unrelated ConfigMap",
            &[
                "create",
                "configmap",
                "unrelated",
                "-n",
                "bookinfo",
                "--from-literal=a=b",
            ],
        ),
        (
            "a Namespace annotation",
            &["annotate", "namespace", "bookinfo", "example.com/team=a"],
        ),
        (
            "an EndpointSlice label nothing reads",
            &[
                "label",
                "endpointslice",
                "reviews-1",
                "-n",
                "bookinfo",
                "example.com/x=y",
            ],
        ),
        (
            "a VirtualService annotation",
            &[
                "annotate",
                "virtualservice",
                "reviews",
                "-n",
                "bookinfo",
                "example.com/x=y",
            ],
        ),
        (
            "a DestinationRule label",
            &[
                "label",
                "destinationrule",
                "reviews",
                "-n",
                "bookinfo",
                "example.com/x=y",
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (what, args) in edits {
        cluster.ok(args, "");
        let after = settled_pushes(&server, quiet).await;
        if after != before {
            failures.push(format!("{what}: pushes went from {before:?} to {after:?}"));
            // Later edits are judged against what this one left.
            before = after;
        }
    }
    eprintln!(
        "{} no-op edits: {} model builds, no push",
        edits.len(),
        builds(&server).await - builds_before
    );
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // A real change pushes: a second endpoint reaches every Envoy, as an update of the
    // reviews clusters alone (Envoy counts EDS updates per cluster).
    let details_updates = |stats: &str| {
        stats
            .lines()
            .find(|line| {
                line.starts_with(
                    "cluster.outbound|9080||details.bookinfo.svc.cluster.local;.update_success:",
                )
            })
            .and_then(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
    };
    let stats_before = envoy_stats(&sidecar).await;
    let updates_before = counter(&server, ENDPOINT_UPDATES).await;
    cluster.ok(
        &[
            "patch", "endpointslice", "reviews-1", "-n", "bookinfo", "--type=json", "-p",
            r#"[{"op":"add","path":"/endpoints/-","value":{"addresses":["10.77.0.12"],"conditions":{"ready":true}}}]"#,
        ],
        "",
    );
    let after = settled_pushes(&server, quiet).await;
    let eds = |counts: &BTreeMap<String, u64>| counts.get("eds").copied().unwrap_or(0);
    assert!(
        eds(&after) >= eds(&before) + 3,
        "an endpoint change pushed EDS to fewer than the three Envoys: {before:?} -> {after:?}"
    );
    eprintln!("after a real endpoint change: {after:?}");
    // It took the endpoint path: no model build, and no other type pushed.
    assert!(
        counter(&server, ENDPOINT_UPDATES).await > updates_before,
        "the endpoint change was not an endpoint update"
    );
    let others = |counts: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        counts
            .iter()
            .filter(|(ty, _)| *ty != "eds")
            .map(|(ty, count)| (ty.clone(), *count))
            .collect()
    };
    assert_eq!(
        others(&before),
        others(&after),
        "an endpoint change pushed more than EDS"
    );
    let stats_after = envoy_stats(&sidecar).await;
    assert!(
        details_updates(&stats_before).is_some(),
        "the sidecar has no details cluster stats:\n{stats_before}"
    );
    assert_eq!(
        details_updates(&stats_before),
        details_updates(&stats_after),
        "a reviews endpoint change updated the details cluster"
    );
    let reviews = "cluster.outbound|9080||reviews.bookinfo.svc.cluster.local;.update_success:";
    let count = |stats: &str| {
        stats
            .lines()
            .find(|line| line.starts_with(reviews))
            .and_then(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
    };
    assert!(
        count(&stats_after) > count(&stats_before),
        "the reviews cluster got no EDS update:\n{stats_after}"
    );
    server.stop().await;
}

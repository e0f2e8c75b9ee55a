//! Istio's CRDs are the contract: rudder has no CRDs of its own. For the oldest Istio the Go
//! module proxy serves (`istio.io/api` v1.22.0) and for the one `hack/istiod/go.mod` pins, on a
//! real API server (`scripts/dev-cluster`), with the CRDs `scripts/istio-crds` prints:
//!
//! - installed as the README says on a cluster without Istio, objects of the six kinds rudder
//!   translates that set every field of the schema (made from the CRD's OpenAPI schema, within
//!   its CEL rules) round-trip byte for byte, in every served version (v1, v1beta1, v1alpha3);
//! - invalid objects (a bad duration such as `5parsecs`, CEL violations, wrong types) are refused
//!   naming the field; CEL cases pass on CRDs that have no CEL rules (Istio 1.22's), as they do
//!   with Istio alone;
//! - rudder reads every one of those objects from the cluster without refusing any;
//! - installing them the README's way over CRDs another field manager owns (`helm`, as Helm 3
//!   creates them and as Helm 4 applies them) gives no conflict and loses nothing: an existing
//!   DestinationRule keeps `http2KeepAlive`;
//! - a kind whose CRD is missing, or serves none of v1, v1beta1, v1alpha3, is empty while the
//!   others are read, and is read once its CRD is installed; a CRD serving only v1alpha3 is read
//!   through it;
//! - status writing starts once the Lease's namespace appears.
//!
//! Needs `kubectl`, Go (first builds of kube-apiserver; the first fetch of each `istio.io/api`
//! version) and the Go module proxy, or their caches under ~/.cache/rudder.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rudder::serve::{KubernetesOptions, ServeOptions, Server};
use serde_json::{Value, json};
use support::cluster::DevCluster;
use support::istio_crds::{self, KINDS};
use support::mesh::{local_serve_options, wait_until};

const NAMESPACE: &str = "every-field";

/// How many variants to try to set every field of a kind (the widest nesting of choices,
/// DestinationRule's load balancer, needs eight).
const MAX_VARIANTS: usize = 16;

fn plural(crd: &Value) -> String {
    crd["spec"]["names"]["plural"]
        .as_str()
        .expect("a plural")
        .to_string()
}

/// JSON with object keys sorted: equal values give equal bytes.
fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let sorted_map: BTreeMap<&String, Value> =
                    map.iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::to_value(sorted_map).expect("JSON")
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// One object of the every-field corpus.
struct Written {
    kind: String,
    version: String,
    name: String,
    spec: Value,
}

/// For each kind and served version, objects that together set every field of its schema.
fn every_field_objects(crds: &BTreeMap<String, Value>) -> Vec<Written> {
    let mut objects = Vec::new();
    for kind in KINDS {
        let crd = &crds[kind];
        for version in istio_crds::served_versions(crd) {
            let schema = istio_crds::spec_schema(crd, &version);
            for (n, spec) in istio_crds::every_field_specs(schema, MAX_VARIANTS)
                .into_iter()
                .enumerate()
            {
                objects.push(Written {
                    kind: kind.to_string(),
                    name: format!("{}-{version}-{n}", kind.to_lowercase()),
                    version: version.clone(),
                    spec,
                });
            }
        }
    }
    objects
}

/// The objects as one `List`, ready for `kubectl create -f -`.
fn manifest(objects: &[Written]) -> String {
    let items: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({
                "apiVersion": format!("networking.istio.io/{}", o.version),
                "kind": o.kind,
                "metadata": {"name": o.name, "namespace": NAMESPACE},
                "spec": o.spec,
            })
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// Reads every object back in the version it was written in; each spec must be byte for byte
/// what was written (nothing pruned, nothing defaulted).
fn assert_round_trip(cluster: &DevCluster, crds: &BTreeMap<String, Value>, objects: &[Written]) {
    let mut read: BTreeMap<(String, String), BTreeMap<String, Value>> = BTreeMap::new();
    for object in objects {
        let key = (object.kind.clone(), object.version.clone());
        let listed = read.entry(key).or_insert_with(|| {
            let resource = format!(
                "{}.{}.networking.istio.io",
                plural(&crds[&object.kind]),
                object.version
            );
            let list: Value = serde_json::from_str(
                &cluster.ok(&["get", "-n", NAMESPACE, &resource, "-o", "json"], ""),
            )
            .expect("a JSON list");
            list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| {
                    (
                        item["metadata"]["name"].as_str().unwrap_or("").to_string(),
                        item["spec"].clone(),
                    )
                })
                .collect()
        });
        let stored = listed
            .get(&object.name)
            .unwrap_or_else(|| panic!("{} {} not stored", object.kind, object.name));
        assert_eq!(
            canonical(stored),
            canonical(&object.spec),
            "{} {} ({}): the API server changed the spec",
            object.kind,
            object.name,
            object.version
        );
    }
}

/// Objects the CRDs refuse, with the field path the error names, and whether a CEL rule is
/// what refuses it.
fn invalid_corpus() -> Vec<(&'static str, Value, &'static str, bool)> {
    let route = json!([{"destination": {"host": "a"}}]);
    vec![
        (
            "VirtualService",
            json!({"hosts": ["a"], "http": [{"route": route, "timeout": "5parsecs"}]}),
            "spec.http[0].timeout",
            true,
        ),
        (
            "VirtualService",
            json!({"hosts": ["a"], "http": [{"route": route, "timeout": 5}]}),
            "spec.http[0].timeout",
            false,
        ),
        (
            "VirtualService",
            json!({"hosts": ["a"], "http": [{"match": [{"uri": {"exact": "/a", "prefix": "/"}}], "route": route}]}),
            "spec.http[0].match[0].uri",
            false,
        ),
        (
            "DestinationRule",
            json!({"host": "a", "trafficPolicy": {"loadBalancer": {"simple": "FASTEST"}}}),
            "spec.trafficPolicy.loadBalancer.simple",
            false,
        ),
        (
            "DestinationRule",
            json!({"host": "a", "trafficPolicy": {"outlierDetection": {"interval": "5parsecs"}}}),
            "spec.trafficPolicy.outlierDetection.interval",
            true,
        ),
        (
            "ServiceEntry",
            json!({"hosts": "a.example.com"}),
            "spec.hosts",
            false,
        ),
        (
            "ServiceEntry",
            json!({"hosts": ["a.example.com"], "ports": [{"number": 0, "name": "http"}]}),
            "spec.ports[0].number",
            true,
        ),
        (
            "ServiceEntry",
            json!({"hosts": ["a.example.com"], "resolution": "NONE", "endpoints": [{"address": "10.0.0.1"}]}),
            "spec",
            true,
        ),
        (
            "Gateway",
            json!({"servers": [{"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"],
                   "tls": {"mode": "SIMPLE", "credentialName": "a", "credentialNames": ["b"]}}]}),
            "spec.servers[0].tls",
            true,
        ),
        (
            "WorkloadEntry",
            json!({"labels": {"app": "a"}}),
            "spec",
            true,
        ),
        (
            "Sidecar",
            json!({"egress": [{"hosts": ["./*"], "port": {"number": "eighty"}}]}),
            "spec.egress[0].port.number",
            false,
        ),
    ]
}

/// Every case of [`invalid_corpus`] is refused naming its field, except CEL cases on CRDs
/// without CEL rules (Istio 1.22's), which pass as they do with Istio alone (or are refused for
/// a field that release does not have).
fn assert_invalid_corpus(cluster: &DevCluster, crds: &BTreeMap<String, Value>) {
    for (kind, spec, field, cel) in invalid_corpus() {
        let has_cel = crds[kind].to_string().contains("x-kubernetes-validations");
        let object = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": kind,
            "metadata": {"name": "invalid", "namespace": NAMESPACE},
            "spec": spec,
        })
        .to_string();
        let args = ["create", "--dry-run=server", "-f", "-"];
        if cel && !has_cel {
            // Passes, unless it uses a field that release does not have yet.
            let output = cluster.kubectl(&args, &object);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success() || stderr.contains("unknown field"),
                "{kind} {spec}: {stderr}"
            );
            continue;
        }
        let stderr = cluster.refused(&args, &object);
        // `spec.x: Invalid value` for most rules, `"spec.x" must validate ...` for a oneOf.
        assert!(
            stderr.contains(&format!("{field}: ")) || stderr.contains(&format!("\"{field}\" ")),
            "{kind} {spec}: the error should name {field}: {stderr}"
        );
    }
}

fn namespace(name: &str) -> String {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}).to_string()
}

fn kubernetes(cluster: &DevCluster, lease_namespace: &str) -> ServeOptions {
    ServeOptions {
        kubernetes: Some(KubernetesOptions {
            lease_namespace: lease_namespace.to_string(),
            ..cluster.kubernetes_options()
        }),
        ..local_serve_options(Vec::new())
    }
}

async fn configz(server: &Server) -> Value {
    let url = format!("http://{}/debug/inputz", server.admin_address());
    reqwest::get(&url)
        .await
        .expect("admin answers")
        .json()
        .await
        .expect("configz is JSON")
}

/// The Istio objects of [`NAMESPACE`] that rudder holds, by `kind/name`, each with whether it
/// was refused (and why).
async fn read_by_rudder(server: &Server) -> BTreeMap<String, Value> {
    configz(server).await["objects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| {
            o["namespace"] == NAMESPACE && KINDS.contains(&o["kind"].as_str().unwrap_or(""))
        })
        .map(|o| {
            (
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or(""),
                    o["name"].as_str().unwrap_or("")
                ),
                o["refused"].clone(),
            )
        })
        .collect()
}

/// rudder, watching the cluster, holds every object of the corpus and refuses none.
async fn assert_rudder_reads(cluster: &DevCluster, objects: &[Written]) {
    let server = Server::start(kubernetes(cluster, "istio-system"))
        .await
        .expect("rudder starts");
    let expected: BTreeSet<String> = objects
        .iter()
        .map(|o| format!("{}/{}", o.kind, o.name))
        .collect();
    let all_read = wait_until(Duration::from_secs(30), || async {
        read_by_rudder(&server).await.len() == expected.len()
    })
    .await;
    let read = read_by_rudder(&server).await;
    assert!(
        all_read.is_some(),
        "rudder holds {} of {} objects: missing {:?}",
        read.len(),
        expected.len(),
        expected
            .iter()
            .filter(|k| !read.contains_key(*k))
            .collect::<Vec<_>>()
    );
    let refused: Vec<_> = read.iter().filter(|(_, why)| !why.is_null()).collect();
    assert!(refused.is_empty(), "rudder refused: {refused:?}");
    server.stop().await;
}

/// The README's way on a cluster without Istio, then the corpora, then rudder.
async fn check_fresh_install(version: &str) {
    let started = Instant::now();
    let cluster = DevCluster::up(&format!("istio-crds-{version}"));
    cluster.install_istio_crds_of(version);
    let yaml = istio_crds::yaml(version);
    let crds = istio_crds::networking_crds(&yaml);
    cluster.ok(&["apply", "-f", "-"], &namespace(NAMESPACE));
    let objects = every_field_objects(&crds);
    cluster.ok(&["create", "-f", "-"], &manifest(&objects));
    assert_round_trip(&cluster, &crds, &objects);
    assert_invalid_corpus(&cluster, &crds);
    assert_rudder_reads(&cluster, &objects).await;
    eprintln!(
        "Istio {version}: {} every-field objects round-trip and are read by rudder; {} invalid \
         objects checked ({:?})",
        objects.len(),
        invalid_corpus().len(),
        started.elapsed()
    );
}

/// Over CRDs that Helm owns: no conflict, nothing lost.
fn check_over_helm(version: &str) {
    let cluster = DevCluster::up(&format!("istio-crds-helm-{version}"));
    let yaml = istio_crds::yaml(version);
    let crds = istio_crds::networking_crds(&yaml);
    // Helm 3 creates CRDs (an update by manager `helm`); Helm 4 applies them server-side.
    cluster.apply_crds(&["create", "--field-manager", "helm", "-f", "-"], &yaml);
    cluster.ok(&["apply", "-f", "-"], &namespace(NAMESPACE));
    let objects = every_field_objects(&crds);
    cluster.ok(&["create", "-f", "-"], &manifest(&objects));
    let readme = ["apply", "--server-side", "-f", "-"];
    for owner in [
        &["create", "--field-manager", "helm", "-f", "-"][..],
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "helm",
            "-f",
            "-",
        ],
    ] {
        if owner[0] == "apply" {
            cluster.apply_crds(owner, &yaml);
        }
        let output = cluster.apply_crds(&readme, &yaml);
        assert!(!output.contains("conflict"), "{output}");
        assert_round_trip(&cluster, &crds, &objects);
    }
    // The fields the issue lost to a narrower schema, where this version has them.
    let keep_alive = objects.iter().any(|o| {
        o.kind == "DestinationRule"
            && !o.spec["trafficPolicy"]["connectionPool"]["http"]["http2KeepAlive"].is_null()
    });
    assert_eq!(
        keep_alive,
        yaml.contains("http2KeepAlive"),
        "a DestinationRule with http2KeepAlive is in the corpus when the CRD has the field"
    );
    assert_invalid_corpus(&cluster, &crds);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oldest_istio_crds() {
    check_fresh_install(istio_crds::OLDEST).await;
    check_over_helm(istio_crds::OLDEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_istio_crds() {
    let version = istio_crds::pinned();
    check_fresh_install(&version).await;
    check_over_helm(&version);
}

/// Keeps only the versions of a CRD that `keep` names (renamed to `rename` when given), the
/// first of them stored.
fn with_versions(crd: &Value, keep: &str, rename: Option<&str>) -> Value {
    let mut crd = crd.clone();
    let versions: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["name"] == keep)
        .map(|v| {
            let mut v = v.clone();
            v["storage"] = json!(true);
            if let Some(name) = rename {
                v["name"] = json!(name);
            }
            v
        })
        .collect();
    crd["spec"]["versions"] = Value::Array(versions);
    crd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_crds_and_other_versions() {
    let cluster = DevCluster::up("istio-crds-versions");
    let crds = istio_crds::networking_crds(&istio_crds::yaml(&istio_crds::pinned()));
    let mut installed = Vec::new();
    for (kind, crd) in &crds {
        match kind.as_str() {
            // Served through v1alpha3 only.
            "VirtualService" => installed.push(with_versions(crd, "v1alpha3", None)),
            // A version rudder does not read.
            "Gateway" => installed.push(with_versions(crd, "v1", Some("v2"))),
            // Not installed.
            "WorkloadEntry" => {}
            _ => installed.push(crd.clone()),
        }
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": installed});
    cluster.apply_crds(&["apply", "--server-side", "-f", "-"], &list.to_string());
    cluster.ok(&["apply", "-f", "-"], &namespace(NAMESPACE));
    let objects = "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\n\
        metadata: {name: old, namespace: every-field}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}]}]}\n\
        ---\napiVersion: networking.istio.io/v2\nkind: Gateway\n\
        metadata: {name: other, namespace: every-field}\nspec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]}\n\
        ---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
        metadata: {name: current, namespace: every-field}\nspec: {host: a}\n";
    cluster.ok(&["create", "-f", "-"], objects);

    let server = Server::start(kubernetes(&cluster, "istio-system"))
        .await
        .expect("rudder starts with a CRD missing and one in another version");
    let read = wait_until(Duration::from_secs(30), || async {
        read_by_rudder(&server).await.len() >= 2
    })
    .await;
    assert!(read.is_some(), "{:?}", read_by_rudder(&server).await);
    let read = read_by_rudder(&server).await;
    assert_eq!(
        read.keys().collect::<Vec<_>>(),
        ["DestinationRule/current", "VirtualService/old"],
        "the v1alpha3-only VirtualService is read; the v2 Gateway is not"
    );
    let ready = reqwest::get(format!("http://{}/ready", server.admin_address()))
        .await
        .expect("admin answers");
    assert_eq!(ready.status(), 200);

    // A CRD installed later is found (rudder looks again every 30 s). /debug/inputz shows the
    // inputs of the last build that changed the model, so a ServiceEntry selects the
    // WorkloadEntry: reading it gives the service an endpoint.
    cluster.ok(
        &["create", "-f", "-"],
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {name: late, namespace: every-field}\n\
         spec: {hosts: [late.example.com], location: MESH_INTERNAL, resolution: STATIC,\n\
         ports: [{number: 80, name: http, protocol: HTTP}], workloadSelector: {labels: {app: late}}}\n",
    );
    let installed_at = Instant::now();
    cluster.apply_crds(
        &["apply", "--server-side", "-f", "-"],
        &crds["WorkloadEntry"].to_string(),
    );
    cluster.ok(
        &["create", "-f", "-"],
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
         metadata: {name: late, namespace: every-field}\n\
         spec: {address: 10.0.0.1, labels: {app: late}}\n",
    );
    let found = wait_until(Duration::from_secs(45), || async {
        read_by_rudder(&server)
            .await
            .contains_key("WorkloadEntry/late")
    })
    .await;
    assert!(
        found.is_some(),
        "the WorkloadEntry CRD installed later: {:?}",
        read_by_rudder(&server).await
    );
    eprintln!(
        "a CRD installed later was read after {:?}",
        installed_at.elapsed()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writing_starts_when_the_namespace_appears() {
    let cluster = DevCluster::up("istio-crds-status");
    cluster.install_istio_crds();
    cluster.ok(&["apply", "-f", "-"], &namespace(NAMESPACE));
    cluster.ok(
        &["create", "-f", "-"],
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {name: bad, namespace: every-field}\n\
         spec: {hosts: [a], http: [{match: [{uri: {regex: '(jason'}}], route: [{destination: {host: a}}]}]}\n",
    );
    let status = || {
        cluster.ok(
            &[
                "get",
                "-n",
                NAMESPACE,
                "virtualservices.networking.istio.io/bad",
                "-o",
                "jsonpath={.status.conditions[0].message}",
            ],
            "",
        )
    };
    // The Lease's namespace does not exist yet: rudder serves, and writes no status.
    let server = Server::start(kubernetes(&cluster, "rudder-leases"))
        .await
        .expect("rudder starts without the Lease's namespace");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(status(), "", "no status without the election");

    cluster.ok(&["apply", "-f", "-"], &namespace("rudder-leases"));
    let created = Instant::now();
    let written = wait_until(Duration::from_secs(30), || async {
        status().contains("invalid RE2 regex")
    })
    .await;
    assert!(
        written.is_some(),
        "no status 30 s after the namespace appeared: {:?}",
        status()
    );
    eprintln!(
        "status written {:?} after the namespace appeared",
        created.elapsed()
    );
    server.stop().await;
}

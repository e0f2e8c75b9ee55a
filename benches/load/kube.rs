//! The load harness's Kubernetes registry (`cargo bench --bench load -- --registry kube`): a real
//! kube-apiserver on etcd (`scripts/dev-cluster`, started once per invocation through the tests'
//! `DevCluster`), the load mesh as Kubernetes objects in it, and each server reading it in turn:
//! `rudder serve --kubeconfig`, istiod in Kubernetes mode (`RUDDER_ISTIOD_KUBECONFIG`), its
//! production path. Owns the cluster, the load mesh as objects, their creation and the edits
//! through the API server; the proxies, the timed edits and the report are `harness.rs`'s, the
//! mesh's addresses, versions and rules `mesh.rs`'s. It must not keep anything between runs but
//! the cluster itself.
//!
//! Per service `svc-N` (namespace `bench`): a Service (one HTTP port 8080, selector `app: svc-N`,
//! a cluster IP the API server allocates), a Pod per endpoint (labels `app` and `version`, the
//! address `mesh::endpoint_address` gives as its IP), an EndpointSlice whose endpoints name those
//! Pods, and the DestinationRule and VirtualService of `mesh::rules_yaml`, the file mode's. Pods
//! get their IP and readiness through the status subresource, as a kubelet would set them; nothing
//! runs them. Each simulated proxy has a Pod too (`client-I` with its node id's IP and the
//! proxies' labels), as a sidecar's workload would: istiod and rudder both look a proxy's Pod up
//! (istiod by name and IP, rudder by IP), and no Service selects them. The cluster also holds
//! Istio's CRDs, the namespace `istio-system` (istiod's leader election locks) and the `istio`
//! ConfigMap with the file mode's mesh config (`enableAutoMtls: false`), which both servers read.
//!
//! Objects are written with server-side apply by the kube client, [`PARALLEL`] requests at once:
//! the Pods, then their statuses, then the Services, the EndpointSlices and the Istio config, so a
//! server never sees an endpoint before its Pod. An edit sends only the objects that differ from
//! what was last applied: the rule edit one VirtualService, the endpoint edit a Pod, its status
//! and the EndpointSlice, a new service all of its objects. Each run starts by deleting the
//! previous run's objects from `bench`, so every server starts on a fresh mesh.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ::kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use ::kube::core::{ApiResource, GroupVersionKind};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::harness::{self, Registry, Report, RunSpec};
use super::mesh::{self, NAMESPACE, PORT, ServiceShape};
use super::server::{ServerKind, ServerProcess, Source};

// The tests' cluster helpers, shared as they are (`cluster` uses the other two as siblings).
#[allow(dead_code)]
#[path = "../../tests/support/cluster.rs"]
mod cluster;
#[allow(dead_code)]
#[path = "../../tests/support/istio_crds.rs"]
mod istio_crds;
#[allow(dead_code)]
#[path = "../../tests/support/netns.rs"]
mod netns;

/// Requests in flight at once while writing or deleting objects.
pub const PARALLEL: usize = 32;
/// The field manager of every write.
const MANAGER: &str = "rudder-load";
/// The mesh config both servers read from the `istio` ConfigMap: what `scripts/istiod` writes for
/// istiod's file mode. rudder does not carry out auto mTLS yet and says so once at start.
const MESH_CONFIG: &str = "enableAutoMtls: false\n";
/// The kinds a run creates in [`NAMESPACE`], as (apiVersion, kind); deleted between runs.
const KINDS: &[(&str, &str)] = &[
    ("v1", "Pod"),
    ("v1", "Service"),
    ("discovery.k8s.io/v1", "EndpointSlice"),
    ("networking.istio.io/v1", "DestinationRule"),
    ("networking.istio.io/v1", "VirtualService"),
    ("networking.istio.io/v1", "Sidecar"),
];

/// The API server both servers read, for a whole invocation.
pub struct KubeCluster {
    cluster: cluster::DevCluster,
    client: ::kube::Client,
}

impl KubeCluster {
    /// Starts the cluster (seconds) and installs what both servers need of it.
    pub fn up(runtime: &tokio::runtime::Runtime) -> KubeCluster {
        let cluster = cluster::DevCluster::up("load-kube");
        cluster.install_istio_crds();
        let client = runtime.block_on(async {
            let kubeconfig = ::kube::config::Kubeconfig::read_from(&cluster.kubeconfig)
                .expect("read the dev cluster's kubeconfig");
            let options = ::kube::config::KubeConfigOptions::default();
            let config = ::kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .expect("a client config for the dev cluster");
            ::kube::Client::try_from(config).expect("a client for the dev cluster")
        });
        let cluster = KubeCluster { cluster, client };
        let base = [
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "istio", "namespace": "istio-system"},
                "data": {"mesh": MESH_CONFIG},
            }),
        ];
        runtime.block_on(async {
            for object in base {
                cluster.write(&Write::Apply(object)).await;
            }
        });
        cluster
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.cluster.kubeconfig
    }

    fn api(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        // Every kind written here has the plural `kinds`.
        let plural = format!("{}s", kind.to_lowercase());
        let resource = ApiResource::from_gvk_with_plural(&gvk, &plural);
        match namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    async fn write(&self, write: &Write) {
        match write {
            Write::Apply(object) => {
                let text = |field: &Value| field.as_str().unwrap_or_default().to_string();
                let name = text(&object["metadata"]["name"]);
                let namespace = object["metadata"]["namespace"].as_str();
                let api = self.api(
                    &text(&object["apiVersion"]),
                    &text(&object["kind"]),
                    namespace,
                );
                let params = PatchParams::apply(MANAGER).force();
                if let Err(error) = api.patch(&name, &params, &Patch::Apply(object)).await {
                    panic!("apply {} {name}: {error}", text(&object["kind"]));
                }
            }
            Write::PodIp { name, ip } => {
                let status = json!({"status": {
                    "phase": "Running",
                    "podIP": ip,
                    "podIPs": [{"ip": ip}],
                    "conditions": [{"type": "Ready", "status": "True"}],
                }});
                let api = self.api("v1", "Pod", Some(NAMESPACE));
                let params = PatchParams::default();
                if let Err(error) = api
                    .patch_status(name, &params, &Patch::Merge(&status))
                    .await
                {
                    panic!("the status of pod {name}: {error}");
                }
            }
        }
    }

    /// Deletes every object a run created, and waits until they are gone. Pods go at once: none
    /// is bound to a node, so the API server does not wait for a kubelet.
    async fn reset(&self) {
        for (api_version, kind) in KINDS {
            let api = self.api(api_version, kind, Some(NAMESPACE));
            let delete = DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            // Some kinds (Services) have no collection delete: one by one then.
            if api
                .delete_collection(&delete, &ListParams::default())
                .await
                .is_err()
            {
                let names: Vec<String> = api
                    .list_metadata(&ListParams::default())
                    .await
                    .unwrap_or_else(|error| panic!("list {kind}s: {error}"))
                    .items
                    .into_iter()
                    .filter_map(|object| object.metadata.name)
                    .collect();
                futures::stream::iter(names)
                    .map(|name| {
                        let (api, delete) = (&api, &delete);
                        async move { api.delete(&name, delete).await.map(|_| ()) }
                    })
                    .buffer_unordered(PARALLEL)
                    .try_collect::<()>()
                    .await
                    .unwrap_or_else(|error| panic!("delete {kind}s: {error}"));
            }
            let deadline = Instant::now() + Duration::from_secs(120);
            while !api
                .list_metadata(&ListParams::default().limit(1))
                .await
                .unwrap_or_else(|error| panic!("list {kind}s: {error}"))
                .items
                .is_empty()
            {
                assert!(Instant::now() < deadline, "{kind}s left in {NAMESPACE}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One write to the API server.
#[derive(Debug, Clone, PartialEq)]
enum Write {
    /// Server-side apply of a whole object.
    Apply(Value),
    /// A Pod's IP and readiness, through its status.
    PodIp { name: String, ip: String },
}

impl Write {
    /// The order writes go in: Pods, their IPs, Services, EndpointSlices, Istio config.
    fn phase(&self) -> u8 {
        match self {
            Write::Apply(object) => match object["kind"].as_str() {
                Some("Pod") => 0,
                Some("Service") => 2,
                Some("EndpointSlice") => 3,
                _ => 4,
            },
            Write::PodIp { .. } => 1,
        }
    }

    /// What the write is to: its phase, kind and name.
    fn key(&self) -> (u8, String, String) {
        let (kind, name) = match self {
            Write::Apply(object) => (
                object["kind"].as_str().unwrap_or_default(),
                object["metadata"]["name"].as_str().unwrap_or_default(),
            ),
            Write::PodIp { name, .. } => ("Pod status", name.as_str()),
        };
        (self.phase(), kind.to_string(), name.to_string())
    }
}

/// A Pod in [`NAMESPACE`] with `labels` and `ip`: the object, then its status.
fn pod(name: &str, labels: Value, ip: &str) -> [Write; 2] {
    [
        Write::Apply(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "example.invalid/app"}]},
        })),
        Write::PodIp {
            name: name.to_string(),
            ip: ip.to_string(),
        },
    ]
}

/// Service `index` as `shape` says: the objects of the module doc.
fn service(index: usize, shape: ServiceShape) -> Vec<Write> {
    let name = format!("svc-{index}");
    let mut writes = vec![Write::Apply(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": PORT, "targetPort": PORT}],
        },
    }))];
    let mut endpoints = Vec::new();
    for endpoint in 0..shape.endpoints {
        let pod_name = format!("{name}-{endpoint}");
        let ip = mesh::endpoint_address(index, endpoint, shape);
        let labels = json!({"app": name, "version": mesh::endpoint_version(endpoint)});
        writes.extend(pod(&pod_name, labels, &ip));
        endpoints.push(json!({
            "addresses": [ip],
            "conditions": {"ready": true},
            "targetRef": {"kind": "Pod", "name": pod_name, "namespace": NAMESPACE},
        }));
    }
    writes.push(Write::Apply(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{name}-1"), "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": PORT}],
        "endpoints": endpoints,
    })));
    writes.extend(yaml_objects(&mesh::rules_yaml(index, shape)));
    writes
}

/// The objects of a multi-document YAML the mesh generator wrote.
fn yaml_objects(yaml: &str) -> Vec<Write> {
    let objects: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("the mesh's YAML parses");
    objects
        .into_iter()
        .filter(Value::is_object)
        .map(Write::Apply)
        .collect()
}

/// One run's mesh in the cluster, and what was last applied of each object.
pub struct KubeMesh<'a> {
    cluster: &'a KubeCluster,
    applied: Mutex<BTreeMap<(u8, String, String), Write>>,
}

impl KubeMesh<'_> {
    /// Sends the writes that change something, phase after phase, [`PARALLEL`] at once within one.
    async fn apply(&self, writes: Vec<Write>) -> usize {
        let mut phases: BTreeMap<u8, Vec<Write>> = BTreeMap::new();
        {
            let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
            for write in writes {
                if applied.get(&write.key()) != Some(&write) {
                    applied.insert(write.key(), write.clone());
                    phases.entry(write.phase()).or_default().push(write);
                }
            }
        }
        let mut sent = 0;
        for writes in phases.into_values() {
            sent += writes.len();
            futures::stream::iter(&writes)
                .for_each_concurrent(PARALLEL, |write| self.cluster.write(write))
                .await;
        }
        sent
    }
}

impl Registry for KubeMesh<'_> {
    fn start(&self, kind: ServerKind, debounce: Option<Duration>) -> ServerProcess {
        ServerProcess::start_on(kind, Source::Kube(self.cluster.kubeconfig()), debounce)
    }

    async fn write_service(&self, index: usize, shape: ServiceShape) {
        // How much of an edit's convergence time is the API server taking the writes.
        let start = Instant::now();
        let sent = self.apply(service(index, shape)).await;
        eprintln!(
            "kube: svc-{index} edited: {sent} writes in {} ms",
            start.elapsed().as_millis()
        );
    }
}

/// One load run on the cluster: the previous run's objects deleted, the mesh and the proxies'
/// Pods created (timed, printed to stderr), then the harness's run with edits through the API.
pub async fn run(spec: RunSpec, cluster: &KubeCluster) -> Report {
    let start = Instant::now();
    cluster.reset().await;
    let reset = start.elapsed();
    let mesh = KubeMesh {
        cluster,
        applied: Mutex::new(BTreeMap::new()),
    };
    let shape = ServiceShape::new(spec.endpoints);
    let mut writes: Vec<Write> = (0..spec.services)
        .flat_map(|index| service(index, shape))
        .collect();
    for i in 0..spec.proxies {
        let name = harness::proxy_name(i);
        writes.extend(pod(
            &name,
            json!({"app": harness::labels(spec, i)}),
            &harness::proxy_ip(i),
        ));
    }
    if spec.sidecar {
        writes.extend(yaml_objects(&mesh::sidecar_yaml()));
    }
    let start = Instant::now();
    let sent = mesh.apply(writes).await;
    eprintln!(
        "kube: {} services and {} proxy Pods created in {:.1} s ({sent} writes, {PARALLEL} at \
         once; the previous run's objects deleted in {:.1} s)",
        spec.services,
        spec.proxies,
        start.elapsed().as_secs_f64(),
        reset.as_secs_f64()
    );
    harness::run_on(spec, &mesh).await
}

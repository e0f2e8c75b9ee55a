//! The Kubernetes variant of a scenario (tests/differential_kube.rs): its `_common` registry as
//! Services, EndpointSlices and Pods, its Istio objects as CRs and its mesh config as the `istio`
//! ConfigMap, all in one real kube-apiserver (`scripts/dev-cluster`) that rudder (`--kubeconfig`)
//! and istiod (`scripts/istiod` in Kubernetes mode) watch in turn. Owns the conversion, the
//! cluster and the test host the endpoints live on; it does not compare anything.
//!
//! Why the registry is converted here rather than written as `_common/*.kube.yaml`: one source of
//! truth per scenario (a ServiceEntry edited in `_common` changes both variants alike), and the
//! addresses must move anyway. Kubernetes refuses loopback EndpointSlice addresses, so every
//! endpoint `127.0.10.X` becomes `10.231.SUBNET.(100+X)` inside a network namespace
//! (`netns::TestHost`) where its upstream listens, and every service address `127.1.0.X` becomes
//! the cluster IP `10.96.SUBNET.X`. A ServiceEntry is converted when it is what a Kubernetes
//! Service would be (MESH_INTERNAL, STATIC, its one host `NAME.NAMESPACE.svc.cluster.local`,
//! endpoints on those loopback addresses without port overrides); any other stays a CR.
//!
//! Each proxy gets a Pod of its own, named as its node id says, with its labels and the pod IP
//! `127.0.0.(1+i)` (Pod IPs may be loopback), so that both servers find it by name (istiod) and by
//! IP (rudder), Services select it as they would, and its Envoy can still bind its listeners on
//! this host. That Pod is not an endpoint: the service's endpoints are where its upstreams listen.
//! A scenario only for this variant may write its own Pods (with `status.podIP`); a proxy whose
//! Pod is one of them takes that Pod's IP (config only: its Envoy binds none of its addresses).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde_json::{Map, Value, json};

use super::run::MESH_BASE;
use super::scenario::ScenarioDir;
use crate::support::cluster::DevCluster;
use crate::support::netns::TestHost;

/// `10.231.SUBNET.0/24` for the endpoints, `10.96.SUBNET.0/24` for the cluster IPs; unique among
/// the tests that use test hosts (tests/kubernetes.rs has 120, kube_outage 121, interception
/// 200-211, admin_limits 247).
pub const SUBNET: u8 = 140;
/// Every object the variant creates carries this label, so that a scenario's objects can be
/// removed without touching the cluster's own (the `kubernetes` Service).
const LABEL: &str = "rudder-differential";
/// Endpoint and service addresses the conversion moves (see the module doc).
const ENDPOINT_PREFIX: &str = "127.0.10.";
const VIP_PREFIX: &str = "127.1.0.";

/// The cluster and the test host, for a whole run.
pub struct KubeEnv {
    pub cluster: DevCluster,
    pub host: TestHost,
    /// The host's addresses added so far (`ip addr add` refuses one twice).
    added: Mutex<BTreeSet<u8>>,
}

impl KubeEnv {
    /// A cluster with Istio's CRDs and the istio-system namespace (istiod's leader election
    /// Leases and the `istio` ConfigMap live there), and the test host.
    pub fn up() -> KubeEnv {
        let cluster = DevCluster::up("differential-kube");
        cluster.install_istio_crds();
        cluster.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: istio-system}\n");
        KubeEnv {
            cluster,
            host: TestHost::create(SUBNET),
            added: Mutex::new(BTreeSet::new()),
        }
    }

    /// Makes the test host answer on `10.231.SUBNET.<last>`.
    pub fn address(&self, last: u8) {
        let mut added = self.added.lock().unwrap_or_else(|e| e.into_inner());
        if added.insert(last) {
            self.host.add_address(last);
        }
    }

    /// Creates a scenario's objects; Pods get their IPs through the status subresource, as a
    /// kubelet would set them.
    pub fn apply(&self, objects: &KubeObjects) -> Result<(), String> {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects.items});
        let output = self
            .cluster
            .kubectl(&["apply", "-f", "-"], &list.to_string());
        if !output.status.success() {
            return Err(format!(
                "kubectl apply of the scenario's objects: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        for (namespace, name, ip) in &objects.pod_ips {
            let status = json!({"status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"}],
            }});
            let output = self.cluster.kubectl(
                &[
                    "patch",
                    "pod",
                    name,
                    "-n",
                    namespace,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    &status.to_string(),
                ],
                "",
            );
            if !output.status.success() {
                return Err(format!(
                    "the status of pod {namespace}/{name}: {}",
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
        }
        Ok(())
    }

    /// Removes a scenario's objects (namespaces stay: without a controller manager nothing would
    /// finish deleting them).
    pub fn delete(&self, objects: &KubeObjects) {
        let kinds: BTreeSet<String> = objects
            .items
            .iter()
            .filter(|item| item["kind"] != "Namespace")
            .map(resource_name)
            .collect();
        if kinds.is_empty() {
            return;
        }
        let kinds: Vec<String> = kinds.into_iter().collect();
        let _ = self.cluster.kubectl(
            &[
                "delete",
                &kinds.join(","),
                "--all-namespaces",
                "-l",
                LABEL,
                "--grace-period=0",
                "--force",
                "--wait=true",
            ],
            "",
        );
    }
}

/// `kind.group` as kubectl names a resource type.
fn resource_name(item: &Value) -> String {
    let kind = item["kind"].as_str().unwrap_or_default().to_lowercase();
    match item["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .rsplit_once('/')
    {
        Some((group, _)) => format!("{kind}.{group}"),
        None => kind,
    }
}

/// A scenario as Kubernetes objects.
pub struct KubeObjects {
    pub items: Vec<Value>,
    /// `(namespace, pod, IP)`: the status each Pod gets.
    pub pod_ips: Vec<(String, String, String)>,
    /// The IP in each proxy's node id, by proxy name.
    pub proxy_ips: BTreeMap<String, String>,
}

/// The test-host address an endpoint address moves to, or `None` if it stays.
pub fn endpoint_address(ip: &str) -> Option<String> {
    let last: u8 = ip.strip_prefix(ENDPOINT_PREFIX)?.parse().ok()?;
    let moved = last.checked_add(100)?;
    (moved < 255).then(|| format!("10.231.{SUBNET}.{moved}"))
}

/// `IP:PORT` with its IP moved as an endpoint's, or unchanged.
pub fn moved_socket_address(address: &str) -> String {
    match address.rsplit_once(':') {
        Some((ip, port)) => match endpoint_address(ip) {
            Some(moved) => format!("{moved}:{port}"),
            None => address.to_string(),
        },
        None => address.to_string(),
    }
}

fn cluster_ip(vip: &str) -> Option<String> {
    let last: u8 = vip.strip_prefix(VIP_PREFIX)?.parse().ok()?;
    Some(format!("10.96.{SUBNET}.{last}"))
}

/// Reads every config file of the scenario and turns it into Kubernetes objects.
pub fn objects(scenario: &ScenarioDir, plaintext: &str) -> Result<KubeObjects, String> {
    let mut documents = Vec::new();
    for file in &scenario.config_files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let parsed: Vec<Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        documents.extend(parsed.into_iter().filter(|doc| doc.is_object()));
    }
    documents
        .push(serde_saphyr::from_str(plaintext).map_err(|e| format!("the plaintext policy: {e}"))?);
    let mut out = KubeObjects {
        items: Vec::new(),
        pod_ips: Vec::new(),
        proxy_ips: BTreeMap::new(),
    };
    let mut namespaces = BTreeSet::from(["istio-system".to_string()]);
    let mut pods = BTreeSet::new();
    // Pods written as such, with their IPs: a proxy may be one of them.
    let mut written = BTreeMap::new();
    for document in documents {
        namespaces.insert(namespace_of(&document).to_string());
        match registry_service(&document)? {
            Some(service) => service.push_into(&mut out, &mut pods)?,
            None => {
                // A Pod written as such (a scenario only for this variant) gets its IP as ours do.
                if document["kind"] == "Pod"
                    && let Some(ip) = document["status"]["podIP"].as_str()
                {
                    let name = document["metadata"]["name"].as_str().unwrap_or_default();
                    let namespace = namespace_of(&document);
                    written.insert((namespace.to_string(), name.to_string()), ip.to_string());
                    out.pod_ips
                        .push((namespace.to_string(), name.to_string(), ip.to_string()));
                }
                out.items.push(labelled(document));
            }
        }
    }
    for (index, proxy) in scenario.scenario.proxies.iter().enumerate() {
        let key = (proxy.namespace.clone(), proxy.pod.clone());
        if let Some(ip) = written.get(&key) {
            out.proxy_ips.insert(proxy.name.clone(), ip.clone());
            continue;
        }
        let ip = format!("127.0.0.{}", index + 1);
        namespaces.insert(proxy.namespace.clone());
        if !pods.insert((proxy.namespace.clone(), proxy.pod.clone())) {
            return Err(format!(
                "proxy {}: pod {}/{} is also an endpoint's",
                proxy.name, proxy.namespace, proxy.pod
            ));
        }
        out.items
            .push(pod(&proxy.namespace, &proxy.pod, &json!(proxy.labels)));
        out.pod_ips
            .push((proxy.namespace.clone(), proxy.pod.clone(), ip.clone()));
        out.proxy_ips.insert(proxy.name.clone(), ip);
    }
    out.items.push(labelled(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": format!("{MESH_BASE}{}", scenario.scenario.mesh)},
    })));
    // Namespaces first, so that kubectl can create everything in them.
    let mut items: Vec<Value> = namespaces
        .into_iter()
        .map(|name| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        .collect();
    items.append(&mut out.items);
    out.items = items;
    Ok(out)
}

fn namespace_of(document: &Value) -> &str {
    document["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
}

fn labelled(mut object: Value) -> Value {
    if let Some(metadata) = object["metadata"].as_object_mut() {
        let labels = metadata
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(LABEL.to_string(), Value::from("true"));
        }
    }
    object
}

fn pod(namespace: &str, name: &str, labels: &Value) -> Value {
    labelled(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "example.invalid/app"}]},
    }))
}

/// A ServiceEntry that is what a Kubernetes Service would be, read for conversion.
struct RegistryService<'a> {
    name: &'a str,
    namespace: &'a str,
    cluster_ip: Option<String>,
    ports: &'a [Value],
    /// `(moved address, labels)` of each endpoint.
    endpoints: Vec<(String, Map<String, Value>)>,
}

fn registry_service(document: &Value) -> Result<Option<RegistryService<'_>>, String> {
    let spec = &document["spec"];
    let name = document["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = namespace_of(document);
    let kubernetes_host = format!("{name}.{namespace}.svc.cluster.local");
    let hosts = spec["hosts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let addresses = spec["addresses"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let fits = document["kind"] == "ServiceEntry"
        && spec["location"] == "MESH_INTERNAL"
        && spec["resolution"] == "STATIC"
        && spec.get("workloadSelector").is_none()
        && hosts.len() == 1
        && hosts[0] == kubernetes_host.as_str()
        && addresses.len() <= 1;
    if !fits {
        return Ok(None);
    }
    let cluster_ip = match addresses.first().and_then(Value::as_str) {
        Some(vip) => match cluster_ip(vip) {
            Some(ip) => Some(ip),
            None => return Ok(None),
        },
        None => None,
    };
    let mut endpoints = Vec::new();
    for endpoint in spec["endpoints"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let moved = endpoint["address"].as_str().and_then(endpoint_address);
        match moved {
            Some(moved) if endpoint.get("ports").is_none() => {
                let labels = endpoint["labels"].as_object().cloned().unwrap_or_default();
                endpoints.push((moved, labels));
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(RegistryService {
        name,
        namespace,
        cluster_ip,
        ports: spec["ports"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
        endpoints,
    }))
}

impl RegistryService<'_> {
    /// The Service, a Pod per endpoint and the EndpointSlice.
    fn push_into(
        &self,
        out: &mut KubeObjects,
        pods: &mut BTreeSet<(String, String)>,
    ) -> Result<(), String> {
        let (name, namespace) = (self.name, self.namespace);
        // Services select their Pods by the labels every endpoint shares (bookinfo's `app`).
        let mut selector: Map<String, Value> = self
            .endpoints
            .first()
            .map(|(_, labels)| labels.clone())
            .unwrap_or_default();
        selector.retain(|key, value| {
            self.endpoints
                .iter()
                .all(|(_, labels)| labels.get(key) == Some(value))
        });
        let mut service_ports = Vec::new();
        let mut slice_ports = Vec::new();
        for port in self.ports {
            let number = port["number"]
                .as_u64()
                .ok_or("a ServiceEntry port without a number")?;
            let target = port["targetPort"].as_u64().unwrap_or(number);
            let port_name = port["name"].as_str().unwrap_or_default();
            let protocol = port["protocol"].as_str().unwrap_or("TCP").to_lowercase();
            let mut service_port = json!({"name": port_name, "port": number, "targetPort": target});
            // Istio reads the protocol from the port name's prefix, else from appProtocol.
            if port_name.split('-').next() != Some(protocol.as_str()) {
                service_port["appProtocol"] = Value::from(protocol.clone());
            }
            if protocol == "udp" {
                service_port["protocol"] = Value::from("UDP");
            }
            service_ports.push(service_port);
            slice_ports.push(json!({"name": port_name, "port": target}));
        }
        let mut spec = json!({"ports": service_ports});
        if !selector.is_empty() {
            spec["selector"] = Value::Object(selector);
        }
        if let Some(ip) = &self.cluster_ip {
            spec["clusterIP"] = Value::from(ip.clone());
        }
        out.items.push(labelled(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        })));
        let mut slice_endpoints = Vec::new();
        for (index, (address, labels)) in self.endpoints.iter().enumerate() {
            let pod_name = format!("{name}-{index}");
            if !pods.insert((namespace.to_string(), pod_name.clone())) {
                return Err(format!("two pods named {namespace}/{pod_name}"));
            }
            out.items
                .push(pod(namespace, &pod_name, &Value::Object(labels.clone())));
            out.pod_ips
                .push((namespace.to_string(), pod_name.clone(), address.clone()));
            slice_endpoints.push(json!({
                "addresses": [address],
                "conditions": {"ready": true},
                "targetRef": {"kind": "Pod", "name": pod_name, "namespace": namespace},
            }));
        }
        out.items.push(labelled(json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": format!("{name}-1"),
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": slice_ports,
            "endpoints": slice_endpoints,
        })));
        Ok(())
    }
}

/// Points a scenario at the addresses its Kubernetes objects name: upstreams and probe addresses
/// on the test host, each proxy's IP that of its Pod. Makes the test host answer on them.
pub fn localize(
    scenario: &mut ScenarioDir,
    objects: &KubeObjects,
    env: &KubeEnv,
) -> Result<(), String> {
    let host_prefix = format!("10.231.{SUBNET}.");
    for upstream in &mut scenario.scenario.upstreams {
        upstream.address = moved_socket_address(&upstream.address);
        // Moved, or written on the test host (a scenario only for this variant).
        let Some(rest) = upstream.address.strip_prefix(&host_prefix) else {
            continue;
        };
        let last = rest
            .split(':')
            .next()
            .and_then(|last| last.parse().ok())
            .ok_or_else(|| format!("upstream {}: {}", upstream.name, upstream.address))?;
        env.address(last);
    }
    for probe in &mut scenario.scenario.probes {
        if let Some(address) = &probe.address {
            probe.address = Some(moved_socket_address(address));
        }
    }
    for proxy in &mut scenario.scenario.proxies {
        if let Some(ip) = objects.proxy_ips.get(&proxy.name) {
            proxy.ip = ip.clone();
        }
    }
    Ok(())
}

//! The load harness's mesh, as files both servers read: per service a ServiceEntry (STATIC, one HTTP
//! port, endpoints chosen by `workloadSelector`), its WorkloadEntries (one per version), a
//! DestinationRule with a subset per version and a VirtualService with a header route and a 90/10
//! split. istiod without Kubernetes reads no Services, so the mesh is ServiceEntry + WorkloadEntry
//! for both; every object names its namespace, which istiod's file store does not default.
//! The Kubernetes registry (`kube.rs`) builds its Services, Pods and EndpointSlices from the same
//! addresses and versions ([`endpoint_address`], [`endpoint_version`]) and takes its rules from
//! [`rules_yaml`], so both registries hold the same mesh.

#![allow(dead_code)] // Shared with benches/soak, which also edits and removes services.

use std::path::Path;

pub const NAMESPACE: &str = "bench";
pub const PORT: u16 = 8080;
/// How many services (svc-0 onwards) the optional Sidecar keeps in the proxies' egress.
pub const SIDECAR_SCOPE: usize = 10;

/// How one service's file is written; the edits the harness times change one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceShape {
    pub endpoints: usize,
    /// Percent of the default route that goes to v1 (the rest to the last version).
    pub v1_weight: u32,
    /// Shifts the endpoints' addresses: the same WorkloadEntries with other addresses.
    pub endpoint_offset: usize,
    /// 0: the rules as the load bench times them; above 0, the VirtualService's header match
    /// and the default route's timeout follow this number.
    pub route_revision: u32,
    /// 0: no traffic policy; above 0, the DestinationRule's connection limit.
    pub policy_revision: u32,
}

impl ServiceShape {
    pub fn new(endpoints: usize) -> ServiceShape {
        ServiceShape {
            endpoints,
            v1_weight: 90,
            endpoint_offset: 0,
            route_revision: 0,
            policy_revision: 0,
        }
    }
}

/// Writes `svc-INDEX.yaml` into `dir`, replacing it atomically (a rename), so a watcher never
/// reads half a file.
pub fn write_service(dir: &Path, index: usize, shape: ServiceShape) -> std::io::Result<()> {
    let name = format!("svc-{index}");
    let partial = dir.join(format!(".{name}.yaml.tmp"));
    std::fs::write(&partial, service_yaml(index, shape))?;
    std::fs::rename(partial, service_path(dir, index))
}

/// Deletes what [`write_service`] wrote for `index`: the service and its rules.
pub fn remove_service(dir: &Path, index: usize) -> std::io::Result<()> {
    std::fs::remove_file(service_path(dir, index))
}

fn service_path(dir: &Path, index: usize) -> std::path::PathBuf {
    dir.join(format!("svc-{index}.yaml"))
}

/// A namespace-wide Sidecar: the proxies see only the first [`SIDECAR_SCOPE`] services, as a
/// workload that calls a handful of others would declare.
pub fn write_sidecar(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join("sidecar.yaml"), sidecar_yaml())
}

/// The Sidecar [`write_sidecar`] writes.
pub fn sidecar_yaml() -> String {
    let hosts: Vec<String> = (0..SIDECAR_SCOPE)
        .map(|index| format!("./svc-{index}.{NAMESPACE}.svc.cluster.local"))
        .collect();
    format!(
        "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: {NAMESPACE}}}
spec:
  egress:
  - hosts: [{hosts}]
",
        hosts = hosts.join(", ")
    )
}

/// The address of endpoint `endpoint` of service `index`: 10.B.C.D with B.C from the service and
/// D from the endpoint, unique up to 65536 services of 250 endpoints.
pub fn endpoint_address(index: usize, endpoint: usize, shape: ServiceShape) -> String {
    format!(
        "10.{}.{}.{}",
        index / 256 % 256,
        index % 256,
        (endpoint + shape.endpoint_offset) % 250 + 1
    )
}

/// The version label (`v1`, `v2`, `v3`) of endpoint `endpoint`: endpoints take them in turn.
pub fn endpoint_version(endpoint: usize) -> String {
    format!("v{}", endpoint % 3 + 1)
}

fn service_yaml(index: usize, shape: ServiceShape) -> String {
    let name = format!("svc-{index}");
    let host = format!("{name}.{NAMESPACE}.svc.cluster.local");
    let mut yaml = format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  hosts: [{host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: {PORT}, name: http, protocol: HTTP, targetPort: {PORT}}}]
  workloadSelector: {{labels: {{app: {name}}}}}
"
    );
    for endpoint in 0..shape.endpoints {
        yaml.push_str(&format!(
            "---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}-{endpoint}, namespace: {NAMESPACE}}}
spec:
  address: {address}
  labels: {{app: {name}, version: {version}}}
",
            address = endpoint_address(index, endpoint, shape),
            version = endpoint_version(endpoint)
        ));
    }
    yaml.push_str("---\n");
    yaml.push_str(&rules_yaml(index, shape));
    yaml
}

/// Service `index`'s DestinationRule (a subset per version) and VirtualService (a header route and
/// the `v1_weight` split), the same whichever registry the service is in.
pub fn rules_yaml(index: usize, shape: ServiceShape) -> String {
    let name = format!("svc-{index}");
    let host = format!("{name}.{NAMESPACE}.svc.cluster.local");
    // Endpoints take versions v1, v2, v3 in turn; with fewer than three, some subsets are empty.
    let last = 3;
    let subsets: Vec<String> = (1..=last)
        .map(|v| format!("{{name: v{v}, labels: {{version: v{v}}}}}"))
        .collect();
    let policy = match shape.policy_revision {
        0 => String::new(),
        limit => {
            format!("  trafficPolicy: {{connectionPool: {{tcp: {{maxConnections: {limit}}}}}}}\n")
        }
    };
    let (user, timeout) = match shape.route_revision {
        0 => ("jason".to_string(), String::new()),
        revision => (
            format!("jason-{revision}"),
            format!("    timeout: {}s\n", revision % 10 + 1),
        ),
    };
    format!(
        "apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  host: {host}
  subsets: [{subsets}]
{policy}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {NAMESPACE}}}
spec:
  hosts: [{host}]
  http:
  - match: [{{headers: {{end-user: {{exact: {user}}}}}}}]
    route: [{{destination: {{host: {host}, subset: v{last}}}}}]
  - route:
    - {{destination: {{host: {host}, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: {host}, subset: v{last}}}, weight: {rest}}}
{timeout}",
        subsets = subsets.join(", "),
        v1 = shape.v1_weight,
        rest = 100 - shape.v1_weight,
    )
}

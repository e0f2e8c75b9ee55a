//! The config directory an attack runs on: the xDS benches' generated mesh
//! (`benches/support/mesh.rs`, namespace `bench`: per service a Kubernetes Service, three Pods,
//! an EndpointSlice, a DestinationRule and a VirtualService) for size, and namespace `hostile` for the real
//! Envoy: `reviews` with v1 and v2 on real upstreams, its DestinationRule and VirtualService
//! (the rule the harness edits and times), and a Sidecar that binds the Envoy's listener on the
//! scene's own address. `istio-system` holds two gateway Secrets (one a Gateway names, one no
//! Gateway names) that no unproven client may get. It writes files only.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;

use super::mesh::MeshSpec;

/// Generated services per file.
const SERVICES_PER_FILE: usize = 50;
/// Objects per generated service (`benches/support/mesh.rs`).
const OBJECTS_PER_SERVICE: usize = 7;

pub const NAMESPACE: &str = "hostile";
pub const TRAFFIC_PORT: u16 = 19248;
pub const HOST: &str = "reviews.hostile.svc.cluster.local";
/// The Secret a Gateway names, and one no Gateway names.
pub const SECRETS: [&str; 2] = ["gateway-cred", "spare-cred"];
pub const DESTINATION_RULE_FILE: &str = "reviews-dr.yaml";
const VIRTUAL_SERVICE_FILE: &str = "reviews-vs.yaml";

pub const CERT_PEM: &str = include_str!("../../testdata/credentials/server.pem");
pub const KEY_PEM: &str = include_str!("../../testdata/credentials/server-key.pem");
const CA_PEM: &str = include_str!("../../testdata/credentials/ca.pem");

/// The addresses of the upstreams and of the Envoy's listener.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub envoy: Ipv4Addr,
    pub v1: Ipv4Addr,
    pub v2: Ipv4Addr,
}

/// Writes the whole directory: `services` generated services and the hostile namespace, its
/// rule routing everyone but jason to v1.
pub fn write_all(dir: &Path, services: usize, addresses: Addresses) -> std::io::Result<()> {
    let objects = MeshSpec::new(services).objects();
    for (index, chunk) in objects
        .chunks(SERVICES_PER_FILE * OBJECTS_PER_SERVICE)
        .enumerate()
    {
        // JSON documents are YAML documents.
        let documents: Vec<String> = chunk.iter().map(ToString::to_string).collect();
        std::fs::write(
            dir.join(format!("mesh-{index}.yaml")),
            documents.join("\n---\n"),
        )?;
    }
    std::fs::write(dir.join("reviews.yaml"), reviews(addresses))?;
    std::fs::write(dir.join("sidecar.yaml"), sidecar(addresses.envoy))?;
    std::fs::write(dir.join("credentials.yaml"), credentials())?;
    std::fs::write(
        dir.join(DESTINATION_RULE_FILE),
        destination_rule(0).concat(),
    )?;
    write_virtual_service(dir, "v1")
}

/// Replaces the VirtualService atomically (write aside, rename), as config tools do: everyone
/// but jason goes to `default_subset`.
pub fn write_virtual_service(dir: &Path, default_subset: &str) -> std::io::Result<()> {
    let aside = dir.join(format!(".{VIRTUAL_SERVICE_FILE}.tmp"));
    let mut file = std::fs::File::create(&aside)?;
    file.write_all(virtual_service(default_subset).as_bytes())?;
    file.sync_data()?;
    std::fs::rename(aside, dir.join(VIRTUAL_SERVICE_FILE))
}

fn reviews(addresses: Addresses) -> String {
    let pod = |version: &str, ip: Ipv4Addr| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: reviews-{version}\n  namespace: {NAMESPACE}\n  \
             labels: {{app: reviews, version: {version}}}\nstatus: {{podIP: {ip}}}\n"
        )
    };
    let endpoint = |version: &str, ip: Ipv4Addr| {
        format!(
            "- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n  \
             targetRef: {{kind: Pod, name: reviews-{version}, namespace: {NAMESPACE}}}\n"
        )
    };
    [
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: reviews, namespace: {NAMESPACE}}}\n\
             spec:\n  clusterIP: 10.96.248.1\n  ports: [{{name: http, port: {TRAFFIC_PORT}}}]\n"
        ),
        pod("v1", addresses.v1),
        pod("v2", addresses.v2),
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: reviews-slice\n  \
             namespace: {NAMESPACE}\n  labels: {{kubernetes.io/service-name: reviews}}\n\
             addressType: IPv4\nports: [{{name: http, port: {TRAFFIC_PORT}}}]\nendpoints:\n{}{}",
            endpoint("v1", addresses.v1),
            endpoint("v2", addresses.v2)
        ),
    ]
    .join("---\n")
}

/// The DestinationRule in two parts: up to and including subset v1, then subset v2. The first
/// part alone parses and is valid, so a reader that takes a half-written file applies a rule
/// without v2. `revision` changes the connection limit, so every rewrite is a change.
pub fn destination_rule(revision: u32) -> [String; 2] {
    [
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
             metadata: {{name: reviews, namespace: {NAMESPACE}}}\nspec:\n  host: {HOST}\n  \
             trafficPolicy:\n    connectionPool:\n      tcp: {{maxConnections: {}}}\n  subsets:\n  \
             - name: v1\n    labels: {{version: v1}}\n",
            1000 + revision
        ),
        "  - name: v2\n    labels: {version: v2}\n".to_string(),
    ]
}

fn virtual_service(default_subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: reviews, namespace: {NAMESPACE}}}\nspec:\n  hosts: [reviews]\n  http:\n  \
         - match: [{{headers: {{end-user: {{exact: jason}}}}}}]\n    \
         route: [{{destination: {{host: reviews, subset: v2}}}}]\n  \
         - route: [{{destination: {{host: reviews, subset: {default_subset}}}}}]\n"
    )
}

/// The Envoy sees only its own namespace, on a listener bound to its own address.
fn sidecar(envoy: Ipv4Addr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\n\
         metadata: {{name: default, namespace: {NAMESPACE}}}\nspec:\n  egress:\n  \
         - port: {{number: {TRAFFIC_PORT}, protocol: HTTP, name: http}}\n    bind: {envoy}\n    \
         hosts: [\"./*\"]\n"
    )
}

fn credentials() -> String {
    let block = |pem: &str| -> String { pem.lines().map(|line| format!("    {line}\n")).collect() };
    let mut docs: Vec<String> = SECRETS
        .iter()
        .map(|name| {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: istio-system}}\n\
                 type: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}  ca.crt: |\n{}",
                block(CERT_PEM),
                block(KEY_PEM),
                block(CA_PEM)
            )
        })
        .collect();
    docs.push(format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\n\
         metadata: {{name: ingress, namespace: istio-system}}\nspec:\n  \
         selector: {{istio: ingressgateway}}\n  servers:\n  \
         - port: {{number: 443, name: https, protocol: HTTPS}}\n    hosts: [\"*/gateway.example.com\"]\n    \
         tls: {{mode: SIMPLE, credentialName: {}}}\n",
        SECRETS[0]
    ));
    docs.join("---\n")
}

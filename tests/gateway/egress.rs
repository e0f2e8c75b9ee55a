//! Istio's "Egress Gateways" task end to end: a sidecar and an egress gateway, both stock Envoys.

use rudder::bootstrap::AdsApiType;

use super::support::mesh::{NAMESPACE, wait_until};
use super::support::router::{
    ControlPlane, Curl, ISTIO_SYSTEM, envoy_admin, envoy_stat, free_ports,
};
use super::support::upstream::Upstream;
use super::{PROPAGATION_LIMIT, address, gateway, server};

/// Istio's "Egress Gateways" task: a sidecar's request to an external host (a ServiceEntry; here
/// an upstream on loopback) goes to the egress gateway (VirtualService rule for `mesh`), and the
/// egress gateway sends it on to the external host (rule for the gateway).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_gateway_carries_a_sidecars_request_to_an_external_host() {
    let net = 230;
    let gateway_ip = format!("127.0.{net}.1");
    let external_ip = format!("127.0.{net}.2");
    // The sidecar binds its outbound listeners on 127.0.0.1 for both ports.
    let [external_port, egress_port] = free_ports("127.0.0.1", 2)[..] else {
        unreachable!("two ports")
    };
    let external = Upstream::start("external", &format!("{external_ip}:{external_port}")).await;
    let service_entry = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n\
         metadata: {{name: external, namespace: {NAMESPACE}}}\n\
         spec:\n  hosts: [external.example.com]\n  \
         ports: [{{number: {external_port}, name: http, protocol: HTTP}}]\n  \
         location: MESH_EXTERNAL\n  resolution: STATIC\n  endpoints: [{{address: {external_ip}}}]\n"
    );
    let egress_service = format!(
        "apiVersion: v1\nkind: Service\n\
         metadata: {{name: istio-egressgateway, namespace: {ISTIO_SYSTEM}}}\n\
         spec:\n  clusterIP: 10.96.{net}.1\n  selector: {{istio: egressgateway}}\n  \
         ports: [{{name: http, port: {egress_port}}}]\n---\n\
         apiVersion: v1\nkind: Pod\n\
         metadata:\n  name: istio-egressgateway-xyz\n  namespace: {ISTIO_SYSTEM}\n  \
         labels: {{istio: egressgateway}}\nstatus: {{podIP: {gateway_ip}}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata:\n  name: istio-egressgateway-slice\n  namespace: {ISTIO_SYSTEM}\n  \
         labels: {{kubernetes.io/service-name: istio-egressgateway}}\naddressType: IPv4\n\
         ports: [{{name: http, port: {egress_port}}}]\n\
         endpoints:\n- addresses: [\"{gateway_ip}\"]\n  conditions: {{ready: true}}\n  \
         targetRef: {{kind: Pod, name: istio-egressgateway-xyz, namespace: {ISTIO_SYSTEM}}}\n"
    );
    let servers = server(
        "HTTP",
        egress_port,
        &gateway_ip,
        "[external.example.com]",
        "",
    );
    let egress_host = format!("istio-egressgateway.{ISTIO_SYSTEM}.svc.cluster.local");
    let rules = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {{name: egressgateway-for-external, namespace: {NAMESPACE}}}\n\
         spec:\n  host: {egress_host}\n  subsets: [{{name: external}}]\n---\n\
         apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: direct-external-through-egress-gateway, namespace: {NAMESPACE}}}\n\
         spec:\n  hosts: [external.example.com]\n  \
         gateways: [{ISTIO_SYSTEM}/istio-egressgateway, mesh]\n  http:\n  \
         - match: [{{gateways: [mesh], port: {external_port}}}]\n    \
         route: [{{destination: {{host: {egress_host}, subset: external, port: {{number: {egress_port}}}}}, weight: 100}}]\n  \
         - match: [{{gateways: [{ISTIO_SYSTEM}/istio-egressgateway], port: {egress_port}}}]\n    \
         route: [{{destination: {{host: external.example.com, port: {{number: {external_port}}}}}, weight: 100}}]\n"
    );
    let control_plane = ControlPlane::start(&[
        ("external.yaml", service_entry),
        ("egressgateway.yaml", egress_service),
        (
            "gateway.yaml",
            gateway("istio-egressgateway", "egressgateway", &servers),
        ),
        ("rules.yaml", rules),
    ])
    .await;
    let egress = control_plane.router(
        &gateway_ip,
        "istio-egressgateway-xyz",
        &[("istio", "egressgateway")],
        AdsApiType::DeltaGrpc,
    );
    let sidecar = control_plane.sidecar(
        &format!("127.0.{net}.3"),
        "sleep-1",
        NAMESPACE,
        "sleep",
        AdsApiType::DeltaGrpc,
    );
    let request = Curl::new(
        "http",
        "external.example.com",
        address("127.0.0.1", external_port),
        "/",
    )
    .host_header("external.example.com");
    let reached = wait_until(PROPAGATION_LIMIT, || async {
        request.send().await.upstream().as_deref() == Some("external")
    })
    .await;
    if reached.is_none() {
        panic!(
            "the external host was never reached from the sidecar (last reply: {:?})\n\
             egress gateway:\n{}\nsidecar:\n{}",
            request.send().await,
            control_plane.diagnose(&egress).await,
            control_plane.diagnose(&sidecar).await
        );
    }
    let served = external.requests();
    let direct = format!("cluster.outbound|{external_port}||external.example.com;");
    let to_gateway = format!("cluster.outbound|{egress_port}|external|{egress_host};");
    assert_eq!(
        envoy_stat(&sidecar, &format!("{to_gateway}.upstream_rq_200")).await,
        served,
        "every request the external host served must have left the sidecar for the egress \
         gateway:\n{}",
        envoy_admin(&sidecar, "/stats?filter=upstream_rq_200").await
    );
    assert_eq!(
        envoy_stat(&sidecar, &format!("{direct}.upstream_rq_total")).await,
        0,
        "the sidecar went to the external host directly"
    );
    assert_eq!(
        envoy_stat(&egress, &format!("{direct}.upstream_rq_200")).await,
        served,
        "every request the external host served must have come from the egress gateway:\n{}",
        envoy_admin(&egress, "/stats?filter=upstream_rq_200").await
    );
}

//! Proxies proving who they are with Kubernetes service account tokens, and RBAC deciding who is
//! sent keys, against a real kube-apiserver (`scripts/dev-cluster`), as istiod does on 15012:
//! rudder serves TLS (no client certificates), a gateway's stream carries
//! `authorization: Bearer TOKEN` made by `kubectl create token --audience istio-ca`, rudder
//! checks it with a TokenReview and asks a SubjectAccessReview whether that service account may
//! list Secrets in its namespace. The reader gets the certificate and key; another service
//! account of the namespace the CA only; a token for another audience, a forged token and a token
//! of another namespace are refused; a stream without a token gets nothing.

mod support;

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use rudder::serve::{ServeOptions, Server};
use rudder::translate::ResourceType;
use rudder::xds::{TlsFiles, XdsTls};
use support::ads::{XdsTlsClient, sotw_stream_on, tls_client};
use support::certs::TestCa;
use support::cluster::DevCluster;
use support::mesh::local_serve_options;

const NAMESPACE: &str = "gw";
const GATEWAY: &str = "router~10.0.0.9~ingress-a.gw~gw.svc.cluster.local";
const CERTIFICATE: &str = "kubernetes://cred";
const CA: &str = "kubernetes://cred-cacert";
const WAIT: Duration = Duration::from_secs(10);

/// The namespace, two service accounts (`reader` may list Secrets, `stranger` may not) and the
/// gateway's credential with its CA.
fn objects(ca: &TestCa) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: gw}}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: reader, namespace: gw}}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: stranger, namespace: gw}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n\
         metadata: {{name: secret-reader, namespace: gw}}\n\
         rules: [{{apiGroups: [\"\"], resources: [secrets], verbs: [get, list, watch]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
         metadata: {{name: secret-reader, namespace: gw}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: secret-reader}}\n\
         subjects: [{{kind: ServiceAccount, name: reader, namespace: gw}}]\n---\n{}",
        ca.tls_secret("cred", NAMESPACE, "gateway", true)
    )
}

/// What a gateway stream carrying `token` is sent for the credential: the Secret names, or the
/// status the stream ended with.
async fn fetch(
    rudder: &Server,
    tls: &XdsTlsClient,
    token: Option<&str>,
) -> Result<Vec<String>, tonic::Status> {
    let mut client = tls_client(rudder.xds_address(), tls, token).await;
    let (requests, mut responses) = sotw_stream_on(&mut client).await?;
    let request = DiscoveryRequest {
        node: Some(Node {
            id: GATEWAY.to_string(),
            ..Default::default()
        }),
        type_url: ResourceType::Secret.type_url().to_string(),
        resource_names: vec![CERTIFICATE.to_string(), CA.to_string()],
        ..Default::default()
    };
    requests.send(request).await.expect("the stream is open");
    let response = tokio::time::timeout(WAIT, responses.message())
        .await
        .expect("an answer in time")?
        .expect("a response");
    let mut names: Vec<String> = response
        .resources
        .iter()
        .map(|resource| {
            use prost::Message;
            envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret::decode(
                resource.value.as_slice(),
            )
            .expect("a Secret")
            .name
        })
        .collect();
    names.sort();
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_rbac_decide_who_gets_keys() {
    let cluster = DevCluster::up("kube-auth");
    let certs = tempfile::tempdir().expect("a temporary directory");
    let ca = TestCa::new(certs.path());
    ca.issue_server("gateway", &["gateway.example.com"]);
    ca.issue_server("rudder", &["rudder.test"]);
    cluster.apply(&objects(&ca));
    let token = |service_account: &str, audience: &str| {
        let args = [
            "create",
            "token",
            service_account,
            "-n",
            NAMESPACE,
            "--audience",
            audience,
        ];
        cluster.ok(&args, "").trim().to_string()
    };

    let mut options = ServeOptions {
        kubernetes: Some(cluster.kubernetes_options()),
        ..local_serve_options(Vec::new())
    };
    // TLS without client certificates: tokens are how proxies prove who they are.
    options.xds.tls = Some(
        XdsTls::load(TlsFiles {
            certificate: ca.path("rudder.pem"),
            private_key: ca.path("rudder-key.pem"),
            client_ca: None,
        })
        .expect("rudder's certificates load"),
    );
    let rudder = Server::start(options).await.expect("rudder starts");
    let tls = XdsTlsClient {
        ca: ca.path("ca.pem"),
        server_name: "rudder.test".to_string(),
        certificate: None,
    };
    // The Secret reaches rudder's model through its watch.
    let configz = format!("http://{}/debug/inputz", rudder.admin_address());
    let seen = support::mesh::wait_until(WAIT, || async {
        let body = reqwest::get(&configz).await.ok();
        match body {
            Some(body) => body.text().await.unwrap_or_default().contains("\"cred\""),
            None => false,
        }
    })
    .await;
    assert!(seen.is_some(), "the Secret never reached rudder");

    let reader = fetch(&rudder, &tls, Some(&token("reader", "istio-ca")))
        .await
        .expect("the reader is served");
    assert_eq!(reader, [CERTIFICATE, CA]);

    let stranger = fetch(&rudder, &tls, Some(&token("stranger", "istio-ca")))
        .await
        .expect("the stranger is served");
    assert_eq!(stranger, [CA], "CA bundles only");

    let unauthenticated = fetch(&rudder, &tls, None)
        .await
        .expect("an unauthenticated stream is served");
    assert!(unauthenticated.is_empty(), "no token, no Secret");

    for (what, token) in [
        ("another audience", token("reader", "other")),
        (
            "a forged token",
            "eyJhbGciOiJSUzI1NiJ9.e30.c2ln".to_string(),
        ),
    ] {
        let refused = fetch(&rudder, &tls, Some(&token)).await;
        let status = refused.expect_err(what);
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{what}: {status:?}"
        );
    }

    // A token of another namespace proves an identity the gateway's node does not have.
    cluster.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: reader, namespace: default}\n",
    );
    let args = [
        "create",
        "token",
        "reader",
        "-n",
        "default",
        "--audience",
        "istio-ca",
    ];
    let elsewhere = cluster.ok(&args, "").trim().to_string();
    let status = fetch(&rudder, &tls, Some(&elsewhere))
        .await
        .expect_err("another namespace");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    rudder.stop().await;
}

//! rudder against a real Kubernetes API server (kube-apiserver + etcd from `scripts/dev-cluster`):
//! `kubectl apply` of Services, Pods, EndpointSlices and Istio rules reaches a real Envoy through
//! `rudder serve --kubeconfig`; so do changed and deleted rules, endpoints scaling up and down,
//! and an API server restart. A rule rudder rejects leaves traffic alone and says why in its
//! status. Kubernetes refuses loopback endpoints, so the upstreams live in a network namespace
//! this test creates.

mod support;

use std::time::{Duration, Instant};

use rudder::serve::{ServeOptions, Server};
use support::certs::TestCa;
use support::cluster::{DevCluster, workloads};
use support::mesh::{JASON_EXACT, Mesh, local_serve_options, reviews_rules_matching};
use support::netns::TestHost;
use support::upstream::Upstream;

const PORT: u16 = 19120;
const SUBNET: u8 = 120;
const PROPAGATION_LIMIT: Duration = Duration::from_secs(10);

async fn every_reply_is(mesh: &Mesh, headers: &[(&str, &str)], upstream: &str) -> bool {
    for _ in 0..10 {
        let reply = mesh.upstream_of("reviews", headers).await;
        if reply != upstream {
            eprintln!("expected {upstream}, got {reply}");
            return false;
        }
    }
    true
}

/// How long until `condition` holds, failing the test past the limit.
/// The body of an admin endpoint of rudder.
async fn admin_get(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("admin answers")
        .text()
        .await
        .expect("a body")
}

async fn time_until<F, Fut>(mesh: &Mesh, what: &str, condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    mesh.wait_until(PROPAGATION_LIMIT, condition)
        .await
        .unwrap_or_else(|| {
            panic!(
                "{what} never reached Envoy; Envoy log:\n{}",
                mesh.envoy.log()
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_reaches_envoy() {
    let cluster = DevCluster::up("kubernetes-e2e");
    let host = TestHost::create(SUBNET);
    let mut upstreams = Vec::new();
    for (name, last) in [
        ("reviews-v1", 11),
        ("reviews-v2", 12),
        ("details", 3),
        ("reviews-v1b", 14),
    ] {
        host.add_address(last);
        let listener = host.bind(&format!("{}:{PORT}", host.address(last)));
        upstreams.push(Upstream::start_on(name, listener));
    }
    cluster.apply(&workloads(
        &host,
        PORT,
        &[("reviews-v1", "v1", 11), ("reviews-v2", "v2", 12)],
    ));

    // Without the Istio CRDs, their kinds are empty and rudder still becomes ready.
    let kubernetes = cluster.kubernetes_options();
    let started = Instant::now();
    let server = Server::start(ServeOptions {
        kubernetes: Some(kubernetes),
        ..local_serve_options(Vec::new())
    })
    .await
    .expect("rudder starts without the Istio CRDs");
    let ready = reqwest::get(format!("http://{}/ready", server.admin_address()))
        .await
        .expect("admin answers");
    assert_eq!(ready.status(), 200);
    eprintln!("ready without CRDs after {:?}", started.elapsed());
    server.stop().await;

    cluster.install_istio_crds();

    let mesh = Mesh::start_kubernetes(PORT, &cluster.kubeconfig).await;
    time_until(&mesh, "the reviews service", || async {
        mesh.upstream_of("reviews", &[])
            .await
            .starts_with("reviews-v")
    })
    .await;
    assert_eq!(mesh.upstream_of("details.bookinfo", &[]).await, "details");

    // Gateway credentials: a TLS Secret is watched and kept without its key material; a Secret
    // with no TLS keys is none of rudder's business.
    let certs = tempfile::tempdir().expect("a temp dir");
    let ca = TestCa::new(certs.path());
    ca.issue_server("gateway", &["bookinfo.example.com"]);
    cluster.apply(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: api-token, namespace: istio-system}\n\
         type: Opaque\nstringData: {password: hunter2}\n",
    );
    cluster.apply(&ca.tls_secret("gateway-cert", "istio-system", "gateway", true));
    let configz = format!("http://{}/debug/inputz", mesh.server.admin_address());
    let secret_seen = time_until(&mesh, "the gateway Secret", || async {
        admin_get(&configz).await.contains("gateway-cert")
    })
    .await;
    let body = admin_get(&configz).await;
    // The API server stores `stringData` base64-encoded in `data`.
    let password = "aHVudGVyMg";
    assert!(
        !body.contains("PRIVATE KEY") && !body.contains(password),
        "{body}"
    );
    eprintln!("TLS Secret applied to rudder's inputs: {secret_seen:?}");

    // Apply rules: everyone to v1.
    cluster.apply(&reviews_rules_matching("v1", "v1", JASON_EXACT));
    let first_rule = time_until(&mesh, "the first rule", || {
        every_reply_is(&mesh, &[], "reviews-v1")
    })
    .await;

    // A changed rule: everyone but jason to v2.
    cluster.apply(&reviews_rules_matching("v1", "v2", JASON_EXACT));
    let applied = Instant::now();
    time_until(&mesh, "the changed rule", || async {
        mesh.upstream_of("reviews", &[]).await == "reviews-v2"
    })
    .await;
    let changed_rule = applied.elapsed();
    assert!(every_reply_is(&mesh, &[("end-user", "jason")], "reviews-v1").await);

    // A deleted rule: the default route reaches v1 again without the header.
    cluster.ok(
        &["delete", "virtualservice", "reviews", "-n", "bookinfo"],
        "",
    );
    let deleted = Instant::now();
    time_until(&mesh, "the deletion", || async {
        mesh.upstream_of("reviews", &[]).await == "reviews-v1"
    })
    .await;
    let deleted_rule = deleted.elapsed();

    // Endpoints scale up (a second v1 Pod) and down (the first one goes).
    cluster.apply(&reviews_rules_matching("v1", "v1", JASON_EXACT));
    time_until(&mesh, "the rule again", || {
        every_reply_is(&mesh, &[], "reviews-v1")
    })
    .await;
    let three = [
        ("reviews-v1", "v1", 11),
        ("reviews-v2", "v2", 12),
        ("reviews-v1b", "v1", 14),
    ];
    cluster.apply(&workloads(&host, PORT, &three));
    let scaled = Instant::now();
    time_until(&mesh, "the new endpoint", || async {
        mesh.upstream_of("reviews", &[]).await == "reviews-v1b"
    })
    .await;
    let scale_up = scaled.elapsed();
    cluster.apply(&workloads(
        &host,
        PORT,
        &[("reviews-v2", "v2", 12), ("reviews-v1b", "v1", 14)],
    ));
    let scaled = Instant::now();
    time_until(&mesh, "the removed endpoint", || {
        every_reply_is(&mesh, &[], "reviews-v1b")
    })
    .await;
    let scale_down = scaled.elapsed();

    // The API server restarts; rudder's watches relist and later changes still arrive.
    cluster.restart_apiserver();
    cluster.apply(&reviews_rules_matching("v1", "v2", JASON_EXACT));
    time_until(&mesh, "a rule after the API server restart", || async {
        mesh.upstream_of("reviews", &[]).await == "reviews-v2"
    })
    .await;

    // A rule rudder rejects: traffic stays as it was and the object's status says why.
    cluster.apply(&reviews_rules_matching("v1", "v1", "{regex: \"(jason\"}"));
    let status = time_until(&mesh, "the status of the rejected rule", || async {
        let output = cluster.kubectl(
            &[
                "get",
                "virtualservice",
                "reviews",
                "-n",
                "bookinfo",
                "-o",
                "jsonpath={.status.conditions[0].message}",
            ],
            "",
        );
        String::from_utf8_lossy(&output.stdout).contains("invalid RE2 regex")
    })
    .await;
    assert!(
        every_reply_is(&mesh, &[], "reviews-v2").await,
        "the rejected rule changed traffic"
    );
    // Subset v1 is the Pod added by the scale-up now.
    assert!(every_reply_is(&mesh, &[("end-user", "jason")], "reviews-v1b").await);
    let message = cluster.ok(
        &[
            "get",
            "virtualservice",
            "reviews",
            "-n",
            "bookinfo",
            "-o",
            "jsonpath={.status.conditions[0].message}",
        ],
        "",
    );
    assert!(
        message.contains("spec.http[0].match[0].headers.end-user.regex"),
        "{message}"
    );

    // The replica that wrote it holds the status writer's Lease.
    let holder = cluster.ok(
        &[
            "get",
            "lease",
            "rudder-status",
            "-n",
            "istio-system",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ],
        "",
    );
    assert!(
        !holder.trim().is_empty(),
        "the rudder-status Lease has a holder"
    );

    // Fixing it clears the status.
    cluster.apply(&reviews_rules_matching("v1", "v1", JASON_EXACT));
    time_until(&mesh, "the fixed rule", || {
        every_reply_is(&mesh, &[], "reviews-v1b")
    })
    .await;
    time_until(&mesh, "the cleared status", || async {
        let output = cluster.kubectl(
            &[
                "get",
                "virtualservice",
                "reviews",
                "-n",
                "bookinfo",
                "-o",
                "jsonpath={.status}",
            ],
            "",
        );
        !String::from_utf8_lossy(&output.stdout).contains("Invalid")
    })
    .await;

    eprintln!(
        "kubectl apply to Envoy: first rule {first_rule:?} (10 replies), changed rule {changed_rule:?}, deleted rule \
         {deleted_rule:?}, endpoint added {scale_up:?}, endpoint removed {scale_down:?} (10 replies), status written {status:?}"
    );
    drop(upstreams);
}

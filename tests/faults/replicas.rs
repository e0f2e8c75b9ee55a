//! Two replicas: two `rudder serve` processes on one config directory, and a stock Envoy whose
//! bootstrap lists both in its xDS cluster. Killing the replica Envoy is connected to makes it
//! reconnect to the other, which serves the very same resources: versions are content hashes
//! (`src/xds/versions.rs`), so identical content carries identical versions on every replica, and
//! Envoy's config dump is the same, versions included, before and after the failover. (The issue
//! asked for versions unique per replica; with content hashes a proxy moving between replicas
//! that serve the same content sees no change at all, which is what Envoy needs.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rudder::bootstrap::{AdsApiType, BootstrapOptions, bootstrap_json};
use serde_json::Value;

use crate::server::ServerProcess;
use crate::sidecar::{Net, Reviews, Traffic, reviews_upstream, sidecar_metadata, sidecar_synced};
use crate::support::envoy_process::EnvoyProcess;
use crate::support::in_both_modes;
use crate::support::mesh::{NODE_ID, wait_until};
use crate::support::router::envoy_admin;

const LIMIT: Duration = Duration::from_secs(30);

/// A bootstrap for the sidecar whose xDS cluster has one endpoint per replica.
fn bootstrap(replicas: &[&ServerProcess], api_type: AdsApiType) -> String {
    let mut bootstrap = bootstrap_json(&BootstrapOptions {
        node_id: NODE_ID.to_string(),
        xds_address: replicas[0].xds.to_string(),
        metadata: sidecar_metadata(),
        admin_address: "127.0.0.1:0".parse().expect("an address"),
        api_type,
        xds_tls: None,
        access_log_service: None,
    })
    .expect("a bootstrap");
    let endpoints = bootstrap["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
        ["lb_endpoints"]
        .as_array_mut()
        .expect("the xDS cluster lists its endpoint");
    let first = endpoints[0].clone();
    endpoints.clear();
    for replica in replicas {
        let mut endpoint = first.clone();
        let address = &mut endpoint["endpoint"]["address"]["socket_address"];
        address["address"] = replica.xds.ip().to_string().into();
        address["port_value"] = replica.xds.port().into();
        endpoints.push(endpoint);
    }
    bootstrap.to_string()
}

/// Envoy's dynamic config (EDS included) without the times it was applied.
async fn config_dump(envoy: &EnvoyProcess) -> Value {
    let mut dump: Value =
        serde_json::from_str(&envoy_admin(envoy, "/config_dump?include_eds").await)
            .expect("Envoy's config dump is JSON");
    fn strip_times(value: &mut Value) {
        match value {
            Value::Object(object) => {
                object.remove("last_updated");
                object.values_mut().for_each(strip_times);
            }
            Value::Array(items) => items.iter_mut().for_each(strip_times),
            _ => {}
        }
    }
    strip_times(&mut dump);
    // The bootstrap is not from xDS.
    if let Some(configs) = dump["configs"].as_array_mut() {
        configs.retain(|config| {
            !config["@type"]
                .as_str()
                .is_some_and(|ty| ty.ends_with("BootstrapConfigDump"))
        });
    }
    dump
}

/// The replica the sidecar is synced with, if any.
async fn synced_replica(admins: &[SocketAddr]) -> Option<usize> {
    for (index, admin) in admins.iter().enumerate() {
        if sidecar_synced(*admin).await {
            return Some(index);
        }
    }
    None
}

async fn envoy_fails_over_to_the_other_replica(api_type: AdsApiType) {
    let net = match api_type {
        AdsApiType::Grpc => Net(242),
        AdsApiType::DeltaGrpc => Net(243),
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let _reviews = Reviews::start(net, dir.path(), "v1").await;
    let mut replicas = [
        ServerProcess::start_rudder(dir.path(), &[]),
        ServerProcess::start_rudder(dir.path(), &[]),
    ];
    let admins = replicas
        .each_ref()
        .map(|replica| replica.admin.expect("rudder's admin address"));
    let envoy = EnvoyProcess::start_from_bootstrap(
        "envoy.json",
        &bootstrap(&replicas.each_ref(), api_type),
    );
    let routed = wait_until(LIMIT, || async {
        reviews_upstream(net.port()).await.as_deref() == Some("reviews-v1")
    })
    .await;
    assert!(
        routed.is_some(),
        "Envoy never routed; its log:\n{}",
        envoy.log()
    );

    let deadline = Instant::now() + LIMIT;
    let connected = loop {
        if let Some(index) = synced_replica(&admins).await {
            break index;
        }
        assert!(
            Instant::now() < deadline,
            "Envoy synced with neither replica; its log:\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let other = 1 - connected;
    let before = config_dump(&envoy).await;
    let reviews = format!(
        "outbound|{}||reviews.bookinfo.svc.cluster.local",
        net.port()
    );
    assert!(
        before.to_string().contains(&reviews),
        "Envoy's config dump lacks {reviews}: {before}"
    );

    let mut traffic = Traffic::start(net.port());
    let killed = Instant::now();
    replicas[connected].kill();
    let failed_over = wait_until(LIMIT, || sidecar_synced(admins[other])).await;
    assert!(
        failed_over.is_some(),
        "Envoy did not move to the other replica; its log:\n{}",
        envoy.log()
    );
    let failed_over = killed.elapsed();
    let after = config_dump(&envoy).await;
    let answered = traffic.answered();
    wait_until(LIMIT, || async { traffic.answered() >= answered + 20 }).await;
    traffic.stop().await;
    eprintln!(
        "{api_type:?}: replica {connected} killed, Envoy synced with replica {other} after {} ms; \
         traffic: {}",
        failed_over.as_millis(),
        traffic.summary()
    );
    assert_eq!(
        traffic.failed(),
        0,
        "requests failed: {}",
        traffic.summary()
    );
    assert_eq!(
        before, after,
        "the other replica served different resources (or versions)"
    );
}

in_both_modes!(envoy_fails_over_to_the_other_replica);

use super::*;
use crate::xds::SotwConnection;
use crate::xds::connection::{Event, Nack};
use crate::xds::fixtures::{
    A, B, CREDENTIAL, cla, cluster, error, listener, name_of, resources, route, secret,
};
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;

const C: &str = "outbound|80||c.default.svc.cluster.local";

fn subscribe(ty: ResourceType, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: ty.type_url().to_string(),
        resource_names_subscribe: names.iter().map(|name| name.to_string()).collect(),
        ..Default::default()
    }
}

fn unsubscribe(ty: ResourceType, names: &[&str]) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        resource_names_unsubscribe: names.iter().map(|name| name.to_string()).collect(),
        ..subscribe(ty, &[])
    }
}

fn ack(response: &DeltaResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: response.type_url.clone(),
        response_nonce: response.nonce.clone(),
        ..Default::default()
    }
}

fn nack(response: &DeltaResponse, message: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        error_detail: error(message),
        ..ack(response)
    }
}

fn types(outcome: &Outgoing) -> Vec<ResourceType> {
    outcome
        .responses
        .iter()
        .filter_map(|response| ResourceType::from_type_url(&response.type_url))
        .collect()
}

/// The names of the resources a response carries, each checked against its own content.
fn names(response: &DeltaResponse) -> Vec<String> {
    response
        .resources
        .iter()
        .map(|resource| {
            let inner = name_of(resource.resource.as_ref().expect("a resource"));
            assert_eq!(inner, resource.name);
            assert_eq!(resource.version.len(), 32);
            resource.name.clone()
        })
        .collect()
}

fn removed(response: &DeltaResponse) -> Vec<&str> {
    response
        .removed_resources
        .iter()
        .map(String::as_str)
        .collect()
}

/// The only response of an outcome.
fn only(outcome: &Outgoing) -> &DeltaResponse {
    assert_eq!(outcome.responses.len(), 1, "{outcome:?}");
    &outcome.responses[0]
}

/// Every resource's version in a response, as `initial_resource_versions` would carry it.
fn versions(response: &DeltaResponse) -> Vec<(String, String)> {
    response
        .resources
        .iter()
        .map(|resource| (resource.name.clone(), resource.version.clone()))
        .collect()
}

/// A stream with CDS (wildcard) and EDS for A subscribed, both ACKed.
fn subscribed() -> (DeltaConnection, DeltaResponse, DeltaResponse) {
    let mut conn = DeltaConnection::new(resources().into());
    let cds = only(&conn.on_request(&subscribe(ResourceType::Cluster, &[]))).clone();
    assert!(conn.on_request(&ack(&cds)).responses.is_empty());
    let eds = only(&conn.on_request(&subscribe(ResourceType::Endpoint, &[A]))).clone();
    assert!(conn.on_request(&ack(&eds)).responses.is_empty());
    (conn, cds, eds)
}

#[test]
fn wildcard_types_get_everything_even_when_names_are_listed() {
    let mut conn = DeltaConnection::new(resources().into());
    let cds = conn.on_request(&subscribe(ResourceType::Cluster, &[]));
    assert_eq!(names(only(&cds)), [A, B]);
    // A reconnecting Envoy lists the listeners it has; LDS stays wildcard.
    let lds = conn.on_request(&subscribe(ResourceType::Listener, &["elsewhere"]));
    assert_eq!(names(only(&lds)), ["0.0.0.0_80"]);
    assert!(removed(only(&lds)).is_empty());
    let unsubscribed = conn.on_request(&unsubscribe(ResourceType::Listener, &["0.0.0.0_80"]));
    assert!(unsubscribed.responses.is_empty());

    // New listeners arrive with no new subscription.
    let mut more = resources();
    more.listeners
        .insert("0.0.0.0_81".into(), listener("0.0.0.0_81", ""));
    assert_eq!(names(only(&conn.on_resources(more.into()))), ["0.0.0.0_81"]);
}

#[test]
fn set_versions_match_state_of_the_world() {
    let mut delta = DeltaConnection::new(resources().into());
    let mut sotw = SotwConnection::new(resources().into());
    let response = only(&delta.on_request(&subscribe(ResourceType::Cluster, &[]))).clone();
    let full = sotw.on_request(&DiscoveryRequest {
        type_url: ResourceType::Cluster.type_url().to_string(),
        ..Default::default()
    });
    let version = &full.responses[0].version_info;
    assert_eq!(&response.system_version_info, version);
    let status = &delta.status()[&ResourceType::Cluster];
    assert_eq!(status.sent.as_ref(), Some(version));
    assert_eq!(status.acked, None);
    delta.on_request(&ack(&response));
    assert_eq!(
        delta.status()[&ResourceType::Cluster].acked.as_ref(),
        Some(version)
    );
}

#[test]
fn endpoints_and_routes_go_by_name() {
    let mut conn = DeltaConnection::new(resources().into());
    let eds = conn.on_request(&subscribe(ResourceType::Endpoint, &[A, "missing"]));
    let eds = only(&eds);
    assert_eq!(names(eds), [A]);
    // A subscribed name that does not exist is reported removed, once.
    assert_eq!(removed(eds), ["missing"]);
    assert!(conn.on_request(&ack(eds)).responses.is_empty());
    assert!(conn.on_resources(resources().into()).responses.is_empty());

    // Another name: only it is sent.
    let more = conn.on_request(&subscribe(ResourceType::Endpoint, &[B]));
    assert_eq!(names(only(&more)), [B]);
    assert!(removed(only(&more)).is_empty());

    // The missing one appears: sent.
    let mut appeared = resources();
    appeared
        .endpoints
        .insert("missing".into(), cla("missing", 0).into());
    appeared.endpoints.insert(C.into(), cla(C, 0).into());
    assert_eq!(
        names(only(&conn.on_resources(appeared.clone().into()))),
        ["missing"]
    );

    // `*` asks for everything.
    let all = conn.on_request(&subscribe(ResourceType::Endpoint, &["*"]));
    assert_eq!(names(only(&all)), [C]);

    let rds = conn.on_request(&subscribe(ResourceType::Route, &["9080"]));
    assert_eq!(names(only(&rds)), ["9080"]);
}

#[test]
fn only_changed_resources_go_on_the_wire() {
    let (mut conn, _, _) = subscribed();
    assert!(conn.on_resources(resources().into()).responses.is_empty());

    // B's endpoints changed, but this proxy watches only A's.
    let mut changed = resources();
    changed.endpoints.insert(B.into(), cla(B, 3).into());
    assert!(
        conn.on_resources(changed.clone().into())
            .responses
            .is_empty()
    );

    changed.endpoints.insert(A.into(), cla(A, 3).into());
    let outcome = conn.on_resources(changed.clone().into());
    assert_eq!(names(only(&outcome)), [A]);

    // A deleted cluster is removed; the one left is not resent.
    changed.clusters.remove(B);
    let outcome = conn.on_resources(changed.clone().into());
    let cds = only(&outcome);
    assert_eq!(types(&outcome), [ResourceType::Cluster]);
    assert!(cds.resources.is_empty());
    assert_eq!(removed(cds), [B]);

    // Deleted endpoints the proxy subscribed to are removed too.
    changed.endpoints.remove(A);
    let outcome = conn.on_resources(changed.into());
    assert_eq!(removed(only(&outcome)), [A]);
}

#[test]
fn reconnect_sends_only_what_differs() {
    let (_, cds, _) = subscribed();
    let mut changed = resources();
    changed
        .clusters
        .insert(A.into(), cluster(A, "changed").into());
    changed.clusters.remove(B);
    changed.clusters.insert(C.into(), cluster(C, "").into());
    let mut conn = DeltaConnection::new(changed.into());

    let reconnect = DeltaDiscoveryRequest {
        initial_resource_versions: versions(&cds).into_iter().collect(),
        ..subscribe(ResourceType::Cluster, &[A, B])
    };
    let outcome = conn.on_request(&reconnect);
    let response = only(&outcome);
    assert_eq!(names(response), [A, C]);
    assert_eq!(removed(response), [B]);
}

#[test]
fn reconnect_with_nothing_changed_gets_an_empty_answer() {
    let mut first = DeltaConnection::new(resources().into());
    let rds = only(&first.on_request(&subscribe(ResourceType::Route, &["80"]))).clone();

    let mut conn = DeltaConnection::new(resources().into());
    let reconnect = DeltaDiscoveryRequest {
        initial_resource_versions: versions(&rds).into_iter().collect(),
        ..subscribe(ResourceType::Route, &["80"])
    };
    let outcome = conn.on_request(&reconnect);
    let response = only(&outcome);
    assert!(response.resources.is_empty() && response.removed_resources.is_empty());
    assert_eq!(response.system_version_info, rds.system_version_info);
    assert!(conn.on_request(&ack(response)).responses.is_empty());

    // A version that is not rudder's is replaced.
    let foreign = DeltaDiscoveryRequest {
        initial_resource_versions: [("0.0.0.0_80".to_string(), "v1".to_string())].into(),
        ..subscribe(ResourceType::Listener, &[])
    };
    assert_eq!(names(only(&conn.on_request(&foreign))), ["0.0.0.0_80"]);
}

#[test]
fn unsubscribed_names_get_no_updates() {
    let (mut conn, _, eds) = subscribed();
    let more = conn.on_request(&DeltaDiscoveryRequest {
        response_nonce: eds.nonce.clone(),
        ..subscribe(ResourceType::Endpoint, &[B])
    });
    assert_eq!(names(only(&more)), [B]);
    assert!(
        conn.on_request(&unsubscribe(ResourceType::Endpoint, &[A]))
            .responses
            .is_empty()
    );

    let mut changed = resources();
    changed.endpoints.insert(A.into(), cla(A, 5).into());
    assert!(
        conn.on_resources(changed.clone().into())
            .responses
            .is_empty()
    );
    // Nor a removal: the proxy dropped it already.
    changed.endpoints.remove(A);
    assert!(conn.on_resources(changed.into()).responses.is_empty());

    // Subscribing again is answered, even with content the proxy had before.
    let again = conn.on_request(&subscribe(ResourceType::Endpoint, &[B]));
    assert_eq!(names(only(&again)), [B]);
}

#[test]
fn nack_is_recorded_and_not_resent() {
    let (mut conn, _, _) = subscribed();
    let lds = only(&conn.on_request(&subscribe(ResourceType::Listener, &[]))).clone();
    let outcome = conn.on_request(&nack(&lds, "bad listener"));
    assert!(outcome.responses.is_empty());
    let rejected = Nack {
        version: lds.system_version_info.clone(),
        message: "bad listener".to_string(),
    };
    assert_eq!(
        outcome.events,
        [Event::Nack {
            ty: ResourceType::Listener,
            version: rejected.version.clone(),
            message: rejected.message.clone(),
        }]
    );
    let status = &conn.status()[&ResourceType::Listener];
    assert_eq!(status.nack.as_ref(), Some(&rejected));
    assert_eq!(status.acked, None);

    // Changes elsewhere do not resend the rejected listener.
    let mut other = resources();
    other.routes.insert("80".into(), route("80", true).into());
    assert!(conn.on_resources(other.clone().into()).responses.is_empty());

    // A changed listener is sent; its ACK clears the rejection.
    other
        .listeners
        .insert("0.0.0.0_80".into(), listener("0.0.0.0_80", "fixed"));
    let fixed = conn.on_resources(other.into());
    assert_eq!(names(only(&fixed)), ["0.0.0.0_80"]);
    conn.on_request(&ack(only(&fixed)));
    let status = &conn.status()[&ResourceType::Listener];
    assert_eq!(status.nack, None);
    assert_eq!(
        status.acked.as_ref(),
        Some(&only(&fixed).system_version_info)
    );
}

#[test]
fn stale_nonce_is_ignored_but_its_subscriptions_apply() {
    let (mut conn, _, eds) = subscribed();
    let mut changed = resources();
    changed.endpoints.insert(A.into(), cla(A, 1).into());
    let newer = only(&conn.on_resources(changed.into())).clone();

    // Envoy answers the first response after the newer one went out, subscribing to B.
    let late = DeltaDiscoveryRequest {
        response_nonce: eds.nonce.clone(),
        error_detail: error("old"),
        ..subscribe(ResourceType::Endpoint, &[B])
    };
    let outcome = conn.on_request(&late);
    let stale = Event::Stale {
        ty: ResourceType::Endpoint,
        nonce: eds.nonce.clone(),
    };
    assert_eq!(outcome.events, [stale]);
    assert_eq!(names(only(&outcome)), [B]);
    let status = &conn.status()[&ResourceType::Endpoint];
    assert_eq!(status.nack, None);
    assert_eq!(status.acked.as_ref(), Some(&eds.system_version_info));

    // The newer response's nonce is stale now too.
    let outcome = conn.on_request(&ack(&newer));
    assert!(matches!(outcome.events[..], [Event::Stale { .. }]));
    assert!(outcome.responses.is_empty());
}

#[test]
fn updates_go_out_in_ads_order() {
    let mut conn = DeltaConnection::new(resources().into());
    for request in [
        subscribe(ResourceType::Secret, &[CREDENTIAL]),
        subscribe(ResourceType::Route, &["80"]),
        subscribe(ResourceType::Listener, &[]),
        subscribe(ResourceType::Endpoint, &[A]),
        subscribe(ResourceType::Cluster, &[]),
    ] {
        conn.on_request(&request);
    }
    let mut changed = resources();
    changed.routes.insert("80".into(), route("80", true).into());
    changed
        .listeners
        .insert("0.0.0.0_80".into(), listener("0.0.0.0_80", "x"));
    changed.endpoints.insert(A.into(), cla(A, 1).into());
    changed.clusters.insert(B.into(), cluster(B, "x").into());
    changed
        .secrets
        .insert(CREDENTIAL.into(), secret(CREDENTIAL, "k2"));
    let outcome = conn.on_resources(changed.into());
    assert_eq!(types(&outcome), ResourceType::ALL);
}

#[test]
fn eds_follows_changed_clusters() {
    let (mut conn, _, eds) = subscribed();
    let more = only(&conn.on_request(&subscribe(ResourceType::Endpoint, &[B]))).clone();
    conn.on_request(&ack(&more));

    // Cluster A changes, its endpoints do not: they are sent again, and only they.
    let mut changed = resources();
    changed.clusters.insert(A.into(), cluster(A, "x").into());
    let outcome = conn.on_resources(changed.clone().into());
    assert_eq!(
        types(&outcome),
        [ResourceType::Cluster, ResourceType::Endpoint]
    );
    assert_eq!(names(&outcome.responses[0]), [A]);
    let resent = &outcome.responses[1];
    assert_eq!(names(resent), [A]);
    assert_eq!(versions(resent), versions(&eds));
    assert_ne!(resent.nonce, eds.nonce);

    // A cluster removal alone sends no endpoints.
    changed.clusters.remove(B);
    let outcome = conn.on_resources(changed.into());
    assert_eq!(types(&outcome), [ResourceType::Cluster]);
}

#[test]
fn clusters_changed_before_eds_is_subscribed_still_get_endpoints() {
    let (_, cds, _) = subscribed();
    let mut changed = resources();
    changed
        .clusters
        .insert(A.into(), cluster(A, "changed").into());
    let mut conn = DeltaConnection::new(changed.into());
    let eds_versions: Vec<(String, String)> = [A, B]
        .iter()
        .map(|name| {
            let hash = conn
                .resources
                .of(ResourceType::Endpoint)
                .get(name)
                .unwrap()
                .hash();
            (name.to_string(), resource_version(hash))
        })
        .collect();

    // A reconnect: CDS comes first and sends the changed cluster A...
    let reconnect = DeltaDiscoveryRequest {
        initial_resource_versions: versions(&cds).into_iter().collect(),
        ..subscribe(ResourceType::Cluster, &[])
    };
    assert_eq!(names(only(&conn.on_request(&reconnect))), [A]);
    // ...then EDS, which has A's endpoints at their current version: they go out anyway, since
    // the new cluster A warms until it gets them. B's stay.
    let eds = DeltaDiscoveryRequest {
        initial_resource_versions: eds_versions.into_iter().collect(),
        ..subscribe(ResourceType::Endpoint, &[A, B])
    };
    let outcome = conn.on_request(&eds);
    assert_eq!(names(only(&outcome)), [A]);
    assert!(conn.warming.is_empty());
}

#[test]
fn eds_refresh_skips_a_rejected_version() {
    let (mut conn, _, _) = subscribed();
    let mut changed = resources();
    changed.endpoints.insert(A.into(), cla(A, 2).into());
    let update = only(&conn.on_resources(changed.clone().into())).clone();
    conn.on_request(&nack(&update, "bad"));

    changed.clusters.insert(A.into(), cluster(A, "x").into());
    let outcome = conn.on_resources(changed.into());
    assert_eq!(types(&outcome), [ResourceType::Cluster]);
}

#[test]
fn unknown_types_are_reported() {
    let mut conn = DeltaConnection::new(resources().into());
    let secret = DeltaDiscoveryRequest {
        type_url: "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig".into(),
        ..Default::default()
    };
    let outcome = conn.on_request(&secret);
    assert!(outcome.responses.is_empty());
    assert!(matches!(outcome.events[..], [Event::UnknownType { .. }]));
    assert!(conn.status().is_empty());
}

#[test]
fn subscriptions_past_the_limit_are_refused() {
    let mut conn = DeltaConnection::new(resources().into());
    conn.limit_names(3);
    // Wildcard types keep no names; nor do the versions a reconnecting proxy says it has.
    let cds = DeltaDiscoveryRequest {
        initial_resource_versions: (0..10).map(|i| (format!("c{i}"), "1".into())).collect(),
        ..subscribe(ResourceType::Cluster, &["x", "y", "z", "w"])
    };
    assert_eq!(conn.on_request(&cds).refused, None);
    assert_eq!(
        conn.on_request(&subscribe(ResourceType::Endpoint, &[A, B]))
            .refused,
        None
    );
    // Names subscribed again count once; `*` is no name; unsubscribing makes room.
    let again = subscribe(ResourceType::Endpoint, &[A, "*"]);
    assert_eq!(conn.on_request(&again).refused, None);
    assert_eq!(
        conn.on_request(&unsubscribe(ResourceType::Endpoint, &[B]))
            .refused,
        None
    );
    let rds = subscribe(ResourceType::Route, &["80", "9080"]);
    assert_eq!(conn.on_request(&rds).refused, None);

    // Subscriptions add up across requests and types.
    let outcome = conn.on_request(&subscribe(ResourceType::Secret, &[CREDENTIAL]));
    assert_eq!(outcome, Outgoing::too_many_names(4, 3));
    assert!(outcome.responses.is_empty());
}

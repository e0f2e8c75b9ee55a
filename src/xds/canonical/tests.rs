use std::collections::HashMap;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Metadata;
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind};
use prost::{Message, Name};

use super::*;
use crate::inputs::golden_case_inputs;
use crate::model::{LastGood, build};
use crate::proxy::Proxy;
use crate::translate::{ResourceType, translate};

fn string_value(text: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(text.to_string())),
    }
}

/// A struct of `size` fields, built afresh: each `HashMap` iterates in an order of its own.
fn fields(size: usize) -> Struct {
    Struct {
        fields: (0..size)
            .map(|i| (format!("key{i}"), string_value(&format!("value{i}"))))
            .collect::<HashMap<_, _>>(),
    }
}

/// Maps at three depths: metadata structs, and a struct inside an `Any` inside a map.
fn route_configuration() -> RouteConfiguration {
    let typed_per_filter_config = (0..8)
        .map(|i| {
            let any = Any {
                type_url: Struct::type_url(),
                value: fields(8).encode_to_vec(),
            };
            (format!("filter{i}"), any)
        })
        .collect();
    RouteConfiguration {
        name: "80".to_string(),
        virtual_hosts: vec![VirtualHost {
            name: "a:80".to_string(),
            domains: vec!["a".to_string()],
            typed_per_filter_config,
            metadata: Some(Metadata {
                filter_metadata: (0..8).map(|i| (format!("f{i}"), fields(8))).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn hash<M: Message + Name>(message: &M) -> u128 {
    canonical_hash(&M::full_name(), &message.encode_to_vec())
}

#[test]
fn equal_messages_hash_alike_whatever_their_map_order() {
    let encodings: Vec<Vec<u8>> = (0..16)
        .map(|_| route_configuration().encode_to_vec())
        .collect();
    // The test proves something only if the maps did come out in different orders.
    assert!(
        encodings.iter().any(|bytes| *bytes != encodings[0]),
        "every encoding had the same map order"
    );
    let full_name = RouteConfiguration::full_name();
    let expected = canonical_hash(&full_name, &encodings[0]);
    for bytes in &encodings {
        assert_eq!(canonical_hash(&full_name, bytes), expected);
    }
}

#[test]
fn a_changed_value_anywhere_changes_the_hash() {
    let original = route_configuration();
    let expected = hash(&original);

    let mut in_any = original.clone();
    let mut inner = fields(8);
    inner
        .fields
        .insert("key3".to_string(), string_value("other"));
    in_any.virtual_hosts[0].typed_per_filter_config.insert(
        "filter5".to_string(),
        Any {
            type_url: Struct::type_url(),
            value: inner.encode_to_vec(),
        },
    );
    assert_ne!(hash(&in_any), expected);

    let mut key_renamed = original.clone();
    let filters = &mut key_renamed.virtual_hosts[0].typed_per_filter_config;
    let moved = filters.remove("filter2").expect("filter2");
    filters.insert("filter9".to_string(), moved);
    assert_ne!(hash(&key_renamed), expected);

    let mut plain = original;
    plain.virtual_hosts[0].domains.push("b".to_string());
    assert_ne!(hash(&plain), expected);
}

/// The canonical form reorders map entries and nothing else: it is the same message, and as
/// long as the original, for every resource of the golden cases.
#[test]
fn the_canonical_form_is_the_same_message() {
    let mut checked = 0;
    for (input, inputs) in golden_case_inputs() {
        let model = build(&inputs, &LastGood::default()).model;
        let proxy = Proxy::parse(
            "sidecar~10.1.0.1~app.default~default.svc.cluster.local",
            &serde_json::Value::Null,
        )
        .expect("a node id")
        .with_workload_labels(&model);
        let resources = translate(&model, &proxy);
        for ty in ResourceType::ALL {
            for any in resources.encode(ty).into_values() {
                let full_name = any.type_url.rsplit_once('/').expect("a type URL").1;
                let descriptor = message_descriptor(full_name).expect("a known type");
                let mut canonical = Vec::new();
                write_canonical(&descriptor, &any.value, &mut canonical)
                    .expect("translated resources are well formed");
                assert_eq!(canonical.len(), any.value.len());
                let same = match ty {
                    ResourceType::Cluster => {
                        Cluster::decode(canonical.as_slice()).ok()
                            == Cluster::decode(any.value.as_slice()).ok()
                    }
                    _ => {
                        let decode = |bytes: &[u8]| {
                            prost_reflect::DynamicMessage::decode(descriptor.clone(), bytes).ok()
                        };
                        decode(&canonical) == decode(&any.value)
                    }
                };
                assert!(same, "{}: canonical form differs", input.display());
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "only {checked} resources checked");
}

#[test]
fn bytes_it_cannot_follow_still_hash() {
    let garbage = [0xff, 0xff, 0xff, 0x0f, 0x02, 0x10];
    let full_name = Cluster::full_name();
    assert_eq!(
        canonical_hash(&full_name, &garbage),
        canonical_hash(&full_name, &garbage)
    );
    assert_ne!(
        canonical_hash(&full_name, &garbage),
        canonical_hash(&full_name, &[])
    );
}

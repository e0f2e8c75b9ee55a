use std::collections::{BTreeMap, BTreeSet};
use envoy_types::pb::envoy::config::listener::v3::Listener;
use crate::model::Model;
use crate::proxy::Proxy;
pub fn listeners(_model: &Model, _proxy: &Proxy) -> (BTreeMap<String, Listener>, BTreeSet<String>) { (BTreeMap::new(), BTreeSet::new()) }

use std::collections::{BTreeMap, BTreeSet};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use crate::model::Model;
use crate::proxy::Proxy;
pub fn routes(_model: &Model, _proxy: &Proxy, _names: &BTreeSet<String>) -> BTreeMap<String, RouteConfiguration> { BTreeMap::new() }

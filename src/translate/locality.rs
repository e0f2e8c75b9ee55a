//! Locality load balancing in ClusterLoadAssignments, relative to the proxy's locality, as
//! istiod's `loadbalancer.ApplyLocalityLoadBalancer` does it:
//!
//! - `distribute`: the first entry whose `from` matches the proxy sets the weight of each
//!   locality group its `to` names (a wildcard's weight is shared by the groups it matches, in
//!   proportion to their own weights); groups no entry names are left without endpoints.
//! - otherwise, and only when outlier detection is on (or no endpoint would ever be found
//!   unhealthy): `failoverPriority` labels split groups into priorities by how many leading
//!   labels an endpoint shares with the proxy, then (or instead) the locality failover ranks
//!   groups 0 (same region, zone and subzone), 1 (same zone), 2 (same region), 3 (another
//!   region), or 4 for a region `failover` does not name for the proxy's region.
//!   Priorities are renumbered to run from 0 without gaps, as Envoy requires.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::endpoint::v3::LocalityLbEndpoints;
use envoy_types::pb::google::protobuf::UInt32Value;

use crate::istio::{LocalityDistribute, LocalityFailover, LocalityLbSetting};
use crate::model::{Endpoint, Locality};
use crate::proxy::Proxy;

/// One locality group of an assignment: the Envoy message and the model endpoints behind its
/// `lb_endpoints`, index for index.
pub(super) struct Group<'m> {
    pub envoy: LocalityLbEndpoints,
    pub locality: Locality,
    pub endpoints: Vec<&'m Endpoint>,
}

/// Whether [`apply`] reads the proxy (its locality, and labels for failover priorities): only
/// to weigh localities, or to order them for failover when outlier detection is on.
pub(super) fn reads_proxy(setting: &LocalityLbSetting, failover: bool) -> bool {
    !setting.distribute.is_empty() || failover
}

/// Applies `setting` to the groups of one assignment; `failover` says whether outlier
/// detection is on for the cluster.
pub(super) fn apply(
    groups: Vec<Group<'_>>,
    proxy: &Proxy,
    setting: &LocalityLbSetting,
    failover: bool,
) -> Vec<LocalityLbEndpoints> {
    if !reads_proxy(setting, failover) {
        return groups.into_iter().map(|group| group.envoy).collect();
    }
    if !setting.distribute.is_empty() {
        let mut groups = groups;
        apply_weights(&mut groups, &proxy.locality, &setting.distribute);
        return groups.into_iter().map(|group| group.envoy).collect();
    }
    if setting.failover_priority.is_empty() {
        let mut groups = groups;
        apply_failover(&mut groups, &proxy.locality, &setting.failover);
        return groups.into_iter().map(|group| group.envoy).collect();
    }
    let mut groups = apply_failover_priorities(groups, proxy, &setting.failover_priority);
    if !setting.failover.is_empty() {
        apply_failover(&mut groups, &proxy.locality, &setting.failover);
    }
    groups.into_iter().map(|group| group.envoy).collect()
}

/// istiod's `LocalityMatch`: `region[/zone[/subzone]]`, where `*` or a missing part matches
/// anything (a region must be given, or be `*`).
fn matches(locality: &Locality, rule: &str) -> bool {
    let mut parts = rule.split('/');
    let region = parts.next().unwrap_or_default();
    let zone = parts.next().unwrap_or_default();
    let subzone = parts.next().unwrap_or_default();
    let part = |rule: &str, value: &str| rule == "*" || rule.is_empty() || rule == value;
    (region == "*" || region == locality.region)
        && part(zone, &locality.zone)
        && part(subzone, &locality.subzone)
}

fn weight(group: &Group<'_>) -> u32 {
    group
        .envoy
        .load_balancing_weight
        .map_or(1, |weight| weight.value)
}

fn apply_weights(groups: &mut [Group<'_>], proxy: &Locality, distribute: &[LocalityDistribute]) {
    let Some(entry) = distribute.iter().find(|entry| matches(proxy, &entry.from)) else {
        return;
    };
    let mut unnamed: BTreeSet<usize> = (0..groups.len()).collect();
    for (target, share) in &entry.to {
        let named: Vec<usize> = unnamed
            .iter()
            .copied()
            .filter(|&i| matches(&groups[i].locality, target))
            .collect();
        let total: u64 = named.iter().map(|&i| u64::from(weight(&groups[i]))).sum();
        let originals: Vec<(usize, u64)> = named
            .iter()
            .map(|&i| (i, u64::from(weight(&groups[i]))))
            .collect();
        for (i, original) in originals {
            unnamed.remove(&i);
            let scaled = (original * u64::from(*share)).div_ceil(total.max(1));
            if scaled > 0 {
                groups[i].envoy.load_balancing_weight = Some(UInt32Value {
                    value: u32::try_from(scaled).unwrap_or(u32::MAX),
                });
            }
        }
    }
    for i in unnamed {
        groups[i].envoy.lb_endpoints.clear();
        groups[i].endpoints.clear();
    }
}

/// 0 when region, zone and subzone are the proxy's; 1 for the same zone; 2 for the same region;
/// 3 otherwise.
fn priority(proxy: &Locality, endpoint: &Locality) -> u32 {
    match (
        proxy.region == endpoint.region,
        proxy.zone == endpoint.zone,
        proxy.subzone == endpoint.subzone,
    ) {
        (true, true, true) => 0,
        (true, true, false) => 1,
        (true, false, _) => 2,
        (false, _, _) => 3,
    }
}

fn apply_failover(groups: &mut [Group<'_>], proxy: &Locality, failover: &[LocalityFailover]) {
    for group in groups.iter_mut() {
        let mut rank = priority(proxy, &group.locality);
        if rank == 3
            && let Some(rule) = failover.iter().find(|rule| rule.from == proxy.region)
            && group.locality.region != rule.to
        {
            rank = 4;
        }
        // Keeps the order failover priorities set: at most 5 locality ranks per priority.
        group.envoy.priority = group.envoy.priority * 5 + rank;
    }
    renumber(groups);
}

/// Makes priorities run from 0 without gaps, keeping their order.
fn renumber(groups: &mut [Group<'_>]) {
    let used: BTreeSet<u32> = groups.iter().map(|group| group.envoy.priority).collect();
    let rank: BTreeMap<u32, u32> = used.into_iter().zip(0..).collect();
    for group in groups {
        group.envoy.priority = rank[&group.envoy.priority];
    }
}

/// Splits each group by the number of leading `failoverPriority` labels its endpoints share with
/// the proxy (`label=value` compares with `value` instead of the proxy's label).
fn apply_failover_priorities<'m>(
    groups: Vec<Group<'m>>,
    proxy: &Proxy,
    priorities: &[String],
) -> Vec<Group<'m>> {
    if proxy.labels.is_empty() || groups.is_empty() {
        return groups;
    }
    let wanted: Vec<(&str, Option<&str>)> = priorities
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((label, value)) => (label, Some(value)),
            None => (entry.as_str(), None),
        })
        .collect();
    let lowest = u32::try_from(wanted.len()).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    for group in groups {
        let mut by_priority: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, endpoint) in group.endpoints.iter().enumerate() {
            let first_mismatch = wanted.iter().position(|(label, value)| {
                let proxy_value = value
                    .or_else(|| proxy.labels.get(*label).map(String::as_str))
                    .unwrap_or_default();
                let endpoint_value = endpoint
                    .labels
                    .get(*label)
                    .map(String::as_str)
                    .unwrap_or_default();
                proxy_value != endpoint_value
            });
            let rank = first_mismatch.map_or(0, |j| lowest - u32::try_from(j).unwrap_or(lowest));
            by_priority.entry(rank).or_default().push(i);
        }
        for (rank, members) in by_priority {
            let lb_endpoints: Vec<_> = members
                .iter()
                .map(|&i| group.envoy.lb_endpoints[i].clone())
                .collect();
            let weight: u32 = lb_endpoints
                .iter()
                .map(|e| e.load_balancing_weight.map_or(0, |w| w.value))
                .fold(0, u32::saturating_add);
            out.push(Group {
                envoy: LocalityLbEndpoints {
                    lb_endpoints,
                    priority: rank,
                    load_balancing_weight: Some(UInt32Value { value: weight }),
                    ..group.envoy.clone()
                },
                locality: group.locality.clone(),
                endpoints: members.iter().map(|&i| group.endpoints[i]).collect(),
            });
        }
    }
    renumber(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::endpoint::v3::LbEndpoint;

    fn locality(label: &str) -> Locality {
        Locality::parse(label)
    }

    fn group<'m>(label: &str, endpoints: Vec<&'m Endpoint>) -> Group<'m> {
        let count = u32::try_from(endpoints.len()).unwrap();
        Group {
            envoy: LocalityLbEndpoints {
                lb_endpoints: endpoints
                    .iter()
                    .map(|_| LbEndpoint {
                        load_balancing_weight: Some(UInt32Value { value: 1 }),
                        ..Default::default()
                    })
                    .collect(),
                load_balancing_weight: Some(UInt32Value { value: count }),
                ..Default::default()
            },
            locality: locality(label),
            endpoints,
        }
    }

    fn endpoint(labels: &[(&str, &str)]) -> Endpoint {
        Endpoint {
            service_port: 80,
            address: crate::model::EndpointAddress::Ip("10.0.0.1".parse().unwrap()),
            port: 80,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            locality: Locality::default(),
            weight: 1,
        }
    }

    fn proxy_in(label: &str, labels: &[(&str, &str)]) -> Proxy {
        let mut proxy = Proxy::parse(
            "sidecar~10.0.0.9~client.default~default.svc.cluster.local",
            &serde_json::Value::Null,
        )
        .unwrap();
        proxy.locality = locality(label);
        proxy.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        proxy
    }

    fn setting(yaml: &str) -> LocalityLbSetting {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn failover_ranks_by_locality_and_renumbers() {
        let e = endpoint(&[]);
        let groups = vec![
            group("us/a/1", vec![&e]),
            group("us/a/2", vec![&e]),
            group("us/b/1", vec![&e]),
            group("eu/a/1", vec![&e]),
            group("ap/a/1", vec![&e]),
        ];
        let out = apply(
            groups,
            &proxy_in("us/a/1", &[]),
            &setting("failover: [{from: us, to: eu}]"),
            true,
        );
        let priorities: Vec<u32> = out.iter().map(|g| g.priority).collect();
        assert_eq!(priorities, [0, 1, 2, 3, 4]);
        // Without failover rules, every other region ranks the same; ranks stay contiguous.
        let groups = vec![
            group("us/a/1", vec![&e]),
            group("eu/a/1", vec![&e]),
            group("ap/a/1", vec![&e]),
        ];
        let out = apply(groups, &proxy_in("us/a/1", &[]), &setting("{}"), true);
        let priorities: Vec<u32> = out.iter().map(|g| g.priority).collect();
        assert_eq!(priorities, [0, 1, 1]);
        // And nothing happens without outlier detection.
        let groups = vec![group("us/a/1", vec![&e]), group("eu/a/1", vec![&e])];
        let out = apply(groups, &proxy_in("us/a/1", &[]), &setting("{}"), false);
        assert!(out.iter().all(|g| g.priority == 0));
    }

    #[test]
    fn distribute_sets_weights_and_empties_the_rest() {
        let e = endpoint(&[]);
        let groups = vec![
            group("us/a/1", vec![&e, &e]),
            group("us/a/2", vec![&e]),
            group("us/b/1", vec![&e]),
            group("eu/a/1", vec![&e]),
        ];
        let out = apply(
            groups,
            &proxy_in("us/a/1", &[]),
            &setting("distribute: [{from: us/a/*, to: {us/a/*: 80, us/b/*: 20}}]"),
            false,
        );
        let weights: Vec<(u32, usize)> = out
            .iter()
            .map(|g| (g.load_balancing_weight.unwrap().value, g.lb_endpoints.len()))
            .collect();
        // us/a/* shares 80 by the groups' weights (2:1): ceil(53.3), ceil(26.7).
        assert_eq!(weights, [(54, 2), (27, 1), (20, 1), (1, 0)]);
    }

    #[test]
    fn failover_priority_splits_groups_by_shared_labels() {
        let same = endpoint(&[("net", "n1"), ("tier", "gold")]);
        let half = endpoint(&[("net", "n1"), ("tier", "silver")]);
        let other = endpoint(&[("net", "n2"), ("tier", "gold")]);
        let groups = vec![group("", vec![&other, &same, &half])];
        let out = apply(
            groups,
            &proxy_in("", &[("net", "n1"), ("tier", "gold")]),
            &setting("failoverPriority: [net, tier]"),
            true,
        );
        let split: Vec<(u32, usize)> = out
            .iter()
            .map(|g| (g.priority, g.lb_endpoints.len()))
            .collect();
        assert_eq!(split, [(0, 1), (1, 1), (2, 1)]);
        // `label=value` compares with the value given.
        let groups = vec![group("", vec![&other, &same])];
        let out = apply(
            groups,
            &proxy_in("", &[("net", "n1")]),
            &setting("failoverPriority: [net=n2]"),
            true,
        );
        let split: Vec<(u32, usize)> = out
            .iter()
            .map(|g| (g.priority, g.lb_endpoints.len()))
            .collect();
        assert_eq!(split, [(0, 1), (1, 1)]);
    }
}

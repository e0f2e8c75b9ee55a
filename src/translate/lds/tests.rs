//! Unit tests of how outbound chains share a listener.

use super::*;

fn matches(chains: &ChainSet) -> Vec<(Vec<String>, Vec<String>)> {
    chains
        .chains
        .iter()
        .map(|chain| {
            let m = chain.filter_chain_match.clone().unwrap_or_default();
            let ranges = m.prefix_ranges.iter().map(range_label).collect();
            (ranges, m.server_names)
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

#[test]
fn later_chains_lose_what_earlier_ones_match() {
    let filter = || tcp_proxy_filter("c");
    let mut chains = ChainSet::default();
    chains.push(&strings(&["10.1.2.3/8"]), &[], filter());
    // The same block (host bits aside) is taken; the other one stays.
    chains.push(&strings(&["10.0.0.0/8", "192.168.1.7"]), &[], filter());
    chains.push(&strings(&["10.0.0.0/8"]), &[], filter());
    chains.push(&[], &[], filter());
    chains.push(&[], &[], filter());
    assert_eq!(
        matches(&chains),
        [
            (strings(&["10.0.0.0/8"]), vec![]),
            (strings(&["192.168.1.7/32"]), vec![]),
            (vec![], vec![]),
        ]
    );

    let mut chains = ChainSet::default();
    chains.push(&[], &strings(&["a.example.com", "b.example.com"]), filter());
    chains.push(&[], &strings(&["b.example.com", "c.example.com"]), filter());
    chains.push(
        &strings(&["10.0.0.0/8"]),
        &strings(&["a.example.com"]),
        filter(),
    );
    chains.push(&[], &strings(&["a.example.com"]), filter());
    assert_eq!(
        matches(&chains),
        [
            (vec![], strings(&["a.example.com", "b.example.com"])),
            (vec![], strings(&["c.example.com"])),
            (strings(&["10.0.0.0/8"]), strings(&["a.example.com"])),
        ]
    );
}

//! Property tests of the ring: balance, minimal movement, preference lists.

use std::collections::{BTreeMap, BTreeSet};

use dynamo_core::ring::{partition_of, quotas, Role};
use dynamo_core::Ring;
use proptest::prelude::*;

fn members(weights: &[u32]) -> BTreeMap<String, u32> {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| (format!("node{i:02}"), *w))
        .collect()
}

/// Every node within one partition of its exact weighted share.
fn assert_balanced(ring: &Ring, members: &BTreeMap<String, u32>) -> Result<(), TestCaseError> {
    let q = ring.partitions() as f64;
    let total: u32 = members.values().sum();
    let counts = ring.owned_counts();
    prop_assert_eq!(counts.values().sum::<u32>(), ring.partitions());
    for (node, w) in members {
        let exact = q * *w as f64 / total as f64;
        let have = counts.get(node).copied().unwrap_or(0) as f64;
        prop_assert!(
            (have - exact).abs() < 1.0,
            "{} has {} partitions, fair share {:.2}",
            node,
            have,
            exact
        );
    }
    for node in counts.keys() {
        prop_assert!(
            members.contains_key(node),
            "{} owns partitions but is not a member",
            node
        );
    }
    Ok(())
}

/// The fewest partitions any assignment meeting the quotas must move.
fn minimal_moves(before: &Ring, after_members: &BTreeMap<String, u32>) -> u32 {
    let quotas = quotas(after_members, before.partitions());
    before
        .owned_counts()
        .iter()
        .map(|(node, &have)| have.saturating_sub(quotas.get(node).copied().unwrap_or(0)))
        .sum()
}

fn moved(a: &Ring, b: &Ring) -> u32 {
    a.owners().iter().zip(b.owners()).filter(|(x, y)| x != y).count() as u32
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rebalance_is_balanced_and_moves_the_minimum(
        weights in proptest::collection::vec(1u32..4, 1..8),
        q in prop_oneof![Just(8u32), Just(16), Just(64), Just(128)],
        extra in 1u32..4,
        leaver in 0usize..8,
        n in 1usize..4,
    ) {
        let start = members(&weights);
        prop_assume!(q as usize > start.len());
        let ring = Ring::single("node00", q).rebalance(&start, n);
        assert_balanced(&ring, &start)?;

        // A node joins.
        let mut grown = start.clone();
        grown.insert("joiner".into(), extra);
        let after_join = ring.rebalance(&grown, n);
        assert_balanced(&after_join, &grown)?;
        prop_assert_eq!(moved(&ring, &after_join), minimal_moves(&ring, &grown));

        // A node leaves.
        let mut shrunk = grown.clone();
        let gone = shrunk.keys().nth(leaver % shrunk.len()).cloned().unwrap_or_default();
        shrunk.remove(&gone);
        prop_assume!(!shrunk.is_empty());
        let after_leave = after_join.rebalance(&shrunk, n);
        assert_balanced(&after_leave, &shrunk)?;
        prop_assert_eq!(moved(&after_join, &after_leave), minimal_moves(&after_join, &shrunk));
        prop_assert!(after_leave.version > after_join.version);
    }

    #[test]
    fn preference_lists_have_n_distinct_live_nodes(
        count in 1usize..8,
        n in 1usize..5,
        dead in proptest::collection::btree_set(0usize..8, 0..4),
        key in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let m = members(&vec![1; count]);
        let ring = Ring::single("node00", 32).rebalance(&m, n);
        let p = partition_of(&key, ring.partitions());
        let owners = ring.owners_of(p, n);
        prop_assert_eq!(owners.len(), n.min(count));
        prop_assert_eq!(owners.iter().collect::<BTreeSet<_>>().len(), owners.len());

        let is_live = |node: &str| !dead.iter().any(|d| format!("node{d:02}") == node);
        let live_count = m.keys().filter(|node| is_live(node)).count();
        let list = ring.preference_list(p, n, is_live);
        prop_assert_eq!(list.len(), n.min(live_count));
        let distinct: BTreeSet<_> = list.iter().map(|e| &e.node).collect();
        prop_assert_eq!(distinct.len(), list.len());
        for entry in &list {
            prop_assert!(is_live(&entry.node));
            match &entry.role {
                Role::Primary => prop_assert!(owners.contains(&entry.node)),
                Role::Fallback { for_node } => {
                    prop_assert!(!owners.contains(&entry.node));
                    prop_assert!(owners.contains(for_node) && !is_live(for_node));
                }
            }
        }
    }
}

#[test]
fn equal_weights_spread_replication_evenly() {
    let m = members(&[1, 1, 1, 1]);
    let ring = Ring::single("node00", 64).rebalance(&m, 3);
    for (node, count) in ring.replicated_counts(3) {
        assert_eq!(count, 48, "{node} replicates {count} partitions");
    }
}

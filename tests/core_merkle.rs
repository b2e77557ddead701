//! Property tests of the Merkle leaves and trees: incremental updates equal
//! a rebuild, and a top-down diff finds exactly the leaves whose keys'
//! version sets differ.

use std::collections::{BTreeMap, BTreeSet};

use dynamo_core::merkle::{leaf_of_position, DigestTable};
use dynamo_core::ring::ring_position;
use proptest::prelude::*;

const Q: u32 = 8;

/// A replica's contents: key → encoded object (any bytes will do here).
type Contents = BTreeMap<Vec<u8>, Vec<u8>>;

fn table_of(contents: &Contents) -> DigestTable {
    let t = DigestTable::new(Q);
    for (k, v) in contents {
        t.apply(k, None, Some(v));
    }
    t
}

fn ops() -> impl Strategy<Value = Vec<(u16, Option<u8>)>> {
    // (key id, Some(value) = write, None = delete)
    proptest::collection::vec((0u16..300, proptest::option::of(any::<u8>())), 0..400)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn incremental_updates_equal_a_rebuild(ops in ops()) {
        let live = DigestTable::new(Q);
        let mut contents = Contents::new();
        for (id, value) in ops {
            let key = format!("key-{id}").into_bytes();
            let old = contents.get(&key).cloned();
            match value {
                Some(v) => {
                    let new = vec![v; 3];
                    live.apply(&key, old.as_deref(), Some(&new));
                    contents.insert(key, new);
                }
                None => {
                    live.apply(&key, old.as_deref(), None);
                    contents.remove(&key);
                }
            }
        }
        let rebuilt = table_of(&contents);
        for p in 0..Q {
            prop_assert_eq!(live.leaves(p), rebuilt.leaves(p));
        }
    }

    #[test]
    fn diff_finds_exactly_the_leaves_of_differing_keys(
        base in proptest::collection::btree_map(0u16..2000, any::<u8>(), 0..500),
        changes in proptest::collection::vec((0u16..2000, proptest::option::of(any::<u8>())), 0..20),
    ) {
        let a: Contents = base.iter().map(|(k, v)| (format!("k{k}").into_bytes(), vec![*v])).collect();
        let mut b = a.clone();
        for (k, v) in changes {
            let key = format!("k{k}").into_bytes();
            match v {
                Some(v) => { b.insert(key, vec![v, 1]); }
                None => { b.remove(&key); }
            }
        }
        let differing_keys: BTreeSet<&Vec<u8>> = a.keys().chain(b.keys())
            .filter(|k| a.get(*k) != b.get(*k))
            .collect();
        let (ta, tb) = (table_of(&a), table_of(&b));
        for p in 0..Q {
            let expected: BTreeSet<u32> = differing_keys.iter()
                .map(|k| leaf_of_position(ring_position(k), Q))
                .filter(|(kp, _)| *kp == p)
                .map(|(_, leaf)| leaf)
                .collect();
            let found: BTreeSet<u32> = ta.tree(p).diff(&tb.tree(p)).into_iter().collect();
            prop_assert_eq!(found, expected, "partition {}", p);
        }
    }
}

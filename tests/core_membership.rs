//! Property tests of membership merge: a join-semilattice, so gossip
//! converges whatever order views meet in.

use dynamo_core::membership::{ClusterState, Member, MemberState};
use dynamo_core::Ring;
use proptest::prelude::*;

fn state() -> impl Strategy<Value = ClusterState> {
    (
        proptest::collection::vec((0u8..4, 1u64..3, 0u64..4), 1..5),
        0u64..3,
        0u8..4,
    )
        .prop_map(|(entries, ring_version, owner)| {
            let mut members = std::collections::BTreeMap::new();
            for (id, generation, version) in entries {
                let node_id = format!("n{id}");
                members.insert(
                    node_id.clone(),
                    Member {
                        node_id: node_id.clone(),
                        // Same stamp must mean same content, as in a real cluster.
                        peer_addr: format!("{node_id}:{generation}{version}"),
                        http_addr: format!("{node_id}:80"),
                        weight: 1,
                        generation,
                        version,
                        state: [MemberState::Active, MemberState::Leaving, MemberState::Removed]
                            [((generation + version) % 3) as usize],
                    },
                );
            }
            let ring = Ring::from_owners(ring_version, vec![format!("n{owner}"); 4]);
            ClusterState { members, ring }
        })
}

fn merged(a: &ClusterState, b: &ClusterState) -> ClusterState {
    let mut out = a.clone();
    out.merge(b);
    out
}

proptest! {
    #[test]
    fn merge_is_commutative_associative_idempotent(a in state(), b in state(), c in state()) {
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        prop_assert_eq!(merged(&a, &a), a.clone());
    }

    #[test]
    fn claim_after_convergence_agrees(a in state(), b in state()) {
        let mut x = merged(&a, &b);
        let mut y = merged(&b, &a);
        let claimant = x.claimant().cloned();
        if let Some(c) = claimant {
            x.claim(&c, 3);
            y.claim(&c, 3);
        }
        prop_assert_eq!(x, y);
    }
}

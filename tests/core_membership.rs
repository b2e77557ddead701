//! Property tests of membership merge: a join-semilattice, so gossip
//! converges whatever order views meet in.

use dynamo_core::hygiene::{CleanMark, MemberHygiene, Sweep};
use dynamo_core::membership::{ClusterState, Member, MemberState};
use dynamo_core::{Actor, Ring};
use proptest::prelude::*;

fn state() -> impl Strategy<Value = ClusterState> {
    (
        proptest::collection::vec((0u8..4, 1u64..3, 0u64..4), 1..5),
        0u64..3,
        0u8..4,
        proptest::option::of((0u64..5, 0u8..4)),
        proptest::collection::btree_map(0u8..4, (0u64..3, 0u64..3), 0..2),
        (0u64..3, proptest::bool::ANY, 0u8..4),
    )
        .prop_map(
            |(entries, ring_version, owner, target, removed, (sweep_id, confirming, swept))| {
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
                            state: [MemberState::Active, MemberState::Leaving][((generation + version) % 2) as usize],
                            // A later incarnation has a later generation.
                            epoch: generation,
                            ready_for: version,
                            hygiene: MemberHygiene {
                                clean: (version % 2 == 0).then_some(CleanMark {
                                    sweep: version % 3,
                                    generation,
                                    dirt: version,
                                }),
                                confirmed: version % 3,
                                drops: version % 2,
                            },
                        },
                    );
                }
                let ring = Ring::from_owners(ring_version, vec![format!("n{owner}"); 4]);
                let target = target.map(|(v, o)| Ring::from_owners(v, vec![format!("n{o}"); 4]));
                let removed = removed
                    .into_iter()
                    // An incarnation is removed at its own generation (its epoch
                    // here), which removes every earlier one too.
                    .map(|(id, (generation, hygiene))| {
                        (
                            format!("n{id}"),
                            dynamo_core::membership::Removal {
                                generation,
                                epochs: [generation].into(),
                                superseded: (1..=hygiene).map(|_| (generation, hygiene)).collect(),
                                forgotten: (hygiene == 2).then_some(generation).into_iter().collect(),
                            },
                        )
                    })
                    .collect();
                // A view as merge would leave it.
                let mut state = ClusterState {
                    members: Default::default(),
                    removed,
                    ring,
                    target: None,
                    sweep: Sweep {
                        id: sweep_id,
                        confirm: confirming.then(|| {
                            [(
                                "n0".to_string(),
                                CleanMark {
                                    sweep: sweep_id,
                                    generation: 1,
                                    dirt: 0,
                                },
                            )]
                            .into()
                        }),
                        actors: [Actor::new(format!("n{swept}"), 1)].into(),
                    },
                };
                state.merge(&ClusterState {
                    members,
                    removed: Default::default(),
                    ring: state.ring.clone(),
                    target,
                    sweep: Sweep::default(),
                });
                state
            },
        )
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
            x.sweep_step(&c);
            y.sweep_step(&c);
        }
        prop_assert_eq!(x, y);
    }
}

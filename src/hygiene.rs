//! Clock hygiene: when a retired store incarnation's entries may leave
//! the clocks.
//!
//! Every actor that ever coordinated a write has an entry in the clocks of
//! the versions that followed, and a cluster that grows and shrinks would
//! carry removed nodes' entries forever. Dynamo §4.4 truncates clocks by
//! length, which can make a version look older than it is and lose it. Here
//! an entry goes only when it can no longer matter (see
//! [`Object::forget`](crate::dvv::Object::forget)): its actor is retired (a
//! removed or departed incarnation, listed in [`Removal::epochs`]) and no
//! version it minted is left on any member.
//!
//! No member can see the whole cluster at once, so the claimant runs a
//! **sweep**, a two-round snapshot over gossip:
//! 1. Each member scans its store and hints; finding no version of the
//!    sweep's actors, it publishes a [`CleanMark`] carrying its *dirt*
//!    counter, which it bumps whenever it stores such a version afterwards
//!    (a delayed copy arriving), and withdraws on any bump.
//! 2. Once every member has a mark, the claimant publishes them back as the
//!    sweep's `confirm`; each member whose mark is still current answers
//!    with `confirmed`. A member that answers was clean from its mark until
//!    after the claimant published, so at that instant every member was
//!    clean together: every version of the actors had been superseded.
//! 3. The claimant records the actors as **superseded**; members then drop
//!    any copy that turns up and say so (`drops`); once every member does,
//!    the actors are **forgotten** and their entries leave clocks.
//!
//! A member that is down stalls a sweep (it may hold such a version); a
//! membership change restarts one. Everything here is pure and lives in the
//! gossiped [`ClusterState`]; the node's hygiene actor does the scanning.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::dvv::{Actor, Retired};
use crate::membership::{ClusterState, Removal};
use crate::ring::NodeId;

/// A member's claim: "I hold no version of sweep `sweep`'s actors, and my
/// dirt counter has stayed at `dirt` since I checked".
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CleanMark {
    /// The sweep it answers.
    pub sweep: u64,
    /// The member's generation when it checked: a restart voids the mark.
    pub generation: u64,
    /// The member's dirt counter when it checked.
    pub dirt: u64,
}

/// A member's part in clock hygiene, published in its gossip entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHygiene {
    /// Its current mark, if it is clean.
    pub clean: Option<CleanMark>,
    /// The sweep whose confirmation it answered (0: none).
    pub confirmed: u64,
    /// The latest sweep whose superseded actors it drops (0: none).
    pub drops: u64,
}

/// The claimant's sweep. Ordered so gossip keeps the latest: a higher id,
/// then the confirming round over the first.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sweep {
    /// Rises with every new round (0: none yet).
    pub id: u64,
    /// The marks every member published, once all had one.
    pub confirm: Option<BTreeMap<NodeId, CleanMark>>,
    /// Retired actors not yet superseded (empty: idle).
    pub actors: BTreeSet<Actor>,
}

impl Removal {
    /// This removal's incarnations as clock actors.
    fn actors<'a>(&'a self, node: &'a str) -> impl Iterator<Item = (u64, Actor)> + 'a {
        self.epochs.iter().map(move |&e| (e, Actor::new(node, e)))
    }
}

impl ClusterState {
    /// Retired actors whose versions are not yet known to be superseded.
    pub fn unswept(&self) -> BTreeSet<Actor> {
        self.removed
            .iter()
            .flat_map(|(node, r)| r.actors(node).filter(|(e, _)| !r.superseded.contains_key(e)))
            .map(|(_, a)| a)
            .collect()
    }

    /// What every replica applies to what it stores ([`Object::forget`](crate::dvv::Object::forget)).
    pub fn retired(&self) -> Retired {
        let mut retired = Retired::default();
        for (node, r) in &self.removed {
            for (epoch, actor) in r.actors(node) {
                if r.forgotten.contains(&epoch) {
                    retired.forgotten.insert(actor);
                } else if r.superseded.contains_key(&epoch) {
                    retired.superseded.insert(actor);
                }
            }
        }
        retired
    }

    /// The latest sweep whose actors are superseded (what a member states
    /// in `drops` once it applies [`ClusterState::retired`]).
    pub fn latest_superseded(&self) -> u64 {
        self.removed
            .values()
            .flat_map(|r| r.superseded.values().copied())
            .max()
            .unwrap_or(0)
    }

    /// The claimant's move in clock hygiene: forget superseded actors that
    /// every member drops, start a sweep when retired actors are unswept,
    /// confirm it once every member is clean, and conclude it once every
    /// member confirmed. Returns whether anything changed.
    pub fn sweep_step(&mut self, me: &str) -> bool {
        if self.claimant().map(String::as_str) != Some(me) {
            return false;
        }
        let mut changed = self.forget_dropped();
        let wanted = self.unswept();
        if self.sweep.actors != wanted {
            self.sweep = Sweep {
                id: self.sweep.id.saturating_add(1),
                confirm: None,
                actors: wanted,
            };
            return true;
        }
        if wanted.is_empty() {
            return changed;
        }
        let id = self.sweep.id;
        match self.sweep.confirm.clone() {
            None => {
                let marks: Option<BTreeMap<NodeId, CleanMark>> = self
                    .members
                    .values()
                    .map(|m| match &m.hygiene.clean {
                        Some(mark) if mark.sweep == id && mark.generation == m.generation => {
                            Some((m.node_id.clone(), mark.clone()))
                        }
                        _ => None,
                    })
                    .collect();
                if let Some(marks) = marks {
                    self.sweep.confirm = Some(marks);
                    changed = true;
                }
            }
            Some(marks) => {
                let same_members = marks.keys().eq(self.members.keys());
                let still_clean = self.members.values().all(|m| {
                    m.hygiene.clean.as_ref().is_some_and(|c| c.generation == m.generation)
                        && m.hygiene.clean.as_ref() == marks.get(&m.node_id)
                });
                if !same_members || !still_clean {
                    // Someone joined, went, restarted or took in a version
                    // of the actors: the snapshot failed; take another.
                    self.sweep = Sweep {
                        id: id.saturating_add(1),
                        confirm: None,
                        actors: wanted,
                    };
                    return true;
                }
                if self.members.values().all(|m| m.hygiene.confirmed == id) {
                    for actor in &self.sweep.actors {
                        if let Some(r) = self.removed.get_mut(&actor.node) {
                            r.superseded.insert(actor.epoch, id);
                        }
                    }
                    self.sweep = Sweep {
                        id: id.saturating_add(1),
                        confirm: None,
                        actors: BTreeSet::new(),
                    };
                    changed = true;
                }
            }
        }
        changed
    }

    /// Move superseded actors that every member drops to forgotten.
    fn forget_dropped(&mut self) -> bool {
        let dropping = self.members.values().map(|m| m.hygiene.drops).min().unwrap_or(0);
        let mut changed = false;
        for r in self.removed.values_mut() {
            for (&epoch, &sweep) in &r.superseded {
                if sweep <= dropping && r.forgotten.insert(epoch) {
                    changed = true;
                }
            }
        }
        changed
    }

    /// Whether this member should answer the sweep's confirmation round:
    /// it carries `mark`, this member's current mark, and it has not yet.
    pub fn confirmation_due(&self, me: &str, mark: &CleanMark) -> bool {
        let Some(member) = self.member(me) else { return false };
        member.hygiene.confirmed != self.sweep.id
            && self
                .sweep
                .confirm
                .as_ref()
                .is_some_and(|marks| marks.get(me) == Some(mark))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::{Member, MemberState};

    fn member(id: &str) -> Member {
        Member {
            node_id: id.into(),
            peer_addr: format!("{id}:9000"),
            http_addr: format!("{id}:8000"),
            weight: 1,
            generation: 1,
            version: 1,
            state: MemberState::Active,
            epoch: 7,
            ready_for: 0,
            hygiene: MemberHygiene::default(),
        }
    }

    /// Three members, and `d` removed.
    fn cluster() -> ClusterState {
        let mut s = ClusterState::new(member("a"), 8, true);
        for id in ["b", "c", "d"] {
            s.members.insert(id.into(), member(id));
        }
        assert!(s.remove("d"));
        s
    }

    fn set(s: &mut ClusterState, id: &str, change: impl FnOnce(&mut MemberHygiene)) {
        let m = s.members.get_mut(id).unwrap();
        change(&mut m.hygiene);
        m.version += 1;
    }

    fn mark_all(s: &mut ClusterState) {
        let sweep = s.sweep.id;
        for id in ["a", "b", "c"] {
            set(s, id, |h| {
                h.clean = Some(CleanMark {
                    sweep,
                    generation: 1,
                    dirt: 3,
                })
            });
        }
    }

    fn confirm_all(s: &mut ClusterState) {
        let sweep = s.sweep.id;
        for id in ["a", "b", "c"] {
            let mark = s.members[id].hygiene.clean.clone().unwrap();
            assert!(s.confirmation_due(id, &mark));
            set(s, id, |h| h.confirmed = sweep);
        }
    }

    #[test]
    fn a_sweep_supersedes_then_forgets_a_removed_actor() {
        let mut s = cluster();
        let d = Actor::new("d", 7);
        assert!(!s.sweep_step("b"), "only the claimant sweeps");
        assert!(s.sweep_step("a"));
        assert_eq!(s.sweep.actors, BTreeSet::from([d.clone()]));
        assert!(!s.sweep_step("a"), "waits for every member's mark");
        mark_all(&mut s);
        assert!(s.sweep_step("a"));
        assert_eq!(s.sweep.confirm.as_ref().map(|m| m.len()), Some(3));
        assert!(!s.sweep_step("a"), "waits for every confirmation");
        confirm_all(&mut s);
        assert!(s.sweep_step("a"));
        let superseded_in = s.removed["d"].superseded[&7];
        assert_eq!(s.retired().superseded, BTreeSet::from([d.clone()]));
        assert!(s.retired().forgotten.is_empty(), "not before every member drops");
        assert!(s.sweep.actors.is_empty());
        for id in ["a", "b"] {
            set(&mut s, id, |h| h.drops = superseded_in);
        }
        assert!(!s.sweep_step("a"));
        set(&mut s, "c", |h| h.drops = superseded_in);
        assert!(s.sweep_step("a"));
        assert_eq!(s.retired().forgotten, BTreeSet::from([d]));
        assert!(s.retired().superseded.is_empty());
        assert!(!s.sweep_step("a"), "nothing left to do");
    }

    #[test]
    fn a_member_dirtied_before_confirming_restarts_the_sweep() {
        let mut s = cluster();
        s.sweep_step("a");
        mark_all(&mut s);
        s.sweep_step("a");
        let first = s.sweep.id;
        set(&mut s, "a", |h| h.confirmed = first);
        // b took in a late copy of one of d's versions: it withdraws.
        set(&mut s, "b", |h| h.clean = None);
        set(&mut s, "c", |h| h.confirmed = first);
        assert!(s.sweep_step("a"));
        assert!(s.removed["d"].superseded.is_empty(), "nothing is concluded");
        assert_eq!(s.sweep.id, first + 1);
        assert!(s.sweep.confirm.is_none());
        let stale = CleanMark {
            sweep: first,
            generation: 1,
            dirt: 3,
        };
        assert!(!s.confirmation_due("c", &stale), "old marks answer nothing");
    }

    #[test]
    fn a_restart_or_a_new_member_restarts_the_sweep() {
        let mut s = cluster();
        s.sweep_step("a");
        mark_all(&mut s);
        s.sweep_step("a");
        let first = s.sweep.id;
        // c restarted: same mark but a new generation is not enough.
        s.members.get_mut("c").unwrap().generation = 2;
        assert!(s.sweep_step("a"));
        assert_eq!(s.sweep.id, first + 1);

        let mut s = cluster();
        s.sweep_step("a");
        mark_all(&mut s);
        s.sweep_step("a");
        s.members.insert("e".into(), member("e"));
        assert!(s.sweep_step("a"));
        assert!(s.sweep.confirm.is_none());
        assert!(!s.sweep_step("a"), "the newcomer must mark first");
    }

    #[test]
    fn marks_of_another_generation_or_sweep_do_not_count() {
        let mut s = cluster();
        s.sweep_step("a");
        mark_all(&mut s);
        s.members.get_mut("b").unwrap().generation = 5;
        assert!(!s.sweep_step("a"));
        assert!(s.sweep.confirm.is_none());
    }

    #[test]
    fn a_second_removal_mid_sweep_starts_over_with_both() {
        let mut s = cluster();
        s.sweep_step("a");
        mark_all(&mut s);
        assert!(s.remove("c"));
        assert!(s.sweep_step("a"));
        assert_eq!(s.sweep.actors.len(), 2);
        assert!(s.sweep.confirm.is_none());
    }

    #[test]
    fn gossip_keeps_the_latest_sweep() {
        let mut a = cluster();
        a.sweep_step("a");
        let mut b = a.clone();
        mark_all(&mut b);
        b.sweep_step("a");
        confirm_all(&mut b);
        b.sweep_step("a");
        let mut stale = a.clone();
        stale.merge(&b);
        assert_eq!(stale.sweep, b.sweep);
        assert_eq!(stale.removed, b.removed);
        let mut back = b.clone();
        back.merge(&a);
        assert_eq!(back.sweep, b.sweep, "an older sweep never comes back");
    }
}

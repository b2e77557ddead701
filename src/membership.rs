//! Cluster membership: who is in the cluster and which ring is current.
//!
//! This is the state gossip carries (Cassandra's `EndpointState`, riak_core's
//! ring gossip). Each member's entry is versioned by its owner alone —
//! a `generation` bumped at every restart and a `version` bumped at every
//! change or heartbeat — so merging two views is a per-member "higher
//! (generation, version) wins", which is commutative, associative and
//! idempotent: views converge whatever order they meet in.
//!
//! The ring is versioned too. Only the **claimant** (the active member with
//! the smallest id, as in riak_core) computes a new ring when the set of
//! active members differs from the ring's, so concurrent rebalances cannot
//! fight; merge keeps the higher ring version, ties broken deterministically.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::hygiene::{MemberHygiene, Sweep};
use crate::ring::{NodeId, Ring};

/// A member's place in the cluster, as its owner declared it. Liveness
/// (up / suspect / down) is *not* here: every node judges that for itself
/// from heartbeats. A member removed for good is not a state either: it
/// leaves the member list for the `removed` set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// Serving and owning its share of partitions.
    Active,
    /// Handing its partitions over before it goes.
    Leaving,
}

/// One member as gossip knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Configured node id.
    pub node_id: NodeId,
    /// Node-to-node address.
    pub peer_addr: String,
    /// Client HTTP address.
    pub http_addr: String,
    /// Relative capacity; partitions are owned in proportion to it.
    pub weight: u32,
    /// Incremented at each restart of the member.
    pub generation: u64,
    /// Incremented by the member at each change or heartbeat.
    pub version: u64,
    /// Its declared place in the cluster.
    pub state: MemberState,
    /// Its store incarnation: a removal names it, so a wiped node (a new
    /// epoch) may join again under the same id while the removed
    /// incarnation stays out.
    pub epoch: u64,
    /// The version of the target ring whose partitions this member has
    /// pulled in full (0: none).
    pub ready_for: u64,
    /// Its part in clock hygiene.
    pub hygiene: MemberHygiene,
}

impl Member {
    /// The order in which two entries for the same member supersede.
    fn stamp(&self) -> (u64, u64) {
        (self.generation, self.version)
    }
}

/// What is known of a member's removal: every incarnation with a generation
/// up to `generation`, and the store incarnations `epochs` whatever their
/// generation (a removed node restarted on its old data dir gets a new
/// generation but keeps its epoch, and stays out). A node wiped and started
/// anew has a new epoch and a later generation, and may join again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removal {
    /// Highest generation removed.
    pub generation: u64,
    /// Store epochs removed.
    pub epochs: BTreeSet<u64>,
    /// Removed epochs none of whose versions is left anywhere, with the
    /// sweep that found it (see [`crate::hygiene`]).
    pub superseded: BTreeMap<u64, u64>,
    /// Superseded epochs every member drops: gone from clocks.
    pub forgotten: BTreeSet<u64>,
}

impl Removal {
    fn covers(&self, m: &Member) -> bool {
        m.generation <= self.generation || self.epochs.contains(&m.epoch)
    }

    fn join(&mut self, other: &Removal) {
        self.generation = self.generation.max(other.generation);
        self.epochs.extend(other.epochs.iter().copied());
        for (&epoch, &sweep) in &other.superseded {
            let entry = self.superseded.entry(epoch).or_insert(sweep);
            *entry = (*entry).max(sweep);
        }
        self.forgotten.extend(other.forgotten.iter().copied());
    }
}

/// Everything gossip spreads: members, the current ring and the next one.
///
/// Membership changes are two-phase, like riak_core's claim and handoff:
/// the claimant computes a **target** ring; every node that gains replicas
/// in it pulls their data and declares itself ready (`ready_for`); then the
/// claimant makes the target current. Until then the current ring serves
/// reads and counts quorums, and writes also reach the target's new owners,
/// so nothing written during a transfer is missed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Every member, by id (removed ones excluded).
    pub members: BTreeMap<NodeId, Member>,
    /// Members removed for good (grow-only).
    pub removed: BTreeMap<NodeId, Removal>,
    /// The partition assignment in force.
    pub ring: Ring,
    /// The assignment being transferred to, if any.
    pub target: Option<Ring>,
    /// The claimant's clock-hygiene sweep.
    pub sweep: Sweep,
}

impl ClusterState {
    /// A node's first view: itself, and a ring that is either its own new
    /// one-node cluster (`founder`) or a placeholder (version 0) that any
    /// real cluster's ring replaces.
    pub fn new(me: Member, partitions: u32, founder: bool) -> Self {
        let mut ring = Ring::single(&me.node_id, partitions);
        if !founder {
            ring.version = 0;
        }
        let mut members = BTreeMap::new();
        members.insert(me.node_id.clone(), me);
        ClusterState {
            members,
            removed: BTreeMap::new(),
            ring,
            target: None,
            sweep: Sweep::default(),
        }
    }

    /// Merge another view into this one (a join-semilattice: commutative,
    /// associative, idempotent). Returns whether anything changed.
    pub fn merge(&mut self, other: &ClusterState) -> bool {
        let before = self.clone();
        for (id, removal) in &other.removed {
            self.removed.entry(id.clone()).or_default().join(removal);
        }
        for (id, theirs) in &other.members {
            match self.members.get(id) {
                Some(ours) if ours.stamp() >= theirs.stamp() => {}
                _ => {
                    self.members.insert(id.clone(), theirs.clone());
                }
            }
        }
        let removed = &self.removed;
        self.members
            .retain(|id, m| !removed.get(id).is_some_and(|r| r.covers(m)));
        if ring_wins(&other.ring, &self.ring) {
            self.ring = other.ring.clone();
        }
        if let Some(theirs) = &other.target {
            if self.target.as_ref().is_none_or(|ours| ring_wins(theirs, ours)) {
                self.target = Some(theirs.clone());
            }
        }
        if self.target.as_ref().is_some_and(|t| t.version <= self.ring.version) {
            self.target = None;
        }
        if other.sweep > self.sweep {
            self.sweep = other.sweep.clone();
        }
        *self != before
    }

    /// Members that should own partitions, with their weights.
    pub fn active_weights(&self) -> BTreeMap<NodeId, u32> {
        self.members
            .values()
            .filter(|m| m.state == MemberState::Active)
            .map(|m| (m.node_id.clone(), m.weight))
            .collect()
    }

    /// The claimant: the active member with the smallest id.
    pub fn claimant(&self) -> Option<&NodeId> {
        self.members
            .values()
            .find(|m| m.state == MemberState::Active)
            .map(|m| &m.node_id)
    }

    /// Nodes that replicate partitions in `target` they do not replicate in
    /// the current ring: they must pull data before the target takes over.
    pub fn gaining(&self, target: &Ring, n: usize) -> BTreeSet<NodeId> {
        target
            .nodes()
            .into_iter()
            .filter(|node| {
                !target
                    .replicated_by(node, n)
                    .is_subset(&self.ring.replicated_by(node, n))
            })
            .collect()
    }

    /// The partitions `node` must pull for the current target.
    pub fn partitions_to_pull(&self, node: &str, n: usize) -> BTreeSet<u32> {
        match &self.target {
            Some(t) => t
                .replicated_by(node, n)
                .difference(&self.ring.replicated_by(node, n))
                .copied()
                .collect(),
            None => BTreeSet::new(),
        }
    }

    /// Owners of `partition` in the target ring that are not owners in the
    /// current one: writes reach them too while the transfer runs.
    pub fn incoming_owners(&self, partition: u32, n: usize) -> Vec<NodeId> {
        let Some(t) = &self.target else { return Vec::new() };
        let current = self.ring.owners_of(partition, n);
        t.owners_of(partition, n)
            .into_iter()
            .filter(|o| !current.contains(o))
            .collect()
    }

    /// Whether `node` replicates `partition` now or in the target ring.
    pub fn keeps(&self, node: &str, partition: u32, n: usize) -> bool {
        let holds = |r: &Ring| r.owners_of(partition, n).iter().any(|o| o == node);
        holds(&self.ring) || self.target.as_ref().is_some_and(holds)
    }

    /// The claimant's move: found the first ring, finish a transfer whose
    /// gaining nodes are all ready, or plan a new target when the active
    /// members differ from the ring's. Returns whether anything changed.
    pub fn claim(&mut self, me: &str, n: usize) -> bool {
        if self.claimant().map(String::as_str) != Some(me) {
            return false;
        }
        let weights = self.active_weights();
        let wanted: BTreeSet<&NodeId> = weights.keys().collect();
        if self.ring.version == 0 {
            // A new cluster: nobody holds data yet, so no transfer.
            let mut first = self.ring.rebalance(&weights, n);
            first.version = 1;
            self.ring = first;
            self.target = None;
            return true;
        }
        if let Some(target) = &self.target {
            if target.nodes().iter().collect::<BTreeSet<_>>() == wanted {
                let ready = self
                    .gaining(target, n)
                    .iter()
                    .all(|g| self.members.get(g).is_some_and(|m| m.ready_for >= target.version));
                if ready {
                    self.ring = target.clone();
                    self.target = None;
                    return true;
                }
                return false;
            }
        } else if self.ring.nodes().iter().collect::<BTreeSet<_>>() == wanted {
            return false;
        }
        // Plan (or re-plan, if membership changed mid-transfer) from the
        // ring in force, so only what must move moves.
        let mut next = self.ring.rebalance(&weights, n);
        // Saturating, like `Ring::rebalance`: a peer may gossip any version.
        next.version = self
            .ring
            .version
            .max(self.target.as_ref().map_or(0, |t| t.version))
            .saturating_add(1);
        self.target = Some(next);
        true
    }

    /// Look a member up.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.get(id)
    }

    /// Whether this store incarnation was removed from the cluster.
    pub fn is_removed(&self, id: &str, epoch: u64) -> bool {
        self.removed.get(id).is_some_and(|r| r.epochs.contains(&epoch))
    }

    /// Remove a member for good (operator's `remove`, or a completed leave).
    pub fn remove(&mut self, id: &str) -> bool {
        match self.members.remove(id) {
            Some(m) => {
                let removal = self.removed.entry(id.to_string()).or_default();
                removal.generation = removal.generation.max(m.generation);
                removal.epochs.insert(m.epoch);
                true
            }
            None => false,
        }
    }
}

/// Whether ring `a` should replace ring `b`.
fn ring_wins(a: &Ring, b: &Ring) -> bool {
    (a.version, a.owners()) > (b.version, b.owners())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, generation: u64, version: u64) -> Member {
        Member {
            node_id: id.into(),
            peer_addr: format!("{id}:9000"),
            http_addr: format!("{id}:8000"),
            weight: 1,
            generation,
            version,
            state: MemberState::Active,
            epoch: 7,
            ready_for: 0,
            hygiene: MemberHygiene::default(),
        }
    }

    #[test]
    fn newer_generation_wins() {
        let mut a = ClusterState::new(member("a", 1, 9), 8, true);
        let b = ClusterState::new(member("a", 2, 1), 8, true);
        assert!(a.merge(&b));
        assert_eq!(a.members["a"].generation, 2);
        assert!(!a.merge(&b));
    }

    #[test]
    fn new_cluster_forms_without_transfer() {
        let mut a = ClusterState::new(member("a", 1, 1), 16, false);
        let b = ClusterState::new(member("b", 1, 1), 16, false);
        a.merge(&b);
        assert!(a.claim("a", 3));
        assert_eq!(a.ring.nodes().len(), 2);
        assert_eq!(a.ring.version, 1);
        assert!(a.target.is_none());
        let mut b2 = b.clone();
        b2.merge(&a);
        assert!(!b2.claim("b", 3));
        assert_eq!(b2.ring, a.ring);
    }

    #[test]
    fn a_join_is_planned_pulled_then_switched() {
        let mut a = ClusterState::new(member("a", 1, 1), 16, true);
        let c = ClusterState::new(member("c", 1, 1), 16, false);
        a.merge(&c);
        assert_eq!(a.ring.nodes().len(), 1, "the founder's ring wins over a placeholder");
        assert!(a.claim("a", 2));
        let target = a.target.clone().expect("a target ring");
        assert_eq!(a.ring.nodes().len(), 1, "the current ring stays until c is ready");
        assert_eq!(a.gaining(&target, 2), BTreeSet::from(["c".to_string()]));
        assert!(!a.partitions_to_pull("c", 2).is_empty());
        assert!(!a.claim("a", 2), "nothing to do until c is ready");
        let mut ready = a.members["c"].clone();
        ready.ready_for = target.version;
        ready.version += 1;
        let mut news = a.clone();
        news.members.insert("c".into(), ready);
        a.merge(&news);
        assert!(a.claim("a", 2));
        assert_eq!(a.ring, target);
        assert!(a.target.is_none());
    }

    #[test]
    fn a_removed_incarnation_stays_out_but_a_new_one_may_join() {
        let mut a = ClusterState::new(member("a", 1, 1), 8, true);
        let b = ClusterState::new(member("b", 1, 1), 8, false);
        a.merge(&b);
        assert!(a.remove("b"));
        assert!(a.member("b").is_none());
        a.merge(&b);
        assert!(a.member("b").is_none(), "old gossip must not bring it back");
        let mut reborn = member("b", 2, 1);
        reborn.epoch = 8;
        let mut restarted = member("b", 3, 1);
        restarted.epoch = 7;
        a.merge(&ClusterState::new(restarted, 8, false));
        assert!(
            a.member("b").is_none(),
            "the removed incarnation stays out after a restart"
        );
        a.merge(&ClusterState::new(reborn, 8, false));
        assert!(a.member("b").is_some());
    }
}

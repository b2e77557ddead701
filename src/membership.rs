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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ring::{NodeId, Ring};

/// A member's place in the cluster, as its owner (or an operator) declared it.
/// Liveness (up / suspect / down) is *not* here: every node judges that for
/// itself from heartbeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberState {
    /// Serving and owning its share of partitions.
    Active,
    /// Handing its partitions over before it goes.
    Leaving,
    /// Gone for good; kept so the decision spreads and is never undone.
    Removed,
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
}

impl Member {
    /// The order in which two entries for the same member supersede.
    fn stamp(&self) -> (u64, u64) {
        (self.generation, self.version)
    }
}

/// Everything gossip spreads: members and the current ring.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Every member ever seen (removed ones included), by id.
    pub members: BTreeMap<NodeId, Member>,
    /// The partition assignment.
    pub ring: Ring,
}

impl ClusterState {
    /// A new one-node cluster around `me`.
    pub fn new(me: Member, partitions: u32) -> Self {
        let ring = Ring::single(&me.node_id, partitions);
        let mut members = BTreeMap::new();
        members.insert(me.node_id.clone(), me);
        ClusterState { members, ring }
    }

    /// Merge another view into this one. Returns whether anything changed.
    pub fn merge(&mut self, other: &ClusterState) -> bool {
        let mut changed = false;
        for (id, theirs) in &other.members {
            match self.members.get(id) {
                Some(ours) if ours.stamp() >= theirs.stamp() => {}
                _ => {
                    self.members.insert(id.clone(), theirs.clone());
                    changed = true;
                }
            }
        }
        if ring_wins(&other.ring, &self.ring) {
            self.ring = other.ring.clone();
            changed = true;
        }
        changed
    }

    /// Active members and their weights.
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

    /// If `me` is the claimant and the ring does not match the active
    /// members, compute the next ring. Returns whether the ring changed.
    pub fn claim(&mut self, me: &str, n: usize) -> bool {
        if self.claimant().map(String::as_str) != Some(me) {
            return false;
        }
        let weights = self.active_weights();
        let ring_nodes = self.ring.nodes();
        let members_match = ring_nodes.len() == weights.len() && ring_nodes.iter().all(|n| weights.contains_key(n));
        if members_match {
            return false;
        }
        self.ring = self.ring.rebalance(&weights, n);
        true
    }

    /// Look a member up.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.get(id)
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
        }
    }

    #[test]
    fn newer_generation_wins() {
        let mut a = ClusterState::new(member("a", 1, 9), 8);
        let b = ClusterState::new(member("a", 2, 1), 8);
        assert!(a.merge(&b));
        assert_eq!(a.members["a"].generation, 2);
        assert!(!a.merge(&b));
    }

    #[test]
    fn claimant_builds_ring_for_all_members() {
        let mut a = ClusterState::new(member("a", 1, 1), 16);
        let b = ClusterState::new(member("b", 1, 1), 16);
        a.merge(&b);
        assert!(a.claim("a", 3));
        assert_eq!(a.ring.nodes().len(), 2);
        let mut b2 = b.clone();
        b2.merge(&a);
        assert!(!b2.claim("b", 3));
        assert_eq!(b2.ring, a.ring);
    }
}

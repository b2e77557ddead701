//! The ring: where a key lives.
//!
//! Dynamo's partitioning strategy 3 (DeCandia et al. §6.2): the MD5 hash
//! space (128 bits) is cut into `Q` equal partitions, and each partition has
//! one owner. A key's partition is fixed by its hash alone, so partitions —
//! not keys — are what moves when membership changes. A key's **preference
//! list** is found by walking the ring clockwise from its partition and
//! taking each node the first time it appears (Dynamo §4.3); the first N are
//! the primaries, the rest fallbacks for sloppy quorum.
//!
//! [`Ring::rebalance`] assigns partitions in proportion to node weights,
//! keeping every node within one partition of its fair share while moving
//! only the partitions that must move (from departed or over-full nodes to
//! under-full ones), the idea of riak_core's claim. It also tries to keep a
//! node's partitions at least N apart so that the N owners of consecutive
//! partitions are distinct and replication load follows ownership.

use std::collections::{BTreeMap, BTreeSet};

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// A node's configured identity.
pub type NodeId = String;

/// Hash a key onto the 128-bit ring (Dynamo §4.2).
pub fn ring_position(key: &[u8]) -> u128 {
    u128::from_be_bytes(Md5::digest(key).into())
}

/// The partition a ring position falls in, for `partitions` equal slices.
pub fn partition_of_position(position: u128, partitions: u32) -> u32 {
    // Equal slices of 2^128: the top bits of position * Q / 2^128. Done in
    // two halves to stay inside u128.
    let q = partitions as u128;
    let hi = (position >> 64) * q;
    let lo = (position & u64::MAX as u128) * q;
    ((hi + (lo >> 64)) >> 64) as u32
}

/// The partition `key` belongs to.
pub fn partition_of(key: &[u8], partitions: u32) -> u32 {
    partition_of_position(ring_position(key), partitions)
}

/// The first ring position of partition `index` (inclusive). Total: an
/// `index` past the last partition is taken as the last one, and a ring of
/// 0 partitions as a ring of 1 (as [`partition_of_position`] does).
pub fn partition_start(index: u32, partitions: u32) -> u128 {
    let partitions = partitions.max(1);
    let index = index.min(partitions - 1);
    if index == 0 {
        return 0;
    }
    // ceil(index * 2^128 / Q), the inverse of `partition_of_position`.
    let q = partitions as u128;
    let whole = u128::MAX / q;
    let rem = u128::MAX % q + 1; // 2^128 = whole * q + rem
    let i = index as u128;
    let base = whole * i;
    let extra = (rem * i).div_ceil(q);
    base + extra
}

/// Whether a preference-list entry owns the key or stands in for one that does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// One of the first N distinct owners walking the ring.
    Primary,
    /// A node beyond the first N, used while `for_node` is down (sloppy quorum).
    Fallback {
        /// The primary this node stands in for.
        for_node: NodeId,
    },
}

/// One entry of a preference list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferenceEntry {
    /// The node to send to.
    pub node: NodeId,
    /// Why it is on the list.
    pub role: Role,
}

/// The partition-to-owner assignment, versioned so that gossip can tell a
/// newer assignment from an older one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ring {
    /// Bumped by every rebalance; the higher version wins a merge.
    pub version: u64,
    /// `owners[p]` owns partition `p`; `owners.len()` is Q.
    owners: Vec<NodeId>,
}

impl Ring {
    /// A ring with every partition owned by `node` (a new one-node cluster).
    pub fn single(node: &str, partitions: u32) -> Ring {
        Ring {
            version: 1,
            owners: vec![node.to_string(); partitions as usize],
        }
    }

    /// A ring from an explicit assignment (for tests and decoding).
    pub fn from_owners(version: u64, owners: Vec<NodeId>) -> Ring {
        Ring { version, owners }
    }

    /// Number of partitions (Q).
    pub fn partitions(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The owner of every partition, by index.
    pub fn owners(&self) -> &[NodeId] {
        &self.owners
    }

    /// The distinct nodes that own at least one partition, sorted.
    pub fn nodes(&self) -> BTreeSet<NodeId> {
        self.owners.iter().cloned().collect()
    }

    /// Distinct nodes walking the ring from `partition`, in order.
    fn walk(&self, partition: u32) -> Vec<&NodeId> {
        let q = self.owners.len();
        let mut seen: Vec<&NodeId> = Vec::new();
        for step in 0..q {
            let owner = &self.owners[(partition as usize + step) % q];
            if !seen.contains(&owner) {
                seen.push(owner);
            }
        }
        seen
    }

    /// The N primaries of a partition (fewer if the ring has fewer nodes).
    pub fn owners_of(&self, partition: u32, n: usize) -> Vec<NodeId> {
        self.walk(partition).into_iter().take(n).cloned().collect()
    }

    /// Dynamo's preference list for a partition, given which nodes are
    /// alive: the live primaries first, then live fallbacks standing in for
    /// the dead primaries, in ring order. At most N entries; fewer when fewer
    /// than N nodes are alive (never a silent downgrade of N).
    pub fn preference_list(&self, partition: u32, n: usize, is_live: impl Fn(&str) -> bool) -> Vec<PreferenceEntry> {
        let walk = self.walk(partition);
        let (primaries, rest) = walk.split_at(n.min(walk.len()));
        let mut list: Vec<PreferenceEntry> = primaries
            .iter()
            .filter(|node| is_live(node))
            .map(|node| PreferenceEntry {
                node: (*node).clone(),
                role: Role::Primary,
            })
            .collect();
        let mut dead = primaries.iter().filter(|node| !is_live(node));
        for node in rest.iter().filter(|node| is_live(node)) {
            let Some(for_node) = dead.next() else { break };
            list.push(PreferenceEntry {
                node: (*node).clone(),
                role: Role::Fallback {
                    for_node: (*for_node).clone(),
                },
            });
        }
        list
    }

    /// The partitions `node` is among the N owners of.
    pub fn replicated_by(&self, node: &str, n: usize) -> BTreeSet<u32> {
        (0..self.partitions())
            .filter(|&p| self.owners_of(p, n).iter().any(|o| o == node))
            .collect()
    }

    /// How many partitions each node owns (first owner).
    pub fn owned_counts(&self) -> BTreeMap<NodeId, u32> {
        let mut counts = BTreeMap::new();
        for owner in &self.owners {
            *counts.entry(owner.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// How many partitions each node replicates (is among the N owners of).
    pub fn replicated_counts(&self, n: usize) -> BTreeMap<NodeId, u32> {
        let mut counts = BTreeMap::new();
        for p in 0..self.partitions() {
            for owner in self.owners_of(p, n) {
                *counts.entry(owner).or_insert(0) += 1;
            }
        }
        counts
    }

    /// A new assignment for `members` (node → weight), starting from this
    /// one: partitions of departed nodes and the excess of over-full nodes go
    /// to under-full nodes; nothing else moves. `n` is the replication
    /// factor, used to keep each node's partitions spread out.
    pub fn rebalance(&self, members: &BTreeMap<NodeId, u32>, n: usize) -> Ring {
        let q = self.owners.len();
        if members.is_empty() || q == 0 {
            return self.clone();
        }
        let quotas = quotas(members, q as u32);
        let mut owners: Vec<Option<NodeId>> = self
            .owners
            .iter()
            .map(|o| members.contains_key(o).then(|| o.clone()))
            .collect();

        // Over-full nodes give up partitions; the ones they keep are evenly
        // spaced among those they had, so their share stays spread out.
        let mut counts: BTreeMap<NodeId, u32> = BTreeMap::new();
        for o in owners.iter().flatten() {
            *counts.entry(o.clone()).or_insert(0) += 1;
        }
        for (node, &quota) in &quotas {
            let have = counts.get(node).copied().unwrap_or(0);
            if have <= quota {
                continue;
            }
            let mine: Vec<usize> = (0..q).filter(|&p| owners[p].as_ref() == Some(node)).collect();
            let keep: BTreeSet<usize> = (0..quota as usize)
                .map(|j| mine[j * mine.len() / quota as usize])
                .collect();
            for p in mine {
                if !keep.contains(&p) {
                    owners[p] = None;
                }
            }
            counts.insert(node.clone(), quota);
        }

        // Free partitions go to the node furthest below its quota, preferring
        // nodes that do not already own a partition within N of it.
        for p in 0..q {
            if owners[p].is_some() {
                continue;
            }
            let pick = quotas
                .iter()
                .filter(|(node, &quota)| counts.get(*node).copied().unwrap_or(0) < quota)
                .max_by(|(a, qa), (b, qb)| {
                    let key = |node: &NodeId, quota: u32| {
                        let have = counts.get(node).copied().unwrap_or(0);
                        // Deficit relative to quota, compared without floats.
                        (
                            !too_close(&owners, p, node, n),
                            (quota - have) as u64 * 1_000_000 / quota as u64,
                        )
                    };
                    key(a, **qa).cmp(&key(b, **qb)).then_with(|| b.cmp(a))
                })
                .map(|(node, _)| node.clone());
            if let Some(node) = pick {
                *counts.entry(node.clone()).or_insert(0) += 1;
                owners[p] = Some(node);
            }
        }

        Ring {
            // Saturating: a version gossiped at the maximum must not
            // overflow (it then stays there, and the ring cannot advance).
            version: self.version.saturating_add(1),
            owners: owners.into_iter().map(|o| o.unwrap_or_default()).collect(),
        }
    }
}

/// Whether `node` owns a partition within `n - 1` steps of `p` either way.
fn too_close(owners: &[Option<NodeId>], p: usize, node: &NodeId, n: usize) -> bool {
    let q = owners.len();
    (1..n.min(q)).any(|d| owners[(p + d) % q].as_ref() == Some(node) || owners[(p + q - d) % q].as_ref() == Some(node))
}

/// Each node's share of `q` partitions: `floor(q * w / W)`, with the
/// remainder going to the largest fractional parts (ties to the smaller id),
/// so every node is within one partition of its exact fair share.
pub fn quotas(members: &BTreeMap<NodeId, u32>, q: u32) -> BTreeMap<NodeId, u32> {
    let total: u64 = members.values().map(|&w| w.max(1) as u64).sum();
    let mut shares: Vec<(NodeId, u32, u64)> = members
        .iter()
        .map(|(node, &w)| {
            let exact = q as u64 * w.max(1) as u64;
            (node.clone(), (exact / total) as u32, exact % total)
        })
        .collect();
    let assigned: u32 = shares.iter().map(|s| s.1).sum();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&i, &j| {
        shares[j]
            .2
            .cmp(&shares[i].2)
            .then_with(|| shares[i].0.cmp(&shares[j].0))
    });
    for &i in order.iter().take((q - assigned) as usize) {
        shares[i].1 += 1;
    }
    shares.into_iter().map(|(node, quota, _)| (node, quota)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> BTreeMap<NodeId, u32> {
        names.iter().map(|n| (n.to_string(), 1)).collect()
    }

    #[test]
    fn partitions_are_equal_slices() {
        for q in [1u32, 2, 3, 7, 64, 1024] {
            assert_eq!(partition_of_position(0, q), 0);
            assert_eq!(partition_of_position(u128::MAX, q), q - 1);
            for i in 0..q {
                let start = partition_start(i, q);
                assert_eq!(partition_of_position(start, q), i, "q={q} i={i}");
                if i > 0 {
                    assert_eq!(partition_of_position(start - 1, q), i - 1);
                }
            }
        }
    }

    #[test]
    fn three_equal_nodes_spread_out() {
        let ring = Ring::single("a", 64).rebalance(&members(&["a", "b", "c"]), 3);
        let counts = ring.owned_counts();
        assert_eq!(counts.values().sum::<u32>(), 64);
        assert!(counts.values().all(|&c| c == 21 || c == 22));
        for p in 0..64 {
            assert_eq!(ring.owners_of(p, 3).len(), 3);
        }
    }

    #[test]
    fn fallbacks_stand_in_for_dead_primaries() {
        let ring = Ring::single("a", 8).rebalance(&members(&["a", "b", "c", "d"]), 2);
        let primaries = ring.owners_of(0, 2);
        let dead = primaries[0].clone();
        let list = ring.preference_list(0, 2, |n| n != dead);
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].node, primaries[1]);
        assert_eq!(list[1].role, Role::Fallback { for_node: dead });
    }
}

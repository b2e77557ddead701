//! Merkle trees for anti-entropy (Merkle 1987; Dynamo §4.7).
//!
//! Each partition's ring range is cut into equal **leaves** (sub-ranges).
//! A leaf's digest is the XOR of the digests of its keys' (key, version
//! set) pairs, so a write updates it in O(1) — XOR out the old pair, XOR in
//! the new — without rereading anything (Riak's and Cassandra's trees
//! rehash a segment's sorted contents instead). The partition's tree hashes
//! leaves upwards with MD5, [`FANOUT`] children per node, and is built from
//! the leaf digests when an exchange needs it (a thousand digests:
//! microseconds). [`DigestTable`] holds every leaf digest of a node in
//! atomics, so storage threads update it without locks.
//!
//! Comparing two trees top-down ([`MerkleTree::children_to_compare`])
//! costs one root hash when replicas agree, and otherwise descends only
//! into differing subtrees, ending at the leaves whose keys must be
//! compared.

use std::sync::atomic::{AtomicU64, Ordering};

use md5::{Digest, Md5};

use crate::ring::{partition_of_position, partition_start, ring_position};

/// Children per inner node.
pub const FANOUT: usize = 32;

/// Leaves per partition for a ring of `q` partitions: about 65,536 on the
/// whole ring, at least 16 and at most 1,024 per partition.
pub fn leaves_per_partition(q: u32) -> u32 {
    (65_536 / q.max(1)).clamp(16, 1024)
}

/// First and last ring position of partition `p` of `q`. Total, like
/// [`partition_start`]: a `p` past the last partition is the last one.
pub fn partition_range(p: u32, q: u32) -> (u128, u128) {
    let q = q.max(1);
    let p = p.min(q - 1);
    let start = partition_start(p, q);
    let end = if p == q - 1 {
        u128::MAX
    } else {
        partition_start(p + 1, q) - 1
    };
    (start, end)
}

fn leaf_width(p: u32, q: u32) -> u128 {
    let (start, end) = partition_range(p, q);
    (end - start) / leaves_per_partition(q) as u128 + 1
}

/// The partition and leaf a ring position falls in.
pub fn leaf_of_position(position: u128, q: u32) -> (u32, u32) {
    let p = partition_of_position(position, q);
    let (start, _) = partition_range(p, q);
    let leaf = ((position - start) / leaf_width(p, q)) as u32;
    (p, leaf.min(leaves_per_partition(q) - 1))
}

/// First and last ring position of leaf `leaf` of partition `p`. Total: a
/// `leaf` past the last one (a peer's anti-entropy request may name any) is
/// the last leaf, and `p` is taken as [`partition_range`] takes it.
pub fn leaf_range(p: u32, leaf: u32, q: u32) -> (u128, u128) {
    let (start, end) = partition_range(p, q);
    let width = leaf_width(p, q);
    let last_leaf = leaves_per_partition(q) - 1;
    let leaf = leaf.min(last_leaf);
    let first = start + width * leaf as u128;
    let last = if leaf == last_leaf { end } else { first + width - 1 };
    (first, last.min(end))
}

/// Every leaf digest of one node, updated in place by storage threads.
#[derive(Debug)]
pub struct DigestTable {
    q: u32,
    per: u32,
    digests: Vec<AtomicU64>,
}

impl DigestTable {
    /// An all-zero table (no keys) for a ring of `q` partitions.
    pub fn new(q: u32) -> DigestTable {
        let per = leaves_per_partition(q);
        DigestTable {
            q,
            per,
            digests: (0..q as usize * per as usize).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The ring size the table was laid out for.
    pub fn partitions(&self) -> u32 {
        self.q
    }

    /// Account for `key` changing from `old` to `new` (encoded objects;
    /// `None` when absent).
    pub fn apply(&self, key: &[u8], old: Option<&[u8]>, new: Option<&[u8]>) {
        let delta = old.map_or(0, |o| key_digest(key, o)) ^ new.map_or(0, |n| key_digest(key, n));
        if delta == 0 {
            return;
        }
        let (p, leaf) = leaf_of_position(ring_position(key), self.q);
        let i = p as usize * self.per as usize + leaf as usize;
        if let Some(d) = self.digests.get(i) {
            d.fetch_xor(delta, Ordering::Relaxed);
        }
    }

    /// The leaf digests of partition `p`.
    pub fn leaves(&self, p: u32) -> Vec<u64> {
        let from = p as usize * self.per as usize;
        self.digests
            .get(from..from + self.per as usize)
            .map(|ds| ds.iter().map(|d| d.load(Ordering::Relaxed)).collect())
            .unwrap_or_default()
    }

    /// The Merkle tree of partition `p`.
    pub fn tree(&self, p: u32) -> MerkleTree {
        MerkleTree::from_leaves(self.leaves(p))
    }
}

/// The digest one key contributes to its leaf: XXH3-64 over the key and its
/// encoded version set (canonical, so equal sets hash equal). Two per
/// replica write (old and new object), so it must be cheap: XXH3 is a
/// stable, specified hash an order of magnitude faster than MD5 here, and
/// anti-entropy needs no cryptographic strength from it.
pub fn key_digest(key: &[u8], encoded_object: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(key.len() as u64).to_be_bytes());
    h.update(key);
    h.update(encoded_object);
    h.digest()
}

/// A hash tree over a run of segment digests. Level 0 is the root; the
/// last level holds the segment digests themselves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    levels: Vec<Vec<u64>>,
}

fn hash_children(children: &[u64]) -> u64 {
    let mut h = Md5::new();
    for c in children {
        h.update(c.to_be_bytes());
    }
    let d = h.finalize();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

impl MerkleTree {
    /// Build the tree above `leaves` (the digests of consecutive segments).
    pub fn from_leaves(leaves: Vec<u64>) -> MerkleTree {
        let mut levels = vec![leaves];
        while levels[0].len() > 1 {
            let parent: Vec<u64> = levels[0].chunks(FANOUT).map(hash_children).collect();
            levels.insert(0, parent);
        }
        if levels[0].is_empty() {
            levels[0].push(0);
        }
        MerkleTree { levels }
    }

    /// Number of levels (the root is level 0).
    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// The root digest.
    pub fn root(&self) -> u64 {
        self.levels[0][0]
    }

    /// The digests of nodes `indices` at `level` (absent ones read as 0).
    pub fn nodes(&self, level: usize, indices: &[u32]) -> Vec<u64> {
        let row = self.levels.get(level);
        indices
            .iter()
            .map(|&i| row.and_then(|r| r.get(i as usize)).copied().unwrap_or(0))
            .collect()
    }

    /// Given the other side's digests for `indices` at `level`, the indices
    /// at `level + 1` to compare next: the children of every node that
    /// differs. At the last level, the differing leaf indices themselves.
    pub fn children_to_compare(&self, level: usize, indices: &[u32], theirs: &[u64]) -> Vec<u32> {
        let ours = self.nodes(level, indices);
        let differing = indices
            .iter()
            .zip(ours.iter().zip(theirs))
            .filter(|(_, (a, b))| a != b)
            .map(|(&i, _)| i);
        if level + 1 >= self.levels.len() {
            return differing.collect();
        }
        let width = self.levels[level + 1].len() as u32;
        differing
            .flat_map(|i| (i * FANOUT as u32..((i + 1) * FANOUT as u32).min(width)).collect::<Vec<_>>())
            .collect()
    }

    /// The leaves (segment digests) that differ between two trees of the
    /// same shape, found top-down as an exchange would.
    pub fn diff(&self, other: &MerkleTree) -> Vec<u32> {
        let mut indices = vec![0u32];
        for level in 0..self.levels.len() {
            let theirs = other.nodes(level, &indices);
            indices = self.children_to_compare(level, &indices, &theirs);
            if indices.is_empty() {
                break;
            }
        }
        indices
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_tile_each_partition() {
        for q in [1u32, 3, 8, 64, 1000] {
            for p in [0, q / 2, q - 1] {
                let (start, end) = partition_range(p, q);
                let mut next = start;
                for leaf in 0..leaves_per_partition(q) {
                    let (first, last) = leaf_range(p, leaf, q);
                    assert_eq!(first, next, "q={q} p={p} leaf={leaf}");
                    assert_eq!(leaf_of_position(first, q), (p, leaf));
                    assert_eq!(leaf_of_position(last, q), (p, leaf));
                    next = last.wrapping_add(1);
                }
                assert_eq!(next, end.wrapping_add(1), "q={q} p={p}");
            }
        }
    }

    #[test]
    fn equal_trees_cost_a_root_and_one_change_is_found() {
        let leaves: Vec<u64> = (0..1025).map(|i| i * 7919).collect();
        let a = MerkleTree::from_leaves(leaves.clone());
        assert_eq!(a.diff(&a.clone()), Vec::<u32>::new());
        let mut changed = leaves;
        changed[700] ^= 1;
        let b = MerkleTree::from_leaves(changed);
        assert_ne!(a.root(), b.root());
        assert_eq!(a.diff(&b), vec![700]);
    }
}

//! Anti-entropy: replicas compare Merkle trees and reconcile (Dynamo §4.7).
//!
//! Every `anti_entropy_interval_ms` this actor takes the next (partition,
//! peer) pair among the partitions this node replicates and their other
//! live replicas — partitions first, so every partition is visited once per
//! Q intervals — and compares the two trees top-down. Replicas that agree
//! cost one root digest; otherwise only differing subtrees are descended,
//! then the differing leaves' (key, digest) lists are exchanged, and only
//! keys whose digests differ move: each side's object is merged into the
//! other with DVV `sync`, so nothing concurrent is dropped. Work per
//! exchange is capped in keys and bytes, and the repairs are paced evenly
//! over it (background priority: foreground requests keep their latency).
//!
//! The partition's first owner also purges tombstones, but only once it
//! has seen that every current replica holds exactly the same tombstone,
//! that no other node holds anything else for the key (a copy it is
//! handing over) nor a hint for it, that every member is up, and that no
//! ring change is under way — no timers, so a replica that was away can
//! never bring deleted data back.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dynamo_core::merkle::partition_range;
use dynamo_core::pace::Pacer;
use dynamo_core::storage::encode_object;
use dynamo_core::wire::{PeerRequest, PeerResponse, MAX_AE_ITEMS};
use dynamo_core::NodeId;
use futures::stream::{self, StreamExt};

use crate::failure_detector::{Liveness, LivenessCell};
use crate::gossiper::ClusterCell;
use crate::handoff::Delivering;
use crate::replica::Replica;
use crate::stats::NodeStats;
use crate::transport::{Transport, TransportError};

/// Keys reconciled per second, at most (background priority).
const KEYS_PER_SEC: u64 = 2_000;
/// Bytes of objects moved per second, at most.
const BYTES_PER_SEC: u64 = 8 * 1024 * 1024;
/// Differing leaves examined per exchange.
const MAX_LEAVES: usize = 256;
/// Keys reconciled concurrently within an exchange.
const CONCURRENCY: usize = 8;
/// Tombstones considered for purging per exchange.
const PURGE_BATCH: usize = 32;

/// Why an exchange stopped.
#[derive(Debug, thiserror::Error)]
enum AeError {
    #[error("peer call failed: {0}")]
    Transport(#[from] TransportError),
    #[error("unexpected answer from peer: {0}")]
    Protocol(String),
    #[error("local replica: {0}")]
    Replica(#[from] crate::replica::ReplicaError),
}

/// The anti-entropy actor.
pub struct AntiEntropy {
    me: NodeId,
    n: usize,
    interval: Duration,
    timeout: Duration,
    cluster: Arc<ClusterCell>,
    liveness: Arc<LivenessCell>,
    replica: Replica,
    transport: Rc<dyn Transport>,
    stats: Arc<NodeStats>,
    delivering: Arc<Delivering>,
    cursor: usize,
    busy: bool,
}

impl AntiEntropy {
    /// An anti-entropy actor for node `me`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: NodeId,
        n: usize,
        interval: Duration,
        timeout: Duration,
        cluster: Arc<ClusterCell>,
        liveness: Arc<LivenessCell>,
        replica: Replica,
        transport: Rc<dyn Transport>,
        stats: Arc<NodeStats>,
        delivering: Arc<Delivering>,
    ) -> Self {
        AntiEntropy {
            me,
            n,
            interval,
            timeout,
            cluster,
            liveness,
            replica,
            transport,
            stats,
            delivering,
            cursor: 0,
            busy: false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let cluster = self.cluster.get();
        let liveness = self.liveness.get();
        let q = cluster.ring.partitions();
        if self.replica.digests().partitions() != q {
            log::warn!("anti-entropy paused: merkle leaves laid out for another ring size");
            return;
        }
        // (peer rank, partition) pairs, so one pass visits every partition
        // before it visits any twice.
        let mut pairs: Vec<(usize, u32, NodeId, String)> = Vec::new();
        for p in 0..q {
            let owners = cluster.ring.owners_of(p, self.n);
            if !owners.contains(&self.me) {
                continue;
            }
            let peers = owners.iter().filter(|o| **o != self.me);
            for (rank, peer) in peers.enumerate() {
                // A peer being handed hints is repaired by them first.
                if liveness.of(peer) != Liveness::Up || self.delivering.contains(peer) {
                    continue;
                }
                if let Some(m) = cluster.member(peer) {
                    pairs.push((rank, p, peer.clone(), m.peer_addr.clone()));
                }
            }
        }
        if pairs.is_empty() {
            return;
        }
        pairs.sort_by_key(|(rank, p, _, _)| (*rank, *p));
        let (_, partition, peer, addr) = pairs[self.cursor % pairs.len()].clone();
        self.cursor = self.cursor.wrapping_add(1);
        let first_owner = cluster.ring.owners_of(partition, self.n).first() == Some(&self.me);
        let stable = cluster.target.is_none();
        let all_up = cluster
            .members
            .keys()
            .all(|m| *m == self.me || liveness.of(m) == Liveness::Up);
        let all_members: Vec<(NodeId, String)> = cluster
            .members
            .values()
            .filter(|m| m.node_id != self.me)
            .map(|m| (m.node_id.clone(), m.peer_addr.clone()))
            .collect();
        let replicas: Vec<(NodeId, String)> = cluster
            .ring
            .owners_of(partition, self.n)
            .into_iter()
            .filter(|o| *o != self.me)
            .filter_map(|o| cluster.member(&o).map(|m| (o.clone(), m.peer_addr.clone())))
            .collect();

        let budget_keys = (KEYS_PER_SEC * self.interval.as_millis() as u64 / 1000).max(1) as usize;
        let budget_bytes = (BYTES_PER_SEC * self.interval.as_millis() as u64 / 1000).max(64 * 1024);
        let exchange = Exchange {
            me: self.me.clone(),
            partition,
            q,
            peer,
            addr,
            timeout: self.timeout,
            replica: self.replica.clone(),
            transport: self.transport.clone(),
            budget_keys,
            budget_bytes,
        };
        let stats = self.stats.clone();
        self.busy = true;
        let work = async move {
            let started = Instant::now();
            match exchange.run().await {
                Ok(repaired) => {
                    stats.exchange_done();
                    NodeStats::add(&stats.ae_keys_repaired, repaired as u64);
                    if repaired > 0 {
                        log::info!(
                            "anti-entropy: partition {} with {}: {repaired} keys repaired in {:?}",
                            exchange.partition,
                            exchange.peer,
                            started.elapsed()
                        );
                    }
                }
                Err(e) => log::debug!(
                    "anti-entropy exchange of partition {} with {} stopped: {e}",
                    exchange.partition,
                    exchange.peer
                ),
            }
            // No purge while partitions move: a pulled or handed-over copy
            // of an older version could outlive the tombstone.
            if first_owner && all_up && stable {
                match exchange.purge(&replicas, &all_members).await {
                    Ok(0) => {}
                    Ok(purged) => {
                        NodeStats::add(&stats.tombstones_purged, purged as u64);
                        log::info!("purged {purged} tombstones of partition {}", exchange.partition);
                    }
                    Err(e) => log::debug!("tombstone purge stopped: {e}"),
                }
            }
        };
        ctx.spawn(work.into_actor(self).map(|_, act, _| act.busy = false));
    }
}

impl Actor for AntiEntropy {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
    }
}

/// One exchange of one partition with one peer.
struct Exchange {
    me: NodeId,
    partition: u32,
    q: u32,
    peer: NodeId,
    addr: String,
    timeout: Duration,
    replica: Replica,
    transport: Rc<dyn Transport>,
    budget_keys: usize,
    budget_bytes: u64,
}

impl Exchange {
    async fn call(&self, addr: &str, request: PeerRequest) -> Result<PeerResponse, AeError> {
        Ok(self.transport.call(addr, request, self.timeout).await?)
    }

    /// Compare trees, then reconcile the differing keys. Returns how many
    /// keys changed on either side.
    async fn run(&self) -> Result<usize, AeError> {
        let tree = self.replica.digests().tree(self.partition);
        let mut indices = vec![0u32];
        for level in 0..tree.depth() {
            let request = PeerRequest::AeTree {
                partition: self.partition,
                q: self.q,
                level: level as u32,
                indices: indices.clone(),
            };
            let theirs = match self.call(&self.addr, request).await? {
                PeerResponse::AeNodes(digests) if digests.len() == indices.len() => digests,
                other => return Err(AeError::Protocol(format!("{other:?}"))),
            };
            indices = tree.children_to_compare(level, &indices, &theirs);
            indices.truncate(MAX_AE_ITEMS);
            if indices.is_empty() {
                return Ok(0);
            }
        }
        indices.truncate(MAX_LEAVES);

        let limit = MAX_AE_ITEMS;
        let ours = self
            .replica
            .leaf_keys(self.partition, indices.clone(), self.q, limit)
            .await?;
        let request = PeerRequest::AeKeys {
            partition: self.partition,
            q: self.q,
            leaves: indices,
            limit: limit as u32,
        };
        let theirs = match self.call(&self.addr, request).await? {
            PeerResponse::AeKeyDigests(pairs) => pairs,
            other => return Err(AeError::Protocol(format!("{other:?}"))),
        };
        let mut digests: HashMap<Vec<u8>, (u64, u64)> = HashMap::new();
        for (k, d) in ours {
            digests.entry(k).or_default().0 = d;
        }
        for (k, d) in theirs {
            digests.entry(k).or_default().1 = d;
        }
        let mut differing: Vec<Vec<u8>> = digests
            .into_iter()
            .filter(|(_, (a, b))| a != b)
            .map(|(k, _)| k)
            .collect();
        differing.sort();
        differing.truncate(self.budget_keys);

        let mut bytes = 0u64;
        let mut repaired = 0;
        // Repairs spread evenly over the exchange at the key rate, not all
        // at its start: a burst is what moves foreground p99.9.
        let mut pacer = Pacer::new(KEYS_PER_SEC, CONCURRENCY as u64);
        let mut results = stream::iter(differing)
            .map(|key| {
                let wait = pacer.delay(tokio::time::Instant::now().into_std(), 1);
                async move {
                    tokio::time::sleep(wait).await;
                    self.reconcile(key).await
                }
            })
            .buffer_unordered(CONCURRENCY);
        while let Some(result) = results.next().await {
            let (changed, moved) = result?;
            repaired += usize::from(changed);
            bytes += moved;
            if bytes > self.budget_bytes {
                break;
            }
        }
        Ok(repaired)
    }

    /// Merge the peer's and our object for `key` both ways. Returns whether
    /// either side changed, and the bytes moved.
    async fn reconcile(&self, key: Vec<u8>) -> Result<(bool, u64), AeError> {
        let request = PeerRequest::Fetch {
            key: key.clone(),
            hint_for: None,
        };
        let theirs = match self.call(&self.addr, request).await? {
            PeerResponse::Fetched(object) => object.unwrap_or_default(),
            other => return Err(AeError::Protocol(format!("{other:?}"))),
        };
        let ours = self.replica.get(key.clone(), None).await?.unwrap_or_default();
        let merged = ours.sync(&theirs);
        let mut moved = encode_object(&theirs).len() as u64;
        if merged != ours {
            self.replica.merge(key.clone(), theirs.clone(), None).await?;
        }
        if merged != theirs {
            moved += encode_object(&merged).len() as u64;
            let request = PeerRequest::Replicate {
                key,
                object: merged.clone(),
                hint_for: None,
            };
            match self.call(&self.addr, request).await? {
                PeerResponse::Stored => {}
                other => return Err(AeError::Protocol(format!("{other:?}"))),
            }
        }
        Ok((merged != ours || merged != theirs, moved))
    }

    /// Purge tombstones of this partition that every replica holds exactly
    /// and no node keeps a hint for. Returns how many were purged here.
    async fn purge(&self, replicas: &[(NodeId, String)], members: &[(NodeId, String)]) -> Result<usize, AeError> {
        let (from, to) = partition_range(self.partition, self.q);
        let keys = self.replica.tombstones(from, to, PURGE_BATCH).await?;
        let mut purged = 0;
        'keys: for key in keys {
            let Some(ours) = self.replica.get(key.clone(), None).await? else {
                continue;
            };
            if !ours.is_deleted() {
                continue;
            }
            for (_, addr) in replicas {
                let request = PeerRequest::Fetch {
                    key: key.clone(),
                    hint_for: None,
                };
                match self.call(addr, request).await? {
                    PeerResponse::Fetched(Some(theirs)) if theirs == ours => {}
                    _ => continue 'keys,
                }
            }
            let me_and_all: Vec<NodeId> = members
                .iter()
                .map(|(id, _)| id.clone())
                .chain([self.me.clone()])
                .collect();
            if !self.replica.hinted_owners(key.clone(), me_and_all).await?.is_empty() {
                continue;
            }
            for (id, addr) in members {
                match self.call(addr, PeerRequest::HasHint { key: key.clone() }).await? {
                    PeerResponse::HasHint(false) => {}
                    _ => continue 'keys,
                }
                // A node that is not a replica may still hold the key (a
                // partition it is handing over): it must hold nothing, or
                // exactly the tombstone, or its copy could come back later.
                if replicas.iter().any(|(r, _)| r == id) {
                    continue;
                }
                let request = PeerRequest::Fetch {
                    key: key.clone(),
                    hint_for: None,
                };
                match self.call(addr, request).await? {
                    PeerResponse::Fetched(None) => {}
                    PeerResponse::Fetched(Some(theirs)) if theirs == ours => {}
                    _ => continue 'keys,
                }
            }
            for (_, addr) in replicas {
                let request = PeerRequest::Purge {
                    key: key.clone(),
                    expected: ours.clone(),
                };
                self.call(addr, request).await?;
            }
            if self.replica.purge(key, ours).await? {
                purged += 1;
            }
        }
        Ok(purged)
    }
}

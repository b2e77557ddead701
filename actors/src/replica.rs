//! The replica store: this node's copy of the keys it replicates.
//!
//! A replica answers riak_core's vnode calls — get and put (merge), plus the
//! coordinator's local update — each a few lines around the core's
//! [`Object::update`] and [`Object::sync`]. A node standing in for a down
//! owner (sloppy quorum) keeps what it receives as a **hint** for that owner,
//! in its own keyspace, until hinted handoff has delivered it. Storage calls block, so each
//! shard is a [`SyncArbiter`] actor on its own thread; a key always goes to
//! the same shard, which makes every read-modify-write of a key atomic
//! without locks. Many shards keep many writes in flight, which is what
//! lets RocksDB group their WAL writes and fsyncs.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use actix::prelude::*;
use dynamo_core::storage::{Store, StoreError, StoreStats};
use dynamo_core::{Actor as ClockActor, NodeId, Object, Value, VersionVector};

use crate::stats::NodeStats;

/// Read the local object for a key.
#[derive(Message)]
#[rtype(result = "Result<Option<Object>, StoreError>")]
pub struct LocalGet {
    /// The key.
    pub key: Vec<u8>,
    /// Also include the hint kept for this owner.
    pub hint_for: Option<NodeId>,
}

/// Coordinator-side write: mint a version on this replica and store it.
#[derive(Message)]
#[rtype(result = "Result<(Object, VersionVector), StoreError>")]
pub struct LocalUpdate {
    /// The key.
    pub key: Vec<u8>,
    /// The client's causal context.
    pub context: VersionVector,
    /// This node's clock identity.
    pub actor: ClockActor,
    /// The value or tombstone.
    pub value: Value,
}

/// Replica-side write: merge an object from a coordinator (or a repair).
#[derive(Message)]
#[rtype(result = "Result<Object, StoreError>")]
pub struct LocalMerge {
    /// The key.
    pub key: Vec<u8>,
    /// The incoming object.
    pub object: Object,
    /// Keep it as a hint for this owner instead of as this node's replica.
    pub hint_for: Option<NodeId>,
}

/// Hinted handoff delivered `object` to `owner`: drop the hint unless it
/// has since grown beyond what was delivered.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct HintDelivered {
    /// The owner that acknowledged.
    pub owner: NodeId,
    /// The key.
    pub key: Vec<u8>,
    /// What it acknowledged.
    pub object: Object,
}

/// A batch of hints for `owner`, in key order after `after`.
#[derive(Message)]
#[rtype(result = "Result<Vec<(Vec<u8>, Object)>, StoreError>")]
pub struct ScanHints {
    /// Whose hints.
    pub owner: NodeId,
    /// Resume after this key.
    pub after: Option<Vec<u8>>,
    /// At most this many.
    pub limit: usize,
}

/// The owners this node keeps a hint of `key` for.
#[derive(Message)]
#[rtype(result = "Result<Vec<NodeId>, StoreError>")]
pub struct HintedOwners {
    /// The key.
    pub key: Vec<u8>,
    /// Candidates (the cluster's members).
    pub among: Vec<NodeId>,
}

/// Durably store a metadata blob.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct PutMeta {
    /// The blob's name.
    pub name: &'static str,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// One storage thread.
pub struct ReplicaShard {
    store: Arc<dyn Store>,
    stats: Arc<NodeStats>,
}

impl Actor for ReplicaShard {
    type Context = SyncContext<Self>;
}

impl Handler<LocalGet> for ReplicaShard {
    type Result = Result<Option<Object>, StoreError>;
    fn handle(&mut self, msg: LocalGet, _: &mut Self::Context) -> Self::Result {
        let own = self.store.get(&msg.key)?;
        let Some(owner) = msg.hint_for else {
            return Ok(own);
        };
        Ok(match (own, self.store.get_hint(&owner, &msg.key)?) {
            (Some(a), Some(b)) => Some(a.sync(&b)),
            (a, b) => a.or(b),
        })
    }
}

impl Handler<LocalUpdate> for ReplicaShard {
    type Result = Result<(Object, VersionVector), StoreError>;
    fn handle(&mut self, msg: LocalUpdate, _: &mut Self::Context) -> Self::Result {
        let current = self.store.get(&msg.key)?.unwrap_or_default();
        let (object, clock) = current.update(&msg.context, &msg.actor, msg.value);
        self.store.put(&msg.key, &object)?;
        Ok((object, clock))
    }
}

impl Handler<LocalMerge> for ReplicaShard {
    type Result = Result<Object, StoreError>;
    fn handle(&mut self, msg: LocalMerge, _: &mut Self::Context) -> Self::Result {
        if let Some(owner) = msg.hint_for {
            let current = self.store.get_hint(&owner, &msg.key)?;
            let merged = current.clone().unwrap_or_default().sync(&msg.object);
            if current.as_ref() != Some(&merged) {
                self.store.put_hint(&owner, &msg.key, &merged)?;
                if current.is_none() {
                    NodeStats::bump(&self.stats.hints_pending);
                }
            }
            return Ok(merged);
        }
        let current = self.store.get(&msg.key)?.unwrap_or_default();
        let merged = current.sync(&msg.object);
        // Only write when something changed: a repair of an up-to-date
        // replica costs a read, not a write.
        if merged != current {
            self.store.put(&msg.key, &merged)?;
        }
        Ok(merged)
    }
}

impl Handler<HintDelivered> for ReplicaShard {
    type Result = Result<bool, StoreError>;
    fn handle(&mut self, msg: HintDelivered, _: &mut Self::Context) -> Self::Result {
        let Some(current) = self.store.get_hint(&msg.owner, &msg.key)? else {
            return Ok(false);
        };
        // A hint that grew while it was being delivered stays for the next
        // round; one the delivery covers is done.
        if msg.object.sync(&current) != msg.object {
            return Ok(false);
        }
        self.store.delete_hint(&msg.owner, &msg.key)?;
        self.stats
            .hints_pending
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        NodeStats::bump(&self.stats.hints_delivered);
        Ok(true)
    }
}

impl Handler<ScanHints> for ReplicaShard {
    type Result = Result<Vec<(Vec<u8>, Object)>, StoreError>;
    fn handle(&mut self, msg: ScanHints, _: &mut Self::Context) -> Self::Result {
        self.store.scan_hints(&msg.owner, msg.after.as_deref(), msg.limit)
    }
}

impl Handler<HintedOwners> for ReplicaShard {
    type Result = Result<Vec<NodeId>, StoreError>;
    fn handle(&mut self, msg: HintedOwners, _: &mut Self::Context) -> Self::Result {
        let mut owners = Vec::new();
        for owner in msg.among {
            if self.store.get_hint(&owner, &msg.key)?.is_some() {
                owners.push(owner);
            }
        }
        Ok(owners)
    }
}

impl Handler<PutMeta> for ReplicaShard {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: PutMeta, _: &mut Self::Context) -> Self::Result {
        self.store.put_meta(msg.name, &msg.bytes)
    }
}

/// Why a replica call failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The shard thread is gone (node shutting down).
    #[error("replica shard unavailable: {0}")]
    Mailbox(#[from] MailboxError),
}

/// A handle on all shards of this node's replica store.
#[derive(Clone)]
pub struct Replica {
    shards: Arc<Vec<Addr<ReplicaShard>>>,
    store: Arc<dyn Store>,
    stats: Arc<NodeStats>,
}

impl Replica {
    /// Start `shards` storage threads over `store`.
    pub fn start(store: Arc<dyn Store>, shards: usize, stats: Arc<NodeStats>) -> Replica {
        let addrs = (0..shards.max(1))
            .map(|_| {
                let store = store.clone();
                let stats = stats.clone();
                SyncArbiter::start(1, move || ReplicaShard {
                    store: store.clone(),
                    stats: stats.clone(),
                })
            })
            .collect();
        Replica {
            shards: Arc::new(addrs),
            store,
            stats,
        }
    }

    fn shard(&self, key: &[u8]) -> &Addr<ReplicaShard> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[(h.finish() % self.shards.len() as u64) as usize]
    }

    /// The local object for `key` (with the hint kept for `hint_for`).
    pub async fn get(&self, key: Vec<u8>, hint_for: Option<NodeId>) -> Result<Option<Object>, ReplicaError> {
        Ok(self.shard(&key).send(LocalGet { key, hint_for }).await??)
    }

    /// Mint and store a new version (coordinator side).
    pub async fn update(
        &self,
        key: Vec<u8>,
        context: VersionVector,
        actor: ClockActor,
        value: Value,
    ) -> Result<(Object, VersionVector), ReplicaError> {
        Ok(self
            .shard(&key)
            .send(LocalUpdate {
                key,
                context,
                actor,
                value,
            })
            .await??)
    }

    /// Merge an object into the local replica, or into the hint kept for
    /// `hint_for`.
    pub async fn merge(&self, key: Vec<u8>, object: Object, hint_for: Option<NodeId>) -> Result<Object, ReplicaError> {
        Ok(self.shard(&key).send(LocalMerge { key, object, hint_for }).await??)
    }

    /// Record that `owner` acknowledged `object`; returns whether the hint
    /// was dropped.
    pub async fn hint_delivered(&self, owner: NodeId, key: Vec<u8>, object: Object) -> Result<bool, ReplicaError> {
        Ok(self.shard(&key).send(HintDelivered { owner, key, object }).await??)
    }

    /// A batch of `owner`'s hints (scans run on the first shard; the
    /// per-key decisions they lead to go to the key's own shard).
    pub async fn scan_hints(
        &self,
        owner: NodeId,
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Object)>, ReplicaError> {
        Ok(self.shards[0].send(ScanHints { owner, after, limit }).await??)
    }

    /// Hints held, as counted.
    pub fn stats_pending_hints(&self) -> u64 {
        NodeStats::get(&self.stats.hints_pending)
    }

    /// The owners among `among` this node keeps a hint of `key` for.
    pub async fn hinted_owners(&self, key: Vec<u8>, among: Vec<NodeId>) -> Result<Vec<NodeId>, ReplicaError> {
        Ok(self.shard(&key).send(HintedOwners { key, among }).await??)
    }

    /// Store a metadata blob. Always on the first shard, so writes of one
    /// blob land in the order they were made.
    pub async fn put_meta(&self, name: &'static str, bytes: Vec<u8>) -> Result<(), ReplicaError> {
        Ok(self.shards[0].send(PutMeta { name, bytes }).await??)
    }

    /// The underlying store (for metadata and statistics, off the hot path).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Size figures.
    pub fn stats(&self) -> StoreStats {
        self.store.stats()
    }
}

//! The replica store: this node's copy of the keys it replicates.
//!
//! A replica answers three calls — riak_core's vnode get/put, plus the
//! coordinator's local update — each a few lines around the core's
//! [`Object::update`] and [`Object::sync`]. Storage calls block, so each
//! shard is a [`SyncArbiter`] actor on its own thread; a key always goes to
//! the same shard, which makes every read-modify-write of a key atomic
//! without locks. Many shards keep many writes in flight, which is what
//! lets RocksDB group their WAL writes and fsyncs.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use actix::prelude::*;
use dynamo_core::storage::{Store, StoreError, StoreStats};
use dynamo_core::{Actor as ClockActor, Object, Value, VersionVector};

/// Read the local object for a key.
#[derive(Message)]
#[rtype(result = "Result<Option<Object>, StoreError>")]
pub struct LocalGet {
    /// The key.
    pub key: Vec<u8>,
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
}

impl Actor for ReplicaShard {
    type Context = SyncContext<Self>;
}

impl Handler<LocalGet> for ReplicaShard {
    type Result = Result<Option<Object>, StoreError>;
    fn handle(&mut self, msg: LocalGet, _: &mut Self::Context) -> Self::Result {
        self.store.get(&msg.key)
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
}

impl Replica {
    /// Start `shards` storage threads over `store`.
    pub fn start(store: Arc<dyn Store>, shards: usize) -> Replica {
        let addrs = (0..shards.max(1))
            .map(|_| {
                let store = store.clone();
                SyncArbiter::start(1, move || ReplicaShard { store: store.clone() })
            })
            .collect();
        Replica {
            shards: Arc::new(addrs),
            store,
        }
    }

    fn shard(&self, key: &[u8]) -> &Addr<ReplicaShard> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[(h.finish() % self.shards.len() as u64) as usize]
    }

    /// The local object for `key`.
    pub async fn get(&self, key: Vec<u8>) -> Result<Option<Object>, ReplicaError> {
        Ok(self.shard(&key).send(LocalGet { key }).await??)
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

    /// Merge an object into the local replica.
    pub async fn merge(&self, key: Vec<u8>, object: Object) -> Result<Object, ReplicaError> {
        Ok(self.shard(&key).send(LocalMerge { key, object }).await??)
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

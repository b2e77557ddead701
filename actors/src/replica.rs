//! The replica store: this node's copy of the keys it replicates.
//!
//! A replica answers riak_core's vnode calls — get and put (merge), plus the
//! coordinator's local update — each a few lines around the core's
//! [`Object::update`] and [`Object::sync`]. A node standing in for a down
//! owner (sloppy quorum) keeps what it receives as a **hint** for that owner,
//! in its own keyspace, until hinted handoff has delivered it.
//!
//! A key's writes all belong to one shard, and a shard's read-modify-writes
//! take turns, which makes each of them atomic. A single write is done on
//! the calling thread when its shard is free and the store would not hold
//! it back (most writes: no thread switch); otherwise, and for batches,
//! the shard's own [`Arbiter`] thread does it, so an event loop does not
//! queue behind a busy shard or sit out a write stall. Point reads need no
//! shard and run on the caller's thread (see [`Replica::get`]).
//!
//! Every change of a key's stored object also updates the node's Merkle
//! leaf digests ([`DigestTable`]), so anti-entropy never rebuilds a tree to
//! compare it; and every minted dot raises a node-wide counter floor
//! ([`DotFloor`]), persisted ahead of use, so a key whose tombstone was
//! purged can never be given a counter an old context already covers.
//! Every object stored also passes clock hygiene's [`RetireFilter`].

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, TryLockError};

use actix::prelude::*;
use dynamo_core::merkle::{key_digest, leaf_range, DigestTable};
use dynamo_core::storage::{
    decode_object, decode_stored, encode_object, sole_version_as_stored, Store, StoreError, StoreStats, TombstoneMark,
};
use dynamo_core::wire::{Records, RecordsBuilder};
use dynamo_core::{Actor as ClockActor, Dot, NodeId, Object, Retired, Value, VersionVector};

use crate::group_commit::GroupCommit;
use crate::stats::NodeStats;

/// Most siblings a client write may leave on a key. Concurrent writes
/// beyond it are refused (with a clear error) until a client resolves the
/// siblings; replicas merging what others accepted never drop anything.
pub const MAX_SIBLINGS: usize = 64;

/// Why a coordinator-side write was not applied.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The write would leave more than [`MAX_SIBLINGS`] siblings.
    #[error("the key has {0} concurrent versions; read it and write back a resolution (with its context) first")]
    TooManySiblings(usize),
}

/// Coordinator-side write: mint a version on this replica and store it.
#[derive(Message)]
#[rtype(result = "Result<(Object, VersionVector), UpdateError>")]
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
/// Answers the merged object and whether anything was written.
#[derive(Message)]
#[rtype(result = "Result<(Object, bool), StoreError>")]
pub struct LocalMerge {
    /// The key.
    pub key: Vec<u8>,
    /// The incoming object.
    pub object: Object,
    /// Keep it as a hint for this owner instead of as this node's replica.
    pub hint_for: Option<NodeId>,
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

/// The (key, digest) pairs stored in some Merkle leaves of a partition.
#[derive(Message)]
#[rtype(result = "Result<Vec<(Vec<u8>, u64)>, StoreError>")]
pub struct LeafKeys {
    /// The partition.
    pub partition: u32,
    /// Its leaves to list.
    pub leaves: Vec<u32>,
    /// Ring size.
    pub q: u32,
    /// At most this many pairs.
    pub limit: usize,
}

/// Delete `key` if its stored object is still exactly `expected` (a
/// tombstone every replica holds).
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct Purge {
    /// The key.
    pub key: Vec<u8>,
    /// What must still be stored.
    pub expected: Object,
}

/// Metadata name of the persisted dot-counter reservation.
const DOT_FLOOR_META: &str = "dot_floor";
/// Counters reserved per metadata write.
const DOT_FLOOR_BLOCK: u64 = 1 << 20;

/// The node-wide floor under newly minted dot counters. Counters handed
/// out never reach the persisted reservation, so after a restart the floor
/// starts above every counter this store incarnation ever minted.
#[derive(Debug, Default)]
pub struct DotFloor {
    highest: AtomicU64,
    reserved: AtomicU64,
    /// Held while a new reservation is persisted, so that reservations
    /// reach the store in increasing order (writers on several threads
    /// claim at once).
    reserving: Mutex<()>,
}

impl DotFloor {
    /// Load the reservation persisted in `store`.
    pub fn load(store: &dyn Store) -> Result<DotFloor, StoreError> {
        let reserved = match store.get_meta(DOT_FLOOR_META)? {
            Some(bytes) => bytes
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| StoreError::Corrupt("dot floor record".into()))?,
            None => 0,
        };
        Ok(DotFloor {
            highest: AtomicU64::new(reserved),
            reserved: AtomicU64::new(reserved),
            reserving: Mutex::new(()),
        })
    }

    fn current(&self) -> u64 {
        self.highest.load(Ordering::SeqCst)
    }

    /// Record that `counter` is about to be used, persisting a new
    /// reservation first when it reaches the old one.
    fn claim(&self, counter: u64, store: &dyn Store) -> Result<(), StoreError> {
        if self.must_reserve(counter) {
            let _reserving = self.reserving.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // Another thread may have reserved past it meanwhile; a lower
            // reservation persisted after a higher one would let a restart
            // mint counters again.
            if self.must_reserve(counter) {
                let reservation = counter + DOT_FLOOR_BLOCK;
                store.put_meta(DOT_FLOOR_META, &reservation.to_be_bytes())?;
                self.reserved.store(reservation, Ordering::SeqCst);
            }
        }
        self.highest.fetch_max(counter, Ordering::SeqCst);
        Ok(())
    }

    /// Whether using `counter` needs a new reservation persisted first.
    fn must_reserve(&self, counter: u64) -> bool {
        counter >= self.reserved.load(Ordering::SeqCst)
    }
}

/// What clock hygiene (see `dynamo_core::hygiene`) asks of this replica.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetireSets {
    /// Retired actors to tidy away from every object stored.
    pub retired: Retired,
    /// Actors being swept: storing a version of theirs dirties the store.
    pub sweeping: BTreeSet<ClockActor>,
}

impl RetireSets {
    /// What `state` asks for: its retired actors, and its sweep's actors
    /// that are not yet superseded.
    pub fn of(state: &dynamo_core::membership::ClusterState) -> RetireSets {
        let unswept = state.unswept();
        RetireSets {
            retired: state.retired(),
            sweeping: state.sweep.actors.intersection(&unswept).cloned().collect(),
        }
    }
}

/// Clock hygiene's hook on every write: tidies objects before they are
/// stored ([`Object::forget`]) and counts the writes that leave a version
/// of a swept actor in the store (the *dirt*), so a store found clean can
/// tell whether it still is.
#[derive(Debug, Default)]
pub struct RetireFilter {
    /// Whether there is anything to do (the common case is no).
    active: AtomicBool,
    sets: RwLock<Arc<RetireSets>>,
    dirt: AtomicU64,
}

impl RetireFilter {
    /// Apply `sets` to every write from now on. Only the gossiper calls
    /// this, as its view changes, so what is installed never goes back.
    pub fn install(&self, sets: RetireSets) {
        let mut current = self.sets.write().unwrap_or_else(|p| p.into_inner());
        if **current != sets {
            self.active
                .store(!sets.retired.is_empty() || !sets.sweeping.is_empty(), Ordering::SeqCst);
            *current = Arc::new(sets);
        }
    }

    /// What is applied now.
    pub fn sets(&self) -> Arc<RetireSets> {
        self.sets.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Writes so far that stored a version of a swept actor.
    pub fn dirt(&self) -> u64 {
        self.dirt.load(Ordering::SeqCst)
    }

    /// Whether stored objects may need tidying or counting (rarely: only
    /// while a retired actor's entries are being cleared away).
    fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// `object` as it may be stored.
    fn settle(&self, object: Object) -> Object {
        if !self.active.load(Ordering::Relaxed) {
            return object;
        }
        object.forget(&self.sets().retired)
    }

    /// `object` was just stored. Counted only once it is in the store: a
    /// scan that started before it could then miss it, but sees the count
    /// move.
    fn stored(&self, object: &Object) {
        if self.active.load(Ordering::Relaxed) && object.minted_by(&self.sets().sweeping) > 0 {
            self.dirt.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// One storage thread, or (as [`Replica`] keeps a copy of each) the same
/// shard's work done on a caller's thread.
#[derive(Clone)]
pub struct ReplicaShard {
    store: Arc<dyn Store>,
    stats: Arc<NodeStats>,
    digests: Arc<DigestTable>,
    floor: Arc<DotFloor>,
    retire: Arc<RetireFilter>,
    /// Held for every read-modify-write of this shard's keys, whether the
    /// shard's thread does it or a caller does it itself: what keeps each
    /// key's writes atomic.
    turn: Arc<Mutex<()>>,
}

impl ReplicaShard {
    /// Wait for this shard's turn (on the shard's own thread).
    fn take_turn(&self) -> MutexGuard<'_, ()> {
        // The lock guards no data, only an order: a panic while it was
        // held leaves nothing half-changed in it.
        self.turn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// This shard's turn, if nobody else has it now (on a caller's
    /// thread, which must not wait).
    fn try_turn(&self) -> Option<MutexGuard<'_, ()>> {
        match self.turn.try_lock() {
            Ok(turn) => Some(turn),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// The stored object and its encoding.
    fn read(&self, key: &[u8]) -> Result<Option<(Object, Vec<u8>)>, StoreError> {
        match self.store.get(key)? {
            Some(bytes) => Ok(Some((decode_object(&bytes)?, bytes))),
            None => Ok(None),
        }
    }

    /// Store `object` over `previous` (the object it replaces, with its
    /// encoding) and update the Merkle leaves and the tombstone index.
    /// Unless `wait`, only if the store takes the write without holding it
    /// back; answers whether it was stored.
    fn store_object(
        &self,
        key: &[u8],
        previous: Option<(&Object, &[u8])>,
        object: &Object,
        wait: bool,
    ) -> Result<bool, StoreError> {
        let encoded = encode_object(object);
        let was_deleted = previous.is_some_and(|(o, _)| o.is_deleted());
        let mark = TombstoneMark::between(was_deleted, object.is_deleted());
        if wait {
            self.store.put(key, &encoded, mark)?;
        } else if !self.store.try_put(key, &encoded, mark)? {
            return Ok(false);
        }
        self.retire.stored(object);
        self.digests.apply(key, previous.map(|(_, b)| b), Some(&encoded));
        Ok(true)
    }

    /// Mint a version of `msg.key` and store it. Unless `wait`, a write
    /// the store would hold back is not made: `msg` comes back, its value
    /// taken back out of the minted version.
    fn local_update(
        &self,
        msg: LocalUpdate,
        wait: bool,
    ) -> Result<Result<(Object, VersionVector), Box<LocalUpdate>>, UpdateError> {
        let LocalUpdate {
            key,
            context,
            actor,
            value,
        } = msg;
        let previous = self.read(&key)?;
        let current = previous.as_ref().map(|(o, _)| o.clone()).unwrap_or_default();
        let (object, clock) = current.update(&context, &actor, value, self.floor.current());
        let object = self.retire.settle(object);
        if object.versions().len() > MAX_SIBLINGS {
            NodeStats::bump(&self.stats.sibling_cap_refusals);
            return Err(UpdateError::TooManySiblings(current.versions().len()));
        }
        let counter = clock.get(&actor);
        // A new reservation is an fsynced write of its own: one that need
        // not wait leaves it to the shard's thread.
        if wait || !self.floor.must_reserve(counter) {
            self.floor.claim(counter, self.store.as_ref())?;
            let previous = previous.as_ref().map(|(o, b)| (o, b.as_slice()));
            if self.store_object(&key, previous, &object, wait)? {
                return Ok(Ok((object, clock)));
            }
        }
        // Minting it again later just takes a higher counter.
        let dot = Dot { actor, counter };
        let value = object
            .into_value_of(&dot)
            .ok_or_else(|| StoreError::Engine("a minted version went missing".into()))?;
        Ok(Err(Box::new(LocalUpdate {
            key,
            context,
            actor: dot.actor,
            value,
        })))
    }
}

/// Messages a shard's mailbox holds before senders wait their turn.
const SHARD_MAILBOX: usize = 256;

impl Actor for ReplicaShard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(SHARD_MAILBOX);
    }

    /// The arbiter is this shard's alone: once the replica's handles are
    /// gone and the shard stops, its thread ends too.
    fn stopped(&mut self, _: &mut Self::Context) {
        Arbiter::current().stop();
    }
}

impl Handler<LocalUpdate> for ReplicaShard {
    type Result = Result<(Object, VersionVector), UpdateError>;
    fn handle(&mut self, msg: LocalUpdate, _: &mut Self::Context) -> Self::Result {
        let _turn = self.take_turn();
        match self.local_update(msg, true)? {
            Ok(done) => Ok(done),
            // A waiting write is always made.
            Err(_) => Err(StoreError::Engine("a write was not made".into()).into()),
        }
    }
}

impl ReplicaShard {
    /// Merge `object` into the replica of `key` (or into the hint kept for
    /// `hint_for`); returns the merged object and whether it was written.
    fn merge(&self, key: &[u8], object: &Object, hint_for: Option<&str>) -> Result<(Object, bool), StoreError> {
        if let Some(owner) = hint_for {
            let current = self.store.get_hint(owner, key)?;
            let merged = self.retire.settle(current.clone().unwrap_or_default().sync(object));
            let changed = current.as_ref() != Some(&merged);
            if changed {
                self.store.put_hint(owner, key, &merged)?;
                self.retire.stored(&merged);
                if current.is_none() {
                    NodeStats::bump(&self.stats.hints_pending);
                }
            }
            return Ok((merged, changed));
        }
        let merged = self.merge_replica(key, object, true)?;
        merged.ok_or_else(|| StoreError::Engine("a write was not made".into()))
    }

    /// Merge `object` into the replica of `key`. Unless `wait`, a write
    /// the store would hold back is not made, and the answer is `None`.
    fn merge_replica(&self, key: &[u8], object: &Object, wait: bool) -> Result<Option<(Object, bool)>, StoreError> {
        let previous = self.read(key)?;
        let current = previous.as_ref().map(|(o, _)| o.clone()).unwrap_or_default();
        let merged = self.retire.settle(current.sync(object));
        // Only write when something changed: a repair of an up-to-date
        // replica costs a read, not a write.
        let changed = merged != current;
        if changed && !self.store_object(key, previous.as_ref().map(|(o, b)| (o, b.as_slice())), &merged, wait)? {
            return Ok(None);
        }
        Ok(Some((merged, changed)))
    }

    /// Drop the hint of `key` for `owner` if `delivered` covers it; returns
    /// whether it was dropped.
    fn hint_delivered(&self, owner: &str, key: &[u8], delivered: &Object) -> Result<bool, StoreError> {
        let Some(current) = self.store.get_hint(owner, key)? else {
            return Ok(false);
        };
        // A hint that grew while it was being delivered stays for the next
        // round; one the delivery covers is done.
        if delivered.sync(&current) != *delivered {
            return Ok(false);
        }
        self.store.delete_hint(owner, key)?;
        self.stats
            .hints_pending
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        NodeStats::bump(&self.stats.hints_delivered);
        Ok(true)
    }
}

impl Handler<LocalMerge> for ReplicaShard {
    type Result = Result<(Object, bool), StoreError>;
    fn handle(&mut self, msg: LocalMerge, _: &mut Self::Context) -> Self::Result {
        let _turn = self.take_turn();
        self.merge(&msg.key, &msg.object, msg.hint_for.as_deref())
    }
}

/// Replica-side writes of many keys, all of this shard: one message for a
/// batch (hinted handoff, partition handover), so a batch costs one
/// thread hop, not one per key. Answers whether anything was written.
#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct LocalMergeMany {
    /// (key, object) pairs.
    pub items: Vec<(Vec<u8>, Object)>,
}

impl Handler<LocalMergeMany> for ReplicaShard {
    type Result = Result<bool, StoreError>;
    fn handle(&mut self, msg: LocalMergeMany, _: &mut Self::Context) -> Self::Result {
        let _turn = self.take_turn();
        let mut changed = false;
        for (key, object) in &msg.items {
            changed |= self.merge(key, object, None)?.1;
        }
        Ok(changed)
    }
}

/// Merge a pulled chunk (partition transfer), this shard's keys of it, in
/// one unlogged write: the data can be pulled again, and
/// [`Replica::flush`] makes it durable before the node says it has it.
/// Each shard is sent the whole chunk and takes its own keys from it.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct LocalMergePulled {
    /// The chunk's records, as the donor stores them.
    pub records: Records,
    /// This shard's index, of `shards`.
    pub shard: usize,
    /// How many shards the keys are spread over.
    pub shards: usize,
}

/// What a key held before a write: whether it was all tombstones, and its
/// bytes.
type Before = Option<(bool, Vec<u8>)>;

/// A pulled key, ready to be written.
enum Pulled<'a> {
    /// New here, and sent as exactly its object's encoding (checked): the
    /// bytes are stored as they came. Whether it is all tombstones is all
    /// the write needs to know of it.
    AsSent { bytes: &'a [u8], deleted: bool },
    /// Merged with what was stored, or with an earlier copy in the chunk,
    /// or not sent in its exact encoding: encoded afresh. `old` is what was
    /// stored before.
    Merged { object: Object, old: Before },
}

impl Pulled<'_> {
    /// The object, and what was stored before it.
    fn into_merged(self) -> Result<(Object, Before), StoreError> {
        match self {
            Pulled::AsSent { bytes, .. } => Ok((decode_object(bytes)?, None)),
            Pulled::Merged { object, old } => Ok((object, old)),
        }
    }
}

impl Handler<LocalMergePulled> for ReplicaShard {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, msg: LocalMergePulled, _: &mut Self::Context) -> Self::Result {
        let _turn = self.take_turn();
        // By key, so a key sent twice merges with itself. Objects are moved
        // into the merge, not copied.
        let mut pending: std::collections::HashMap<&[u8], Pulled<'_>> = Default::default();
        for record in msg.records.iter() {
            let (key, sent) = record.map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if shard_of(key, msg.shards) != msg.shard {
                continue;
            }
            let pulled = match pending.remove(key) {
                Some(earlier) => {
                    let (object, old) = earlier.into_merged()?;
                    let object = self.retire.settle(object.sync_owned(decode_object(sent)?));
                    Pulled::Merged { object, old }
                }
                None => match self.read(key)? {
                    Some((current, bytes)) => Pulled::Merged {
                        old: Some((current.is_deleted(), bytes)),
                        object: self.retire.settle(current.sync_owned(decode_object(sent)?)),
                    },
                    // The usual case for a joining node. (While clock
                    // hygiene has work, objects are tidied and re-encoded.)
                    None if !self.retire.is_active() => match sole_version_as_stored(sent) {
                        Some(deleted) => Pulled::AsSent { bytes: sent, deleted },
                        None => match decode_stored(sent)? {
                            (object, true) => Pulled::AsSent {
                                bytes: sent,
                                deleted: object.is_deleted(),
                            },
                            (object, false) => Pulled::Merged { object, old: None },
                        },
                    },
                    None => Pulled::Merged {
                        object: self.retire.settle(decode_object(sent)?),
                        old: None,
                    },
                },
            };
            pending.insert(key, pulled);
        }
        // (key, what to store, its tombstone mark, what was stored before,
        // the object when it was decoded)
        type Write<'a> = (&'a [u8], Cow<'a, [u8]>, TombstoneMark, Option<Vec<u8>>, Option<Object>);
        let mut writes: Vec<Write<'_>> = Vec::with_capacity(pending.len());
        for (key, pulled) in pending {
            match pulled {
                Pulled::AsSent { bytes, deleted } => {
                    let mark = TombstoneMark::between(false, deleted);
                    writes.push((key, Cow::Borrowed(bytes), mark, None, None));
                }
                Pulled::Merged { object, old } => {
                    let encoded = encode_object(&object);
                    if old.as_ref().is_some_and(|(_, bytes)| *bytes == encoded) {
                        continue;
                    }
                    let was_deleted = old.as_ref().is_some_and(|(deleted, _)| *deleted);
                    let mark = TombstoneMark::between(was_deleted, object.is_deleted());
                    writes.push((key, Cow::Owned(encoded), mark, old.map(|(_, b)| b), Some(object)));
                }
            }
        }
        let batch: Vec<(&[u8], &[u8], TombstoneMark)> = writes
            .iter()
            .map(|(key, encoded, mark, ..)| (*key, &encoded[..], *mark))
            .collect();
        self.store.put_unlogged(&batch)?;
        for (key, encoded, _, old, object) in &writes {
            if let Some(object) = object {
                self.retire.stored(object);
            }
            self.digests.apply(key, old.as_deref(), Some(encoded));
        }
        Ok(())
    }
}

/// Make every write so far durable, unlogged ones included.
#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct Flush;

impl Handler<Flush> for ReplicaShard {
    type Result = Result<(), StoreError>;
    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        self.store.flush()
    }
}

/// `owner` acknowledged a batch of hints, all of this shard's keys: drop
/// each that the delivery covers. Answers how many were dropped.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct HintsDelivered {
    /// The owner that acknowledged.
    pub owner: NodeId,
    /// What it acknowledged, per key.
    pub items: Vec<(Vec<u8>, Object)>,
}

impl Handler<HintsDelivered> for ReplicaShard {
    type Result = Result<usize, StoreError>;
    fn handle(&mut self, msg: HintsDelivered, _: &mut Self::Context) -> Self::Result {
        let _turn = self.take_turn();
        let mut dropped = 0;
        for (key, object) in &msg.items {
            dropped += usize::from(self.hint_delivered(&msg.owner, key, object)?);
        }
        Ok(dropped)
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

impl Handler<LeafKeys> for ReplicaShard {
    type Result = Result<Vec<(Vec<u8>, u64)>, StoreError>;
    fn handle(&mut self, msg: LeafKeys, _: &mut Self::Context) -> Self::Result {
        let mut out = Vec::new();
        for leaf in msg.leaves {
            let (from, to) = leaf_range(msg.partition, leaf, msg.q);
            self.store.scan(from, to, &mut |key, encoded| {
                out.push((key.to_vec(), key_digest(key, encoded)));
                out.len() < msg.limit
            })?;
            if out.len() >= msg.limit {
                break;
            }
        }
        Ok(out)
    }
}

/// A chunk of a ring range's data, in ring order, after a position/key.
#[derive(Message)]
#[rtype(result = "Result<(Vec<(Vec<u8>, Object)>, bool), StoreError>")]
pub struct ScanRange {
    /// First ring position.
    pub from: u128,
    /// Last ring position.
    pub to: u128,
    /// Skip up to and including this (position, key).
    pub after: Option<(u128, Vec<u8>)>,
    /// At most this many keys.
    pub limit: usize,
    /// Stop once the chunk's encoded objects reach this many bytes (one
    /// key always goes, however large).
    pub max_bytes: usize,
}

impl Handler<ScanRange> for ReplicaShard {
    type Result = Result<(Vec<(Vec<u8>, Object)>, bool), StoreError>;
    fn handle(&mut self, msg: ScanRange, _: &mut Self::Context) -> Self::Result {
        let from = msg.after.as_ref().map_or(msg.from, |(pos, _)| *pos);
        let mut items = Vec::new();
        let mut bytes = 0;
        let mut more = false;
        let mut failure = None;
        let mut resumed = msg.after.is_none();
        self.store.scan(from, msg.to, &mut |key, encoded| {
            if !resumed && past(&msg.after, key) {
                return true;
            }
            resumed = true;
            if items.len() >= msg.limit || (bytes >= msg.max_bytes && !items.is_empty()) {
                more = true;
                return false;
            }
            bytes += key.len() + encoded.len();
            match decode_object(encoded) {
                Ok(object) => items.push((key.to_vec(), object)),
                Err(e) => {
                    failure = Some(e);
                    return false;
                }
            }
            true
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        Ok((items, !more))
    }
}

/// Like [`ScanRange`], but the objects as stored, undecoded: what a donor
/// sends of a partition (the receiver decodes, and so checks, each one).
#[derive(Message)]
#[rtype(result = "Result<(Records, bool), StoreError>")]
pub struct ScanRecords(pub ScanRange);

impl Handler<ScanRecords> for ReplicaShard {
    type Result = Result<(Records, bool), StoreError>;
    fn handle(&mut self, ScanRecords(msg): ScanRecords, _: &mut Self::Context) -> Self::Result {
        let from = msg.after.as_ref().map_or(msg.from, |(pos, _)| *pos);
        // Sized for the whole chunk up front, so the buffer never moves.
        let mut records = RecordsBuilder::with_capacity(msg.max_bytes.saturating_add(64 * 1024));
        let mut keys = 0;
        let mut more = false;
        let mut resumed = msg.after.is_none();
        self.store.scan(from, msg.to, &mut |key, encoded| {
            if !resumed && past(&msg.after, key) {
                return true;
            }
            resumed = true;
            if keys >= msg.limit || (records.byte_len() >= msg.max_bytes && keys > 0) {
                more = true;
                return false;
            }
            records.push(key, encoded);
            keys += 1;
            true
        })?;
        Ok((records.finish(), !more))
    }
}

/// Whether a scan resuming after `after` has yet to pass `key` (a key
/// whose ring position lies before it, or a tie in key order up to it).
/// Scans ask only until the first key that is not: keys come in ring
/// order, so the rest are not either (but for keys sharing the first 64
/// bits of their position, which the store orders by key; such a key sent
/// twice is merged twice, which changes nothing).
fn past(after: &Option<(u128, Vec<u8>)>, key: &[u8]) -> bool {
    let Some((pos, last)) = after else { return false };
    let here = dynamo_core::ring::ring_position(key);
    (here, key) <= (*pos, last.as_slice())
}

/// Clock hygiene's look at a ring range of the data: how many stored
/// versions the swept actors minted, and (up to `limit`) the keys whose
/// objects the retired set would change.
#[derive(Message)]
#[rtype(result = "Result<HygieneFound, StoreError>")]
pub struct HygieneScan {
    /// First ring position.
    pub from: u128,
    /// Last ring position.
    pub to: u128,
    /// What to look for.
    pub sets: Arc<RetireSets>,
    /// Most keys to list.
    pub limit: usize,
}

/// What a [`HygieneScan`] found.
#[derive(Debug, Default)]
pub struct HygieneFound {
    /// Versions minted by swept actors.
    pub minted: u64,
    /// Keys to rewrite (their objects still name retired actors).
    pub untidy: Vec<Vec<u8>>,
}

/// Clock hygiene's look at every hint: how many hinted versions the swept
/// actors minted, and (up to `limit`) the hints to rewrite, as (owner, key).
#[derive(Message)]
#[rtype(result = "Result<(u64, Vec<(NodeId, Vec<u8>)>), StoreError>")]
pub struct HygieneScanHints {
    /// What to look for.
    pub sets: Arc<RetireSets>,
    /// Most hints to list.
    pub limit: usize,
}

/// The node ids of `sets`' actors, as the encoded objects spell them.
fn needles(sets: &RetireSets) -> Vec<memchr::memmem::Finder<'static>> {
    let ids: BTreeSet<&str> = sets
        .sweeping
        .iter()
        .chain(&sets.retired.superseded)
        .chain(&sets.retired.forgotten)
        .map(|a| a.node.as_str())
        .collect();
    ids.into_iter()
        .map(|id| memchr::memmem::Finder::new(id.as_bytes()).into_owned())
        .collect()
}

/// Count what `sets` looks for in one encoded object; a quick look at its
/// bytes first, since most objects name none of the actors.
fn inspect(
    sets: &RetireSets,
    needles: &[memchr::memmem::Finder<'static>],
    encoded: &[u8],
) -> Result<(u64, bool), StoreError> {
    if !needles.iter().any(|n| n.find(encoded).is_some()) {
        return Ok((0, false));
    }
    let object = decode_object(encoded)?;
    let minted = object.minted_by(&sets.sweeping) as u64;
    let untidy = object.untidy(&sets.retired);
    Ok((minted, untidy))
}

impl Handler<HygieneScan> for ReplicaShard {
    type Result = Result<HygieneFound, StoreError>;
    fn handle(&mut self, msg: HygieneScan, _: &mut Self::Context) -> Self::Result {
        let needles = needles(&msg.sets);
        let mut found = HygieneFound::default();
        let mut failure = None;
        self.store.scan(msg.from, msg.to, &mut |key, encoded| {
            match inspect(&msg.sets, &needles, encoded) {
                Ok((minted, untidy)) => {
                    found.minted += minted;
                    if untidy && found.untidy.len() < msg.limit {
                        found.untidy.push(key.to_vec());
                    }
                }
                Err(e) => failure = Some(e),
            }
            failure.is_none()
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }
}

impl Handler<HygieneScanHints> for ReplicaShard {
    type Result = Result<(u64, Vec<(NodeId, Vec<u8>)>), StoreError>;
    fn handle(&mut self, msg: HygieneScanHints, _: &mut Self::Context) -> Self::Result {
        let needles = needles(&msg.sets);
        let mut minted = 0;
        let mut untidy = Vec::new();
        let mut failure = None;
        self.store.visit_hints(&mut |owner, key, encoded| {
            match inspect(&msg.sets, &needles, encoded) {
                Ok((m, dirty)) => {
                    minted += m;
                    if dirty && untidy.len() < msg.limit {
                        untidy.push((owner.to_string(), key.to_vec()));
                    }
                }
                Err(e) => failure = Some(e),
            }
            failure.is_none()
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok((minted, untidy)),
        }
    }
}

/// Delete each key whose stored object is still exactly the one given
/// (after handing it to the partition's owners), all of this shard's keys.
/// Answers how many were deleted.
#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct DropIfUnchanged {
    /// (key, what must still be stored) pairs.
    pub items: Vec<(Vec<u8>, Object)>,
}

impl Handler<DropIfUnchanged> for ReplicaShard {
    type Result = Result<usize, StoreError>;
    fn handle(&mut self, msg: DropIfUnchanged, _: &mut Self::Context) -> Self::Result {
        let _turn = self.take_turn();
        let mut gone = Vec::new();
        for (key, expected) in msg.items {
            let Some((current, old)) = self.read(&key)? else {
                continue;
            };
            // A key written since it was handed over keeps its newer
            // version here until the next round hands that over too.
            if current == expected {
                gone.push((key, old));
            }
        }
        let keys: Vec<Vec<u8>> = gone.iter().map(|(k, _)| k.clone()).collect();
        self.store.delete_many(&keys)?;
        for (key, old) in &gone {
            self.digests.apply(key, Some(old), None);
        }
        Ok(gone.len())
    }
}

/// The Merkle digest ([`key_digest`]) of what is stored for each key, in
/// order; `None` where nothing is.
#[derive(Message)]
#[rtype(result = "Result<Vec<Option<u64>>, StoreError>")]
pub struct KeyDigests {
    /// The keys.
    pub keys: Vec<Vec<u8>>,
}

impl Handler<KeyDigests> for ReplicaShard {
    type Result = Result<Vec<Option<u64>>, StoreError>;
    fn handle(&mut self, msg: KeyDigests, _: &mut Self::Context) -> Self::Result {
        msg.keys
            .iter()
            .map(|key| Ok(self.store.get(key)?.map(|encoded| key_digest(key, &encoded))))
            .collect()
    }
}

/// Keys of a ring range whose objects are all tombstones.
#[derive(Message)]
#[rtype(result = "Result<Vec<Vec<u8>>, StoreError>")]
pub struct Tombstones {
    /// First ring position.
    pub from: u128,
    /// Last ring position.
    pub to: u128,
    /// At most this many.
    pub limit: usize,
}

impl Handler<Tombstones> for ReplicaShard {
    type Result = Result<Vec<Vec<u8>>, StoreError>;
    fn handle(&mut self, msg: Tombstones, _: &mut Self::Context) -> Self::Result {
        self.store.scan_tombstones(msg.from, msg.to, msg.limit)
    }
}

impl Handler<Purge> for ReplicaShard {
    type Result = Result<bool, StoreError>;
    fn handle(&mut self, msg: Purge, _: &mut Self::Context) -> Self::Result {
        let _turn = self.take_turn();
        let Some((current, old)) = self.read(&msg.key)? else {
            return Ok(false);
        };
        if current != msg.expected || !current.is_deleted() {
            return Ok(false);
        }
        self.store.delete(&msg.key)?;
        self.digests.apply(&msg.key, Some(&old), None);
        Ok(true)
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
    /// A client write would leave too many siblings.
    #[error("the key has {0} concurrent versions; read it and write back a resolution (with its context) first")]
    TooManySiblings(usize),
    /// The shard thread is gone (node shutting down).
    #[error("replica shard unavailable: {0}")]
    Mailbox(#[from] MailboxError),
}

/// Something about one key.
type Keyed<T> = (Vec<u8>, T);

/// Give the calling thread the lowest CPU priority. The scanner's work
/// (a donor's partition scans, anti-entropy, hint delivery) is background
/// work: on cores the clients keep busy it should take what they leave,
/// like RocksDB's flushes and compactions, not queue requests behind it.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // On Linux the nice value belongs to the thread, and `setpriority`
        // with the thread's id changes only that thread. Lowering needs no
        // privilege; should it fail, the scans merely compete as before.
        // SAFETY: plain syscalls on this thread's own id.
        let tid = unsafe { libc::gettid() };
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) } != 0 {
            log::warn!("could not lower the scanner thread's CPU priority");
        }
    }
}

/// The shard, of `shards`, whose thread writes `key`.
fn shard_of(key: &[u8], shards: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

/// A handle on all shards of this node's replica store.
#[derive(Clone)]
pub struct Replica {
    shards: Arc<Vec<Addr<ReplicaShard>>>,
    /// Each shard again, for a client write or a replica's merge done on
    /// the calling thread (an HTTP worker, or the thread serving peers)
    /// whenever the shard is free: a write costs no thread switch then,
    /// and at moderate load the two wakeups of a shard round trip were a
    /// good part of a write's CPU. When the shard is busy (a batch of a
    /// transfer or a handoff) or the store would hold the write back, the
    /// write goes to the shard's thread as before, so the caller's event
    /// loop neither queues behind a batch nor sits out a write stall.
    here: Arc<Vec<ReplicaShard>>,
    /// A thread for range scans and other background reads (anti-entropy,
    /// transfers, handoff), so a long scan never holds up the client
    /// requests queued on a shard; it runs at the lowest CPU priority.
    /// Reads need no shard: each sees a consistent view of the store by
    /// itself.
    scanner: Addr<ReplicaShard>,
    store: Arc<dyn Store>,
    stats: Arc<NodeStats>,
    digests: Arc<DigestTable>,
    /// Fsyncs for `sync_writes`; `None` when the WAL alone is enough.
    commit: Option<GroupCommit>,
    retire: Arc<RetireFilter>,
}

impl Replica {
    /// Start `shards` storage threads over `store`, keeping `digests` (the
    /// Merkle leaves, already built over the store's contents) up to date.
    /// With `sync_writes`, a write counts as stored only once fsynced.
    pub fn start(
        store: Arc<dyn Store>,
        shards: usize,
        stats: Arc<NodeStats>,
        digests: Arc<DigestTable>,
        sync_writes: bool,
    ) -> Result<Replica, StoreError> {
        let commit = sync_writes.then(|| GroupCommit::start(store.clone())).transpose()?;
        let floor = Arc::new(DotFloor::load(store.as_ref())?);
        let retire = Arc::new(RetireFilter::default());
        let shard = || ReplicaShard {
            store: store.clone(),
            stats: stats.clone(),
            digests: digests.clone(),
            floor: floor.clone(),
            retire: retire.clone(),
            turn: Arc::new(Mutex::new(())),
        };
        let thread = |shard: ReplicaShard, background: bool| {
            // An arbiter of its own rather than a `SyncArbiter`: that one
            // forwards every message through an actor on the thread that
            // started it (here the node's main thread, which also serves
            // peers), a third thread switch per message, and its worker
            // spins in `sched_yield` each time its queue runs dry.
            ReplicaShard::start_in_arbiter(&Arbiter::new().handle(), move |_| {
                if background {
                    lower_thread_priority();
                }
                shard
            })
        };
        let here: Vec<ReplicaShard> = (0..shards.max(1)).map(|_| shard()).collect();
        let addrs = here.iter().map(|shard| thread(shard.clone(), false)).collect();
        Ok(Replica {
            shards: Arc::new(addrs),
            here: Arc::new(here),
            scanner: thread(shard(), true),
            store,
            stats,
            digests,
            commit,
            retire,
        })
    }

    /// The node's counters.
    pub fn node_stats(&self) -> &Arc<NodeStats> {
        &self.stats
    }

    /// Clock hygiene's hook on this replica's writes.
    pub fn retire(&self) -> &Arc<RetireFilter> {
        &self.retire
    }

    /// Clock hygiene's scan of a ring range (on the scanner thread).
    pub async fn hygiene_scan(
        &self,
        from: u128,
        to: u128,
        sets: Arc<RetireSets>,
        limit: usize,
    ) -> Result<HygieneFound, ReplicaError> {
        Ok(self.scanner.send(HygieneScan { from, to, sets, limit }).await??)
    }

    /// Clock hygiene's scan of every hint (on the scanner thread).
    pub async fn hygiene_scan_hints(
        &self,
        sets: Arc<RetireSets>,
        limit: usize,
    ) -> Result<(u64, Vec<(NodeId, Vec<u8>)>), ReplicaError> {
        Ok(self.scanner.send(HygieneScanHints { sets, limit }).await??)
    }

    fn shard_index(&self, key: &[u8]) -> usize {
        shard_of(key, self.shards.len())
    }

    fn shard(&self, key: &[u8]) -> &Addr<ReplicaShard> {
        &self.shards[self.shard_index(key)]
    }

    /// Mint and store a version on this thread if shard `index` is free
    /// and the store takes the write at once; otherwise `msg` comes back,
    /// for the shard's thread.
    fn update_here(
        &self,
        index: usize,
        msg: LocalUpdate,
    ) -> Result<Result<(Object, VersionVector), UpdateError>, Box<LocalUpdate>> {
        let shard = &self.here[index];
        let Some(_turn) = shard.try_turn() else {
            return Err(Box::new(msg));
        };
        match shard.local_update(msg, false) {
            Ok(Ok(done)) => Ok(Ok(done)),
            Ok(Err(msg)) => Err(msg),
            Err(e) => Ok(Err(e)),
        }
    }

    /// Merge into the replica of `key` on this thread if shard `index` is
    /// free and the store takes the write at once; `None` otherwise.
    fn merge_here(&self, index: usize, key: &[u8], object: &Object) -> Result<Option<(Object, bool)>, StoreError> {
        let shard = &self.here[index];
        match shard.try_turn() {
            Some(_turn) => shard.merge_replica(key, object, false),
            None => Ok(None),
        }
    }

    /// `items` split by the shard that owns each key (in their order).
    fn by_shard<T>(&self, items: Vec<Keyed<T>>) -> Vec<(usize, Vec<Keyed<T>>)> {
        let mut groups: Vec<Vec<Keyed<T>>> = (0..self.shards.len()).map(|_| Vec::new()).collect();
        for (key, item) in items {
            groups[self.shard_index(&key)].push((key, item));
        }
        groups.into_iter().enumerate().filter(|(_, g)| !g.is_empty()).collect()
    }

    /// Send each shard its part of `items` as one message (built by
    /// `message`), all shards at once; the shards' answers, or the first
    /// failure.
    async fn on_shards<M, R>(
        &self,
        items: Vec<(Vec<u8>, Object)>,
        message: impl Fn(Vec<(Vec<u8>, Object)>) -> M,
    ) -> Result<Vec<R>, ReplicaError>
    where
        M: Message<Result = Result<R, StoreError>> + Send + 'static,
        R: Send + 'static,
        ReplicaShard: Handler<M>,
    {
        let sends = self
            .by_shard(items)
            .into_iter()
            .map(|(shard, items)| self.shards[shard].send(message(items)));
        let mut answers = Vec::new();
        for result in futures::future::join_all(sends).await {
            answers.push(result??);
        }
        Ok(answers)
    }

    /// The local object for `key` (with the hint kept for `hint_for`).
    ///
    /// Read on the calling thread, not on the key's shard: a point read
    /// needs no order with the shard's writes (each sees a whole object,
    /// and a write acknowledged before the read began is in the store), and
    /// from the page cache it costs less than the two thread switches of a
    /// shard round trip, which were most of a read's CPU at moderate load.
    pub async fn get(&self, key: Vec<u8>, hint_for: Option<NodeId>) -> Result<Option<Object>, ReplicaError> {
        let own = self.store.get(&key)?.map(|bytes| decode_object(&bytes)).transpose()?;
        let Some(owner) = hint_for else {
            return Ok(own);
        };
        Ok(match (own, self.store.get_hint(&owner, &key)?) {
            (Some(a), Some(b)) => Some(a.sync_owned(b)),
            (a, b) => a.or(b),
        })
    }

    /// Mint and store a new version (coordinator side). The version is in
    /// the WAL when this returns; with `sync_writes` it is durable only once
    /// [`Replica::durable`] returns, which the coordinator awaits while the
    /// version travels to the other replicas.
    pub async fn update(
        &self,
        key: Vec<u8>,
        context: VersionVector,
        actor: ClockActor,
        value: Value,
    ) -> Result<(Object, VersionVector), ReplicaError> {
        let index = self.shard_index(&key);
        let msg = LocalUpdate {
            key,
            context,
            actor,
            value,
        };
        let answer = match self.update_here(index, msg) {
            Ok(answer) => answer,
            Err(msg) => self.shards[index].send(*msg).await?,
        };
        match answer {
            Ok(done) => Ok(done),
            Err(UpdateError::Store(e)) => Err(e.into()),
            Err(UpdateError::TooManySiblings(n)) => Err(ReplicaError::TooManySiblings(n)),
        }
    }

    /// Merge an object into the local replica, or into the hint kept for
    /// `hint_for`; durable (fsynced, with `sync_writes`) when it returns.
    pub async fn merge(&self, key: Vec<u8>, object: Object, hint_for: Option<NodeId>) -> Result<Object, ReplicaError> {
        let index = self.shard_index(&key);
        let here = match hint_for {
            None => self.merge_here(index, &key, &object)?,
            Some(_) => None,
        };
        let (merged, changed) = match here {
            Some(done) => done,
            None => self.shards[index].send(LocalMerge { key, object, hint_for }).await??,
        };
        if changed {
            self.durable().await?;
        }
        Ok(merged)
    }

    /// Merge many objects into the local replica, a message per shard;
    /// durable (fsynced, with `sync_writes`) when it returns.
    pub async fn merge_many(&self, items: Vec<(Vec<u8>, Object)>) -> Result<(), ReplicaError> {
        let changed = self.on_shards(items, |items| LocalMergeMany { items }).await?;
        if changed.contains(&true) {
            self.durable().await?;
        }
        Ok(())
    }

    /// Merge a pulled chunk of a partition (records as the donor stores
    /// them), on every shard at once, without the write-ahead log: lost in
    /// a crash until [`Replica::flush`].
    pub async fn merge_pulled(&self, records: Records) -> Result<(), ReplicaError> {
        let shards = self.shards.len();
        let sends = self.shards.iter().enumerate().map(|(shard, addr)| {
            addr.send(LocalMergePulled {
                records: records.clone(),
                shard,
                shards,
            })
        });
        for result in futures::future::join_all(sends).await {
            result??;
        }
        Ok(())
    }

    /// Make every write so far durable, pulled chunks included (a memtable
    /// flush: seconds at most, so it runs on the background thread).
    pub async fn flush(&self) -> Result<(), ReplicaError> {
        Ok(self.scanner.send(Flush).await??)
    }

    /// Record that `owner` acknowledged a batch of hints; returns how many
    /// were dropped.
    pub async fn hints_delivered(&self, owner: NodeId, items: Vec<(Vec<u8>, Object)>) -> Result<usize, ReplicaError> {
        let dropped = self
            .on_shards(items, |items| HintsDelivered {
                owner: owner.clone(),
                items,
            })
            .await?;
        Ok(dropped.into_iter().sum())
    }

    /// Wait until every write this replica made so far is durable: at once
    /// without `sync_writes` (the WAL write already survives a crash), after
    /// the next group commit with it.
    pub async fn durable(&self) -> Result<(), ReplicaError> {
        match &self.commit {
            Some(commit) => Ok(commit.durable().await?),
            None => Ok(()),
        }
    }

    /// Whether [`Replica::durable`] has to wait for an fsync.
    pub fn syncs_writes(&self) -> bool {
        self.commit.is_some()
    }

    /// A batch of `owner`'s hints (scans run on the first shard; the
    /// per-key decisions they lead to go to the key's own shard).
    pub async fn scan_hints(
        &self,
        owner: NodeId,
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Object)>, ReplicaError> {
        Ok(self.scanner.send(ScanHints { owner, after, limit }).await??)
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

    /// The (key, digest) pairs in some leaves of a partition.
    pub async fn leaf_keys(
        &self,
        partition: u32,
        leaves: Vec<u32>,
        q: u32,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, u64)>, ReplicaError> {
        Ok(self
            .scanner
            .send(LeafKeys {
                partition,
                leaves,
                q,
                limit,
            })
            .await??)
    }

    /// A chunk of the data in ring range `from..=to` after `after` (at
    /// most `limit` keys and about `max_bytes`), and whether the range is
    /// exhausted.
    pub async fn scan_range(
        &self,
        from: u128,
        to: u128,
        after: Option<(u128, Vec<u8>)>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<(Vec<u8>, Object)>, bool), ReplicaError> {
        Ok(self
            .scanner
            .send(ScanRange {
                from,
                to,
                after,
                limit,
                max_bytes,
            })
            .await??)
    }

    /// Like [`Replica::scan_range`], with the objects as stored: a chunk of
    /// a partition for a node pulling it.
    pub async fn scan_records(
        &self,
        from: u128,
        to: u128,
        after: Option<(u128, Vec<u8>)>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Records, bool), ReplicaError> {
        Ok(self
            .scanner
            .send(ScanRecords(ScanRange {
                from,
                to,
                after,
                limit,
                max_bytes,
            }))
            .await??)
    }

    /// Delete each key that still holds exactly the object given; returns
    /// how many were deleted.
    pub async fn drop_if_unchanged(&self, items: Vec<(Vec<u8>, Object)>) -> Result<usize, ReplicaError> {
        let dropped = self.on_shards(items, |items| DropIfUnchanged { items }).await?;
        Ok(dropped.into_iter().sum())
    }

    /// The Merkle digest of what is stored for each key (`None` where
    /// nothing is). A read, so it runs beside the shards: a stale answer
    /// only makes a handover send a key it could have skipped.
    pub async fn key_digests(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Option<u64>>, ReplicaError> {
        Ok(self.scanner.send(KeyDigests { keys }).await??)
    }

    /// Keys in `from..=to` whose objects are all tombstones.
    pub async fn tombstones(&self, from: u128, to: u128, limit: usize) -> Result<Vec<Vec<u8>>, ReplicaError> {
        Ok(self.scanner.send(Tombstones { from, to, limit }).await??)
    }

    /// Delete `key` if it still holds exactly the tombstone `expected`.
    pub async fn purge(&self, key: Vec<u8>, expected: Object) -> Result<bool, ReplicaError> {
        Ok(self.shard(&key).send(Purge { key, expected }).await??)
    }

    /// The Merkle leaf digests.
    pub fn digests(&self) -> &Arc<DigestTable> {
        &self.digests
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

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn lowering_the_priority_changes_only_the_calling_thread() {
        // SAFETY: plain syscalls on this thread's own id and the process's.
        let nice_of = |tid: libc::pid_t| unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
        let here = unsafe { libc::gettid() };
        let before = nice_of(here);
        let lowered = std::thread::spawn(move || {
            super::lower_thread_priority();
            nice_of(unsafe { libc::gettid() })
        })
        .join()
        .expect("the test thread ran");
        assert_eq!(lowered, 19);
        assert_eq!(nice_of(here), before);
    }
}

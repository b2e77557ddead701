//! What a replica keeps on disk, behind a trait.
//!
//! The replica actor talks to a [`Store`]; RocksDB implements it in the
//! actors crate, [`MemStore`] here for tests. Keys map to encoded
//! [`Object`]s in the data keyspace; small named blobs (identity, cluster
//! state) live in a separate metadata keyspace, and later keyspaces (hints,
//! Merkle trees) get their own, so a scan of one never walks another.
//! Calls are blocking: callers must run them off async executor threads.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::dvv::Object;

/// Current on-disk format of an object.
const OBJECT_FORMAT_V1: u8 = 1;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine failed.
    #[error("storage engine error: {0}")]
    Engine(String),
    /// Stored bytes do not decode (corruption or an unknown format).
    #[error("stored object is corrupt: {0}")]
    Corrupt(String),
}

/// Size of what a store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Keys in the data keyspace (an estimate for large stores).
    pub keys: u64,
    /// Bytes used by the data keyspace (an estimate).
    pub bytes: u64,
}

/// A replica's durable storage. Objects are stored encoded (see
/// [`encode_object`]); the replica decodes them, and hashes the encoded
/// bytes into its Merkle leaves without re-encoding.
pub trait Store: Send + Sync + 'static {
    /// The encoded object stored for `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replace the object for `key`, and update the index of deleted keys
    /// as `mark` says, in one atomic write; in the write-ahead log when this
    /// returns (it survives a crash of the process), fsynced by the next
    /// [`Store::sync_wal`] (it survives a power cut).
    fn put(&self, key: &[u8], encoded: &[u8], mark: TombstoneMark) -> Result<(), StoreError>;
    /// [`Store::put`], unless the engine would first hold the write back
    /// (a write stall while its flushes and compactions catch up): then
    /// nothing is written and the answer is `false`. For callers that must
    /// not block, such as an event loop storing a write itself.
    fn try_put(&self, key: &[u8], encoded: &[u8], mark: TombstoneMark) -> Result<bool, StoreError> {
        self.put(key, encoded, mark).map(|()| true)
    }
    /// Remove `key` (a purged tombstone) and its index entry (in the WAL).
    fn delete(&self, key: &[u8]) -> Result<(), StoreError>;
    /// Up to `limit` keys whose object is all tombstones, with ring
    /// positions in `from..=to`.
    fn scan_tombstones(&self, from: u128, to: u128, limit: usize) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Visit every key whose ring position is in `from..=to`, in ring order
    /// (ties in key order), with its encoded object, until `visit` returns
    /// false.
    fn scan(&self, from: u128, to: u128, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError>;
    /// A metadata blob.
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Store a metadata blob, fsynced before this returns.
    fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Fsync the write-ahead log: every write that returned before this
    /// call is on stable storage when it returns. One call covers any
    /// number of writes, which is what group commit shares.
    fn sync_wal(&self) -> Result<(), StoreError>;
    /// Size figures for `/status`.
    fn stats(&self) -> StoreStats;
    /// Store many objects in one write that skips the write-ahead log: a
    /// crash of the process may lose it until [`Store::flush`] returns. Only
    /// for data that can be fetched again (a partition being pulled), never
    /// for a write someone is told is stored.
    fn put_unlogged(&self, items: &[(&[u8], &[u8], TombstoneMark)]) -> Result<(), StoreError> {
        for (key, encoded, mark) in items {
            self.put(key, encoded, *mark)?;
        }
        Ok(())
    }
    /// Remove many keys (handed over to their owners) in one write.
    fn delete_many(&self, keys: &[Vec<u8>]) -> Result<(), StoreError> {
        for key in keys {
            self.delete(key)?;
        }
        Ok(())
    }
    /// Make every write so far durable, unlogged ones included.
    fn flush(&self) -> Result<(), StoreError> {
        self.sync_wal()
    }

    /// The hinted object this node keeps for `owner` (sloppy quorum).
    fn get_hint(&self, owner: &str, key: &[u8]) -> Result<Option<Object>, StoreError>;
    /// Store a hint for `owner` (in the WAL, like [`Store::put`]).
    fn put_hint(&self, owner: &str, key: &[u8], object: &Object) -> Result<(), StoreError>;
    /// Drop a hint (after its owner acknowledged it).
    fn delete_hint(&self, owner: &str, key: &[u8]) -> Result<(), StoreError>;
    /// Up to `limit` hints for `owner` with keys after `after`, in key order.
    fn scan_hints(&self, owner: &str, after: Option<&[u8]>, limit: usize)
        -> Result<Vec<(Vec<u8>, Object)>, StoreError>;
    /// Number of hints held, for every owner together (read at start-up).
    fn count_hints(&self) -> Result<u64, StoreError>;
    /// Visit every hint, whoever it is for, with its owner, key and encoded
    /// object, until `visit` returns false.
    fn visit_hints(&self, visit: &mut HintVisitor<'_>) -> Result<(), StoreError>;
}

/// The key of a hint in the hints keyspace: owners sort apart, and one
/// owner's hints are contiguous, so handoff scans a prefix.
pub fn hint_key(owner: &str, key: &[u8]) -> Vec<u8> {
    let mut out = hint_prefix(owner);
    out.extend_from_slice(key);
    out
}

/// A visitor of hints: (owner, key, encoded object) → whether to go on.
pub type HintVisitor<'a> = dyn FnMut(&str, &[u8], &[u8]) -> bool + 'a;

/// The owner and key a hint's key names ([`hint_key`]'s inverse).
pub fn split_hint_key(stored: &[u8]) -> Option<(&str, &[u8])> {
    let (&len, rest) = stored.split_first()?;
    let owner = rest.get(..len as usize)?;
    Some((std::str::from_utf8(owner).ok()?, &rest[len as usize..]))
}

/// The prefix every hint for `owner` starts with.
pub fn hint_prefix(owner: &str) -> Vec<u8> {
    // Node ids are at most 255 bytes (checked by config validation).
    let id = &owner.as_bytes()[..owner.len().min(255)];
    let mut out = Vec::with_capacity(1 + id.len());
    out.push(id.len() as u8);
    out.extend_from_slice(id);
    out
}

/// Encode an object for storage.
pub fn encode_object(object: &Object) -> Vec<u8> {
    // Sized first, so the value bytes are copied once, into a buffer that
    // never grows.
    let mut out = Vec::with_capacity(encoded_len(object));
    out.push(OBJECT_FORMAT_V1);
    // Serialising into a Vec cannot fail for these plain types.
    let _ = postcard::to_io(object, &mut out);
    out
}

/// The length of [`encode_object`]'s bytes, without encoding.
pub fn encoded_len(object: &Object) -> usize {
    1 + postcard::serialize_with_flavor::<_, _, usize>(object, postcard::ser_flavors::Size::default()).unwrap_or(0)
}

/// Decode a stored object, re-checking its invariants.
pub fn decode_object(bytes: &[u8]) -> Result<Object, StoreError> {
    match bytes.split_first() {
        Some((&OBJECT_FORMAT_V1, rest)) => {
            let object: Object = postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(object.checked())
        }
        Some((format, _)) => Err(StoreError::Corrupt(format!("unknown object format {format}"))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}

/// Decode an object from another node's store (a pulled partition), and
/// tell whether `bytes` are exactly [`encode_object`]'s encoding of it, so
/// that they may be stored as they are, without encoding the object again.
/// A node only ever stores that encoding; bytes mangled into another form
/// of the same object are not kept as they are, so that the Merkle
/// digests of equal objects stay equal on every replica.
pub fn decode_stored(bytes: &[u8]) -> Result<(Object, bool), StoreError> {
    let object = decode_object(bytes)?;
    let exact = match bytes.split_first() {
        Some((&OBJECT_FORMAT_V1, rest)) => postcard::serialize_with_flavor(&object, Matches { rest }).unwrap_or(false),
        _ => false,
    };
    Ok((object, exact))
}

/// Whether stored bytes are exactly the encoding of an object of one
/// version, checked where they lie, without decoding the value: `Some`
/// with whether that version is a tombstone, `None` for anything else
/// (several siblings, or bytes that are not the canonical encoding), which
/// [`decode_stored`] then reads. Nearly every key a node pulls has one
/// version, and its value is most of the bytes: storing them as sent spares
/// copying every value out and back in.
pub fn sole_version_as_stored(bytes: &[u8]) -> Option<bool> {
    let rest = match bytes.split_first() {
        Some((&OBJECT_FORMAT_V1, rest)) => rest,
        _ => return None,
    };
    let (view, trailing) = postcard::take_from_bytes::<view::Object<'_>>(rest).ok()?;
    let [version] = &view.versions[..] else {
        return None;
    };
    // A version vector is a map: canonical only with its actors in order,
    // each once. One version cannot be a duplicate or dominated.
    let sorted = version.context.windows(2).all(|w| w[0].0 < w[1].0);
    // Re-encoding the view gives each number its shortest form: equal bytes
    // mean the input used them too.
    let exact =
        trailing.is_empty() && sorted && postcard::serialize_with_flavor(&view, Matches { rest }).unwrap_or(false);
    exact.then_some(version.value.data.is_none())
}

/// A stored object read where it lies: the same fields in the same order
/// as [`Object`] and its parts, with strings and bytes borrowed, so it
/// decodes and encodes exactly as they do (a test holds them together).
mod view {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub(super) struct Object<'a> {
        #[serde(borrow)]
        pub versions: Vec<Version<'a>>,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Version<'a> {
        #[serde(borrow)]
        pub dot: Dot<'a>,
        /// A map on the wire (a length, then its pairs), as a sequence is.
        #[serde(borrow)]
        pub context: Vec<(Actor<'a>, u64)>,
        #[serde(borrow)]
        pub value: Value<'a>,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Dot<'a> {
        #[serde(borrow)]
        pub actor: Actor<'a>,
        pub counter: u64,
    }

    #[derive(PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    pub(super) struct Actor<'a> {
        pub node: &'a str,
        pub epoch: u64,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct Value<'a> {
        #[serde(with = "serde_bytes", borrow)]
        pub data: Option<&'a [u8]>,
        pub content_type: &'a str,
    }
}

/// A postcard output that stores nothing: it compares what would be
/// written with the bytes expected, and ends as whether they were all of
/// them.
struct Matches<'a> {
    rest: &'a [u8],
}

impl postcard::ser_flavors::Flavor for Matches<'_> {
    type Output = bool;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        match self.rest.strip_prefix(data) {
            Some(rest) => {
                self.rest = rest;
                Ok(())
            }
            // Any error stops the serializer; it is read as "no match".
            None => Err(postcard::Error::SerializeBufferFull),
        }
    }

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }

    fn finalize(self) -> postcard::Result<bool> {
        Ok(self.rest.is_empty())
    }
}

/// How a write changes the index of deleted keys (the keys anti-entropy
/// considers for purging).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TombstoneMark {
    /// The object is now all tombstones: index it.
    Set,
    /// It was all tombstones and no longer is: unindex it.
    Clear,
    /// Neither before nor after: leave the index alone.
    Keep,
}

impl TombstoneMark {
    /// The change for an object going from `was_deleted` to `is_deleted`.
    pub fn between(was_deleted: bool, is_deleted: bool) -> TombstoneMark {
        match (was_deleted, is_deleted) {
            (_, true) => TombstoneMark::Set,
            (true, false) => TombstoneMark::Clear,
            (false, false) => TombstoneMark::Keep,
        }
    }
}

/// The key under which `key` is stored: its ring position's top 64 bits
/// first, so a partition or a Merkle leaf is one contiguous range.
pub fn data_key(key: &[u8]) -> Vec<u8> {
    let position = crate::ring::ring_position(key);
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&((position >> 64) as u64).to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// The first stored-key prefix a scan from ring position `position` reads.
pub fn data_key_prefix(position: u128) -> [u8; 8] {
    ((position >> 64) as u64).to_be_bytes()
}

/// The client key inside a stored key, if its position lies in `from..=to`
/// (a stored key's prefix only narrows the position to 2^64 values).
pub fn key_in_range(stored: &[u8], from: u128, to: u128) -> Option<&[u8]> {
    let key = stored.get(8..)?;
    let prefix = u64::from_be_bytes(stored.get(..8)?.try_into().ok()?);
    // Strictly between the range's first and last prefix the key is in it
    // whatever the rest of its position; only at the edges is the position
    // (an MD5) needed.
    if prefix > (from >> 64) as u64 && prefix < (to >> 64) as u64 {
        return Some(key);
    }
    let position = crate::ring::ring_position(key);
    (from..=to).contains(&position).then_some(key)
}

/// An in-memory [`Store`] for tests.
///
/// A [`MemStore::volatile`] store also models what a power cut does to a
/// write-ahead log: [`MemStore::power_cut`] loses every write since the
/// last sync, so a test can prove that what was acknowledged had been
/// synced. Its syncs can be slowed down and made to fail.
#[derive(Debug, Default)]
pub struct MemStore {
    data: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    tombstones: Mutex<std::collections::BTreeSet<Vec<u8>>>,
    meta: Mutex<BTreeMap<String, Vec<u8>>>,
    hints: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    /// What survives a power cut (volatile stores only).
    synced: Option<Mutex<Contents>>,
    syncs: std::sync::atomic::AtomicU64,
    sync_delay: Mutex<std::time::Duration>,
    fail_syncs: std::sync::atomic::AtomicBool,
    /// Every this-many-th [`Store::try_put`] is held back (0: none is).
    hold_back_every: std::sync::atomic::AtomicU64,
    tried_puts: std::sync::atomic::AtomicU64,
    held_back: std::sync::atomic::AtomicU64,
}

/// Everything a [`MemStore`] holds, as of one moment.
#[derive(Clone, Debug, Default)]
struct Contents {
    data: BTreeMap<Vec<u8>, Vec<u8>>,
    tombstones: std::collections::BTreeSet<Vec<u8>>,
    meta: BTreeMap<String, Vec<u8>>,
    hints: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose unsynced writes a [`MemStore::power_cut`] loses.
    pub fn volatile() -> Self {
        MemStore {
            synced: Some(Mutex::default()),
            ..Self::default()
        }
    }

    /// Lose every write made since the last sync (as a machine losing power
    /// loses what the OS had not yet written). Only for volatile stores.
    pub fn power_cut(&self) -> Result<(), StoreError> {
        let Some(synced) = &self.synced else {
            return Err(StoreError::Engine("power_cut needs a volatile store".into()));
        };
        let kept = synced.lock().map_err(poisoned)?.clone();
        *self.data.lock().map_err(poisoned)? = kept.data;
        *self.tombstones.lock().map_err(poisoned)? = kept.tombstones;
        *self.meta.lock().map_err(poisoned)? = kept.meta;
        *self.hints.lock().map_err(poisoned)? = kept.hints;
        Ok(())
    }

    /// How many times [`Store::sync_wal`] ran.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Make every sync take `delay` (so concurrent waiters pile up).
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        if let Ok(mut d) = self.sync_delay.lock() {
            *d = delay;
        }
    }

    /// Make syncs fail (a dying disk) or succeed again.
    pub fn fail_syncs(&self, fail: bool) {
        self.fail_syncs.store(fail, std::sync::atomic::Ordering::SeqCst);
    }

    /// Hold back every `every`-th write made without waiting, as RocksDB
    /// holds back all of them in a write stall (0: none).
    pub fn hold_back_writes(&self, every: u64) {
        self.hold_back_every.store(every, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many writes made without waiting were held back.
    pub fn held_back(&self) -> u64 {
        self.held_back.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Record the current contents as what survives a power cut: a sync
    /// makes every earlier write durable, as one fsync of a WAL does.
    fn snapshot(&self) -> Result<(), StoreError> {
        let Some(synced) = &self.synced else {
            return Ok(());
        };
        // One lock at a time: `put` holds two, in its own order.
        let data = self.data.lock().map_err(poisoned)?.clone();
        let tombstones = self.tombstones.lock().map_err(poisoned)?.clone();
        let meta = self.meta.lock().map_err(poisoned)?.clone();
        let hints = self.hints.lock().map_err(poisoned)?.clone();
        let now = Contents {
            data,
            tombstones,
            meta,
            hints,
        };
        *synced.lock().map_err(poisoned)? = now;
        Ok(())
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Engine("in-memory store lock poisoned".into())
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.data.lock().map_err(poisoned)?.get(&data_key(key)).cloned())
    }

    fn try_put(&self, key: &[u8], encoded: &[u8], mark: TombstoneMark) -> Result<bool, StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let every = self.hold_back_every.load(SeqCst);
        if every > 0 && (self.tried_puts.fetch_add(1, SeqCst) + 1) % every == 0 {
            self.held_back.fetch_add(1, SeqCst);
            return Ok(false);
        }
        self.put(key, encoded, mark).map(|()| true)
    }

    fn put(&self, key: &[u8], encoded: &[u8], mark: TombstoneMark) -> Result<(), StoreError> {
        let stored = data_key(key);
        let mut tombstones = self.tombstones.lock().map_err(poisoned)?;
        match mark {
            TombstoneMark::Set => {
                tombstones.insert(stored.clone());
            }
            TombstoneMark::Clear => {
                tombstones.remove(&stored);
            }
            TombstoneMark::Keep => {}
        }
        self.data.lock().map_err(poisoned)?.insert(stored, encoded.to_vec());
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<(), StoreError> {
        let stored = data_key(key);
        self.tombstones.lock().map_err(poisoned)?.remove(&stored);
        self.data.lock().map_err(poisoned)?.remove(&stored);
        Ok(())
    }

    fn scan_tombstones(&self, from: u128, to: u128, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let tombstones = self.tombstones.lock().map_err(poisoned)?;
        let last = data_key_prefix(to);
        let mut out = Vec::new();
        for stored in tombstones.range(data_key_prefix(from).to_vec()..) {
            if out.len() >= limit || stored.get(..8).is_some_and(|p| p > &last[..]) {
                break;
            }
            if let Some(key) = key_in_range(stored, from, to) {
                out.push(key.to_vec());
            }
        }
        Ok(out)
    }

    fn scan(&self, from: u128, to: u128, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        let data = self.data.lock().map_err(poisoned)?;
        let last = data_key_prefix(to);
        for (stored, value) in data.range(data_key_prefix(from).to_vec()..) {
            if stored.get(..8).is_some_and(|p| p > &last[..]) {
                break;
            }
            if let Some(key) = key_in_range(stored, from, to) {
                if !visit(key, value) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.lock().map_err(poisoned)?.get(name).cloned())
    }

    fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta
            .lock()
            .map_err(poisoned)?
            .insert(name.to_string(), value.to_vec());
        // Metadata is synced at once, and with it every earlier write.
        self.snapshot()
    }

    fn sync_wal(&self) -> Result<(), StoreError> {
        self.syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let delay = *self.sync_delay.lock().map_err(poisoned)?;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if self.fail_syncs.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Engine("sync failed (injected)".into()));
        }
        self.snapshot()
    }

    fn get_hint(&self, owner: &str, key: &[u8]) -> Result<Option<Object>, StoreError> {
        let hints = self.hints.lock().map_err(poisoned)?;
        hints.get(&hint_key(owner, key)).map(|b| decode_object(b)).transpose()
    }

    fn put_hint(&self, owner: &str, key: &[u8], object: &Object) -> Result<(), StoreError> {
        self.hints
            .lock()
            .map_err(poisoned)?
            .insert(hint_key(owner, key), encode_object(object));
        Ok(())
    }

    fn delete_hint(&self, owner: &str, key: &[u8]) -> Result<(), StoreError> {
        self.hints.lock().map_err(poisoned)?.remove(&hint_key(owner, key));
        Ok(())
    }

    fn scan_hints(
        &self,
        owner: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Object)>, StoreError> {
        let prefix = hint_prefix(owner);
        let hints = self.hints.lock().map_err(poisoned)?;
        let mut out = Vec::new();
        for (k, v) in hints.range(prefix.clone()..) {
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let key = &k[prefix.len()..];
            if after.is_some_and(|a| key <= a) {
                continue;
            }
            out.push((key.to_vec(), decode_object(v)?));
        }
        Ok(out)
    }

    fn count_hints(&self) -> Result<u64, StoreError> {
        Ok(self.hints.lock().map_err(poisoned)?.len() as u64)
    }

    fn visit_hints(&self, visit: &mut HintVisitor<'_>) -> Result<(), StoreError> {
        let hints = self.hints.lock().map_err(poisoned)?.clone();
        for (stored, encoded) in &hints {
            if let Some((owner, key)) = split_hint_key(stored) {
                if !visit(owner, key, encoded) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        match self.data.lock() {
            Ok(data) => StoreStats {
                keys: data.len() as u64,
                bytes: data.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum(),
            },
            Err(_) => StoreStats::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn object(values: &[&[u8]]) -> Object {
        let mut o = Object::default();
        for (i, v) in values.iter().enumerate() {
            let actor = crate::Actor::new(format!("n{i}"), 1);
            o = o
                .update(
                    &crate::VersionVector::default(),
                    &actor,
                    crate::Value::bytes(v.to_vec(), "x"),
                    0,
                )
                .0;
        }
        o
    }

    #[test]
    fn stored_bytes_are_kept_only_when_they_are_the_encoding() {
        let o = object(&[b"one", b"two"]);
        let bytes = encode_object(&o);
        assert_eq!(decode_stored(&bytes).unwrap(), (o.clone(), true));
        // Trailing bytes, which decoding ignores.
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_stored(&longer).unwrap(), (o.clone(), false));
        // The same versions in another order: the same object, other bytes.
        #[derive(serde::Serialize)]
        struct Versions<'a> {
            versions: Vec<&'a crate::dvv::Version>,
        }
        let mut reversed = vec![OBJECT_FORMAT_V1];
        let versions = Versions {
            versions: o.versions().iter().rev().collect(),
        };
        reversed.extend(postcard::to_allocvec(&versions).unwrap());
        assert_eq!(reversed.len(), bytes.len());
        assert_ne!(reversed, bytes);
        assert_eq!(decode_stored(&reversed).unwrap(), (o, false));
    }

    #[test]
    fn only_the_exact_encoding_of_one_version_is_stored_as_sent() {
        let one = object(&[b"value"]);
        let bytes = encode_object(&one);
        assert_eq!(sole_version_as_stored(&bytes), Some(false));
        let deleted = Object::empty()
            .update(
                &crate::VersionVector::default(),
                &crate::Actor::new("n", 1),
                crate::Value::tombstone(),
                0,
            )
            .0;
        assert_eq!(sole_version_as_stored(&encode_object(&deleted)), Some(true));
        assert_eq!(sole_version_as_stored(&encode_object(&object(&[b"a", b"b"]))), None);
        assert_eq!(sole_version_as_stored(&encode_object(&Object::empty())), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(sole_version_as_stored(&longer), None);
        // The version count, 1, as a two-byte varint: the same object in a
        // longer form.
        let mut padded = vec![bytes[0], 0x81, 0x00];
        padded.extend_from_slice(&bytes[2..]);
        assert_eq!(bytes[1], 1);
        assert_eq!(decode_object(&padded).ok(), Some(one.clone()));
        assert_eq!(sole_version_as_stored(&padded), None);
        assert_eq!(sole_version_as_stored(&[]), None);
        assert_eq!(sole_version_as_stored(&[OBJECT_FORMAT_V1]), None);
    }

    proptest! {
        /// The borrowed view reads any object's encoding as the object
        /// itself does: one version is recognised, with its tombstone.
        #[test]
        fn the_view_agrees_with_the_object(
            writes in proptest::collection::vec((0u8..4, proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))), 0..5),
        ) {
            let mut o = Object::default();
            for (node, data) in writes {
                let actor = crate::Actor::new(format!("n{node}"), u64::from(node) << 40);
                let value = match data {
                    Some(d) => crate::Value::bytes(d, "x/y"),
                    None => crate::Value::tombstone(),
                };
                // Half the writes see what came before, half are siblings.
                let context = if node % 2 == 0 { o.context() } else { crate::VersionVector::default() };
                let floor = o.context().get(&actor);
                let written = Object::default().update(&context, &actor, value, floor).0;
                o = o.sync_owned(written);
            }
            let expected = (o.versions().len() == 1).then(|| o.is_deleted());
            prop_assert_eq!(sole_version_as_stored(&encode_object(&o)), expected);
        }

        /// Garbage is refused, never a panic.
        #[test]
        fn the_view_refuses_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(deleted) = sole_version_as_stored(&bytes) {
                let o = decode_object(&bytes).expect("what the view takes decodes");
                prop_assert_eq!(encode_object(&o), bytes);
                prop_assert_eq!(o.is_deleted(), deleted);
            }
        }

        #[test]
        fn any_stored_object_decodes_as_stored(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4)) {
            let values: Vec<&[u8]> = values.iter().map(|v| &v[..]).collect();
            let o = object(&values);
            prop_assert_eq!(decode_stored(&encode_object(&o)).unwrap(), (o, true));
        }

        /// Reading the position off the stored key's prefix where it
        /// settles the question agrees with hashing the key, for partition
        /// ranges (whose edges fall inside a prefix) and arbitrary ones.
        #[test]
        fn key_in_range_agrees_with_the_keys_position(
            key in proptest::collection::vec(any::<u8>(), 0..24),
            q in 1u32..300,
            p in any::<prop::sample::Index>(),
            (a, b) in (any::<u128>(), any::<u128>()),
        ) {
            let stored = data_key(&key);
            let position = crate::ring::ring_position(&key);
            let (from, to) = crate::merkle::partition_range(p.index(q as usize) as u32, q);
            let near = (position.saturating_sub(a >> 70), position.saturating_add(b >> 70));
            for (from, to) in [(from, to), (a.min(b), a.max(b)), near, (position, position)] {
                let expected = (from..=to).contains(&position).then_some(&key[..]);
                prop_assert_eq!(key_in_range(&stored, from, to), expected);
            }
        }
    }
}

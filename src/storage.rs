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

/// A replica's durable storage.
pub trait Store: Send + Sync + 'static {
    /// The object stored for `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Object>, StoreError>;
    /// Replace the object for `key`; durable (in the WAL, or fsynced when
    /// the store was opened so) when this returns.
    fn put(&self, key: &[u8], object: &Object) -> Result<(), StoreError>;
    /// A metadata blob.
    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Store a metadata blob durably.
    fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Size figures for `/status`.
    fn stats(&self) -> StoreStats;

    /// The hinted object this node keeps for `owner` (sloppy quorum).
    fn get_hint(&self, owner: &str, key: &[u8]) -> Result<Option<Object>, StoreError>;
    /// Store a hint for `owner`, durably.
    fn put_hint(&self, owner: &str, key: &[u8], object: &Object) -> Result<(), StoreError>;
    /// Drop a hint (after its owner acknowledged it).
    fn delete_hint(&self, owner: &str, key: &[u8]) -> Result<(), StoreError>;
    /// Up to `limit` hints for `owner` with keys after `after`, in key order.
    fn scan_hints(&self, owner: &str, after: Option<&[u8]>, limit: usize)
        -> Result<Vec<(Vec<u8>, Object)>, StoreError>;
    /// Number of hints held, for every owner together (read at start-up).
    fn count_hints(&self) -> Result<u64, StoreError>;
}

/// The key of a hint in the hints keyspace: owners sort apart, and one
/// owner's hints are contiguous, so handoff scans a prefix.
pub fn hint_key(owner: &str, key: &[u8]) -> Vec<u8> {
    let mut out = hint_prefix(owner);
    out.extend_from_slice(key);
    out
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
    let mut out = vec![OBJECT_FORMAT_V1];
    // Serialising into a Vec cannot fail for these plain types.
    out.extend(postcard::to_allocvec(object).unwrap_or_default());
    out
}

/// Decode a stored object, re-checking its invariants.
pub fn decode_object(bytes: &[u8]) -> Result<Object, StoreError> {
    match bytes.split_first() {
        Some((&OBJECT_FORMAT_V1, rest)) => {
            let object: Object = postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            Ok(Object::from_untrusted(object.versions().to_vec()))
        }
        Some((format, _)) => Err(StoreError::Corrupt(format!("unknown object format {format}"))),
        None => Err(StoreError::Corrupt("empty record".into())),
    }
}

/// An in-memory [`Store`] for tests.
#[derive(Debug, Default)]
pub struct MemStore {
    data: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    meta: Mutex<BTreeMap<String, Vec<u8>>>,
    hints: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Engine("in-memory store lock poisoned".into())
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Object>, StoreError> {
        let data = self.data.lock().map_err(poisoned)?;
        data.get(key).map(|b| decode_object(b)).transpose()
    }

    fn put(&self, key: &[u8], object: &Object) -> Result<(), StoreError> {
        self.data
            .lock()
            .map_err(poisoned)?
            .insert(key.to_vec(), encode_object(object));
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
        Ok(())
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

//! RocksDB behind the core's [`Store`] trait.
//!
//! One column family per keyspace: `data` (key → encoded object), `meta`
//! (identity, cluster state), `hints` (objects held for a down owner) and
//! `tombstones` (keys whose object is all deletions). Large objects in
//! `data` and `hints` live in blob files, collected only while garbage is
//! plentiful. Client writes go through the WAL, unsynced: each survives a
//! crash of the process as soon as the call returns (only chunks pulled by
//! a joiner, which it can pull again, skip it). Fsyncs are separate
//! ([`Store::sync_wal`]) so that one of them covers every write made
//! before it, from any thread: the replica's group commit (see
//! [`crate::group_commit`]) calls it once per batch when `sync_writes` is
//! on. Metadata alone is always fsynced at once.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use dynamo_core::storage::{
    data_key, data_key_prefix, decode_object, encode_object, hint_key, hint_prefix, key_in_range, split_hint_key,
    HintVisitor, Store, StoreError, StoreStats, TombstoneMark,
};
use dynamo_core::Object;
use rocksdb::{ColumnFamilyDescriptor, Options, WriteOptions, DB};

/// Block cache shared by all column families (keeps a node well under the
/// 256 MiB the benchmark allows).
const BLOCK_CACHE_BYTES: usize = 32 * 1024 * 1024;

const CF_DATA: &str = "data";
/// Stored objects at least this large keep their bytes in blob files (see
/// `RocksStore::open`); smaller ones stay inline, where a lookup is one read.
const MIN_BLOB_BYTES: u64 = 1024;
const CF_META: &str = "meta";
const CF_HINTS: &str = "hints";
/// Stored keys whose object is all tombstones (empty values).
const CF_TOMBSTONES: &str = "tombstones";
/// The column families whose values go to blob files.
const BLOB_CFS: [&str; 2] = [CF_DATA, CF_HINTS];

/// Blob GC starts once garbage is this share of a column family's blob
/// bytes, and stops once it is down to [`BLOB_GC_OFF`].
const BLOB_GC_ON: f64 = 0.4;
const BLOB_GC_OFF: f64 = 0.2;
/// Bytes written (deletes counted as [`MIN_BLOB_BYTES`] each) between two
/// looks at the blob garbage: about a memtable, since garbage only changes
/// when flushes and compactions run.
const BLOB_GC_CHECK_BYTES: u64 = 16 * 1024 * 1024;
/// Bytes of blob files (live values and garbage) whose live values one
/// compaction relocates while GC is on: the oldest files up to this size,
/// and at least one.
const BLOB_GC_BYTES_PER_COMPACTION: u64 = 64 * 1024 * 1024;

/// A memtable's size, before each node's own spread (see [`memtable_bytes`]).
const MEMTABLE_BYTES: f64 = 16.0 * 1024.0 * 1024.0;
/// How far one node's memtables may be from [`MEMTABLE_BYTES`], each way.
const MEMTABLE_SPREAD: f64 = 0.25;

/// The memtable size of a node, from a number `u` in `[0, 1)` drawn once
/// when its store opens.
///
/// Replicas receive the same writes, so with equal memtables they flush at
/// the same moments and reach their level-0 compaction trigger together:
/// measured under load, the three replicas of a three-node cluster ran
/// every compaction within the same 400 ms, and in those seconds client
/// p99.9 was 3–6 times its figure in the seconds between. A quorum is
/// meant to go round one slow replica, which it cannot while all of them
/// are slow at once. Memtables of different sizes put each node's flushes
/// and compactions on a cadence of its own, so that they coincide only by
/// chance. Nothing else depends on the size, so the draw need not be
/// repeatable.
fn memtable_bytes(u: f64) -> usize {
    let u = if u.is_finite() { u.clamp(0.0, 1.0) } else { 0.5 };
    (MEMTABLE_BYTES * (1.0 - MEMTABLE_SPREAD + 2.0 * MEMTABLE_SPREAD * u)) as usize
}

/// A RocksDB-backed store.
pub struct RocksStore {
    /// `None` once closed. Closing drops the database on the closing thread,
    /// so RocksDB shuts down before the process exits rather than racing
    /// its teardown from threads that still hold the store.
    db: RwLock<Option<DB>>,
    /// Bytes written since the blob garbage was last looked at.
    since_gc_check: AtomicU64,
    /// Whether blob GC is on, per entry of [`BLOB_CFS`].
    blob_gc: [AtomicBool; BLOB_CFS.len()],
    /// The blob GC age cutoff last set, as `f64` bits, per entry of
    /// [`BLOB_CFS`] (0: not set since GC went on).
    blob_gc_cutoff: [AtomicU64; BLOB_CFS.len()],
}

impl std::fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStore").finish_non_exhaustive()
    }
}

fn engine(e: rocksdb::Error) -> StoreError {
    StoreError::Engine(e.into_string())
}

impl RocksStore {
    /// Open (or create) the store in `dir`.
    pub fn open(dir: &Path) -> Result<RocksStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Engine(format!("cannot create data dir {}: {e}", dir.display())))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        // Flushes and compactions run at the clients' CPU priority. Lowered,
        // they starve whenever the clients keep the cores busy, and writes
        // then wait on them all the same: memtables waiting for a flush stop
        // writes, and level-0 files left by a starved compaction slow them
        // down to a few MB/s (a 1 GiB join under load hit both). Background
        // transfers are held back by admission control instead.
        //
        // Keep the memory of a node small (the benchmark holds nodes under
        // 256 MiB resident): modest memtables, bounded WAL.
        let memtable = memtable_bytes(rand::random());
        opts.set_write_buffer_size(memtable);
        opts.set_max_total_wal_size(128 * 1024 * 1024);
        opts.set_enable_pipelined_write(true);
        // Writers that spin and yield waiting for the group leader burn the
        // CPU a small machine needs for serving: block instead.
        opts.set_enable_write_thread_adaptive_yield(false);
        // Every write reads the key's current object first, so point
        // lookups are the hot read: a shared block cache, bloom filters so a
        // lookup skips files without the key, and a memtable bloom filter.
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES)
            .map_err(|e| StoreError::Engine(format!("block cache: {e}")))?;
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        let cf = |name| {
            let mut o = Options::default();
            o.set_write_buffer_size(memtable);
            // Room for three memtables waiting on a flush besides the one
            // being written: a burst (a joiner's bulk load, the writes
            // forwarded to it) otherwise stops writes until a flush ends.
            o.set_max_write_buffer_number(4);
            o.set_block_based_table_factory(&table);
            o.set_memtable_whole_key_filtering(true);
            o.set_memtable_prefix_bloom_ratio(0.05);
            if BLOB_CFS.contains(&name) {
                // Key-value separation: values of a few KiB would otherwise
                // be rewritten by every compaction, which was the largest
                // background cost in steady state and most of a joiner's
                // work loading its share. Values go to blob files once, at
                // flush; compactions move keys and blob references, and
                // blob GC relocates what is still live from the oldest files.
                o.set_enable_blob_files(true);
                o.set_min_blob_size(MIN_BLOB_BYTES);
                o.set_blob_file_size(64 * 1024 * 1024);
                // Blob GC starts off; `check_blob_gc` turns it on only
                // while there is garbage worth collecting (see there).
                o.set_enable_blob_gc(false);
            }
            ColumnFamilyDescriptor::new(name, o)
        };
        let db = DB::open_cf_descriptors(
            &opts,
            dir.join("rocksdb"),
            [cf(CF_DATA), cf(CF_META), cf(CF_HINTS), cf(CF_TOMBSTONES)],
        )
        .map_err(engine)?;
        let store = RocksStore {
            db: RwLock::new(Some(db)),
            since_gc_check: AtomicU64::new(0),
            blob_gc: Default::default(),
            blob_gc_cutoff: Default::default(),
        };
        // Garbage left by an earlier run counts from the start.
        store.check_blob_gc(&store.db()?);
        Ok(store)
    }

    /// Count `bytes` written, and look at the blob garbage every
    /// [`BLOB_GC_CHECK_BYTES`].
    fn wrote(&self, db: &DbGuard<'_>, bytes: u64) {
        let before = self.since_gc_check.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes >= BLOB_GC_CHECK_BYTES && before < BLOB_GC_CHECK_BYTES {
            self.since_gc_check.store(0, Ordering::Relaxed);
            self.check_blob_gc(db);
        }
    }

    /// Turn blob GC on or off per column family by how much of its blob
    /// bytes are garbage. Left on, GC makes every compaction relocate the
    /// live values of the oldest quarter of the blob files; and since each
    /// level-0 compaction here spans the whole key range (flushes of
    /// hashed keys do), that rewrote a quarter of a node's data every few
    /// seconds under a steady load, garbage or not (360 MB per compaction
    /// at 1 GiB a node). Run only while garbage is plentiful, it relocates
    /// the oldest files when they are mostly garbage, and costs nothing
    /// while there is little to reclaim.
    ///
    /// While it runs, each compaction takes only the oldest files, up to
    /// [`BLOB_GC_BYTES_PER_COMPACTION`]: after a handover drops a quarter of
    /// every file's keys at once, RocksDB's default of a quarter of the
    /// files was some 190 MB per compaction, rewritten on every donor within
    /// the same few seconds, and client requests queued behind it.
    fn check_blob_gc(&self, db: &DbGuard<'_>) {
        for ((name, on), last_cutoff) in BLOB_CFS.iter().zip(&self.blob_gc).zip(&self.blob_gc_cutoff) {
            let Ok(cf) = db.cf(name) else { continue };
            let (live, garbage) = blob_bytes(db, cf);
            let was = on.load(Ordering::Relaxed);
            let wanted = blob_gc_wanted(was, live, garbage);
            if wanted {
                let cutoff = blob_gc_age_cutoff(blob_files(db, cf), live);
                if cutoff.to_bits() != last_cutoff.load(Ordering::Relaxed) {
                    let value = cutoff.to_string();
                    let option = [("blob_garbage_collection_age_cutoff", value.as_str())];
                    match db.db().set_options_cf(cf, &option) {
                        Ok(()) => last_cutoff.store(cutoff.to_bits(), Ordering::Relaxed),
                        Err(e) => log::warn!("cannot set the blob GC age cutoff for {name}: {e}"),
                    }
                }
            } else {
                last_cutoff.store(0, Ordering::Relaxed);
            }
            if wanted == was {
                continue;
            }
            let value = if wanted { "true" } else { "false" };
            match db.db().set_options_cf(cf, &[("enable_blob_garbage_collection", value)]) {
                Ok(()) => {
                    on.store(wanted, Ordering::Relaxed);
                    log::info!(
                        "blob GC {} for {name}: {garbage} of {live} blob bytes are garbage",
                        if wanted { "on" } else { "off" }
                    );
                }
                Err(e) => log::warn!("cannot turn blob GC {value} for {name}: {e}"),
            }
        }
    }

    /// The open database, or an error once closed.
    fn db(&self) -> Result<DbGuard<'_>, StoreError> {
        let guard = self.db.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        if guard.is_none() {
            return Err(StoreError::Engine("store is closed".into()));
        }
        Ok(DbGuard(guard))
    }

    /// Make everything durable and close the database. Later calls fail.
    pub fn close(&self) -> Result<(), StoreError> {
        let mut guard = self.db.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(db) = guard.as_ref() {
            db.flush_wal(true).map_err(engine)?;
        }
        drop(guard.take());
        Ok(())
    }
}

/// A read lock on an open database.
struct DbGuard<'a>(RwLockReadGuard<'a, Option<DB>>);

impl DbGuard<'_> {
    fn db(&self) -> &DB {
        // Checked non-empty when the guard was made, and the lock is held.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("guard over a closed store"))
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db()
            .cf_handle(name)
            .ok_or_else(|| StoreError::Engine(format!("missing column family {name}")))
    }
}

/// Read options for range scans (anti-entropy, transfers, handover): they
/// walk data no client asked for, so they leave the block cache to the
/// point lookups that client requests make (RocksDB's own iterator
/// read-ahead covers the long ones).
fn scan_options() -> rocksdb::ReadOptions {
    let mut o = rocksdb::ReadOptions::default();
    o.fill_cache(false);
    o
}

/// A column family's blob file bytes, and how many of them are garbage.
fn blob_bytes(db: &DbGuard<'_>, cf: &rocksdb::ColumnFamily) -> (u64, u64) {
    let prop = |p: &str| db.db().property_int_value_cf(cf, p).ok().flatten().unwrap_or(0);
    (
        prop("rocksdb.live-blob-file-size"),
        prop("rocksdb.live-blob-file-garbage-size"),
    )
}

/// Blob files of a column family.
fn blob_files(db: &DbGuard<'_>, cf: &rocksdb::ColumnFamily) -> u64 {
    db.db()
        .property_int_value_cf(cf, "rocksdb.num-blob-files")
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Blob files GC takes per compaction, of `files` holding `bytes` in all:
/// as many of the oldest as fit in [`BLOB_GC_BYTES_PER_COMPACTION`] at the
/// files' average size, at least one.
fn blob_gc_files_per_compaction(files: u64, bytes: u64) -> u64 {
    let per_file = (bytes / files.max(1)).max(1);
    (BLOB_GC_BYTES_PER_COMPACTION / per_file).clamp(1, files.max(1))
}

/// The age cutoff that has GC take [`blob_gc_files_per_compaction`] files.
/// RocksDB takes the oldest `cutoff × files` files, rounded down, so half a
/// file more keeps the count from rounding to one fewer.
fn blob_gc_age_cutoff(files: u64, bytes: u64) -> f64 {
    if files == 0 {
        return 1.0;
    }
    let take = blob_gc_files_per_compaction(files, bytes);
    ((take as f64 + 0.5) / files as f64).min(1.0)
}

/// Whether blob GC should run for a column family with `live` blob bytes,
/// `garbage` of them garbage, given whether it runs now: on from
/// [`BLOB_GC_ON`], off again at [`BLOB_GC_OFF`], so that it neither flaps
/// nor runs for the last few garbage bytes.
fn blob_gc_wanted(on: bool, live: u64, garbage: u64) -> bool {
    if live == 0 {
        return false;
    }
    let share = garbage as f64 / live as f64;
    if on {
        share > BLOB_GC_OFF
    } else {
        share >= BLOB_GC_ON
    }
}

impl RocksStore {
    /// Store `key`'s object and its tombstone mark in one write; the
    /// write's own outcome is the inner result.
    fn put_with(
        &self,
        key: &[u8],
        encoded: &[u8],
        mark: TombstoneMark,
        options: &WriteOptions,
    ) -> Result<Result<(), rocksdb::Error>, StoreError> {
        let db = self.db()?;
        let cf = db.cf(CF_DATA)?;
        let stored = data_key(key);
        let written = if mark == TombstoneMark::Keep {
            db.db().put_cf_opt(cf, &stored, encoded, options)
        } else {
            let tombstones = db.cf(CF_TOMBSTONES)?;
            let mut batch = rocksdb::WriteBatch::default();
            batch.put_cf(cf, &stored, encoded);
            match mark {
                TombstoneMark::Set => batch.put_cf(tombstones, &stored, []),
                _ => batch.delete_cf(tombstones, &stored),
            }
            db.db().write_opt(batch, options)
        };
        if written.is_ok() {
            self.wrote(&db, encoded.len() as u64);
        }
        Ok(written)
    }
}

impl Store for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db()?;
        let cf = db.cf(CF_DATA)?;
        db.db().get_cf(cf, data_key(key)).map_err(engine)
    }

    fn put(&self, key: &[u8], encoded: &[u8], mark: TombstoneMark) -> Result<(), StoreError> {
        self.put_with(key, encoded, mark, &WriteOptions::default())?
            .map_err(engine)
    }

    fn try_put(&self, key: &[u8], encoded: &[u8], mark: TombstoneMark) -> Result<bool, StoreError> {
        let mut w = WriteOptions::default();
        // RocksDB then answers `Incomplete` instead of delaying or stopping
        // the write, before it joins a write group: nothing is written.
        w.set_no_slowdown(true);
        match self.put_with(key, encoded, mark, &w)? {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => Ok(false),
            Err(e) => Err(engine(e)),
        }
    }

    fn put_unlogged(&self, items: &[(&[u8], &[u8], TombstoneMark)]) -> Result<(), StoreError> {
        let db = self.db()?;
        let cf = db.cf(CF_DATA)?;
        let tombstones = db.cf(CF_TOMBSTONES)?;
        let mut batch = rocksdb::WriteBatch::default();
        for (key, encoded, mark) in items {
            let stored = data_key(key);
            batch.put_cf(cf, &stored, encoded);
            match mark {
                TombstoneMark::Set => batch.put_cf(tombstones, &stored, []),
                TombstoneMark::Clear => batch.delete_cf(tombstones, &stored),
                TombstoneMark::Keep => {}
            }
        }
        self.wrote(&db, items.iter().map(|(_, encoded, _)| encoded.len() as u64).sum());
        let mut w = WriteOptions::default();
        w.disable_wal(true);
        db.db().write_opt(batch, &w).map_err(engine)
    }

    fn delete_many(&self, keys: &[Vec<u8>]) -> Result<(), StoreError> {
        let db = self.db()?;
        let (cf, tombstones) = (db.cf(CF_DATA)?, db.cf(CF_TOMBSTONES)?);
        let mut batch = rocksdb::WriteBatch::default();
        for key in keys {
            let stored = data_key(key);
            batch.delete_cf(cf, &stored);
            batch.delete_cf(tombstones, &stored);
        }
        self.wrote(&db, MIN_BLOB_BYTES * keys.len() as u64);
        db.db().write(batch).map_err(engine)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let db = self.db()?;
        // Memtables to table files (which RocksDB fsyncs), then the WAL for
        // the logged writes still only there.
        db.db().flush_cf(db.cf(CF_DATA)?).map_err(engine)?;
        db.db().flush_cf(db.cf(CF_TOMBSTONES)?).map_err(engine)?;
        self.sync_wal()
    }

    fn delete(&self, key: &[u8]) -> Result<(), StoreError> {
        let db = self.db()?;
        let stored = data_key(key);
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_cf(db.cf(CF_DATA)?, &stored);
        batch.delete_cf(db.cf(CF_TOMBSTONES)?, &stored);
        self.wrote(&db, MIN_BLOB_BYTES);
        db.db().write(batch).map_err(engine)
    }

    fn scan_tombstones(&self, from: u128, to: u128, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let db = self.db()?;
        let cf = db.cf(CF_TOMBSTONES)?;
        let first = data_key_prefix(from);
        let last = data_key_prefix(to);
        let mut out = Vec::new();
        for item in db
            .db()
            .iterator_cf(cf, rocksdb::IteratorMode::From(&first, rocksdb::Direction::Forward))
        {
            let (stored, _) = item.map_err(engine)?;
            if out.len() >= limit || stored.get(..8).is_some_and(|p| p > &last[..]) {
                break;
            }
            if let Some(key) = key_in_range(&stored, from, to) {
                out.push(key.to_vec());
            }
        }
        Ok(out)
    }

    fn scan(&self, from: u128, to: u128, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
        let db = self.db()?;
        let cf = db.cf(CF_DATA)?;
        let first = data_key_prefix(from);
        let last = data_key_prefix(to);
        // The raw iterator lends each key and value instead of copying them
        // into boxes of their own: a transfer scans hundreds per MB.
        let mut it = db.db().raw_iterator_cf_opt(cf, scan_options());
        it.seek(first);
        while let (Some(stored), Some(value)) = (it.key(), it.value()) {
            if stored.get(..8).is_some_and(|p| p > &last[..]) {
                break;
            }
            if let Some(key) = key_in_range(stored, from, to) {
                if !visit(key, value) {
                    break;
                }
            }
            it.next();
        }
        it.status().map_err(engine)
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db()?;
        let cf = db.cf(CF_META)?;
        db.db().get_cf(cf, name.as_bytes()).map_err(engine)
    }

    fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
        let db = self.db()?;
        let cf = db.cf(CF_META)?;
        // Metadata is rare and precious: always fsynced.
        let mut w = WriteOptions::default();
        w.set_sync(true);
        db.db().put_cf_opt(cf, name.as_bytes(), value, &w).map_err(engine)
    }

    fn sync_wal(&self) -> Result<(), StoreError> {
        self.db()?.db().flush_wal(true).map_err(engine)
    }

    fn get_hint(&self, owner: &str, key: &[u8]) -> Result<Option<Object>, StoreError> {
        let db = self.db()?;
        let cf = db.cf(CF_HINTS)?;
        let found = db.db().get_pinned_cf(cf, hint_key(owner, key)).map_err(engine)?;
        found.map(|bytes| decode_object(&bytes)).transpose()
    }

    fn put_hint(&self, owner: &str, key: &[u8], object: &Object) -> Result<(), StoreError> {
        let db = self.db()?;
        let cf = db.cf(CF_HINTS)?;
        let encoded = encode_object(object);
        self.wrote(&db, encoded.len() as u64);
        db.db().put_cf(cf, hint_key(owner, key), encoded).map_err(engine)
    }

    fn delete_hint(&self, owner: &str, key: &[u8]) -> Result<(), StoreError> {
        let db = self.db()?;
        let cf = db.cf(CF_HINTS)?;
        self.wrote(&db, MIN_BLOB_BYTES);
        db.db().delete_cf(cf, hint_key(owner, key)).map_err(engine)
    }

    fn scan_hints(
        &self,
        owner: &str,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Object)>, StoreError> {
        let db = self.db()?;
        let cf = db.cf(CF_HINTS)?;
        let prefix = hint_prefix(owner);
        let start = match after {
            Some(a) => hint_key(owner, a),
            None => prefix.clone(),
        };
        let mode = rocksdb::IteratorMode::From(&start, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in db.db().iterator_cf(cf, mode) {
            let (k, v) = item.map_err(engine)?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            let key = &k[prefix.len()..];
            if after.is_some_and(|a| key <= a) {
                continue;
            }
            out.push((key.to_vec(), decode_object(&v)?));
        }
        Ok(out)
    }

    fn count_hints(&self) -> Result<u64, StoreError> {
        let db = self.db()?;
        let cf = db.cf(CF_HINTS)?;
        let mut n = 0;
        for item in db.db().iterator_cf(cf, rocksdb::IteratorMode::Start) {
            item.map_err(engine)?;
            n += 1;
        }
        Ok(n)
    }

    fn visit_hints(&self, visit: &mut HintVisitor<'_>) -> Result<(), StoreError> {
        let db = self.db()?;
        let cf = db.cf(CF_HINTS)?;
        for item in db
            .db()
            .iterator_cf_opt(cf, scan_options(), rocksdb::IteratorMode::Start)
        {
            let (stored, encoded) = item.map_err(engine)?;
            if let Some((owner, key)) = split_hint_key(&stored) {
                if !visit(owner, key, &encoded) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        let Ok(db) = self.db() else {
            return StoreStats::default();
        };
        let Ok(cf) = db.cf(CF_DATA) else {
            return StoreStats::default();
        };
        let prop = |name: &str| db.db().property_int_value_cf(cf, name).ok().flatten().unwrap_or(0);
        StoreStats {
            keys: prop("rocksdb.estimate-num-keys"),
            bytes: prop("rocksdb.estimate-live-data-size") + prop("rocksdb.cur-size-all-mem-tables"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memtables_spread_within_a_quarter_either_way() {
        let mib = 1024 * 1024;
        assert_eq!(memtable_bytes(0.0), 12 * mib);
        assert_eq!(memtable_bytes(0.5), 16 * mib);
        assert!(memtable_bytes(0.999_999) < 20 * mib);
        assert_eq!(memtable_bytes(f64::NAN), 16 * mib);
        assert_eq!(memtable_bytes(7.0), 20 * mib);
        // Two nodes' draws apart by a tenth are 800 KiB apart.
        assert_eq!(memtable_bytes(0.6) - memtable_bytes(0.5), 8 * mib / 10);
    }

    #[test]
    fn blob_gc_starts_at_the_high_mark_and_stops_at_the_low_one() {
        assert!(!blob_gc_wanted(false, 0, 0));
        assert!(!blob_gc_wanted(true, 0, 0), "no blob files, nothing to collect");
        assert!(!blob_gc_wanted(false, 1000, 399));
        assert!(blob_gc_wanted(false, 1000, 400));
        // Between the marks it keeps doing what it did.
        assert!(blob_gc_wanted(true, 1000, 399));
        assert!(blob_gc_wanted(true, 1000, 201));
        assert!(!blob_gc_wanted(false, 1000, 300));
        assert!(!blob_gc_wanted(true, 1000, 200));
    }

    #[test]
    fn blob_gc_takes_the_oldest_files_up_to_its_budget() {
        const MIB: u64 = 1024 * 1024;
        for files in 1..300u64 {
            for per_file in [MIB, 15 * MIB, 64 * MIB, 200 * MIB] {
                let bytes = files * per_file;
                let cutoff = blob_gc_age_cutoff(files, bytes);
                assert!(cutoff > 0.0 && cutoff <= 1.0, "{cutoff}");
                // RocksDB's own arithmetic: the oldest `cutoff × files` files.
                let taken = (cutoff * files as f64) as u64;
                assert_eq!(
                    taken,
                    blob_gc_files_per_compaction(files, bytes),
                    "{files} files of {per_file}"
                );
                assert!((1..=files).contains(&taken));
                assert!(taken == 1 || taken * per_file <= BLOB_GC_BYTES_PER_COMPACTION);
            }
        }
        // 120 files of 15 MiB (a flush each): four at a time.
        assert_eq!(blob_gc_files_per_compaction(120, 120 * 15 * MIB), 4);
        assert_eq!(blob_gc_age_cutoff(0, 0), 1.0);
    }

    /// Overwrites leave the first values' blob files mostly garbage but
    /// never wholly, so RocksDB cannot just delete them: blob GC must come
    /// on, relocate what is live, and go off again once the space is back.
    #[test]
    fn blob_gc_reclaims_partly_overwritten_files_and_stops() {
        let dir = std::env::temp_dir().join(format!("dynamo-blob-gc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = RocksStore::open(&dir).expect("open");
        const KEYS: usize = 8192;
        let value = |i: usize, round: u8| vec![round; 4096 + i % 7];
        let write = |round: u8, keep: fn(usize) -> bool| {
            let items: Vec<_> = (0..KEYS)
                .filter(|i| keep(*i))
                .map(|i| (format!("key{i}").into_bytes(), value(i, round)))
                .collect();
            let items: Vec<_> = items
                .iter()
                .map(|(k, v)| (&k[..], &v[..], TombstoneMark::Keep))
                .collect();
            for chunk in items.chunks(256) {
                store.put_unlogged(chunk).expect("write");
            }
            store.flush().expect("flush");
        };
        let compact = || {
            let db = store.db().expect("open");
            let cf = db.cf(CF_DATA).expect("cf");
            // What a level-0 compaction does here: rewrite the last level.
            let mut o = rocksdb::CompactOptions::default();
            o.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
            db.db().compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &o);
            store.check_blob_gc(&db);
            let (live, garbage) = blob_bytes(&db, cf);
            (live, garbage, store.blob_gc[0].load(Ordering::Relaxed))
        };
        write(1, |_| true);
        // Three quarters of every key overwritten: the first files keep a
        // quarter of their values live.
        write(2, |i| i % 4 != 0);
        let (mut live, mut garbage, mut on) = compact();
        assert!(on, "{garbage} of {live} blob bytes garbage, and GC is off");
        let data = (KEYS * 4096) as u64;
        let mut rounds = 0;
        while on {
            rounds += 1;
            assert!(
                rounds <= 8,
                "GC still on after {rounds} compactions: {garbage} of {live} garbage"
            );
            (live, garbage, on) = compact();
        }
        assert!(garbage as f64 <= BLOB_GC_OFF * live as f64, "{garbage} of {live}");
        assert!(live < data * 13 / 10, "{live} blob bytes for {data} of values");
        for i in [0, 1, KEYS - 1] {
            let want = if i % 4 == 0 { value(i, 1) } else { value(i, 2) };
            assert_eq!(store.get(format!("key{i}").as_bytes()).expect("get"), Some(want));
        }
        store.close().expect("close");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Group commit: one fsync of the write-ahead log for many writes.
//!
//! With `sync_writes` a replica may acknowledge a write only once it is on
//! stable storage. Syncing inside each write would cost one fsync per
//! write and hold a storage thread for its whole duration; instead writes
//! go to the WAL unsynced (fast: the OS page cache), and whoever needs one
//! durable *waits* here. A single committer thread takes every waiter that
//! has queued up, runs one [`Store::sync_wal`], and releases them all: the
//! batch grows with the load, so the fsync rate stays what the disk can do
//! while the write rate does not depend on it (the classic group commit of
//! database logs, as in Gray & Reuter §9.4).
//!
//! Waiting is asynchronous, so the coordinator can sync its own replica's
//! copy while the same write travels to the other replicas, instead of
//! one fsync after the other.
//!
//! Correctness rests on one ordering: a waiter enqueues only after its
//! write returned, and the committer dequeues it before starting the sync
//! that releases it, so that sync covers the write.

use std::sync::Arc;

use dynamo_core::storage::{Store, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Waiters that may queue before new ones wait for room (backpressure on
/// writers when the disk falls behind).
const QUEUE: usize = 4096;

/// The result of one sync, shared by its whole batch.
type Done = oneshot::Sender<Result<(), String>>;

/// A handle on the committer thread. Cloning shares the thread; it ends
/// when the last handle is dropped.
#[derive(Clone)]
pub struct GroupCommit {
    waiters: mpsc::Sender<Done>,
}

impl GroupCommit {
    /// Start the committer thread over `store`.
    pub fn start(store: Arc<dyn Store>) -> Result<GroupCommit, StoreError> {
        let (waiters, mut queue) = mpsc::channel::<Done>(QUEUE);
        std::thread::Builder::new()
            .name("group-commit".into())
            .spawn(move || {
                let mut batch = Vec::new();
                while let Some(first) = queue.blocking_recv() {
                    batch.push(first);
                    while let Ok(next) = queue.try_recv() {
                        batch.push(next);
                    }
                    let synced = store.sync_wal().map_err(|e| e.to_string());
                    for waiter in batch.drain(..) {
                        // A waiter that gave up (its request timed out) is fine.
                        let _ = waiter.send(synced.clone());
                    }
                }
            })
            .map_err(|e| StoreError::Engine(format!("cannot start the group-commit thread: {e}")))?;
        Ok(GroupCommit { waiters })
    }

    /// Wait until every write that returned before this call is fsynced.
    pub async fn durable(&self) -> Result<(), StoreError> {
        let closed = || StoreError::Engine("group commit stopped".into());
        let (done, synced) = oneshot::channel();
        self.waiters.send(done).await.map_err(|_| closed())?;
        synced.await.map_err(|_| closed())?.map_err(StoreError::Engine)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use dynamo_core::storage::{MemStore, StoreStats, TombstoneMark};
    use dynamo_core::Object;

    use super::*;

    /// A store that counts syncs and can be told to fail them.
    #[derive(Default)]
    struct Counting {
        inner: MemStore,
        syncs: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Store for Counting {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn put(&self, key: &[u8], encoded: &[u8], mark: TombstoneMark) -> Result<(), StoreError> {
            self.inner.put(key, encoded, mark)
        }
        fn delete(&self, key: &[u8]) -> Result<(), StoreError> {
            self.inner.delete(key)
        }
        fn scan_tombstones(&self, from: u128, to: u128, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
            self.inner.scan_tombstones(from, to, limit)
        }
        fn scan(&self, from: u128, to: u128, visit: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<(), StoreError> {
            self.inner.scan(from, to, visit)
        }
        fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get_meta(name)
        }
        fn put_meta(&self, name: &str, value: &[u8]) -> Result<(), StoreError> {
            self.inner.put_meta(name, value)
        }
        fn sync_wal(&self) -> Result<(), StoreError> {
            self.syncs.fetch_add(1, Ordering::SeqCst);
            // Slow enough that waiters pile up behind a sync in progress.
            std::thread::sleep(std::time::Duration::from_millis(5));
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Engine("disk on fire".into()));
            }
            Ok(())
        }
        fn stats(&self) -> StoreStats {
            self.inner.stats()
        }
        fn get_hint(&self, owner: &str, key: &[u8]) -> Result<Option<Object>, StoreError> {
            self.inner.get_hint(owner, key)
        }
        fn put_hint(&self, owner: &str, key: &[u8], object: &Object) -> Result<(), StoreError> {
            self.inner.put_hint(owner, key, object)
        }
        fn delete_hint(&self, owner: &str, key: &[u8]) -> Result<(), StoreError> {
            self.inner.delete_hint(owner, key)
        }
        fn scan_hints(
            &self,
            owner: &str,
            after: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<(Vec<u8>, Object)>, StoreError> {
            self.inner.scan_hints(owner, after, limit)
        }
        fn count_hints(&self) -> Result<u64, StoreError> {
            self.inner.count_hints()
        }
    }

    #[tokio::test]
    async fn concurrent_waiters_share_syncs() {
        let store = Arc::new(Counting::default());
        let commit = GroupCommit::start(store.clone()).unwrap();
        let waiters = 200;
        let all = futures::future::join_all((0..waiters).map(|_| commit.durable())).await;
        assert!(all.iter().all(Result::is_ok));
        let syncs = store.syncs.load(Ordering::SeqCst);
        assert!(syncs >= 1, "every waiter was released by a sync");
        assert!(syncs < waiters / 4, "{syncs} syncs for {waiters} concurrent waiters");
    }

    #[tokio::test]
    async fn a_failed_sync_fails_its_waiters() {
        let store = Arc::new(Counting::default());
        store.fail.store(true, Ordering::SeqCst);
        let commit = GroupCommit::start(store.clone()).unwrap();
        assert!(commit.durable().await.is_err());
        store.fail.store(false, Ordering::SeqCst);
        assert!(commit.durable().await.is_ok());
    }
}

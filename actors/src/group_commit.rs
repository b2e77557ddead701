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
    use std::time::Duration;

    use dynamo_core::storage::MemStore;

    use super::*;

    #[tokio::test]
    async fn concurrent_waiters_share_syncs() {
        let store = Arc::new(MemStore::volatile());
        // Slow enough that waiters pile up behind a sync in progress.
        store.set_sync_delay(Duration::from_millis(5));
        let commit = GroupCommit::start(store.clone()).unwrap();
        let waiters = 200;
        let all = futures::future::join_all((0..waiters).map(|_| commit.durable())).await;
        assert!(all.iter().all(Result::is_ok));
        let syncs = store.syncs();
        assert!(syncs >= 1, "every waiter was released by a sync");
        assert!(syncs < waiters / 4, "{syncs} syncs for {waiters} concurrent waiters");
    }

    #[tokio::test]
    async fn a_failed_sync_fails_its_waiters() {
        let store = Arc::new(MemStore::volatile());
        store.fail_syncs(true);
        let commit = GroupCommit::start(store.clone()).unwrap();
        assert!(commit.durable().await.is_err());
        store.fail_syncs(false);
        assert!(commit.durable().await.is_ok());
    }
}

//! Counters the actors keep for `/status` and `/metrics`.
//!
//! Plain atomics, written from any thread without locks; readers get a
//! consistent-enough snapshot for a dashboard.

use std::sync::atomic::{AtomicU64, Ordering};

/// Node-wide counters maintained by the actors.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Replicas brought up to date by read repair.
    pub read_repairs: AtomicU64,
    /// Requests forwarded to a node of the key's preference list.
    pub forwarded: AtomicU64,
    /// Replica calls to peers that failed or timed out.
    pub peer_failures: AtomicU64,
    /// Hints held for down owners, not yet delivered.
    pub hints_pending: AtomicU64,
    /// Hints delivered to their owners and dropped here.
    pub hints_delivered: AtomicU64,
}

impl NodeStats {
    /// Add one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Read a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

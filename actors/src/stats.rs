//! Counters the actors keep for `/status` and `/metrics`.
//!
//! Plain atomics, written from any thread without locks; readers get a
//! consistent-enough snapshot for a dashboard.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dynamo_core::admission::Admission;

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
    /// Anti-entropy exchanges completed (one partition with one peer).
    pub ae_exchanges: AtomicU64,
    /// Keys anti-entropy found different and reconciled.
    pub ae_keys_repaired: AtomicU64,
    /// Unix time (ms) of the last completed exchange; 0 before the first.
    pub ae_last_exchange_unix_ms: AtomicU64,
    /// Tombstones purged after every replica was seen to hold them.
    pub tombstones_purged: AtomicU64,
    /// Client writes refused because the key had too many siblings.
    pub sibling_cap_refusals: AtomicU64,
    /// Clock-hygiene scans of the whole store completed.
    pub hygiene_scans: AtomicU64,
    /// Versions of swept actors the last scan found (data and hints).
    pub hygiene_versions_left: AtomicU64,
    /// Objects rewritten without retired actors' entries.
    pub hygiene_rewrites: AtomicU64,
    /// Client latency, which background work is admitted by.
    pub foreground: Foreground,
}

/// The node's [`Admission`] control, shared by every coordinator (which
/// feed it) and the background tasks (which ask it).
#[derive(Debug, Default)]
pub struct Foreground {
    admission: Mutex<Admission>,
    /// Background steps held back.
    pub waits: AtomicU64,
    /// Total time background steps were held back, in ms.
    pub waited_ms: AtomicU64,
}

impl Foreground {
    /// Hold background work back while clients are slower than `percent`
    /// of their quiet latency (0: never).
    pub fn set_target(&self, percent: u32) {
        *self.lock() = Admission::new((percent > 0).then(|| f64::from(percent) / 100.0));
    }

    /// A client request took `latency`.
    pub fn observe(&self, latency: Duration) {
        self.lock().observe(Instant::now(), latency);
    }

    /// Wait until a background step may run.
    pub async fn admit(&self) {
        let wait = self.lock().background(Instant::now());
        if !wait.is_zero() {
            NodeStats::bump(&self.waits);
            NodeStats::add(&self.waited_ms, wait.as_millis() as u64);
            tokio::time::sleep(wait).await;
        }
    }

    /// The recent and quiet client latencies.
    pub fn averages(&self) -> (Option<Duration>, Option<Duration>) {
        self.lock().averages(Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Admission> {
        self.admission.lock().unwrap_or_else(|p| p.into_inner())
    }
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

    /// Add `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Milliseconds since the last anti-entropy exchange, if any.
    pub fn last_exchange_age_ms(&self) -> Option<u64> {
        let at = self.ae_last_exchange_unix_ms.load(Ordering::Relaxed);
        (at > 0).then(|| unix_ms().saturating_sub(at))
    }

    /// Record a completed exchange.
    pub fn exchange_done(&self) {
        Self::bump(&self.ae_exchanges);
        self.ae_last_exchange_unix_ms.store(unix_ms().max(1), Ordering::Relaxed);
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

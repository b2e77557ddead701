//! The lost-write checker's model, shared by the real-process and the
//! in-process runs (Jepsen's "set-full" idea, adapted to siblings).
//!
//! Every value a client writes is `{"id": <unique>, "saw": [<ids>]}`: its own
//! id and the ids of the siblings the client read just before (the versions
//! the write's context supersedes). A write is recorded *before* it is sent,
//! so anything a replica holds must be a recorded write of the same key.
//!
//! After the nemesis has healed everything and the replicas have converged,
//! each key's replicas are read directly. With `present` the ids they hold
//! and `closure` everything reachable from `present` through `saw` lists
//! (what the present versions superseded, transitively):
//!
//! - lost: acknowledged ids of the key not in `closure`;
//! - phantom: present (or read) ids never written for that key, values that
//!   are not ours, tombstones (the clients never delete), and writes whose
//!   connection was refused (never sent) that are present or superseded;
//! - divergent: keys whose replicas hold different version sets (id and
//!   clock), or whose `GET r=N` answer is not that set;
//! - stale: present ids that another present version superseded (DVV
//!   `sync` must have dropped them).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Parameters and randomness
// ---------------------------------------------------------------------------

/// Run parameters; the defaults are the short CI run, `CHECKER_*` env vars
/// make the long one (scripts/checker.sh).
#[derive(Clone, Debug)]
pub struct Params {
    pub seed: u64,
    /// Upper bound on PUT attempts, all clients together.
    pub ops: u64,
    /// Upper bound on the workload's duration.
    pub seconds: f64,
    pub clients: usize,
    pub keys: usize,
    pub nodes: usize,
    /// Bound for replicas to converge after the heal.
    pub converge_seconds: f64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(s) if !s.trim().is_empty() => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                // Hex is accepted for seeds, as they are printed.
                Some(hex) => u64::from_str_radix(hex, 16)
                    .ok()
                    .and_then(|v| v.to_string().parse().ok()),
                None => s.parse().ok(),
            };
            parsed.unwrap_or_else(|| panic!("{name}={s:?} is not a valid value"))
        }
        _ => default,
    }
}

impl Params {
    /// The env vars over these defaults (the short run's).
    pub fn from_env(ops: u64, seconds: f64, nodes: usize, clients: usize) -> Params {
        let fresh_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (u64::from(std::process::id()) << 32);
        Params {
            seed: env_or("CHECKER_SEED", fresh_seed),
            ops: env_or("CHECKER_OPS", ops),
            seconds: env_or("CHECKER_SECONDS", seconds),
            clients: env_or("CHECKER_CLIENTS", clients).max(1),
            keys: env_or("CHECKER_KEYS", 10usize).max(1),
            nodes: env_or("CHECKER_NODES", nodes),
            converge_seconds: env_or("CHECKER_CONVERGE_SECONDS", 45.0),
        }
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }

    pub fn converge_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.converge_seconds)
    }
}

/// SplitMix64: small, seedable, good enough to pick nodes and keys.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// An independent stream for participant `n`.
    pub fn fork(seed: u64, n: u64) -> Rng {
        let mut r = Rng(seed ^ n.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next_u64() % (hi - lo + 1))
    }
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

pub const CONTENT_TYPE: &str = "application/json";

pub fn key_name(k: usize) -> String {
    format!("checker-{k}")
}

/// `{"id": id, "saw": [...]}`.
pub fn encode_value(id: u64, saw: &[u64]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "id": id, "saw": saw })).expect("JSON encodes")
}

/// `(id, saw)` of a value we wrote, `None` for anything else.
pub fn decode_value(bytes: &[u8]) -> Option<(u64, Vec<u64>)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let id = v.get("id")?.as_u64()?;
    let saw = v
        .get("saw")?
        .as_array()?
        .iter()
        .map(serde_json::Value::as_u64)
        .collect::<Option<Vec<u64>>>()?;
    Some((id, saw))
}

/// One sibling as a reader sees it: a value of ours, a tombstone, or junk.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seen {
    Value { id: u64, saw: Vec<u64> },
    Tombstone,
    Junk(String),
}

impl Seen {
    pub fn of(data: Option<&[u8]>) -> Seen {
        match data {
            None => Seen::Tombstone,
            Some(b) => match decode_value(b) {
                Some((id, saw)) => Seen::Value { id, saw },
                None => Seen::Junk(String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned()),
            },
        }
    }
}

// ---------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent, no answer yet.
    Pending,
    /// `204`: W replicas stored it.
    Acked,
    /// Certainly not applied (the connection was refused before anything
    /// was sent).
    Failed,
    /// `503`, a timeout or a broken connection: it may be on some replicas.
    Indeterminate,
}

#[derive(Clone, Debug)]
pub struct Write {
    pub key: usize,
    pub saw: Vec<u64>,
    pub outcome: Outcome,
}

#[derive(Default)]
struct Inner {
    writes: BTreeMap<u64, Write>,
    /// Problems seen by clients while running (phantoms read, unexpected
    /// statuses), with a description each.
    phantoms_read: Vec<String>,
    unexpected: Vec<String>,
    reads_ok: u64,
    reads_failed: u64,
    max_siblings: usize,
}

/// Everything the clients did, shared between them.
#[derive(Default)]
pub struct History {
    next_id: AtomicU64,
    inner: Mutex<Inner>,
}

impl History {
    pub fn new() -> History {
        History {
            next_id: AtomicU64::new(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a read of `key`: checks every sibling is a write of this key,
    /// and returns the ids to put in the next value's `saw`.
    pub fn read(&self, key: usize, siblings: &[Seen], via: &str) -> Vec<u64> {
        let mut g = self.lock();
        g.reads_ok += 1;
        g.max_siblings = g.max_siblings.max(siblings.len());
        let mut saw = Vec::new();
        for s in siblings {
            match s {
                Seen::Value { id, .. } => {
                    match g.writes.get(id) {
                        Some(w) if w.key == key => {}
                        Some(w) => {
                            let msg = format!(
                                "read {} via {via}: id {id} was written to {}",
                                key_name(key),
                                key_name(w.key)
                            );
                            g.phantoms_read.push(msg);
                        }
                        None => {
                            let msg = format!("read {} via {via}: id {id} was never written", key_name(key));
                            g.phantoms_read.push(msg);
                        }
                    }
                    saw.push(*id);
                }
                Seen::Tombstone => {
                    let msg = format!("read {} via {via}: a tombstone (nobody deletes)", key_name(key));
                    g.phantoms_read.push(msg);
                }
                Seen::Junk(j) => {
                    let msg = format!("read {} via {via}: a value that is not ours: {j:?}", key_name(key));
                    g.phantoms_read.push(msg);
                }
            }
        }
        saw.sort_unstable();
        saw.dedup();
        saw
    }

    pub fn read_failed(&self) {
        self.lock().reads_failed += 1;
    }

    /// Record a write's intent (before sending it); returns its id and value.
    pub fn begin_write(&self, key: usize, saw: Vec<u64>) -> (u64, Vec<u8>) {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let value = encode_value(id, &saw);
        self.lock().writes.insert(
            id,
            Write {
                key,
                saw,
                outcome: Outcome::Pending,
            },
        );
        (id, value)
    }

    pub fn end_write(&self, id: u64, outcome: Outcome) {
        if let Some(w) = self.lock().writes.get_mut(&id) {
            w.outcome = outcome;
        }
    }

    /// An answer the contract does not allow (e.g. a 400 or 500).
    pub fn unexpected(&self, what: String) {
        self.lock().unexpected.push(what);
    }

    pub fn writes_attempted(&self) -> u64 {
        self.next_id.load(Ordering::SeqCst) - 1
    }

    /// Judge the final replica states.
    pub fn check(&self, finals: &[KeyFinal]) -> Report {
        let g = self.lock();
        let mut r = Report {
            writes: g.writes.len() as u64,
            reads_ok: g.reads_ok,
            reads_failed: g.reads_failed,
            max_siblings: g.max_siblings,
            unexpected: g.unexpected.len() as u64,
            ..Report::default()
        };
        for w in g.writes.values() {
            match w.outcome {
                Outcome::Acked => r.acked += 1,
                Outcome::Failed => r.failed += 1,
                Outcome::Indeterminate | Outcome::Pending => r.indeterminate += 1,
            }
        }
        for p in &g.phantoms_read {
            r.phantom += 1;
            r.problems.push(format!("phantom: {p}"));
        }
        for u in &g.unexpected {
            r.problems.push(format!("unexpected answer: {u}"));
        }
        for f in finals {
            let name = key_name(f.key);
            // Divergence: every replica (and every r=N read) the same set.
            let reference = f.replicas.first().map(|(_, s)| s.clone()).unwrap_or_default();
            let mut diverged = Vec::new();
            for (who, set) in &f.replicas {
                if *set != reference {
                    diverged.push(format!("{who}: {set:?}"));
                }
            }
            // Reads show no clocks: compare values only.
            let bare = without_clocks(&reference);
            for (who, set) in &f.reads {
                if without_clocks(set) != bare {
                    diverged.push(format!("{who}: {set:?}"));
                }
            }
            for (who, set) in &f.strays {
                if !set.is_empty() {
                    diverged.push(format!("{who} (not a replica) still holds {set:?}"));
                }
            }
            if !diverged.is_empty() {
                r.divergent += 1;
                r.problems.push(format!(
                    "divergent: {name}: {}: {reference:?} but {}",
                    f.replicas.first().map(|(w, _)| w.as_str()).unwrap_or("?"),
                    diverged.join("; ")
                ));
            }
            // Everything any replica or read holds counts as present.
            let mut present: BTreeSet<u64> = BTreeSet::new();
            for (who, set) in f.replicas.iter().chain(f.reads.iter()) {
                for v in set {
                    match &v.seen {
                        Seen::Value { id, .. } => match g.writes.get(id) {
                            Some(w) if w.key == f.key => {
                                present.insert(*id);
                            }
                            Some(w) => {
                                r.phantom += 1;
                                r.problems.push(format!(
                                    "phantom: {who} holds id {id} of {} under {name}",
                                    key_name(w.key)
                                ));
                            }
                            None => {
                                r.phantom += 1;
                                r.problems
                                    .push(format!("phantom: {who} holds id {id} under {name}, never written"));
                            }
                        },
                        other => {
                            r.phantom += 1;
                            r.problems.push(format!("phantom: {who} holds {other:?} under {name}"));
                        }
                    }
                }
            }
            r.present += present.len() as u64;
            // What the present versions superseded, transitively.
            let mut closure: BTreeSet<u64> = BTreeSet::new();
            let mut stack: Vec<u64> = present.iter().copied().collect();
            while let Some(id) = stack.pop() {
                if closure.insert(id) {
                    if let Some(w) = g.writes.get(&id) {
                        stack.extend(w.saw.iter().copied());
                    }
                }
            }
            // Stale: a present version another present version has seen.
            for &p in &present {
                let mut seen_by_others = BTreeSet::new();
                let mut stack: Vec<u64> = present
                    .iter()
                    .filter(|&&q| q != p)
                    .filter_map(|q| g.writes.get(q))
                    .flat_map(|w| w.saw.iter().copied())
                    .collect();
                while let Some(id) = stack.pop() {
                    if seen_by_others.insert(id) {
                        if let Some(w) = g.writes.get(&id) {
                            stack.extend(w.saw.iter().copied());
                        }
                    }
                }
                if seen_by_others.contains(&p) {
                    r.stale += 1;
                    r.problems.push(format!(
                        "stale: {name}: id {p} is present although another present version superseded it (present {present:?})"
                    ));
                }
            }
            for (id, w) in g.writes.iter().filter(|(_, w)| w.key == f.key) {
                if w.outcome == Outcome::Acked && !closure.contains(id) {
                    r.lost += 1;
                    r.problems.push(format!(
                        "lost: {name}: acknowledged id {id} (saw {:?}) is neither present nor superseded; present {present:?}",
                        w.saw
                    ));
                } else if w.outcome == Outcome::Failed && closure.contains(id) {
                    // Its request never left the client.
                    r.phantom += 1;
                    r.problems.push(format!(
                        "phantom: {name}: id {id} was never sent (connection refused), yet present or superseded"
                    ));
                } else if w.outcome != Outcome::Acked && closure.contains(id) {
                    r.unacked_surviving += 1;
                }
            }
        }
        r
    }
}

/// One version as a replica (or a read) shows it: our value and its clock
/// (empty where the reader does not see clocks).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Held {
    pub seen: Seen,
    pub clock: String,
}

pub type VersionSet = BTreeSet<Held>;

/// The final state of one key: each replica's versions, each `r=N` read's
/// siblings (compared on values only, so their clocks are copied from the
/// replica with that value when known), and non-replicas that still hold it.
#[derive(Clone, Debug, Default)]
pub struct KeyFinal {
    pub key: usize,
    pub replicas: Vec<(String, VersionSet)>,
    pub reads: Vec<(String, VersionSet)>,
    pub strays: Vec<(String, VersionSet)>,
}

/// Forget clocks (to compare a read, which shows none, with replicas).
pub fn without_clocks(set: &VersionSet) -> VersionSet {
    set.iter()
        .map(|h| Held {
            seen: h.seen.clone(),
            clock: String::new(),
        })
        .collect()
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub writes: u64,
    pub acked: u64,
    pub failed: u64,
    pub indeterminate: u64,
    /// Distinct ids present after convergence, over all keys.
    pub present: u64,
    /// Writes not acknowledged that are present or superseded (i.e. took
    /// effect after all).
    pub unacked_surviving: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    pub max_siblings: usize,
    pub unexpected: u64,
    pub lost: u64,
    pub phantom: u64,
    pub divergent: u64,
    pub stale: u64,
    pub problems: Vec<String>,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.phantom == 0 && self.divergent == 0 && self.stale == 0 && self.unexpected == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lost={} phantom={} divergent={} stale={} unexpected={} | writes={} acked={} failed={} \
             indeterminate={} present={} unacked_took_effect={} reads={} reads_failed={} max_siblings={}",
            self.lost,
            self.phantom,
            self.divergent,
            self.stale,
            self.unexpected,
            self.writes,
            self.acked,
            self.failed,
            self.indeterminate,
            self.present,
            self.unacked_surviving,
            self.reads_ok,
            self.reads_failed,
            self.max_siblings
        )
    }
}

/// Counts of nemesis actions, for the summary.
#[derive(Clone, Debug, Default)]
pub struct FaultLog(pub BTreeMap<&'static str, u64>);

impl FaultLog {
    pub fn add(&mut self, what: &'static str) {
        *self.0.entry(what).or_default() += 1;
    }
}

impl fmt::Display for FaultLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        if parts.is_empty() {
            write!(f, "none")
        } else {
            write!(f, "{}", parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(id: u64, saw: &[u64]) -> Held {
        Held {
            seen: Seen::Value { id, saw: saw.to_vec() },
            clock: String::new(),
        }
    }

    fn final_of(key: usize, sets: &[&[Held]]) -> KeyFinal {
        KeyFinal {
            key,
            replicas: sets
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("node{}", i + 1), s.iter().cloned().collect()))
                .collect(),
            reads: vec![],
            strays: vec![],
        }
    }

    /// The analysis itself: superseded (transitively) is not lost; missing
    /// is; never-written is phantom; differing replicas are divergent.
    #[test]
    fn the_analysis_finds_what_it_should() {
        let h = History::new();
        let (a, _) = h.begin_write(0, vec![]);
        h.end_write(a, Outcome::Acked);
        let (b, _) = h.begin_write(0, vec![a]);
        h.end_write(b, Outcome::Indeterminate);
        let (c, _) = h.begin_write(0, vec![b]);
        h.end_write(c, Outcome::Acked);
        let (d, _) = h.begin_write(0, vec![]);
        h.end_write(d, Outcome::Acked);
        // c supersedes b supersedes a: only d could be lost.
        let ok = h.check(&[final_of(
            0,
            &[&[held(c, &[b]), held(d, &[])], &[held(c, &[b]), held(d, &[])]],
        )]);
        assert!(ok.clean(), "{ok} {:?}", ok.problems);
        assert_eq!(
            (ok.acked, ok.indeterminate, ok.present, ok.unacked_surviving),
            (3, 1, 2, 1)
        );
        let lost = h.check(&[final_of(0, &[&[held(c, &[b])], &[held(c, &[b])]])]);
        assert_eq!((lost.lost, lost.divergent, lost.phantom), (1, 0, 0), "{lost}");
        let diverged = h.check(&[final_of(0, &[&[held(c, &[b]), held(d, &[])], &[held(d, &[])]])]);
        assert_eq!((diverged.lost, diverged.divergent), (0, 1), "{diverged}");
        let phantom = h.check(&[final_of(0, &[&[held(c, &[b]), held(d, &[]), held(99, &[])]])]);
        assert_eq!((phantom.phantom, phantom.lost), (1, 0), "{phantom}");
        let stale = h.check(&[final_of(0, &[&[held(a, &[]), held(c, &[b]), held(d, &[])]])]);
        assert_eq!((stale.stale, stale.lost), (1, 0), "{stale}");
    }
}

//! Per-operation request counts and latency, for `/status` and `/metrics`,
//! and the Prometheus text exposition (format 0.0.4) that `/metrics` serves.
//!
//! Each operation keeps one HDR histogram (microseconds, 3 significant
//! figures) for the p50/p99 of `/status`, plus fixed Prometheus buckets
//! ([`LATENCY_BUCKETS_S`]) for `dynamo_request_duration_seconds`, all behind
//! a mutex held for a few nanoseconds per request. GET answers also feed a
//! histogram of siblings per answer ([`RequestMetrics::record_siblings`]).
//!
//! The exposition is written by hand ([`Exposition`]): it is a simple line
//! format, and the node's figures live in atomics the actors own, read at
//! scrape time, which a registry-based crate would only wrap.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use dynamo_actors::stats::NodeStats;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// The client operations measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// GET /kv.
    Get = 0,
    /// PUT /kv.
    Put = 1,
    /// DELETE /kv.
    Delete = 2,
}

impl Op {
    /// Every operation, in label order.
    pub const ALL: [Op; 3] = [Op::Get, Op::Put, Op::Delete];

    /// The `op` label value.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Delete => "delete",
        }
    }
}

/// Upper bounds (seconds) of the `dynamo_request_duration_seconds` buckets.
pub const LATENCY_BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the `dynamo_siblings` buckets (versions per GET answer).
pub const SIBLING_BUCKETS: [f64; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 50.0];

/// A Prometheus-style histogram with fixed bucket bounds.
#[derive(Clone, Debug, PartialEq)]
pub struct Buckets {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); those above the last bound
    /// are only in `count`.
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Buckets {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Buckets {
            bounds,
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    /// Count one observation of `v`: it falls in the first bucket whose
    /// bound is `>= v` (Prometheus' `le`).
    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.count += 1;
        self.sum += v;
    }

    /// `(le, observations <= le)` per bound, cumulative, without `+Inf`
    /// (whose count is [`Buckets::count`]).
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        self.bounds
            .iter()
            .zip(&self.counts)
            .map(|(b, c)| {
                acc += c;
                (*b, acc)
            })
            .collect()
    }

    /// Observations in total.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the observed values.
    pub fn sum(&self) -> f64 {
        self.sum
    }
}

struct OpStats {
    count: u64,
    errors: u64,
    /// `None` only if the (constant) bounds were refused, which they are not.
    latency_us: Option<Histogram<u64>>,
    latency_s: Buckets,
}

/// What one operation has done so far.
#[derive(Clone, Debug, PartialEq)]
pub struct OpSnapshot {
    /// Requests answered.
    pub count: u64,
    /// Of which server errors (5xx).
    pub errors: u64,
    /// Their latency, in seconds.
    pub latency_s: Buckets,
}

/// Request metrics of one node.
pub struct RequestMetrics {
    ops: [Mutex<OpStats>; 3],
    siblings: Mutex<Buckets>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        let new = || {
            Mutex::new(OpStats {
                count: 0,
                errors: 0,
                // 1 µs .. 1 h at 3 significant figures; bounds are constants.
                latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).ok(),
                latency_s: Buckets::new(&LATENCY_BUCKETS_S),
            })
        };
        RequestMetrics {
            ops: [new(), new(), new()],
            siblings: Mutex::new(Buckets::new(&SIBLING_BUCKETS)),
        }
    }
}

impl RequestMetrics {
    /// Record one request. Server errors (5xx) count as errors; a client's
    /// own mistake (4xx) or a not-found does not.
    pub fn record(&self, op: Op, took: Duration, error: bool) {
        if let Ok(mut s) = self.ops[op as usize].lock() {
            s.count += 1;
            if error {
                s.errors += 1;
            }
            if let Some(h) = s.latency_us.as_mut() {
                let _ = h.record((took.as_micros() as u64).max(1));
            }
            s.latency_s.observe(took.as_secs_f64());
        }
    }

    /// Record how many versions (siblings, tombstones included) one GET
    /// answer carried: 1 for a plain value, 2+ for a `300`.
    pub fn record_siblings(&self, n: usize) {
        if let Ok(mut s) = self.siblings.lock() {
            s.observe(n as f64);
        }
    }

    /// The counts and latency buckets of `op`.
    pub fn snapshot(&self, op: Op) -> OpSnapshot {
        match self.ops[op as usize].lock() {
            Ok(s) => OpSnapshot {
                count: s.count,
                errors: s.errors,
                latency_s: s.latency_s.clone(),
            },
            Err(_) => OpSnapshot {
                count: 0,
                errors: 0,
                latency_s: Buckets::new(&LATENCY_BUCKETS_S),
            },
        }
    }

    /// The siblings-per-GET-answer histogram.
    pub fn siblings(&self) -> Buckets {
        self.siblings
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|_| Buckets::new(&SIBLING_BUCKETS))
    }

    /// The `requests` object of `/status`.
    pub fn to_json(&self) -> Value {
        let one = |op: Op| match self.ops[op as usize].lock() {
            Ok(s) => {
                let q = |q: f64| s.latency_us.as_ref().map_or(0, |h| h.value_at_quantile(q)) as f64 / 1000.0;
                json!({"count": s.count, "errors": s.errors, "p50_ms": q(0.5), "p99_ms": q(0.99)})
            }
            Err(_) => json!({"count": 0, "errors": 0, "p50_ms": 0.0, "p99_ms": 0.0}),
        };
        json!({"get": one(Op::Get), "put": one(Op::Put), "delete": one(Op::Delete)})
    }
}

/// Anti-entropy figures of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AntiEntropyCounts {
    /// Exchanges (one partition with one peer replica) completed.
    pub exchanges: u64,
    /// Keys repaired by those exchanges.
    pub keys_repaired: u64,
    /// Age of the last exchange in milliseconds; `None` before the first.
    pub last_exchange_age_ms: Option<u64>,
    /// Tombstones purged once every replica was seen to hold them.
    pub tombstones_purged: u64,
}

/// The anti-entropy counters of `stats`, for `/metrics` (and `/status`):
/// the one place they are read.
pub fn anti_entropy_counts(stats: &NodeStats) -> AntiEntropyCounts {
    AntiEntropyCounts {
        exchanges: NodeStats::get(&stats.ae_exchanges),
        keys_repaired: NodeStats::get(&stats.ae_keys_repaired),
        last_exchange_age_ms: stats.last_exchange_age_ms(),
        tombstones_purged: NodeStats::get(&stats.tombstones_purged),
    }
}

/// Everything `/metrics` shows besides the request metrics, gathered from
/// the node at scrape time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeFigures {
    /// This node's id.
    pub node_id: String,
    /// The software version.
    pub version: String,
    /// Seconds since the node started.
    pub uptime_s: u64,
    /// Replication settings.
    pub n: usize,
    /// Default read quorum.
    pub r: usize,
    /// Default write quorum.
    pub w: usize,
    /// Q.
    pub partitions: u32,
    /// The ring's version.
    pub ring_version: u64,
    /// Members by status word: "up", "suspect", "down", "leaving".
    pub members: BTreeMap<&'static str, u64>,
    /// Partitions whose first owner each member is.
    pub partitions_owned: BTreeMap<String, u32>,
    /// Partitions whose N owners include each member.
    pub partitions_replicated: BTreeMap<String, u32>,
    /// Keys stored (estimate).
    pub storage_keys: u64,
    /// Bytes stored (estimate).
    pub storage_bytes: u64,
    /// Hints held, not yet delivered.
    pub hints_pending: u64,
    /// Hints delivered.
    pub hints_delivered: u64,
    /// Read repairs.
    pub read_repairs: u64,
    /// Replica calls to peers that failed.
    pub peer_failures: u64,
    /// Client writes refused because the key had too many siblings.
    pub sibling_cap_refusals: u64,
    /// Requests forwarded to a preference-list node.
    pub forwarded: u64,
    /// Anti-entropy figures.
    pub anti_entropy: AntiEntropyCounts,
}

/// The status words of `dynamo_members`, each always exposed.
pub const MEMBER_STATUSES: [&str; 4] = ["up", "suspect", "down", "leaving"];

/// The `/metrics` body.
pub fn render(figures: &NodeFigures, requests: &RequestMetrics) -> String {
    let f = figures;
    let mut e = Exposition::default();

    e.family(
        "dynamo_info",
        Kind::Gauge,
        "Constant 1, labelled with this node's id and software version.",
    );
    e.sample("dynamo_info", &[("node_id", &f.node_id), ("version", &f.version)], 1u64);
    e.single(
        "dynamo_uptime_seconds",
        Kind::Gauge,
        "Seconds since this node started.",
        f.uptime_s,
    );
    e.family(
        "dynamo_replication",
        Kind::Gauge,
        "Replication settings: replicas per key (n) and default read (r) and write (w) quorums.",
    );
    for (p, v) in [("n", f.n), ("r", f.r), ("w", f.w)] {
        e.sample("dynamo_replication", &[("param", p)], v as u64);
    }
    e.single(
        "dynamo_partitions",
        Kind::Gauge,
        "Partitions of the ring (Q).",
        u64::from(f.partitions),
    );
    e.single(
        "dynamo_ring_version",
        Kind::Gauge,
        "Version of the partition map this node holds.",
        f.ring_version,
    );

    // Requests.
    let snaps: Vec<(Op, OpSnapshot)> = Op::ALL.iter().map(|op| (*op, requests.snapshot(*op))).collect();
    e.family(
        "dynamo_requests_total",
        Kind::Counter,
        "Client /kv requests answered, by operation and outcome (error = 5xx).",
    );
    for (op, s) in &snaps {
        e.sample(
            "dynamo_requests_total",
            &[("op", op.name()), ("outcome", "ok")],
            s.count.saturating_sub(s.errors),
        );
        e.sample(
            "dynamo_requests_total",
            &[("op", op.name()), ("outcome", "error")],
            s.errors,
        );
    }
    e.family(
        "dynamo_request_duration_seconds",
        Kind::Histogram,
        "Time to answer a client /kv request, by operation.",
    );
    for (op, s) in &snaps {
        e.histogram("dynamo_request_duration_seconds", &[("op", op.name())], &s.latency_s);
    }
    e.family(
        "dynamo_siblings",
        Kind::Histogram,
        "Versions (siblings) per GET answer that carried a value.",
    );
    e.histogram("dynamo_siblings", &[], &requests.siblings());

    // Membership.
    e.family(
        "dynamo_members",
        Kind::Gauge,
        "Cluster members as this node sees them, by status.",
    );
    for status in MEMBER_STATUSES {
        let v = f.members.get(status).copied().unwrap_or(0);
        e.sample("dynamo_members", &[("status", status)], v);
    }
    e.family(
        "dynamo_partitions_owned",
        Kind::Gauge,
        "Partitions whose first owner is the member.",
    );
    for (node, v) in &f.partitions_owned {
        e.sample("dynamo_partitions_owned", &[("node_id", node)], u64::from(*v));
    }
    e.family(
        "dynamo_partitions_replicated",
        Kind::Gauge,
        "Partitions whose N owners include the member.",
    );
    for (node, v) in &f.partitions_replicated {
        e.sample("dynamo_partitions_replicated", &[("node_id", node)], u64::from(*v));
    }

    // Storage.
    e.single(
        "dynamo_storage_keys",
        Kind::Gauge,
        "Keys stored by this node's replica (estimate).",
        f.storage_keys,
    );
    e.single(
        "dynamo_storage_bytes",
        Kind::Gauge,
        "Bytes stored by this node's replica (estimate).",
        f.storage_bytes,
    );

    // Replication machinery.
    e.single(
        "dynamo_hints_pending",
        Kind::Gauge,
        "Hints held for down owners, not yet delivered.",
        f.hints_pending,
    );
    e.single(
        "dynamo_hints_delivered_total",
        Kind::Counter,
        "Hints handed back to their owners.",
        f.hints_delivered,
    );
    e.single(
        "dynamo_read_repairs_total",
        Kind::Counter,
        "Replicas brought up to date by read repair.",
        f.read_repairs,
    );
    e.single(
        "dynamo_anti_entropy_exchanges_total",
        Kind::Counter,
        "Anti-entropy exchanges (one partition with one peer replica) completed.",
        f.anti_entropy.exchanges,
    );
    e.single(
        "dynamo_anti_entropy_keys_repaired_total",
        Kind::Counter,
        "Keys repaired by anti-entropy.",
        f.anti_entropy.keys_repaired,
    );
    if let Some(age_ms) = f.anti_entropy.last_exchange_age_ms {
        e.single(
            "dynamo_anti_entropy_last_exchange_age_seconds",
            Kind::Gauge,
            "Seconds since the last anti-entropy exchange (absent before the first).",
            age_ms as f64 / 1000.0,
        );
    }
    e.single(
        "dynamo_tombstones_purged_total",
        Kind::Counter,
        "Tombstones purged once anti-entropy saw every replica hold them.",
        f.anti_entropy.tombstones_purged,
    );
    e.single(
        "dynamo_sibling_cap_refusals_total",
        Kind::Counter,
        "Client writes refused because the key already had the maximum number of siblings.",
        f.sibling_cap_refusals,
    );
    e.single(
        "dynamo_peer_failures_total",
        Kind::Counter,
        "Replica calls to peers that failed or timed out.",
        f.peer_failures,
    );
    e.single(
        "dynamo_forwarded_total",
        Kind::Counter,
        "Client requests forwarded to a node of the key's preference list.",
        f.forwarded,
    );
    e.finish()
}

// ---------------------------------------------------------------------------
// Prometheus text exposition format 0.0.4
// ---------------------------------------------------------------------------

/// The content type of the exposition.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, `_sum` and `_count`.
    Histogram,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample value: integers print exactly, floats in Go-parsable form.
#[derive(Clone, Copy, Debug)]
pub enum Num {
    /// An integer.
    U(u64),
    /// A float.
    F(f64),
}

impl From<u64> for Num {
    fn from(v: u64) -> Self {
        Num::U(v)
    }
}

impl From<f64> for Num {
    fn from(v: f64) -> Self {
        Num::F(v)
    }
}

/// Format a float the way the text format accepts it.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        // Rust's shortest round-trip form never uses an exponent.
        format!("{v}")
    }
}

/// Whether `s` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn valid_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `s` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not `__*`).
pub fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    !s.starts_with("__")
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A text exposition being written. Write each family's header with
/// [`Exposition::family`], then all of its samples, before the next family.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Start a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(valid_metric_name(name), "bad metric name {name:?}");
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.word());
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Num>) {
        debug_assert!(valid_metric_name(name), "bad metric name {name:?}");
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                debug_assert!(valid_label_name(k), "bad label name {k:?}");
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label_value(v));
            }
            self.out.push('}');
        }
        let _ = match value.into() {
            Num::U(v) => writeln!(self.out, " {v}"),
            Num::F(v) => writeln!(self.out, " {}", format_float(v)),
        };
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Into<Num>) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The `_bucket` (with `le`, up to `+Inf`), `_sum` and `_count` samples
    /// of one histogram series; the family header is written separately.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Buckets) {
        let bucket = format!("{name}_bucket");
        let mut bounds: Vec<(String, u64)> = h
            .cumulative()
            .into_iter()
            .map(|(le, count)| (format_float(le), count))
            .collect();
        bounds.push(("+Inf".into(), h.count()));
        for (le, count) in &bounds {
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", le));
            self.sample(&bucket, &with_le, *count);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum());
        self.sample(&format!("{name}_count"), labels, h.count());
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_le_inclusive() {
        let mut b = Buckets::new(&SIBLING_BUCKETS);
        for v in [1.0, 1.0, 2.0, 3.5, 50.0, 51.0] {
            b.observe(v);
        }
        let c = b.cumulative();
        assert_eq!(c[0], (1.0, 2));
        assert_eq!(c[1], (2.0, 3));
        assert_eq!(c[2], (3.0, 3));
        assert_eq!(c[3], (4.0, 4));
        assert_eq!(c.last().copied(), Some((50.0, 5)));
        assert_eq!(b.count(), 6);
        assert!((b.sum() - 108.5).abs() < 1e-9);
    }

    #[test]
    fn floats_format_for_the_text_format() {
        assert_eq!(format_float(0.0005), "0.0005");
        assert_eq!(format_float(10.0), "10");
        assert_eq!(format_float(2.5), "2.5");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(1e-7), "0.0000001");
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_metric_name("dynamo_requests_total"));
        assert!(valid_metric_name("a:b_c1"));
        assert!(!valid_metric_name("1abc"));
        assert!(!valid_metric_name("a-b"));
        assert!(!valid_metric_name(""));
        assert!(valid_label_name("op"));
        assert!(!valid_label_name("__name"));
        assert!(!valid_label_name("a:b"));
    }

    #[test]
    fn samples_escape_labels_and_help() {
        let mut e = Exposition::default();
        e.family("x_total", Kind::Counter, "a \\ b\nc");
        e.sample("x_total", &[("id", "q\"u\\o\nte")], 3u64);
        e.sample("x_total", &[], 0.25);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\nx_total{id=\"q\\\"u\\\\o\\nte\"} 3\nx_total 0.25\n"
        );
    }

    #[test]
    fn histogram_series_end_with_inf_sum_and_count() {
        let mut b = Buckets::new(&LATENCY_BUCKETS_S);
        b.observe(0.0001);
        b.observe(0.003);
        b.observe(20.0);
        let mut e = Exposition::default();
        e.family("h_seconds", Kind::Histogram, "h");
        e.histogram("h_seconds", &[("op", "get")], &b);
        let text = e.finish();
        assert!(
            text.contains("h_seconds_bucket{op=\"get\",le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("h_seconds_bucket{op=\"get\",le=\"0.005\"} 2\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{op=\"get\",le=\"10\"} 2\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{op=\"get\",le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("h_seconds_count{op=\"get\"} 3\n"), "{text}");
        assert!(text.contains("h_seconds_sum{op=\"get\"} 20.0031"), "{text}");
    }

    #[test]
    fn rendered_body_has_every_family_once_with_help_and_type() {
        let m = RequestMetrics::default();
        m.record(Op::Put, Duration::from_millis(3), false);
        m.record(Op::Get, Duration::from_millis(1), true);
        m.record_siblings(2);
        let mut fig = NodeFigures {
            node_id: "n\"1".into(),
            version: "0.1.0".into(),
            n: 3,
            r: 2,
            w: 2,
            partitions: 16,
            ..Default::default()
        };
        fig.members.insert("up", 3);
        fig.partitions_owned.insert("n1".into(), 16);
        let text = render(&fig, &m);
        assert!(
            !text.contains("dynamo_anti_entropy_last_exchange_age_seconds"),
            "{text}"
        );
        fig.anti_entropy.last_exchange_age_ms = Some(1500);
        let text = render(&fig, &m);
        assert!(
            text.contains("\ndynamo_anti_entropy_last_exchange_age_seconds 1.5\n"),
            "{text}"
        );
        assert!(
            text.contains("dynamo_requests_total{op=\"put\",outcome=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("dynamo_requests_total{op=\"get\",outcome=\"error\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("dynamo_members{status=\"up\"} 3\n"), "{text}");
        assert!(text.contains("dynamo_members{status=\"leaving\"} 0\n"), "{text}");
        assert!(text.contains("dynamo_siblings_bucket{le=\"2\"} 1\n"), "{text}");
        assert!(
            text.contains("dynamo_info{node_id=\"n\\\"1\",version=\"0.1.0\"} 1\n"),
            "{text}"
        );
        // Every family has HELP then TYPE, exactly once, and its samples
        // follow it contiguously.
        let mut seen = std::collections::BTreeSet::new();
        let mut current = String::new();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default().to_string();
                assert!(seen.insert(name.clone()), "family {name} twice");
                assert!(lines
                    .get(i + 1)
                    .is_some_and(|l| l.starts_with(&format!("# TYPE {name} "))));
                current = name;
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| *b == current))
                    .unwrap_or(name);
                assert_eq!(base, current, "sample {line:?} outside its family");
            }
        }
        for name in [
            "dynamo_requests_total",
            "dynamo_request_duration_seconds",
            "dynamo_hints_pending",
            "dynamo_hints_delivered_total",
            "dynamo_read_repairs_total",
            "dynamo_anti_entropy_keys_repaired_total",
            "dynamo_anti_entropy_exchanges_total",
            "dynamo_siblings",
            "dynamo_members",
            "dynamo_storage_keys",
            "dynamo_storage_bytes",
            "dynamo_peer_failures_total",
            "dynamo_forwarded_total",
        ] {
            assert!(seen.contains(name), "no family {name}");
        }
    }
}

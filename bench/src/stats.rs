//! What a run measured: latency histograms (microseconds, 3 significant
//! figures) of successful requests, errors by kind, and the summary.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// The highest latency a histogram tracks exactly (10 minutes, in µs);
/// anything above is recorded as this value.
const MAX_TRACKABLE_US: u64 = 600_000_000;

/// Statistics of one thread's clients during the measured window; merged into
/// one at the end.
#[derive(Clone, Debug)]
pub struct Stats {
    pub put: Histogram<u64>,
    pub get: Histogram<u64>,
    pub errors: BTreeMap<String, u64>,
    /// Open loop only: sends that were scheduled in the measured window but
    /// never issued because the clients were still waiting for earlier
    /// responses when the run ended.
    pub not_sent: u64,
    /// Latency of all operations by the second of the measured window
    /// they were meant to start in: where in a run the tail was.
    pub seconds: Vec<Histogram<u64>>,
}

impl Stats {
    /// With `seconds` per-second histograms for the timeline (0 without one).
    pub fn new(seconds: usize) -> anyhow::Result<Self> {
        let histogram = || Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 3);
        Ok(Stats {
            put: histogram()?,
            get: histogram()?,
            errors: BTreeMap::new(),
            not_sent: 0,
            seconds: (0..seconds).map(|_| histogram()).collect::<Result<_, _>>()?,
        })
    }

    /// Record a request meant to start `second` seconds into the measured
    /// window.
    pub fn record(&mut self, is_put: bool, second: usize, micros: u64) {
        let micros = micros.clamp(1, MAX_TRACKABLE_US);
        let h = if is_put { &mut self.put } else { &mut self.get };
        h.saturating_record(micros);
        if let Some(h) = self.seconds.get_mut(second) {
            h.saturating_record(micros);
        }
    }

    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_insert(0) += 1;
    }

    pub fn merge(&mut self, other: &Stats) -> anyhow::Result<()> {
        self.put.add(&other.put)?;
        self.get.add(&other.get)?;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_insert(0) += v;
        }
        self.not_sent += other.not_sent;
        for (mine, h) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.add(h)?;
        }
        Ok(())
    }
}

/// The parameters a summary states along with the figures.
pub struct RunInfo<'a> {
    pub op: &'a str,
    pub target: &'a str,
    pub clients: usize,
    pub threads: usize,
    pub endpoints: usize,
    pub keys: u64,
    pub value_size: usize,
    pub duration_s: f64,
    pub rate: Option<f64>,
}

fn ms(us: u64) -> f64 {
    (us as f64) / 1000.0
}

fn latency_json(h: &Histogram<u64>, duration_s: f64) -> Value {
    json!({
        "ops": h.len(),
        "throughput_ops_s": round2(h.len() as f64 / duration_s),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

/// One JSON line per second of the measured window: `unix_s` is the
/// wall-clock second it began, so the line can be laid beside node logs.
pub fn timeline_json(stats: &Stats, window_start_unix_s: f64) -> Vec<Value> {
    stats
        .seconds
        .iter()
        .enumerate()
        .map(|(i, h)| {
            json!({
                "second": i,
                "unix_s": round2(window_start_unix_s + i as f64),
                "ops": h.len(),
                "p50_ms": ms(h.value_at_quantile(0.50)),
                "p99_ms": ms(h.value_at_quantile(0.99)),
                "p999_ms": ms(h.value_at_quantile(0.999)),
                "max_ms": ms(h.max()),
            })
        })
        .collect()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The summary as one JSON object (flat top-level figures; `by_op` splits a
/// mixed run into its PUTs and GETs).
pub fn summary_json(info: &RunInfo, stats: &Stats) -> anyhow::Result<Value> {
    let mut all = stats.put.clone();
    all.add(&stats.get)?;
    let errors: u64 = stats.errors.values().sum();
    let mut v = json!({
        "op": info.op,
        "target": info.target,
        "clients": info.clients,
        "threads": info.threads,
        "endpoints": info.endpoints,
        "keys": info.keys,
        "value_size": info.value_size,
        "duration_s": info.duration_s,
        "rate": info.rate,
        "ops": all.len(),
        "errors": errors,
        "errors_by_kind": stats.errors,
        "not_sent": stats.not_sent,
        "throughput_ops_s": round2(all.len() as f64 / info.duration_s),
        "p50_ms": ms(all.value_at_quantile(0.50)),
        "p99_ms": ms(all.value_at_quantile(0.99)),
        "p999_ms": ms(all.value_at_quantile(0.999)),
        "max_ms": ms(all.max()),
    });
    if info.op == "mixed" {
        v["by_op"] = json!({
            "put": latency_json(&stats.put, info.duration_s),
            "get": latency_json(&stats.get, info.duration_s),
        });
    }
    Ok(v)
}

/// The summary for a human.
pub fn summary_text(info: &RunInfo, stats: &Stats) -> anyhow::Result<String> {
    let mut all = stats.put.clone();
    all.add(&stats.get)?;
    let errors: u64 = stats.errors.values().sum();
    let mode = match info.rate {
        Some(r) => format!("open loop at {r} req/s"),
        None => "closed loop".to_string(),
    };
    let mut out = format!(
        "op {} | target {} | {} clients on {} threads over {} endpoint(s) | {} keys, {} B values | {} s measured, {}\n",
        info.op,
        info.target,
        info.clients,
        info.threads,
        info.endpoints,
        info.keys,
        info.value_size,
        info.duration_s,
        mode
    );
    let line = |name: &str, h: &Histogram<u64>| {
        format!(
            "{:<5} ops {:>9}  throughput {:>10.1} ops/s  latency ms: p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}\n",
            name,
            h.len(),
            h.len() as f64 / info.duration_s,
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
        )
    };
    out.push_str(&line("all", &all));
    if info.op == "mixed" {
        out.push_str(&line("put", &stats.put));
        out.push_str(&line("get", &stats.get));
    }
    out.push_str(&format!("errors {errors}"));
    if !stats.errors.is_empty() {
        let kinds: Vec<String> = stats.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!(" ({})", kinds.join(", ")));
    }
    if info.rate.is_some() {
        out.push_str(&format!("; scheduled but not sent {}", stats.not_sent));
    }
    Ok(out)
}

//! Per-operation request counts and latency, for `/status`.
//!
//! One HDR histogram per operation (microseconds, 3 significant figures)
//! behind a mutex held for a few nanoseconds per request.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// The client operations measured.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// GET /kv.
    Get = 0,
    /// PUT /kv.
    Put = 1,
    /// DELETE /kv.
    Delete = 2,
}

struct OpStats {
    count: u64,
    errors: u64,
    /// `None` only if the (constant) bounds were refused, which they are not.
    latency_us: Option<Histogram<u64>>,
}

/// Request metrics of one node.
pub struct RequestMetrics {
    ops: [Mutex<OpStats>; 3],
}

impl Default for RequestMetrics {
    fn default() -> Self {
        let new = || {
            Mutex::new(OpStats {
                count: 0,
                errors: 0,
                // 1 µs .. 1 h at 3 significant figures; bounds are constants.
                latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).ok(),
            })
        };
        RequestMetrics {
            ops: [new(), new(), new()],
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
        }
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

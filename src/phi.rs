//! The phi accrual failure detector (Hayashibara, Défago, Yared, Katayama:
//! "The φ Accrual Failure Detector", SRDS 2004).
//!
//! Instead of a yes/no verdict after a fixed timeout, the detector keeps a
//! window of heartbeat inter-arrival times and reports φ = −log10 of the
//! probability that a heartbeat would still be this late, were the node
//! alive. φ = 1 means a 10% chance of a mistake, φ = 8 (Cassandra's default
//! convict threshold) one in 10^8. Arrivals are modelled as a normal
//! distribution with a floor on its deviation and an acceptable pause added
//! to its mean, with the logistic approximation of the normal CDF that Akka
//! uses. Time is passed in (milliseconds on any monotonic clock), so tests
//! drive it with a fake clock; unlike Cassandra's detector it never reads
//! the wall clock.

use std::collections::VecDeque;

/// Tuning of a detector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhiConfig {
    /// Inter-arrival samples kept.
    pub window: usize,
    /// Floor on the standard deviation, so regular heartbeats do not make
    /// the detector hair-triggered.
    pub min_std_dev_ms: f64,
    /// Lateness tolerated on top of the mean before suspicion grows fast.
    pub acceptable_pause_ms: f64,
    /// Assumed interval before any sample exists.
    pub first_interval_ms: f64,
}

impl PhiConfig {
    /// Settings for heartbeats expected every `interval_ms`.
    pub fn for_interval(interval_ms: u64) -> Self {
        let interval = interval_ms.max(1) as f64;
        PhiConfig {
            window: 200,
            min_std_dev_ms: interval / 2.0,
            acceptable_pause_ms: interval,
            first_interval_ms: interval,
        }
    }
}

/// Heartbeat history of one peer.
#[derive(Clone, Debug)]
pub struct PhiAccrual {
    config: PhiConfig,
    intervals: VecDeque<f64>,
    last_ms: u64,
}

impl PhiAccrual {
    /// A detector that counts `now_ms` as the last heartbeat, so a peer that
    /// never speaks is suspected after the usual delay.
    pub fn new(config: PhiConfig, now_ms: u64) -> Self {
        PhiAccrual {
            config,
            intervals: VecDeque::with_capacity(config.window.min(1024)),
            last_ms: now_ms,
        }
    }

    /// Record a heartbeat arriving at `now_ms`.
    pub fn heartbeat(&mut self, now_ms: u64) {
        let interval = now_ms.saturating_sub(self.last_ms) as f64;
        self.last_ms = self.last_ms.max(now_ms);
        if interval <= 0.0 {
            return;
        }
        if self.intervals.len() >= self.config.window.max(1) {
            self.intervals.pop_front();
        }
        self.intervals.push_back(interval);
    }

    /// When the last heartbeat arrived.
    pub fn last_heartbeat_ms(&self) -> u64 {
        self.last_ms
    }

    fn mean_and_std(&self) -> (f64, f64) {
        if self.intervals.is_empty() {
            return (self.config.first_interval_ms, self.config.min_std_dev_ms);
        }
        let n = self.intervals.len() as f64;
        let mean = self.intervals.iter().sum::<f64>() / n;
        let var = self.intervals.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        (mean, var.sqrt().max(self.config.min_std_dev_ms))
    }

    /// Suspicion at `now_ms`.
    pub fn phi(&self, now_ms: u64) -> f64 {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64;
        let (mean, std) = self.mean_and_std();
        phi(elapsed, mean + self.config.acceptable_pause_ms, std)
    }
}

/// −log10(P(X > t)) for X ~ N(mean, std), by the logistic approximation of
/// the normal CDF; capped so a long silence stays a finite number.
fn phi(t: f64, mean: f64, std: f64) -> f64 {
    let y = (t - mean) / std;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    let p = if t > mean { e / (1.0 + e) } else { 1.0 - 1.0 / (1.0 + e) };
    (-p.max(1e-300).log10()).min(300.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_heartbeats_keep_phi_low_and_silence_raises_it() {
        let mut d = PhiAccrual::new(PhiConfig::for_interval(1000), 0);
        for t in 1..=20 {
            d.heartbeat(t * 1000);
        }
        assert!(d.phi(20_500) < 1.0);
        let mut last = 0.0;
        for t in (21_000..40_000).step_by(500) {
            let p = d.phi(t);
            assert!(p >= last, "phi must not fall while silent");
            last = p;
        }
        assert!(d.phi(25_000) > 8.0, "5 s of silence after 1 s beats convicts");
        d.heartbeat(40_000);
        assert!(d.phi(40_100) < 1.0, "a heartbeat clears suspicion");
    }

    #[test]
    fn never_heard_from_is_suspected_after_a_few_intervals() {
        let d = PhiAccrual::new(PhiConfig::for_interval(100), 1_000);
        assert!(d.phi(1_100) < 1.0);
        assert!(d.phi(2_000) > 8.0);
    }
}

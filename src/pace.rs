//! Pacing background work to a rate, so it never arrives as a burst.
//!
//! Hinted handoff, anti-entropy repairs and partition transfers all compete
//! with client requests for the same two cores and the same disk. Each runs
//! behind a [`Pacer`]: the generic cell rate algorithm (GCRA, the ATM
//! Forum's leaky bucket as a meter), which keeps one "theoretical arrival
//! time" and so spreads work evenly at `per_sec` units a second, allowing
//! at most `burst` units ahead of that schedule. Idle time earns no more
//! credit than the burst, so a quiet minute cannot be spent in one go —
//! the bursts that move foreground p99.9 are exactly what this removes.
//!
//! The caller passes `now` and sleeps for what [`Pacer::delay`] returns:
//! the pacing itself has no clock.

use std::time::{Duration, Instant};

/// A rate limiter over units of work (keys, hints, bytes).
#[derive(Clone, Debug)]
pub struct Pacer {
    /// Time one unit costs.
    per_unit: Duration,
    /// How far ahead of the schedule work may run.
    tolerance: Duration,
    /// When the work admitted so far is due to be done, at the rate.
    tat: Option<Instant>,
}

impl Pacer {
    /// Pace at `per_sec` units a second (at least one), with up to `burst`
    /// units admitted ahead of the even schedule.
    pub fn new(per_sec: u64, burst: u64) -> Self {
        let per_unit = Duration::from_secs(1) / u32::try_from(per_sec.max(1)).unwrap_or(u32::MAX);
        Pacer {
            per_unit,
            tolerance: per_unit.saturating_mul(u32::try_from(burst).unwrap_or(u32::MAX)),
            tat: None,
        }
    }

    /// Admit `units` of work at `now`: how long to wait before doing it.
    pub fn delay(&mut self, now: Instant, units: u64) -> Duration {
        let tat = self.tat.map_or(now, |t| t.max(now));
        let cost = self.per_unit.saturating_mul(u32::try_from(units).unwrap_or(u32::MAX));
        self.tat = Some(tat.checked_add(cost).unwrap_or(tat));
        (tat.saturating_duration_since(now)).saturating_sub(self.tolerance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `rounds` admissions of `units` each, sleeping as told; returns
    /// the simulated time it took.
    fn run(pacer: &mut Pacer, start: Instant, rounds: u64, units: u64) -> Duration {
        let mut now = start;
        for _ in 0..rounds {
            now += pacer.delay(now, units);
        }
        now - start
    }

    #[test]
    fn work_is_spread_at_the_rate() {
        let start = Instant::now();
        let mut pacer = Pacer::new(1000, 0);
        // 5,000 units at 1,000/s: the last batch may start at 4.99 s.
        let took = run(&mut pacer, start, 500, 10);
        assert_eq!(took, Duration::from_millis(4990));
    }

    #[test]
    fn the_first_batch_and_the_burst_go_at_once() {
        let start = Instant::now();
        let mut pacer = Pacer::new(100, 50);
        assert_eq!(pacer.delay(start, 10), Duration::ZERO);
        // 50 units ahead of schedule are tolerated, then the rate applies.
        assert_eq!(pacer.delay(start, 40), Duration::ZERO);
        assert_eq!(pacer.delay(start, 10), Duration::ZERO);
        assert_eq!(pacer.delay(start, 10), Duration::from_millis(100));
    }

    #[test]
    fn idle_time_earns_no_more_than_the_burst() {
        let start = Instant::now();
        let mut pacer = Pacer::new(100, 20);
        assert_eq!(pacer.delay(start, 10), Duration::ZERO);
        // A long pause, then a flood: only the burst goes through at once.
        let later = start + Duration::from_secs(60);
        assert_eq!(pacer.delay(later, 20), Duration::ZERO);
        assert_eq!(pacer.delay(later, 20), Duration::ZERO);
        assert_eq!(pacer.delay(later, 20), Duration::from_millis(200));
    }

    #[test]
    fn extreme_settings_do_not_panic() {
        let now = Instant::now();
        let mut pacer = Pacer::new(0, u64::MAX);
        assert_eq!(pacer.delay(now, u64::MAX), Duration::ZERO);
        let mut pacer = Pacer::new(u64::MAX, 0);
        assert_eq!(pacer.delay(now, 1), Duration::ZERO);
    }
}

//! Admission control for background work, as Dynamo §6.5 does it: before
//! each step of a background task (a partition chunk served or handed
//! over), look at how foreground requests have fared lately, and hold the
//! step back while they are much slower than they are without background
//! work.
//!
//! A rate limit alone cannot do this: the rate a node can spare depends on
//! how busy its clients keep it, which the operator cannot know in advance.
//! Here the node measures it. Two moving averages of client request
//! latency are kept: a fast one (the last few dozen requests) and a slow one
//! over the times no background step ran for a while (the *quiet* latency).
//! A step waits, in proportion to the overshoot, while the fast one exceeds
//! a target factor (by default [`TARGET`]) times the quiet one. Means rather than tails: a tail needs
//! thousands of samples to estimate, which a small node sees only over
//! seconds, and background work raises the mean first.
//!
//! The clock is the caller's, as in [`crate::pace`].

use std::time::{Duration, Instant};

/// How much slower than quiet clients may get before background work
/// waits, by default.
pub const TARGET: f64 = 1.5;
/// Weight of each request in the fast average.
const FAST: f64 = 0.05;
/// Weight of each request in the quiet average.
const SLOW: f64 = 0.01;
/// Requests the quiet average needs before it is trusted.
const MIN_QUIET: u64 = 200;
/// Time after a background step before requests count as quiet again.
const QUIET_AFTER: Duration = Duration::from_secs(3);
/// A fast average older than this says nothing (no clients lately).
const STALE: Duration = Duration::from_secs(1);
/// The wait per unit of overshoot, and the most a step waits.
const WAIT_PER_OVERSHOOT: Duration = Duration::from_millis(40);
const MAX_WAIT: Duration = Duration::from_millis(250);

/// The measure of foreground latency background steps are admitted by.
#[derive(Clone, Debug)]
pub struct Admission {
    /// Clients may be this many times slower than quiet (`None`: off).
    target: Option<f64>,
    /// Fast average latency, in seconds, and when it was last fed.
    recent: Option<(f64, Instant)>,
    /// Quiet average latency, in seconds, and how many requests made it.
    quiet: Option<(f64, u64)>,
    /// When a background step last ran.
    background_at: Option<Instant>,
}

impl Default for Admission {
    fn default() -> Self {
        Admission::new(Some(TARGET))
    }
}

impl Admission {
    /// Admission that holds background work back while clients are more
    /// than `target` times slower than quiet; never, with `None`.
    pub fn new(target: Option<f64>) -> Self {
        Admission {
            target,
            recent: None,
            quiet: None,
            background_at: None,
        }
    }

    /// A client request finished at `now` after `latency`.
    pub fn observe(&mut self, now: Instant, latency: Duration) {
        let x = latency.as_secs_f64();
        let fast = self.recent.map_or(x, |(avg, _)| avg + FAST * (x - avg));
        self.recent = Some((fast, now));
        let quiet = self
            .background_at
            .is_none_or(|t| now.saturating_duration_since(t) >= QUIET_AFTER);
        if quiet {
            self.quiet = Some(match self.quiet {
                None => (x, 1),
                Some((avg, n)) => (avg + SLOW * (x - avg), n.saturating_add(1)),
            });
        }
    }

    /// A background step wants to run at `now`: how long it should wait.
    pub fn background(&mut self, now: Instant) -> Duration {
        self.background_at = Some(now);
        let (Some(target), Some((fast, at)), Some((quiet, n))) = (self.target, self.recent, self.quiet) else {
            return Duration::ZERO;
        };
        if n < MIN_QUIET || now.saturating_duration_since(at) > STALE || quiet <= 0.0 {
            return Duration::ZERO;
        }
        let overshoot = fast / (target * quiet);
        if overshoot <= 1.0 {
            return Duration::ZERO;
        }
        WAIT_PER_OVERSHOOT.mul_f64(overshoot).min(MAX_WAIT)
    }

    /// The fast and quiet averages, for `/status`.
    pub fn averages(&self) -> (Option<Duration>, Option<Duration>) {
        (
            self.recent.map(|(s, _)| Duration::from_secs_f64(s)),
            self.quiet.map(|(s, _)| Duration::from_secs_f64(s)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// `n` requests of `latency` each, 1 ms apart from `start`.
    fn feed(a: &mut Admission, start: Instant, n: u32, latency: Duration) -> Instant {
        let mut now = start;
        for _ in 0..n {
            now += MS;
            a.observe(now, latency);
        }
        now
    }

    #[test]
    fn nothing_waits_without_a_quiet_measure() {
        let mut a = Admission::default();
        let t = Instant::now();
        assert_eq!(a.background(t), Duration::ZERO);
        let t = feed(&mut a, t, 50, 100 * MS);
        assert_eq!(a.background(t), Duration::ZERO, "too few quiet requests yet");
    }

    #[test]
    fn background_waits_while_clients_are_slower_than_quiet() {
        let mut a = Admission::default();
        let t = feed(&mut a, Instant::now(), 400, 2 * MS);
        assert_eq!(a.background(t), Duration::ZERO, "clients as fast as ever");
        // Background work starts; clients slow down to 5x: steps wait.
        let t = feed(&mut a, t, 200, 10 * MS);
        let wait = a.background(t);
        assert!(wait > Duration::ZERO && wait <= MAX_WAIT, "{wait:?}");
        // The quiet measure does not learn from those slow requests.
        let (_, quiet) = a.averages();
        assert!(quiet.is_some_and(|q| q < 3 * MS), "{quiet:?}");
        // Clients recover: steps go again.
        let t = feed(&mut a, t, 200, 2 * MS);
        assert_eq!(a.background(t), Duration::ZERO);
    }

    #[test]
    fn the_wait_grows_with_the_overshoot_up_to_a_bound() {
        let mut a = Admission::default();
        let t = feed(&mut a, Instant::now(), 400, 2 * MS);
        a.background(t);
        let t = feed(&mut a, t, 200, 4 * MS);
        let small = a.background(t);
        let t = feed(&mut a, t, 200, 40 * MS);
        let large = a.background(t);
        assert!(small < large, "{small:?} < {large:?}");
        let t = feed(&mut a, t, 200, 10_000 * MS);
        assert_eq!(a.background(t), MAX_WAIT);
    }

    #[test]
    fn switched_off_it_never_waits() {
        let mut a = Admission::new(None);
        let t = feed(&mut a, Instant::now(), 400, 2 * MS);
        a.background(t);
        let t = feed(&mut a, t, 200, 50 * MS);
        assert_eq!(a.background(t), Duration::ZERO);
    }

    #[test]
    fn a_stale_measure_holds_nothing_back() {
        let mut a = Admission::default();
        let t = feed(&mut a, Instant::now(), 400, 2 * MS);
        a.background(t);
        let t = feed(&mut a, t, 200, 50 * MS);
        assert!(a.background(t) > Duration::ZERO);
        // No client request for seconds: nothing to protect.
        assert_eq!(a.background(t + 2 * STALE), Duration::ZERO);
    }

    #[test]
    fn requests_count_as_quiet_again_a_while_after_background_work() {
        let mut a = Admission::default();
        let t = feed(&mut a, Instant::now(), 400, 2 * MS);
        a.background(t);
        let later = t + QUIET_AFTER;
        // Clients are slower now for good (a heavier load, no background):
        // the quiet measure follows, and background work may go again.
        let t = feed(&mut a, later, 2000, 8 * MS);
        assert_eq!(a.background(t), Duration::ZERO);
    }
}

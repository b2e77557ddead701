//! Admission control for background work, as Dynamo §6.5 does it: before
//! each step of a background task (a partition chunk served or handed
//! over), look at how foreground requests have fared lately, and hold the
//! step back while they are much slower than they are without background
//! work.
//!
//! A rate limit alone cannot do this: the rate a node can spare depends on
//! how busy its clients keep it, which the operator cannot know in advance.
//! Here the node measures it. Client latencies are summed in buckets of
//! [`BUCKET`] of wall-clock time. The *recent* latency is the mean over the
//! last few buckets; the *quiet* latency is a moving average over the
//! buckets in which no background step had run for a while, some seconds
//! of them. A step waits, in proportion to the overshoot, while the recent
//! latency exceeds a target factor (by default [`TARGET`]) times the quiet
//! one.
//!
//! Buckets of time rather than a weight per request, so that both measures
//! span the same time whatever the request rate: weighted per request, a
//! node serving 1,700 requests a second had a "quiet" figure made of its
//! last 60 ms, which one stall moved by a factor of several. Means rather
//! than tails: a tail needs thousands of samples to estimate, which a small
//! node sees only over seconds, and background work raises the mean first.
//!
//! The clock is the caller's, as in [`crate::pace`].

use std::time::{Duration, Instant};

/// How much slower than quiet clients may get before background work
/// waits, by default.
pub const TARGET: f64 = 1.5;
/// The span of one bucket of client latencies.
pub const BUCKET: Duration = Duration::from_millis(100);
/// Closed buckets the recent latency is taken over (with the open one).
const RECENT_BUCKETS: usize = 3;
/// Requests the recent latency needs before it says anything.
const MIN_RECENT: u64 = 20;
/// Weight of a full quiet bucket in the quiet average: some 5 s of them.
const QUIET_WEIGHT: f64 = 0.02;
/// A quiet bucket with fewer requests than this weighs less in proportion,
/// so a bucket of one odd request cannot move the average like a full one.
const FULL_BUCKET: u64 = 20;
/// Quiet buckets and requests the quiet average needs before it is trusted.
const MIN_QUIET_BUCKETS: u64 = 20;
const MIN_QUIET: u64 = 200;
/// Time after a background step before requests count as quiet again.
const QUIET_AFTER: Duration = Duration::from_secs(3);
/// Recent buckets older than this say nothing (no clients lately).
const STALE: Duration = Duration::from_secs(1);
/// The wait per unit of overshoot, and the most a step waits.
const WAIT_PER_OVERSHOOT: Duration = Duration::from_millis(40);
const MAX_WAIT: Duration = Duration::from_millis(250);

/// Client latencies that finished within one span of time.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    start: Instant,
    /// Sum of the latencies, in seconds.
    sum: f64,
    requests: u64,
}

/// The quiet average and how much went into it.
#[derive(Clone, Copy, Debug)]
struct Quiet {
    /// Mean latency, in seconds.
    mean: f64,
    buckets: u64,
    requests: u64,
}

/// The measure of foreground latency background steps are admitted by.
#[derive(Clone, Debug)]
pub struct Admission {
    /// Clients may be this many times slower than quiet (`None`: off).
    target: Option<f64>,
    /// The bucket requests are added to now.
    open: Option<Bucket>,
    /// The last closed buckets, oldest first.
    recent: [Option<Bucket>; RECENT_BUCKETS],
    quiet: Option<Quiet>,
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
            open: None,
            recent: [None; RECENT_BUCKETS],
            quiet: None,
            background_at: None,
        }
    }

    /// A client request finished at `now` after `latency`.
    pub fn observe(&mut self, now: Instant, latency: Duration) {
        self.roll(now);
        let bucket = self.open.get_or_insert(Bucket {
            start: now,
            sum: 0.0,
            requests: 0,
        });
        bucket.sum += latency.as_secs_f64();
        bucket.requests = bucket.requests.saturating_add(1);
    }

    /// A background step wants to run at `now`: how long it should wait.
    pub fn background(&mut self, now: Instant) -> Duration {
        self.roll(now);
        self.background_at = Some(now);
        let (Some(target), Some(recent), Some(quiet)) = (self.target, self.recent_mean(now), self.quiet) else {
            return Duration::ZERO;
        };
        if quiet.buckets < MIN_QUIET_BUCKETS || quiet.requests < MIN_QUIET || quiet.mean <= 0.0 {
            return Duration::ZERO;
        }
        let overshoot = recent / (target * quiet.mean);
        if overshoot <= 1.0 {
            return Duration::ZERO;
        }
        WAIT_PER_OVERSHOOT.mul_f64(overshoot).min(MAX_WAIT)
    }

    /// The recent and quiet latencies, for `/status`.
    pub fn averages(&self, now: Instant) -> (Option<Duration>, Option<Duration>) {
        (
            self.recent_mean(now).map(Duration::from_secs_f64),
            self.quiet.map(|q| Duration::from_secs_f64(q.mean)),
        )
    }

    /// Close the open bucket if its span is over at `now`: it joins the
    /// recent ones and, if no background step ran in or shortly before it,
    /// the quiet average.
    fn roll(&mut self, now: Instant) {
        let Some(open) = self.open else { return };
        if now.saturating_duration_since(open.start) < BUCKET {
            return;
        }
        self.open = None;
        self.recent.rotate_left(1);
        self.recent[RECENT_BUCKETS - 1] = Some(open);
        let quiet = self
            .background_at
            .is_none_or(|t| open.start.saturating_duration_since(t) >= QUIET_AFTER);
        if !quiet || open.requests == 0 {
            return;
        }
        let mean = open.sum / open.requests as f64;
        self.quiet = Some(match self.quiet {
            None => Quiet {
                mean,
                buckets: 1,
                requests: open.requests,
            },
            Some(q) => {
                // A plain mean of the first buckets, so the first one
                // does not linger; a moving average after.
                let weight = (1.0 / (q.buckets + 1) as f64).max(QUIET_WEIGHT)
                    * (open.requests.min(FULL_BUCKET) as f64 / FULL_BUCKET as f64);
                Quiet {
                    mean: q.mean + weight * (mean - q.mean),
                    buckets: q.buckets.saturating_add(1),
                    requests: q.requests.saturating_add(open.requests),
                }
            }
        });
    }

    /// Mean latency, in seconds, over the buckets of the last [`STALE`]
    /// that are among the recent ones, if they hold enough requests.
    fn recent_mean(&self, now: Instant) -> Option<f64> {
        let (sum, requests) = self
            .recent
            .iter()
            .flatten()
            .chain(self.open.iter())
            .filter(|b| now.saturating_duration_since(b.start) <= STALE)
            .fold((0.0, 0u64), |(s, n), b| (s + b.sum, n.saturating_add(b.requests)));
        (requests >= MIN_RECENT).then(|| sum / requests as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    /// Requests of `latency` each, `every` apart, for `span` from `start`.
    fn feed(a: &mut Admission, start: Instant, span: Duration, every: Duration, latency: Duration) -> Instant {
        let mut now = start;
        while now < start + span {
            now += every;
            a.observe(now, latency);
        }
        now
    }

    /// Quiet clients at 2 ms, one request a millisecond, for 10 s.
    fn settled() -> (Admission, Instant) {
        let mut a = Admission::default();
        let t = feed(&mut a, Instant::now(), Duration::from_secs(10), MS, 2 * MS);
        (a, t)
    }

    #[test]
    fn nothing_waits_without_a_quiet_measure() {
        let mut a = Admission::default();
        let t = Instant::now();
        assert_eq!(a.background(t), Duration::ZERO);
        let t = feed(&mut a, t, 5 * BUCKET, MS, 100 * MS);
        assert_eq!(a.background(t), Duration::ZERO, "too little quiet time yet");
    }

    #[test]
    fn background_waits_while_clients_are_slower_than_quiet() {
        let (mut a, t) = settled();
        assert_eq!(a.background(t), Duration::ZERO, "clients as fast as ever");
        // Background work starts; clients slow down to 5x: steps wait.
        let t = feed(&mut a, t, 5 * BUCKET, MS, 10 * MS);
        let wait = a.background(t);
        assert!(wait > Duration::ZERO && wait <= MAX_WAIT, "{wait:?}");
        // The quiet measure does not learn from those slow requests.
        let (recent, quiet) = a.averages(t);
        assert!(quiet.is_some_and(|q| q < 3 * MS), "{quiet:?}");
        assert!(recent.is_some_and(|r| r > 8 * MS), "{recent:?}");
        // Clients recover: steps go again.
        let t = feed(&mut a, t, 5 * BUCKET, MS, 2 * MS);
        assert_eq!(a.background(t), Duration::ZERO);
    }

    #[test]
    fn the_wait_grows_with_the_overshoot_up_to_a_bound() {
        let (mut a, t) = settled();
        a.background(t);
        let t = feed(&mut a, t, 5 * BUCKET, MS, 4 * MS);
        let small = a.background(t);
        let t = feed(&mut a, t, 5 * BUCKET, MS, 40 * MS);
        let large = a.background(t);
        assert!(small < large, "{small:?} < {large:?}");
        let t = feed(&mut a, t, 5 * BUCKET, MS, 10_000 * MS);
        assert_eq!(a.background(t), MAX_WAIT);
    }

    #[test]
    fn switched_off_it_never_waits() {
        let mut a = Admission::new(None);
        let t = feed(&mut a, Instant::now(), 100 * BUCKET, MS, 2 * MS);
        a.background(t);
        let t = feed(&mut a, t, 5 * BUCKET, MS, 50 * MS);
        assert_eq!(a.background(t), Duration::ZERO);
    }

    #[test]
    fn a_stale_measure_holds_nothing_back() {
        let (mut a, t) = settled();
        a.background(t);
        let t = feed(&mut a, t, 5 * BUCKET, MS, 50 * MS);
        assert!(a.background(t) > Duration::ZERO);
        // No client request for seconds: nothing to protect.
        assert_eq!(a.background(t + 2 * STALE), Duration::ZERO);
    }

    #[test]
    fn requests_count_as_quiet_again_a_while_after_background_work() {
        let (mut a, t) = settled();
        a.background(t);
        let later = t + QUIET_AFTER;
        // Clients are slower now for good (a heavier load, no background):
        // the quiet measure follows, and background work may go again.
        let t = feed(&mut a, later, Duration::from_secs(30), MS, 8 * MS);
        assert_eq!(a.background(t), Duration::ZERO);
    }

    #[test]
    fn the_quiet_measure_spans_seconds_whatever_the_request_rate() {
        // 2,000 requests a second at 1 ms, then one stall of 100 ms
        // requests for a bucket (a flush), then 1 ms again for two: the
        // quiet figure just before a join moves by a fraction, not a
        // multiple. The same at 50 requests a second: a bucket weighs no
        // more for holding fewer requests.
        for every in [MS / 2, 20 * MS] {
            let mut a = Admission::default();
            let t = feed(&mut a, Instant::now(), 100 * BUCKET, every, MS);
            let t = feed(&mut a, t, BUCKET, every, 100 * MS);
            let t = feed(&mut a, t, 2 * BUCKET, every, MS);
            let (_, quiet) = a.averages(t);
            assert!(quiet.is_some_and(|q| q < 4 * MS), "{every:?}: {quiet:?}");
        }
    }

    #[test]
    fn a_first_odd_bucket_does_not_linger() {
        let mut a = Admission::default();
        let t = Instant::now();
        a.observe(t, 500 * MS);
        let t = feed(&mut a, t, 30 * BUCKET, MS, 2 * MS);
        let (_, quiet) = a.averages(t);
        assert!(quiet.is_some_and(|q| q < 3 * MS), "{quiet:?}");
    }

    proptest! {
        /// Clients whose latency never changes never hold background work
        /// back, whatever their rate and however often steps ask; and no
        /// step ever waits longer than the bound.
        #[test]
        fn steady_clients_are_never_held_back(
            latency_us in 1u64..100_000,
            every_us in 50u64..50_000,
            steps in proptest::collection::vec(0u64..400, 1..40),
        ) {
            let mut a = Admission::default();
            let latency = Duration::from_micros(latency_us);
            let every = Duration::from_micros(every_us);
            let mut t = feed(&mut a, Instant::now(), 100 * BUCKET, every, latency);
            for gap in steps {
                t = feed(&mut a, t, Duration::from_millis(gap), every, latency);
                prop_assert_eq!(a.background(t), Duration::ZERO);
            }
        }

        #[test]
        fn no_step_waits_past_the_bound(
            latencies in proptest::collection::vec(0u64..10_000_000, 1..2_000),
            every_us in 50u64..20_000,
        ) {
            let mut a = Admission::default();
            let mut t = Instant::now();
            for (i, l) in latencies.iter().enumerate() {
                t += Duration::from_micros(every_us);
                a.observe(t, Duration::from_micros(*l));
                if i % 7 == 0 {
                    prop_assert!(a.background(t) <= MAX_WAIT);
                }
            }
        }
    }
}

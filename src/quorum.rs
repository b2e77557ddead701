//! Counting replica answers towards a quorum (Dynamo §4.5).
//!
//! The coordinator asks N replicas and needs R (or W) of them. [`Tally`]
//! decides as early as possible: success at the R-th success, failure as soon
//! as too few replicas are left to reach it — so a request never waits for a
//! timeout it cannot win.

/// Where a quorum stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not decided yet.
    Pending,
    /// Enough replicas succeeded.
    Reached,
    /// Too many failed: it can no longer be reached.
    Failed,
}

/// Answers counted for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    needed: usize,
    asked: usize,
    ok: usize,
    failed: usize,
}

impl Tally {
    /// A quorum of `needed` out of `asked` replicas.
    pub fn new(needed: usize, asked: usize) -> Self {
        Tally {
            needed,
            asked,
            ok: 0,
            failed: 0,
        }
    }

    /// Count one answer.
    pub fn record(&mut self, success: bool) -> Outcome {
        if success {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        self.outcome()
    }

    /// The current state.
    pub fn outcome(&self) -> Outcome {
        if self.ok >= self.needed {
            Outcome::Reached
        } else if self.asked - self.failed.min(self.asked) < self.needed {
            Outcome::Failed
        } else {
            Outcome::Pending
        }
    }

    /// Successes so far.
    pub fn ok(&self) -> usize {
        self.ok
    }

    /// Replicas asked.
    pub fn asked(&self) -> usize {
        self.asked
    }

    /// Quorum size.
    pub fn needed(&self) -> usize {
        self.needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_early() {
        let mut t = Tally::new(2, 3);
        assert_eq!(t.record(false), Outcome::Pending);
        assert_eq!(t.record(false), Outcome::Failed);
        let mut t = Tally::new(2, 3);
        assert_eq!(t.record(true), Outcome::Pending);
        assert_eq!(t.record(true), Outcome::Reached);
        assert_eq!(Tally::new(3, 2).outcome(), Outcome::Failed);
    }
}

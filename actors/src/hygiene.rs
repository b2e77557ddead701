//! The hygiene actor: this node's part in clock hygiene (the core's
//! `hygiene` module has the protocol and why it is safe).
//!
//! Every tick it installs what the cluster state says into the replica's
//! [`RetireFilter`], then publishes this member's mark, confirmation and
//! drops through the gossiper. When the store must be looked at, it scans
//! it one partition at a time on the replica's scanner thread, resting as
//! long as each partition took: to find whether the store still holds a
//! version of the swept actors (hints included), and to rewrite the objects
//! that still name retired ones, so their clocks shrink.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dynamo_core::hygiene::{CleanMark, MemberHygiene};
use dynamo_core::merkle::partition_range;
use dynamo_core::{Actor as ClockActor, NodeId, Object, Retired};

use crate::gossiper::{ClusterCell, Gossiper, SetHygiene};
use crate::replica::{Replica, ReplicaError, RetireSets};
use crate::stats::NodeStats;

/// Keys rewritten per batch.
const REWRITE_BATCH: usize = 256;
/// Most batches per partition (or for the hints) in one scan: a bound, in
/// case rewrites ever failed to tidy what the scan lists.
const MAX_BATCHES: usize = 4096;
/// Ticks before the first rescan of a store that still holds swept
/// versions; the wait doubles with each such scan, up to
/// [`MAX_RESCAN_TICKS`]: a retired node's versions that no later write
/// supersedes stay, and need not be counted often.
const RESCAN_TICKS: u32 = 10;
/// The longest wait between rescans, in ticks.
const MAX_RESCAN_TICKS: u32 = 320;

/// The hygiene actor.
pub struct Hygiene {
    me: NodeId,
    interval: Duration,
    cell: Arc<ClusterCell>,
    replica: Replica,
    gossiper: Addr<Gossiper>,
    stats: Arc<NodeStats>,
    /// The store held no version of these actors when last scanned, and
    /// the dirt count has stayed at this since.
    baseline: Option<(BTreeSet<ClockActor>, u64)>,
    /// The retired sets every stored object has been rewritten by.
    tidied: Retired,
    scanning: bool,
    last_scan: Option<Instant>,
    /// Ticks to wait before the next rescan of a store found dirty.
    rescan_ticks: u32,
}

impl Hygiene {
    /// The hygiene actor of node `me`, looking every `interval`.
    pub fn new(
        me: NodeId,
        interval: Duration,
        cell: Arc<ClusterCell>,
        replica: Replica,
        gossiper: Addr<Gossiper>,
        stats: Arc<NodeStats>,
    ) -> Self {
        Hygiene {
            me,
            interval,
            cell,
            replica,
            gossiper,
            stats,
            baseline: None,
            tidied: Retired::default(),
            scanning: false,
            last_scan: None,
            rescan_ticks: RESCAN_TICKS,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let state = self.cell.get();
        let Some(me) = state.member(&self.me) else { return };
        let filter = self.replica.retire();
        // Claim nothing about a view the replica does not apply yet (the
        // gossiper installs a view's sets just before publishing it): every
        // write after a claim must be filtered and counted by its sets.
        let installed = filter.sets();
        if *installed != RetireSets::of(&state) {
            return;
        }
        let (retired, sweeping) = (&installed.retired, &installed.sweeping);
        if let Some((actors, dirt)) = &self.baseline {
            if filter.dirt() != *dirt || !sweeping.is_subset(actors) {
                self.baseline = None;
            }
        }
        // A member drops a superseded actor's copies once its filter does
        // and its last scan has rewritten the store (hints too) by the same
        // sets: a copy that landed before the news is gone by then.
        let mut hygiene = MemberHygiene {
            clean: None,
            confirmed: me.hygiene.confirmed,
            drops: if *retired == self.tidied {
                state.latest_superseded()
            } else {
                me.hygiene.drops
            },
        };
        if let (Some((_, dirt)), false) = (&self.baseline, sweeping.is_empty()) {
            let mark = CleanMark {
                sweep: state.sweep.id,
                generation: me.generation,
                dirt: *dirt,
            };
            // Still clean now, after seeing the claimant's round: the
            // answer the sweep's snapshot rests on.
            if state.confirmation_due(&self.me, &mark) {
                hygiene.confirmed = state.sweep.id;
            }
            hygiene.clean = Some(mark);
        }
        if hygiene != me.hygiene {
            self.gossiper.do_send(SetHygiene(hygiene));
        }

        // The sets only grow (an actor moves from superseded to forgotten),
        // so any difference is something new to rewrite by.
        let untidy = *retired != self.tidied;
        let rescan_due = self
            .last_scan
            .is_none_or(|t| t.elapsed() >= self.interval * self.rescan_ticks);
        let must_look = !sweeping.is_empty() && self.baseline.is_none() && rescan_due;
        if !self.scanning && (must_look || untidy) {
            self.scan(ctx, installed, state.ring.partitions());
        }
    }

    /// Scan the whole store for what `sets` names.
    fn scan(&mut self, ctx: &mut Context<Self>, sets: Arc<RetireSets>, q: u32) {
        self.scanning = true;
        let filter = self.replica.retire().clone();
        let dirt = filter.dirt();
        let replica = self.replica.clone();
        let stats = self.stats.clone();
        let look = sets.clone();
        let work = async move {
            let (mut minted, mut rewritten) = (0u64, 0u64);
            for p in 0..q {
                let started = Instant::now();
                let (from, to) = partition_range(p, q);
                let mut first = true;
                for _ in 0..MAX_BATCHES {
                    let found = replica.hygiene_scan(from, to, look.clone(), REWRITE_BATCH).await?;
                    if first {
                        minted += found.minted;
                        first = false;
                    }
                    let n = found.untidy.len();
                    if n == 0 {
                        break;
                    }
                    // An empty object merges into nothing: the replica
                    // rewrites what it holds, tidied.
                    replica
                        .merge_many(found.untidy.into_iter().map(|k| (k, Object::empty())).collect())
                        .await?;
                    NodeStats::add(&stats.hygiene_rewrites, n as u64);
                    rewritten += n as u64;
                    if n < REWRITE_BATCH {
                        break;
                    }
                }
                // Half the scanner's time at most, whatever the store size,
                // and none while clients are slow.
                tokio::time::sleep(started.elapsed()).await;
                stats.foreground.admit().await;
            }
            let mut first = true;
            for _ in 0..MAX_BATCHES {
                let (found, untidy) = replica.hygiene_scan_hints(look.clone(), REWRITE_BATCH).await?;
                if first {
                    minted += found;
                    first = false;
                }
                let n = untidy.len();
                for (owner, key) in untidy {
                    replica.merge(key, Object::empty(), Some(owner)).await?;
                }
                rewritten += n as u64;
                NodeStats::add(&stats.hygiene_rewrites, n as u64);
                if n < REWRITE_BATCH {
                    break;
                }
            }
            Ok::<(u64, u64), ReplicaError>((minted, rewritten))
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, _| {
            act.scanning = false;
            act.last_scan = Some(Instant::now());
            match result {
                Ok((minted, rewritten)) => {
                    if rewritten > 0 {
                        log::info!(
                            "clock hygiene: {rewritten} objects rewritten without {}",
                            names(&sets.retired.forgotten)
                        );
                    }
                    act.stats.hygiene_versions_left.store(minted, Ordering::Relaxed);
                    NodeStats::bump(&act.stats.hygiene_scans);
                    act.tidied = sets.retired.clone();
                    if sets.sweeping.is_empty() {
                        return;
                    }
                    if minted == 0 && filter.dirt() == dirt {
                        log::info!(
                            "clock hygiene: this store holds no version of {}",
                            names(&sets.sweeping)
                        );
                        act.baseline = Some((sets.sweeping.clone(), dirt));
                        act.rescan_ticks = RESCAN_TICKS;
                    } else {
                        act.rescan_ticks = (act.rescan_ticks * 2).min(MAX_RESCAN_TICKS);
                        log::info!(
                            "clock hygiene: this store still holds {minted} versions of {}",
                            names(&sets.sweeping)
                        );
                    }
                }
                Err(e) => log::warn!("clock hygiene scan failed: {e}"),
            }
        }));
    }
}

/// Actors for a log line.
fn names(actors: &BTreeSet<ClockActor>) -> String {
    actors.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

impl Actor for Hygiene {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.tick(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
    }
}

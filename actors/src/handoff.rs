//! Hinted handoff: hand hints back to their owners (Dynamo §4.6).
//!
//! While an owner is down, the nodes standing in for it keep what it missed
//! as hints. Every round this actor looks for owners the failure detector
//! sees as up again and streams their hints back in bounded batches. The
//! owner merges each with DVV `sync`, so a hint never overwrites a version
//! the owner has since superseded (a hinted tombstone loses to a newer
//! value, a hinted value to a newer tombstone). A hint is dropped only after
//! the owner acknowledged storing it, and only if it did not grow meanwhile;
//! hints live in RocksDB, so both sides may restart at any point.
//!
//! Delivery runs at `handoff_hints_per_sec`, spread evenly by a [`Pacer`]
//! (Cassandra's hint throttle): an owner back after a long outage gets its
//! hints as fast as that allows, without a burst that would crowd out
//! clients.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use dynamo_core::pace::Pacer;
use dynamo_core::wire::{PeerRequest, PeerResponse};
use dynamo_core::NodeId;

use crate::failure_detector::{Liveness, LivenessCell};
use crate::gossiper::ClusterCell;
use crate::replica::Replica;
use crate::transport::Transport;

/// Hints read and sent per batch (bounds memory and in-flight calls).
const BATCH: usize = 128;

/// The owners hinted handoff is delivering to right now. Anti-entropy
/// leaves them alone meanwhile: the hints repair the same divergence at a
/// fraction of the cost (no tree walk, no fetch), the two together would
/// only crowd out clients, and the exchange after handoff closes whatever
/// the hints did not cover.
#[derive(Debug, Default)]
pub struct Delivering(Mutex<HashSet<NodeId>>);

impl Delivering {
    /// Whether hints are being handed to `node` now.
    pub fn contains(&self, node: &str) -> bool {
        self.0.lock().is_ok_and(|set| set.contains(node))
    }

    /// Mark `owner` as receiving hints until the guard is dropped.
    fn begin(self: &Arc<Self>, owner: &str) -> DeliveringGuard {
        if let Ok(mut set) = self.0.lock() {
            set.insert(owner.to_string());
        }
        DeliveringGuard {
            set: self.clone(),
            owner: owner.to_string(),
        }
    }
}

/// Ends a [`Delivering`] mark, however the delivery ends.
struct DeliveringGuard {
    set: Arc<Delivering>,
    owner: NodeId,
}

impl Drop for DeliveringGuard {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.0.lock() {
            set.remove(&self.owner);
        }
    }
}

/// The handoff actor.
pub struct Handoff {
    me: NodeId,
    interval: Duration,
    timeout: Duration,
    cluster: Arc<ClusterCell>,
    liveness: Arc<LivenessCell>,
    replica: Replica,
    transport: Rc<dyn Transport>,
    hints_per_sec: u64,
    delivering: Arc<Delivering>,
    busy: bool,
}

impl Handoff {
    /// A handoff actor looking for owners to hand hints back to every
    /// `interval`, delivering at most `hints_per_sec`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: NodeId,
        interval: Duration,
        timeout: Duration,
        hints_per_sec: u64,
        cluster: Arc<ClusterCell>,
        liveness: Arc<LivenessCell>,
        replica: Replica,
        transport: Rc<dyn Transport>,
        delivering: Arc<Delivering>,
    ) -> Self {
        Handoff {
            me,
            interval,
            timeout,
            cluster,
            liveness,
            replica,
            transport,
            hints_per_sec,
            delivering,
            busy: false,
        }
    }

    fn round(&mut self, ctx: &mut Context<Self>) {
        if self.busy || self.replica.stats_pending_hints() == 0 {
            return;
        }
        let liveness = self.liveness.get();
        let cluster = self.cluster.get();
        // Hints for removed members can never be delivered: the writes they
        // carry reached W other replicas, and those now own the data.
        let gone: Vec<NodeId> = cluster
            .removed
            .keys()
            .filter(|id| cluster.member(id).is_none())
            .cloned()
            .collect();
        let owners: Vec<(NodeId, String)> = cluster
            .members
            .values()
            .filter(|m| m.node_id != self.me)
            .filter(|m| liveness.of(&m.node_id) == Liveness::Up)
            .map(|m| (m.node_id.clone(), m.peer_addr.clone()))
            .collect();
        self.busy = true;
        let replica = self.replica.clone();
        let transport = self.transport.clone();
        let timeout = self.timeout;
        let delivering = self.delivering.clone();
        // One pacer for the round: every owner's hints share the rate.
        let mut pacer = Pacer::new(self.hints_per_sec, BATCH as u64);
        let work = async move {
            for owner in gone {
                let dropped = drop_hints(&replica, &owner).await;
                if dropped > 0 {
                    log::info!("dropped {dropped} hints for removed member {owner}");
                }
            }
            for (owner, addr) in owners {
                let started = tokio::time::Instant::now();
                let _mark = delivering.begin(&owner);
                let delivered = hand_back(&replica, transport.as_ref(), &owner, &addr, timeout, &mut pacer).await;
                if delivered > 0 {
                    log::info!(
                        "handed {delivered} hints back to {owner} in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        };
        ctx.spawn(work.into_actor(self).map(|_, act, _| act.busy = false));
    }
}

/// Deliver `owner`'s hints, paced; returns how many were acknowledged and
/// dropped. Stops at the first batch with a failure (the owner went away
/// again: the next round retries).
async fn hand_back(
    replica: &Replica,
    transport: &dyn Transport,
    owner: &str,
    addr: &str,
    timeout: Duration,
    pacer: &mut Pacer,
) -> usize {
    let mut delivered = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let batch = match replica.scan_hints(owner.to_string(), after.clone(), BATCH).await {
            Ok(batch) if !batch.is_empty() => batch,
            Ok(_) => break,
            Err(e) => {
                log::warn!("reading hints for {owner} failed: {e}");
                break;
            }
        };
        after = batch.last().map(|(k, _)| k.clone());
        let wait = pacer.delay(tokio::time::Instant::now().into_std(), batch.len() as u64);
        tokio::time::sleep(wait).await;
        // The whole batch in one call; the owner answers once every item is
        // durable, and only then are the hints dropped.
        let request = PeerRequest::ReplicateMany { items: batch.clone() };
        if !matches!(transport.call(addr, request, timeout).await, Ok(PeerResponse::Stored)) {
            log::debug!("handoff to {owner} interrupted; retrying next round");
            break;
        }
        match replica.hints_delivered(owner.to_string(), batch).await {
            Ok(dropped) => delivered += dropped,
            Err(e) => {
                log::warn!("dropping delivered hints failed: {e}");
                break;
            }
        }
    }
    delivered
}

/// Drop every hint kept for `owner` (a removed member).
async fn drop_hints(replica: &Replica, owner: &str) -> usize {
    let mut dropped = 0;
    let mut after: Option<Vec<u8>> = None;
    while let Ok(batch) = replica.scan_hints(owner.to_string(), after.take(), BATCH).await {
        // A cursor, not a rescan from the start: a hint that cannot be
        // dropped now (it grew meanwhile) must not stall the loop.
        let Some((last, _)) = batch.last() else {
            break;
        };
        after = Some(last.clone());
        match replica.hints_delivered(owner.to_string(), batch).await {
            Ok(n) => dropped += n,
            Err(e) => {
                log::warn!("dropping hints for {owner} failed: {e}");
                break;
            }
        }
    }
    dropped
}

impl Actor for Handoff {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| act.round(ctx));
    }
}

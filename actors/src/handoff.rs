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

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use dynamo_core::wire::{PeerRequest, PeerResponse};
use dynamo_core::NodeId;
use futures::stream::{FuturesUnordered, StreamExt};

use crate::failure_detector::{Liveness, LivenessCell};
use crate::gossiper::ClusterCell;
use crate::replica::Replica;
use crate::transport::Transport;

/// Hints read and sent per batch (bounds memory and in-flight calls).
const BATCH: usize = 64;
/// Hints handed back per owner per round, so one round stays short.
const ROUND_LIMIT: usize = 4096;

/// The handoff actor.
pub struct Handoff {
    me: NodeId,
    interval: Duration,
    timeout: Duration,
    cluster: Arc<ClusterCell>,
    liveness: Arc<LivenessCell>,
    replica: Replica,
    transport: Rc<dyn Transport>,
    busy: bool,
}

impl Handoff {
    /// A handoff actor running a round every `interval`.
    pub fn new(
        me: NodeId,
        interval: Duration,
        timeout: Duration,
        cluster: Arc<ClusterCell>,
        liveness: Arc<LivenessCell>,
        replica: Replica,
        transport: Rc<dyn Transport>,
    ) -> Self {
        Handoff {
            me,
            interval,
            timeout,
            cluster,
            liveness,
            replica,
            transport,
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
        let work = async move {
            for owner in gone {
                let dropped = drop_hints(&replica, &owner).await;
                if dropped > 0 {
                    log::info!("dropped {dropped} hints for removed member {owner}");
                }
            }
            for (owner, addr) in owners {
                let delivered = hand_back(&replica, transport.as_ref(), &owner, &addr, timeout).await;
                if delivered > 0 {
                    log::info!("handed {delivered} hints back to {owner}");
                }
            }
        };
        ctx.spawn(work.into_actor(self).map(|_, act, _| act.busy = false));
    }
}

/// Deliver up to [`ROUND_LIMIT`] of `owner`'s hints; returns how many were
/// acknowledged and dropped. Stops at the first batch with a failure.
async fn hand_back(replica: &Replica, transport: &dyn Transport, owner: &str, addr: &str, timeout: Duration) -> usize {
    let mut delivered = 0;
    let mut after: Option<Vec<u8>> = None;
    while delivered < ROUND_LIMIT {
        let batch = match replica.scan_hints(owner.to_string(), after.clone(), BATCH).await {
            Ok(batch) if !batch.is_empty() => batch,
            Ok(_) => break,
            Err(e) => {
                log::warn!("reading hints for {owner} failed: {e}");
                break;
            }
        };
        after = batch.last().map(|(k, _)| k.clone());
        let mut calls: FuturesUnordered<_> = batch
            .into_iter()
            .map(|(key, object)| {
                let request = PeerRequest::Replicate {
                    key: key.clone(),
                    object: object.clone(),
                    hint_for: None,
                };
                let call = transport.call(addr, request, timeout);
                async move { (key, object, call.await) }
            })
            .collect();
        let mut failed = false;
        while let Some((key, object, answer)) = calls.next().await {
            if !matches!(answer, Ok(PeerResponse::Stored)) {
                failed = true;
                continue;
            }
            match replica.hint_delivered(owner.to_string(), key, object).await {
                Ok(true) => delivered += 1,
                Ok(false) => {}
                Err(e) => log::warn!("dropping a delivered hint failed: {e}"),
            }
        }
        if failed {
            log::debug!("handoff to {owner} interrupted; retrying next round");
            break;
        }
    }
    delivered
}

/// Drop every hint kept for `owner` (a removed member).
async fn drop_hints(replica: &Replica, owner: &str) -> usize {
    let mut dropped = 0;
    while let Ok(batch) = replica.scan_hints(owner.to_string(), None, BATCH).await {
        if batch.is_empty() {
            break;
        }
        for (key, object) in batch {
            if let Ok(true) = replica.hint_delivered(owner.to_string(), key, object).await {
                dropped += 1;
            }
        }
        if dropped >= ROUND_LIMIT {
            break;
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

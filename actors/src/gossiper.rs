//! The gossiper: spreads membership and the ring.
//!
//! Every `gossip_interval_ms` the node bumps its own heartbeat version and
//! exchanges its whole [`ClusterState`] with one random member (push-pull,
//! so views converge in O(log n) rounds), and with any seed that is not yet
//! a member — that is how nodes started with each other as seeds form one
//! cluster. Merging is the core's pure [`ClusterState::merge`]; the claimant
//! rebalances the ring when the active members change. Whenever the cluster's
//! shape changes, the new view is persisted (so a restarted node comes back
//! with its membership and ring) and published in a [`ClusterCell`] that
//! coordinators on every thread read.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use dynamo_core::membership::ClusterState;
use dynamo_core::wire::{PeerRequest, PeerResponse};
use dynamo_core::NodeId;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::failure_detector::{FailureDetector, Heartbeat};
use crate::replica::Replica;
use crate::transport::Transport;

/// Metadata name under which the cluster state is persisted.
pub const CLUSTER_META: &str = "cluster";

/// A peer's gossip: merge it and answer with ours.
#[derive(Message)]
#[rtype(result = "ClusterState")]
pub struct GossipSyn(pub ClusterState);

/// Ask for the current view (for `/status`).
#[derive(Message)]
#[rtype(result = "ClusterView")]
pub struct GetView;

/// The latest cluster view, shared by the gossiper (writer) and every
/// coordinator (readers) across threads.
#[derive(Debug)]
pub struct ClusterCell(std::sync::RwLock<Arc<ClusterState>>);

impl ClusterCell {
    /// A cell holding `state`.
    pub fn new(state: ClusterState) -> Arc<ClusterCell> {
        Arc::new(ClusterCell(std::sync::RwLock::new(Arc::new(state))))
    }

    /// The current view.
    pub fn get(&self) -> Arc<ClusterState> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn set(&self, state: ClusterState) {
        *self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(state);
    }
}

/// The gossiper's view, for dashboards.
#[derive(Clone, Debug)]
pub struct ClusterView {
    /// Members and ring.
    pub state: Arc<ClusterState>,
}

/// The gossiper actor.
pub struct Gossiper {
    me: NodeId,
    n: usize,
    state: ClusterState,
    seeds: Vec<String>,
    interval: Duration,
    transport: Rc<dyn Transport>,
    replica: Replica,
    rng: StdRng,
    cell: Arc<ClusterCell>,
    detector: Addr<FailureDetector>,
}

impl Gossiper {
    /// A gossiper for node `me` starting from `state`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: NodeId,
        n: usize,
        state: ClusterState,
        seeds: Vec<String>,
        interval: Duration,
        transport: Rc<dyn Transport>,
        replica: Replica,
        rng: StdRng,
        cell: Arc<ClusterCell>,
        detector: Addr<FailureDetector>,
    ) -> Self {
        Gossiper {
            me,
            n,
            state,
            seeds,
            interval,
            transport,
            replica,
            rng,
            cell,
            detector,
        }
    }

    /// What a change must touch to be worth persisting and announcing:
    /// heartbeats alone are not.
    fn shape(state: &ClusterState) -> Vec<u8> {
        let members: Vec<_> = state
            .members
            .values()
            .map(|m| (&m.node_id, m.generation, m.state, &m.peer_addr, &m.http_addr, m.weight))
            .collect();
        postcard::to_allocvec(&(state.ring.version, state.ring.owners(), members)).unwrap_or_default()
    }

    /// Merge a view and react to what changed.
    fn absorb(&mut self, other: &ClusterState) {
        let before = Self::shape(&self.state);
        for (id, theirs) in &other.members {
            let newer = self
                .state
                .member(id)
                .is_none_or(|ours| (theirs.generation, theirs.version) > (ours.generation, ours.version));
            if newer {
                self.detector.do_send(Heartbeat {
                    node: id.clone(),
                    addr: theirs.peer_addr.clone(),
                });
            }
        }
        // Someone remembers a later incarnation of this node (its data dir
        // was wiped, or its clock went back): outrank it, or our heartbeats
        // would lose to the stale entry and we would look dead.
        let ours = self.state.member(&self.me).map(|m| (m.generation, m.version));
        if let (Some(ours), Some(theirs)) = (ours, other.member(&self.me)) {
            if (theirs.generation, theirs.version) > ours {
                let generation = theirs.generation + 1;
                if let Some(me) = self.state.members.get_mut(&self.me) {
                    log::info!("a newer entry for this node was gossiped; taking generation {generation}");
                    me.generation = generation;
                    me.version = 1;
                }
            }
        }
        self.state.merge(other);
        self.state.claim(&self.me, self.n);
        if Self::shape(&self.state) != before {
            self.announce();
        }
    }

    fn announce(&mut self) {
        log::info!(
            "cluster view changed: {} members, ring version {}",
            self.state.members.len(),
            self.state.ring.version
        );
        self.cell.set(self.state.clone());
        if let Ok(bytes) = postcard::to_allocvec(&self.state) {
            let replica = self.replica.clone();
            actix::spawn(async move {
                if let Err(e) = replica.put_meta(CLUSTER_META, bytes).await {
                    log::error!("persisting the cluster state failed: {e}");
                }
            });
        }
    }

    /// One gossip round.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if let Some(me) = self.state.members.get_mut(&self.me) {
            me.version += 1;
        }
        let mut targets: Vec<String> = Vec::new();
        let others: Vec<String> = self
            .state
            .members
            .values()
            .filter(|m| m.node_id != self.me && m.state != dynamo_core::membership::MemberState::Removed)
            .map(|m| m.peer_addr.clone())
            .collect();
        if let Some(peer) = others.choose(&mut self.rng) {
            targets.push(peer.clone());
        }
        for seed in &self.seeds {
            if !others.contains(seed) && !targets.contains(seed) {
                targets.push(seed.clone());
            }
        }
        for peer in targets {
            let call = self.transport.call(
                &peer,
                PeerRequest::Gossip(self.state.clone()),
                self.interval.max(Duration::from_millis(500)),
            );
            ctx.spawn(call.into_actor(self).map(|answer, act, _| match answer {
                Ok(PeerResponse::Gossip(state)) => act.absorb(&state),
                Ok(other) => log::debug!("unexpected gossip answer: {other:?}"),
                Err(e) => log::debug!("gossip round failed: {e}"),
            }));
        }
    }
}

impl Actor for Gossiper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Start every known member's clock: one that never speaks again is
        // convicted after the usual delay.
        for m in self.state.members.values() {
            self.detector.do_send(Heartbeat {
                node: m.node_id.clone(),
                addr: m.peer_addr.clone(),
            });
        }
        if self.state.claim(&self.me, self.n) {
            self.announce();
        }
        self.tick(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
    }
}

impl Handler<GossipSyn> for Gossiper {
    type Result = MessageResult<GossipSyn>;
    fn handle(&mut self, msg: GossipSyn, _: &mut Self::Context) -> Self::Result {
        self.absorb(&msg.0);
        MessageResult(self.state.clone())
    }
}

impl Handler<GetView> for Gossiper {
    type Result = MessageResult<GetView>;
    fn handle(&mut self, _: GetView, _: &mut Self::Context) -> Self::Result {
        MessageResult(ClusterView {
            state: Arc::new(self.state.clone()),
        })
    }
}

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
use dynamo_core::hygiene::MemberHygiene;
use dynamo_core::membership::{ClusterState, MemberState};
use dynamo_core::wire::{PeerRequest, PeerResponse};
use dynamo_core::NodeId;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::failure_detector::{FailureDetector, Heartbeat};
use crate::replica::{Replica, RetireSets};
use crate::transport::Transport;

/// Gossip rounds a founding claimant waits for unheard seeds before it
/// founds the cluster with the members it knows.
const FOUNDING_PATIENCE: u64 = 30;

/// Metadata name under which the cluster state is persisted.
pub const CLUSTER_META: &str = "cluster";

/// A peer's gossip: merge it and answer with ours.
#[derive(Message)]
#[rtype(result = "ClusterState")]
pub struct GossipSyn(pub ClusterState);

/// This node has pulled every partition of target ring `0`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetReady(pub u64);

/// This member's new part in clock hygiene (from the hygiene actor).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetHygiene(pub MemberHygiene);

/// Why a membership command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// No such member.
    #[error("no member {0}")]
    UnknownMember(String),
    /// The command names this node where it must not.
    #[error("{0}")]
    NotAllowed(String),
    /// The command conflicts with the cluster's state.
    #[error("{0}")]
    Conflict(String),
}

/// Start handing this node's partitions over, then leave (`/admin/leave`).
#[derive(Message)]
#[rtype(result = "Result<(), MembershipError>")]
pub struct Leave;

/// Remove a member that is gone for good (`/admin/remove/{node}`).
#[derive(Message)]
#[rtype(result = "Result<(), MembershipError>")]
pub struct Remove(pub NodeId);

/// This leaving node has handed everything over: record its removal, tell
/// every member, and stop the process (exit 0).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaveComplete;

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
    /// Set once a leave has completed: the node is on its way out.
    leaving_done: bool,
    /// Gossip rounds so far.
    rounds: u64,
    /// Where the process learns it must exit, and with which code.
    exit: Arc<tokio::sync::watch::Sender<Option<i32>>>,
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
        exit: Arc<tokio::sync::watch::Sender<Option<i32>>>,
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
            leaving_done: false,
            rounds: 0,
            exit,
        }
    }

    /// What a change must touch to be worth persisting and announcing:
    /// heartbeats alone are not.
    fn shape(state: &ClusterState) -> Vec<u8> {
        let members: Vec<_> = state
            .members
            .values()
            .map(|m| {
                (
                    &m.node_id,
                    m.generation,
                    m.state,
                    &m.peer_addr,
                    &m.http_addr,
                    m.weight,
                    m.ready_for,
                    &m.hygiene,
                )
            })
            .collect();
        postcard::to_allocvec(&(&state.ring, &state.target, &state.removed, &state.sweep, members)).unwrap_or_default()
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
                let generation = theirs.generation.saturating_add(1);
                if let Some(me) = self.state.members.get_mut(&self.me) {
                    log::info!("a newer entry for this node was gossiped; taking generation {generation}");
                    me.generation = generation;
                    me.version = 1;
                }
            }
        }
        self.state.merge(other);
        self.claim();
        if Self::shape(&self.state) != before {
            self.announce();
        }
        self.check_removed();
    }

    /// The claimant's move (see [`ClusterState::claim`]), except that a new
    /// cluster's first ring waits until every seed has been heard from (or
    /// [`FOUNDING_PATIENCE`] rounds passed), so nodes started together
    /// found one ring with all of them instead of growing it node by node.
    fn claim(&mut self) -> bool {
        if self.state.ring.version == 0 && self.rounds < FOUNDING_PATIENCE {
            let known: Vec<&str> = self.state.members.values().map(|m| m.peer_addr.as_str()).collect();
            if !self.seeds.iter().all(|s| known.contains(&s.as_str())) {
                return false;
            }
        }
        let claimed = self.state.claim(&self.me, self.n);
        if self.state.claimant().map(String::as_str) != Some(self.me.as_str()) {
            return claimed;
        }
        let before = self.state.retired();
        let swept = self.state.sweep_step(&self.me);
        if swept {
            let after = self.state.retired();
            for actor in after.superseded.difference(&before.superseded) {
                log::info!("clock hygiene: no version of {actor} is left on any member; late copies are dropped");
            }
            for actor in after.forgotten.difference(&before.forgotten) {
                log::info!("clock hygiene: every member drops {actor}'s versions; its entries leave the clocks");
            }
        }
        claimed || swept
    }

    /// Change this node's own entry (and bump its version so it spreads).
    fn update_me(&mut self, change: impl FnOnce(&mut dynamo_core::membership::Member)) {
        if let Some(me) = self.state.members.get_mut(&self.me) {
            change(me);
            me.version = me.version.saturating_add(1);
        }
        self.claim();
        self.announce();
    }

    /// Stop if gossip says this incarnation was removed from the cluster.
    fn check_removed(&self) {
        if self.state.member(&self.me).is_none() && !self.leaving_done {
            log::error!("this node was removed from the cluster; wipe its data dir to join again");
            self.exit.send_replace(Some(1));
        }
    }

    fn announce(&mut self) {
        log::info!(
            "cluster view changed: {} members, ring version {}",
            self.state.members.len(),
            self.state.ring.version
        );
        // The replica applies clock hygiene's sets from now on, before any
        // other actor sees (and claims anything about) this view.
        self.replica.retire().install(RetireSets::of(&self.state));
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
        self.rounds += 1;
        if self.state.ring.version == 0 && self.claim() {
            self.announce();
        }
        if let Some(me) = self.state.members.get_mut(&self.me) {
            me.version = me.version.saturating_add(1);
        }
        let mut targets: Vec<String> = Vec::new();
        let others: Vec<String> = self
            .state
            .members
            .values()
            .filter(|m| m.node_id != self.me)
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
        if self.claim() {
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

impl Handler<SetReady> for Gossiper {
    type Result = ();
    fn handle(&mut self, msg: SetReady, _: &mut Self::Context) {
        if self.state.member(&self.me).is_some_and(|m| m.ready_for < msg.0) {
            log::info!("all partitions of ring version {} pulled; ready", msg.0);
            self.update_me(|me| me.ready_for = msg.0);
        }
    }
}

impl Handler<SetHygiene> for Gossiper {
    type Result = ();
    fn handle(&mut self, msg: SetHygiene, _: &mut Self::Context) {
        if self.state.member(&self.me).is_some_and(|m| m.hygiene != msg.0) {
            self.update_me(|me| me.hygiene = msg.0);
        }
    }
}

impl Handler<Leave> for Gossiper {
    type Result = Result<(), MembershipError>;
    fn handle(&mut self, _: Leave, _: &mut Self::Context) -> Self::Result {
        let active = self.state.active_weights();
        let Some(me) = self.state.member(&self.me) else {
            return Err(MembershipError::Conflict("this node is no longer a member".into()));
        };
        if me.state == MemberState::Leaving {
            return Ok(());
        }
        if active.len() <= 1 {
            return Err(MembershipError::Conflict(
                "the last member of a cluster cannot leave it".into(),
            ));
        }
        log::info!("leaving the cluster: handing partitions over");
        self.update_me(|me| me.state = MemberState::Leaving);
        Ok(())
    }
}

impl Handler<Remove> for Gossiper {
    type Result = Result<(), MembershipError>;
    fn handle(&mut self, msg: Remove, _: &mut Self::Context) -> Self::Result {
        if msg.0 == self.me {
            return Err(MembershipError::NotAllowed(
                "a node cannot remove itself; use leave".into(),
            ));
        }
        if !self.state.remove(&msg.0) {
            return Err(MembershipError::UnknownMember(msg.0));
        }
        log::info!("member {} removed; its partitions go to the others", msg.0);
        self.claim();
        self.announce();
        Ok(())
    }
}

impl Handler<LeaveComplete> for Gossiper {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: LeaveComplete, _: &mut Self::Context) -> Self::Result {
        self.leaving_done = true;
        self.state.remove(&self.me);
        self.announce();
        // Tell every member directly (bounded by the gossip timeout), so the
        // departure is known before this process is gone.
        let peers: Vec<String> = self.state.members.values().map(|m| m.peer_addr.clone()).collect();
        let calls: Vec<_> = peers
            .iter()
            .map(|p| {
                self.transport
                    .call(p, PeerRequest::Gossip(self.state.clone()), Duration::from_secs(2))
            })
            .collect();
        Box::pin(futures::future::join_all(calls).into_actor(self).map(|_, act, _| {
            log::info!("left the cluster; stopping");
            act.exit.send_replace(Some(0));
        }))
    }
}

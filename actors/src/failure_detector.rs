//! The failure detector: which peers are up, suspect or down.
//!
//! Two signals, as in Dynamo §4.8: heartbeats that gossip carries (a
//! member's version advancing), fed to a phi accrual detector per peer; and
//! local evidence — a peer that did not answer a request in time is routed
//! around at once and probed in the background until it answers again, so a
//! crashed or paused (SIGSTOP) node costs at most one timeout per
//! coordinator. The verdicts are published in a [`LivenessCell`] that every
//! coordinator reads without messaging this actor.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dynamo_core::phi::{PhiAccrual, PhiConfig};
use dynamo_core::wire::{PeerRequest, PeerResponse};
use dynamo_core::NodeId;

use crate::transport::Transport;

/// φ at which a peer is convicted (Cassandra's default `phi_convict_threshold`).
pub const PHI_CONVICT: f64 = 8.0;
/// φ from which a peer is reported `suspect` (still tried, per SPEC §2).
pub const PHI_SUSPECT: f64 = 3.0;

/// A peer's state as this node judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Heartbeats arrive on time.
    Up,
    /// Heartbeats are late; requests still go to it.
    Suspect,
    /// Convicted, or did not answer a request: skipped by preference lists.
    Down,
}

impl Liveness {
    /// The word `/status` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Up => "up",
            Liveness::Suspect => "suspect",
            Liveness::Down => "down",
        }
    }
}

/// What coordinators and `/status` read.
#[derive(Clone, Debug, Default)]
pub struct LivenessView {
    /// Verdict per peer; a node absent here is treated as up.
    pub status: HashMap<NodeId, Liveness>,
    /// When each peer's last heartbeat arrived.
    pub last_heard: HashMap<NodeId, Instant>,
}

impl LivenessView {
    /// Whether requests may be sent to `node`.
    pub fn is_live(&self, node: &str) -> bool {
        self.status.get(node) != Some(&Liveness::Down)
    }

    /// The verdict on `node`.
    pub fn of(&self, node: &str) -> Liveness {
        self.status.get(node).copied().unwrap_or(Liveness::Up)
    }
}

/// The shared, published verdicts.
#[derive(Debug, Default)]
pub struct LivenessCell(RwLock<Arc<LivenessView>>);

impl LivenessCell {
    /// The current verdicts.
    pub fn get(&self) -> Arc<LivenessView> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, view: LivenessView) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(view);
    }
}

/// Gossip saw `node`'s heartbeat advance.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Heartbeat {
    /// The peer.
    pub node: NodeId,
    /// Its peer address (to probe it when needed).
    pub addr: String,
}

/// A coordinator's call to `node` failed or timed out.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unresponsive {
    /// The peer.
    pub node: NodeId,
    /// Its peer address.
    pub addr: String,
}

/// The failure detector actor.
pub struct FailureDetector {
    me: NodeId,
    config: PhiConfig,
    interval: Duration,
    epoch: Instant,
    detectors: HashMap<NodeId, PhiAccrual>,
    addrs: HashMap<NodeId, String>,
    /// Peers that failed a request and have not answered a probe since.
    unresponsive: HashSet<NodeId>,
    probing: HashSet<NodeId>,
    transport: Rc<dyn Transport>,
    cell: Arc<LivenessCell>,
    reported: HashMap<NodeId, Liveness>,
}

impl FailureDetector {
    /// A detector for node `me`, expecting heartbeats every `interval`.
    pub fn new(me: NodeId, interval: Duration, transport: Rc<dyn Transport>, cell: Arc<LivenessCell>) -> Self {
        FailureDetector {
            me,
            config: PhiConfig::for_interval(interval.as_millis() as u64),
            interval,
            epoch: Instant::now(),
            detectors: HashMap::new(),
            addrs: HashMap::new(),
            unresponsive: HashSet::new(),
            probing: HashSet::new(),
            transport,
            cell,
            reported: HashMap::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Recompute verdicts, publish them, log changes.
    fn publish(&mut self) {
        let now = self.now_ms();
        let mut view = LivenessView::default();
        for (node, detector) in &self.detectors {
            let phi = detector.phi(now);
            let status = if self.unresponsive.contains(node) || phi >= PHI_CONVICT {
                Liveness::Down
            } else if phi >= PHI_SUSPECT {
                Liveness::Suspect
            } else {
                Liveness::Up
            };
            if self.reported.get(node) != Some(&status) {
                if self.reported.contains_key(node) || status != Liveness::Up {
                    log::info!("member {node} is {} (phi {phi:.1})", status.as_str());
                }
                self.reported.insert(node.clone(), status);
            }
            view.status.insert(node.clone(), status);
            let ago = Duration::from_millis(now.saturating_sub(detector.last_heartbeat_ms()));
            view.last_heard.insert(node.clone(), Instant::now() - ago);
        }
        self.cell.set(view);
    }

    /// Ask every unresponsive peer whether it is back.
    fn probe(&mut self, ctx: &mut Context<Self>) {
        for node in self.unresponsive.clone() {
            if self.probing.contains(&node) {
                continue;
            }
            let Some(addr) = self.addrs.get(&node).cloned() else {
                continue;
            };
            self.probing.insert(node.clone());
            let call = self
                .transport
                .call(&addr, PeerRequest::Ping, self.interval.max(Duration::from_millis(200)));
            ctx.spawn(call.into_actor(self).map(move |answer, act, _| {
                act.probing.remove(&node);
                if matches!(answer, Ok(PeerResponse::Pong)) && act.unresponsive.remove(&node) {
                    log::info!("member {node} answers again");
                    act.publish();
                }
            }));
        }
    }
}

impl Actor for FailureDetector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Re-judge several times per heartbeat interval, so a verdict lags
        // the evidence by a fraction of it.
        let tick = (self.interval / 4).max(Duration::from_millis(10));
        ctx.run_interval(tick, |act, ctx| {
            act.publish();
            act.probe(ctx);
        });
    }
}

impl Handler<Heartbeat> for FailureDetector {
    type Result = ();
    fn handle(&mut self, msg: Heartbeat, _: &mut Self::Context) {
        if msg.node == self.me {
            return;
        }
        let now = self.now_ms();
        let config = self.config;
        self.detectors
            .entry(msg.node.clone())
            .or_insert_with(|| PhiAccrual::new(config, now))
            .heartbeat(now);
        self.addrs.insert(msg.node, msg.addr);
    }
}

impl Handler<Unresponsive> for FailureDetector {
    type Result = ();
    fn handle(&mut self, msg: Unresponsive, ctx: &mut Self::Context) {
        if msg.node == self.me {
            return;
        }
        let now = self.now_ms();
        let config = self.config;
        self.detectors
            .entry(msg.node.clone())
            .or_insert_with(|| PhiAccrual::new(config, now));
        self.addrs.insert(msg.node.clone(), msg.addr);
        if self.unresponsive.insert(msg.node.clone()) {
            log::info!("member {} did not answer a request; routing around it", msg.node);
            self.publish();
            self.probe(ctx);
        }
    }
}

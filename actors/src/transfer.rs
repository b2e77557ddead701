//! Partition transfer: the data side of membership changes (Dynamo §4.9).
//!
//! While a target ring is pending, a node that gains replicas in it pulls
//! each such partition from a live current replica, in bounded chunks and
//! at a bounded rate, merging every object with DVV `sync` (so writes that
//! reach it meanwhile — coordinators send them to incoming owners too — are
//! never overwritten). When all are pulled it declares itself ready and the
//! claimant switches rings. A failed chunk is retried from where it stopped,
//! from another replica if need be; a restarted node pulls again (merging
//! is idempotent).
//!
//! Once the ring is stable, a node hands over the data of partitions it no
//! longer replicates: each key goes to the partition's live owners, and is
//! dropped here only after all of them acknowledged it and only if it did
//! not change meanwhile. A leaving node that has handed everything over and
//! holds no hints completes its leave.

use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dynamo_core::membership::{ClusterState, MemberState};
use dynamo_core::merkle::partition_range;
use dynamo_core::ring::ring_position;
use dynamo_core::storage::encode_object;
use dynamo_core::wire::{PeerRequest, PeerResponse};
use dynamo_core::NodeId;

use crate::failure_detector::{Liveness, LivenessCell, LivenessView};
use crate::gossiper::{ClusterCell, Gossiper, LeaveComplete, SetReady};
use crate::replica::Replica;
use crate::transport::Transport;

/// Keys per chunk.
const CHUNK: usize = 256;

/// A transfer in flight, for `/status`.
#[derive(Clone, Debug)]
pub struct TransferInfo {
    /// The partition.
    pub partition: u32,
    /// `pull` (gaining it) or `handover` (giving it away).
    pub kind: &'static str,
    /// The other side.
    pub peer: NodeId,
    /// Keys moved so far.
    pub keys: u64,
    /// Bytes moved so far.
    pub bytes: u64,
    /// When it started.
    pub started: Instant,
}

/// Transfers in flight, shared with the HTTP status handler.
#[derive(Debug, Default)]
pub struct TransferProgress(Mutex<Option<TransferInfo>>);

impl TransferProgress {
    /// The transfer running now, if any.
    pub fn current(&self) -> Option<TransferInfo> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, info: Option<TransferInfo>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = info;
    }

    fn add(&self, keys: u64, bytes: u64) {
        if let Some(info) = self.0.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            info.keys += keys;
            info.bytes += bytes;
        }
    }
}

/// The transfer actor.
pub struct Transfer {
    me: NodeId,
    n: usize,
    interval: Duration,
    timeout: Duration,
    cluster: Arc<ClusterCell>,
    liveness: Arc<LivenessCell>,
    replica: Replica,
    transport: Rc<dyn Transport>,
    gossiper: Addr<Gossiper>,
    progress: Arc<TransferProgress>,
    /// Partitions pulled for target ring `pulled_for`.
    pulled: BTreeSet<u32>,
    pulled_for: u64,
    handover_cursor: u32,
    busy: bool,
    leaving_reported: bool,
    keys_per_sec: u64,
}

impl Transfer {
    /// A transfer actor for node `me`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        me: NodeId,
        n: usize,
        interval: Duration,
        timeout: Duration,
        cluster: Arc<ClusterCell>,
        liveness: Arc<LivenessCell>,
        replica: Replica,
        transport: Rc<dyn Transport>,
        gossiper: Addr<Gossiper>,
        progress: Arc<TransferProgress>,
        keys_per_sec: u64,
    ) -> Self {
        Transfer {
            me,
            n,
            interval,
            timeout,
            cluster,
            liveness,
            replica,
            transport,
            gossiper,
            progress,
            pulled: BTreeSet::new(),
            pulled_for: 0,
            handover_cursor: 0,
            busy: false,
            leaving_reported: false,
            keys_per_sec: keys_per_sec.max(1),
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let cluster = self.cluster.get();
        let liveness = self.liveness.get();
        let Some(me) = cluster.member(&self.me).cloned() else {
            return;
        };
        if let Some(target) = &cluster.target {
            if self.pulled_for != target.version {
                self.pulled.clear();
                self.pulled_for = target.version;
            }
            let todo: Vec<u32> = cluster
                .partitions_to_pull(&self.me, self.n)
                .into_iter()
                .filter(|p| !self.pulled.contains(p))
                .collect();
            let Some(&partition) = todo.first() else {
                if me.ready_for < target.version {
                    self.gossiper.do_send(SetReady(target.version));
                }
                return;
            };
            let sources = sources(&cluster, &liveness, &self.me, partition, self.n);
            let job = self.job();
            self.busy = true;
            let work = async move { job.pull(partition, sources).await };
            ctx.spawn(work.into_actor(self).map(move |pulled, act, ctx| {
                act.busy = false;
                if pulled {
                    act.pulled.insert(partition);
                    // Go straight on to the next partition: the pace is set
                    // by the rate limit, not by the tick.
                    act.tick(ctx);
                }
            }));
            return;
        }

        // Stable ring: hand over partitions this node no longer keeps.
        let q = cluster.ring.partitions();
        let away: Vec<u32> = (0..q).filter(|&p| !cluster.keeps(&self.me, p, self.n)).collect();
        if away.is_empty() {
            self.maybe_complete_leave(ctx, &cluster, me.state);
            return;
        }
        let partition = away[self.handover_cursor as usize % away.len()];
        self.handover_cursor = self.handover_cursor.wrapping_add(1);
        let owners: Vec<(NodeId, String)> = cluster
            .ring
            .owners_of(partition, self.n)
            .into_iter()
            .filter_map(|o| cluster.member(&o).map(|m| (o.clone(), m.peer_addr.clone())))
            .collect();
        let all_up = owners.iter().all(|(o, _)| liveness.of(o) == Liveness::Up);
        if owners.is_empty() || !all_up {
            return;
        }
        let job = self.job();
        let leaving = me.state == MemberState::Leaving;
        self.busy = true;
        let work = async move { job.handover(partition, owners).await };
        ctx.spawn(work.into_actor(self).map(move |moved, act, ctx| {
            act.busy = false;
            if moved > 0 {
                act.tick(ctx);
                return;
            }
            if leaving {
                let cluster = act.cluster.get();
                act.maybe_complete_leave(ctx, &cluster, MemberState::Leaving);
            }
        }));
    }

    /// A leaving node that owns nothing, holds no data and no hints is done.
    fn maybe_complete_leave(&mut self, ctx: &mut Context<Self>, cluster: &ClusterState, state: MemberState) {
        if state != MemberState::Leaving || self.leaving_reported || cluster.ring.nodes().contains(&self.me) {
            return;
        }
        if self.replica.stats_pending_hints() > 0 {
            return;
        }
        let replica = self.replica.clone();
        let gossiper = self.gossiper.clone();
        self.busy = true;
        let check = async move {
            let empty = matches!(replica.scan_range(0, u128::MAX, None, 1).await, Ok((items, _)) if items.is_empty());
            if empty {
                log::info!("everything handed over; leaving");
                let _ = gossiper.send(LeaveComplete).await;
            }
            empty
        };
        ctx.spawn(check.into_actor(self).map(|done, act, _| {
            act.busy = false;
            act.leaving_reported = done;
        }));
    }

    fn job(&self) -> Job {
        Job {
            me: self.me.clone(),
            q: self.cluster.get().ring.partitions(),
            timeout: self.timeout,
            replica: self.replica.clone(),
            transport: self.transport.clone(),
            progress: self.progress.clone(),
            keys_per_sec: self.keys_per_sec,
        }
    }
}

/// Live current replicas of `partition` other than `me`, to pull from.
fn sources(
    cluster: &ClusterState,
    liveness: &LivenessView,
    me: &str,
    partition: u32,
    n: usize,
) -> Vec<(NodeId, String)> {
    cluster
        .ring
        .owners_of(partition, n)
        .into_iter()
        .filter(|o| o != me && liveness.of(o) == Liveness::Up)
        .filter_map(|o| cluster.member(&o).map(|m| (o.clone(), m.peer_addr.clone())))
        .collect()
}

impl Actor for Transfer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
    }
}

/// The IO of one transfer step, detached from the actor.
struct Job {
    me: NodeId,
    q: u32,
    timeout: Duration,
    replica: Replica,
    transport: Rc<dyn Transport>,
    progress: Arc<TransferProgress>,
    keys_per_sec: u64,
}

impl Job {
    /// Pace the work to `keys_per_sec`.
    async fn pace(&self, started: Instant, keys: u64) {
        let due = Duration::from_millis(keys * 1000 / self.keys_per_sec);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Pull `partition` from the first source that serves it completely.
    async fn pull(&self, partition: u32, sources: Vec<(NodeId, String)>) -> bool {
        if sources.is_empty() {
            return false;
        }
        let mut after: Option<(u128, Vec<u8>)> = None;
        for (peer, addr) in sources {
            let started = Instant::now();
            self.progress.set(Some(TransferInfo {
                partition,
                kind: "pull",
                peer: peer.clone(),
                keys: 0,
                bytes: 0,
                started,
            }));
            log::info!("transfer of partition {partition} from {peer}: started");
            let mut keys = 0u64;
            let mut bytes = 0u64;
            let outcome = loop {
                let request = PeerRequest::PullPartition {
                    partition,
                    q: self.q,
                    after: after.clone(),
                    limit: CHUNK as u32,
                };
                let (items, done) = match self.transport.call(&addr, request, self.timeout).await {
                    Ok(PeerResponse::Chunk { items, done }) => (items, done),
                    Ok(other) => break Err(format!("unexpected answer {other:?}")),
                    Err(e) => break Err(e.to_string()),
                };
                let count = items.len() as u64;
                let chunk_bytes: u64 = items.iter().map(|(_, o)| encode_object(o).len() as u64).sum();
                let last = items.last().map(|(key, _)| (ring_position(key), key.clone()));
                // One message per storage shard for the whole chunk.
                if let Err(e) = self.replica.merge_many(items).await {
                    break Err(e.to_string());
                }
                keys += count;
                bytes += chunk_bytes;
                self.progress.add(count, 0);
                if last.is_some() {
                    after = last;
                }
                if done {
                    break Ok(());
                }
                self.pace(started, keys).await;
            };
            match outcome {
                Ok(()) => {
                    log::info!(
                        "transfer of partition {partition} from {peer}: done, {keys} keys, {bytes} bytes in {:?}",
                        started.elapsed()
                    );
                    self.progress.set(None);
                    return true;
                }
                Err(e) => {
                    log::warn!("transfer of partition {partition} from {peer} interrupted ({e}); resuming elsewhere")
                }
            }
        }
        self.progress.set(None);
        false
    }

    /// Hand one chunk of `partition` over to its owners, dropping each key
    /// here once every owner stored it.
    async fn handover(&self, partition: u32, owners: Vec<(NodeId, String)>) -> u64 {
        let (from, to) = partition_range(partition, self.q);
        let (items, _) = match self.replica.scan_range(from, to, None, CHUNK).await {
            Ok(chunk) => chunk,
            Err(e) => {
                log::warn!("reading partition {partition} for handover failed: {e}");
                return 0;
            }
        };
        if items.is_empty() {
            return 0;
        }
        let started = Instant::now();
        let peer = owners.iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>().join(",");
        log::info!(
            "handover of partition {partition} to {peer}: {} keys (this node {} no longer replicates it)",
            items.len(),
            self.me
        );
        self.progress.set(Some(TransferInfo {
            partition,
            kind: "handover",
            peer,
            keys: 0,
            bytes: 0,
            started,
        }));
        let mut moved = 0u64;
        // The chunk in one call per owner; keys are dropped here only once
        // every owner stored all of it.
        for (_, addr) in &owners {
            let request = PeerRequest::ReplicateMany { items: items.clone() };
            if !matches!(
                self.transport.call(addr, request, self.timeout).await,
                Ok(PeerResponse::Stored)
            ) {
                self.progress.set(None);
                return 0;
            }
        }
        for (key, object) in items {
            if let Err(e) = self.replica.drop_if_unchanged(key, object).await {
                log::warn!("dropping a handed-over key failed: {e}");
                break;
            }
            moved += 1;
            self.progress.add(1, 0);
        }
        self.pace(started, moved).await;
        self.progress.set(None);
        moved
    }
}

//! Partition transfer: the data side of membership changes (Dynamo §4.9).
//!
//! While a target ring is pending, a node that gains replicas in it pulls
//! each such partition from a live current replica, in bounded chunks and
//! at a bounded rate, merging every object with DVV `sync` (so writes that
//! reach it meanwhile — coordinators send them to incoming owners too — are
//! never overwritten). Pulled chunks skip the write-ahead log (they can be
//! pulled again, like the table files Cassandra streams); when all are
//! pulled the node flushes them to disk, declares itself ready, and the
//! claimant switches rings. A failed chunk is retried from where it stopped,
//! from another replica if need be; a restarted node pulls again (merging
//! is idempotent).
//!
//! Once the ring is stable, a node hands over the data of partitions it no
//! longer replicates: each key goes to the partition's live owners, and is
//! dropped here only after all of them acknowledged it and only if it did
//! not change meanwhile. A leaving node that has handed everything over and
//! holds no hints completes its leave.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use dynamo_core::membership::{ClusterState, MemberState};
use dynamo_core::merkle::{key_digest, leaf_of_position, leaves_per_partition, partition_range, MerkleTree};
use dynamo_core::pace::Pacer;
use dynamo_core::ring::ring_position;
use dynamo_core::storage::{encode_object, encoded_len};
use dynamo_core::wire::{PeerRequest, PeerResponse, Records, MAX_AE_ITEMS};
use dynamo_core::{NodeId, Object};

use crate::failure_detector::{Liveness, LivenessCell, LivenessView};
use crate::gossiper::{ClusterCell, Gossiper, LeaveComplete, SetReady};
use crate::replica::Replica;
use crate::transport::Transport;

/// Most bytes per chunk: large enough that a round trip moves a lot, small
/// enough that the storage threads on either side are never busy with one
/// chunk for long. At low rates a chunk is 1/16 s of transfer (at least
/// 1 KiB), so the limit is kept smoothly, not in bursts.
const CHUNK_BYTES: usize = 1024 * 1024;

/// Partitions pulled at once. One: each pull already keeps a chunk in
/// flight while the last one merges, and on two cores a second pull was
/// measured slower (38 against 48 MB/s), the extra merges crowding the
/// donors' scans.
const PARALLEL_PULLS: usize = 1;

/// Pacing unit: the rate is kept in KiB, which a [`Pacer`] resolves
/// exactly at any sensible limit.
const KIB: u64 = 1024;

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

/// What a node's transfers have done and have left, for `/status`.
#[derive(Clone, Debug, Default)]
pub struct TransferSummary {
    /// The transfers running now.
    pub running: Vec<TransferInfo>,
    /// Partitions still to pull for the pending target ring.
    pub to_pull: usize,
    /// Partitions pulled for it so far, and when the first pull began.
    pub pulled: usize,
    /// When pulling for the pending target ring began.
    pub pulling_since: Option<Instant>,
    /// Partitions this node no longer replicates that may still hold data
    /// to hand over.
    pub to_hand_over: usize,
}

impl TransferSummary {
    /// Seconds until the pulls are done, at the pace so far.
    pub fn eta_s(&self) -> Option<f64> {
        let since = self.pulling_since?;
        if self.to_pull == 0 {
            return Some(0.0);
        }
        (self.pulled > 0).then(|| since.elapsed().as_secs_f64() / self.pulled as f64 * self.to_pull as f64)
    }
}

/// Transfers in flight, shared with the HTTP status handler.
#[derive(Debug, Default)]
pub struct TransferProgress(Mutex<TransferSummary>);

impl TransferProgress {
    /// The transfers running now.
    pub fn running(&self) -> Vec<TransferInfo> {
        self.summary().running
    }

    /// Everything known about this node's transfers.
    pub fn summary(&self) -> TransferSummary {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut TransferSummary)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn begin(&self, info: TransferInfo) {
        self.end(info.partition, info.kind);
        self.update(|s| s.running.push(info));
    }

    fn end(&self, partition: u32, kind: &'static str) {
        self.update(|s| s.running.retain(|t| (t.partition, t.kind) != (partition, kind)));
    }

    fn add(&self, partition: u32, kind: &'static str, keys: u64, bytes: u64) {
        self.update(|s| {
            if let Some(info) = s
                .running
                .iter_mut()
                .find(|t| (t.partition, t.kind) == (partition, kind))
            {
                info.keys += keys;
                info.bytes += bytes;
            }
        });
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
    /// Partitions being pulled now.
    pulling: BTreeSet<u32>,
    pulled_for: u64,
    pulling_since: Option<Instant>,
    /// Partitions found empty since ring `emptied_for` became current.
    emptied: BTreeSet<u32>,
    emptied_for: u64,
    handover_cursor: u32,
    busy: bool,
    leaving_reported: bool,
    /// One pacer for every pull and handover, so they share the limit.
    pacer: Rc<RefCell<Pacer>>,
    chunk_bytes: usize,
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
        bytes_per_sec: u64,
    ) -> Self {
        let kib_per_sec = bytes_per_sec.div_ceil(KIB);
        let chunk_bytes = usize::try_from(bytes_per_sec / 16)
            .unwrap_or(CHUNK_BYTES)
            .clamp(1024, CHUNK_BYTES);
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
            pulling: BTreeSet::new(),
            pulled_for: 0,
            pulling_since: None,
            emptied: BTreeSet::new(),
            emptied_for: 0,
            handover_cursor: 0,
            busy: false,
            leaving_reported: false,
            pacer: Rc::new(RefCell::new(Pacer::new(kib_per_sec, chunk_bytes as u64 / KIB))),
            chunk_bytes,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let pulls_running = !self.pulling.is_empty();
        let cluster = self.cluster.get();
        let liveness = self.liveness.get();
        let Some(me) = cluster.member(&self.me).cloned() else {
            return;
        };
        if let Some(target) = &cluster.target {
            if self.pulled_for != target.version {
                self.pulled.clear();
                self.pulled_for = target.version;
                self.pulling_since = Some(Instant::now());
            }
            let todo: Vec<u32> = cluster
                .partitions_to_pull(&self.me, self.n)
                .into_iter()
                .filter(|p| !self.pulled.contains(p))
                .collect();
            let (left, done, since) = (todo.len(), self.pulled.len(), self.pulling_since);
            self.progress.update(|s| {
                s.to_pull = left;
                s.pulled = done;
                s.pulling_since = since;
            });
            if todo.is_empty() {
                if me.ready_for < target.version {
                    // Pulled chunks skip the WAL: on disk before this node
                    // says it has them.
                    let (replica, gossiper, version) = (self.replica.clone(), self.gossiper.clone(), target.version);
                    self.busy = true;
                    let work = async move {
                        match replica.flush().await {
                            Ok(()) => gossiper.do_send(SetReady(version)),
                            Err(e) => log::warn!("flushing pulled partitions failed: {e}"),
                        }
                    };
                    ctx.spawn(work.into_actor(self).map(|(), act, _| act.busy = false));
                }
                return;
            }
            let version = target.version;
            let idle: Vec<u32> = todo.into_iter().filter(|p| !self.pulling.contains(p)).collect();
            for partition in idle {
                if self.pulling.len() >= PARALLEL_PULLS {
                    break;
                }
                let mut sources = sources(&cluster, &liveness, &self.me, partition, self.n);
                if sources.is_empty() {
                    continue;
                }
                // Successive partitions start at different replicas, so
                // the pulls running together load different donors.
                let turn = partition as usize % sources.len();
                sources.rotate_left(turn);
                let job = self.job();
                self.pulling.insert(partition);
                let work = async move { job.pull(partition, sources).await };
                ctx.spawn(work.into_actor(self).map(move |pulled, act, ctx| {
                    act.pulling.remove(&partition);
                    if pulled && act.pulled_for == version {
                        act.pulled.insert(partition);
                        // Go straight on to the next partition: the pace is
                        // set by the rate limit, not by the tick.
                        act.tick(ctx);
                    }
                }));
            }
            return;
        }

        // Stable ring: hand over partitions this node no longer keeps (once
        // pulls for a target that was dropped have stopped).
        if pulls_running {
            return;
        }
        self.progress.update(|s| {
            s.to_pull = 0;
            s.pulling_since = None;
        });
        if self.emptied_for != cluster.ring.version {
            self.emptied.clear();
            self.emptied_for = cluster.ring.version;
        }
        let q = cluster.ring.partitions();
        let away: Vec<u32> = (0..q).filter(|&p| !cluster.keeps(&self.me, p, self.n)).collect();
        let pending: Vec<u32> = away.iter().copied().filter(|p| !self.emptied.contains(p)).collect();
        let left = pending.len();
        self.progress.update(|s| s.to_hand_over = left);
        if away.is_empty() {
            self.maybe_complete_leave(ctx, &cluster, me.state);
            return;
        }
        // Partitions not yet seen empty first; then one emptied partition a
        // tick, in turn, for a write that reached this node from a
        // coordinator a ring version behind.
        let partition = match pending.first() {
            Some(&p) => p,
            None => {
                self.handover_cursor = self.handover_cursor.wrapping_add(1);
                away[self.handover_cursor as usize % away.len()]
            }
        };
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
        ctx.spawn(work.into_actor(self).map(move |handed, act, ctx| {
            act.busy = false;
            match handed {
                Handed::Moved(n) if n > 0 => {
                    act.emptied.remove(&partition);
                    act.tick(ctx);
                    return;
                }
                Handed::Empty if act.emptied.insert(partition) && left > 1 => {
                    act.tick(ctx);
                    return;
                }
                _ => {}
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
            let empty =
                matches!(replica.scan_range(0, u128::MAX, None, 1, 0).await, Ok((items, _)) if items.is_empty());
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
            pacer: self.pacer.clone(),
            chunk_bytes: self.chunk_bytes,
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
    pacer: Rc<RefCell<Pacer>>,
    chunk_bytes: usize,
}

/// Bytes a chunk of data weighs, as scans and the rate limit count them.
fn weight(items: &[(Vec<u8>, Object)]) -> u64 {
    items.iter().map(|(k, o)| (k.len() + encoded_len(o)) as u64).sum()
}

/// What a pulled chunk holds: its keys, their bytes (keys and objects, as
/// [`weight`] counts them), and its last key; an error if the donor sent a
/// chunk cut short.
fn tally(records: &Records) -> Result<(u64, u64, Option<Vec<u8>>), String> {
    let (mut keys, mut bytes, mut last) = (0, 0, None);
    for record in records.iter() {
        let (key, object) = record.map_err(|e| e.to_string())?;
        keys += 1;
        bytes += (key.len() + object.len()) as u64;
        last = Some(key);
    }
    Ok((keys, bytes, last.map(<[u8]>::to_vec)))
}

impl Job {
    /// Wait until `bytes` more may move at the transfer rate.
    async fn pace(&self, bytes: u64) {
        let wait = self.pacer.borrow_mut().delay(Instant::now(), bytes.div_ceil(KIB));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// The chunk of `partition` after `after` from the replica at `addr`.
    async fn fetch(&self, addr: &str, partition: u32, after: Option<(u128, Vec<u8>)>) -> Result<Chunk, String> {
        let request = PeerRequest::PullPartition {
            partition,
            q: self.q,
            after,
            limit: MAX_AE_ITEMS as u32,
            max_bytes: self.chunk_bytes as u32,
        };
        match self.transport.call(addr, request, self.timeout).await {
            Ok(PeerResponse::Chunk { records, done }) => Ok((records, done)),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
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
            self.progress.begin(TransferInfo {
                partition,
                kind: "pull",
                peer: peer.clone(),
                keys: 0,
                bytes: 0,
                started,
            });
            log::info!("transfer of partition {partition} from {peer}: started");
            let mut keys = 0u64;
            let mut bytes = 0u64;
            // Two stages in flight: the next chunk travels while this one is
            // merged, so neither the donor nor this node waits on the other.
            let outcome = async {
                let mut chunk = self.fetch(&addr, partition, after.clone()).await?;
                loop {
                    let (records, done) = std::mem::take(&mut chunk);
                    let (count, size, last) = tally(&records)?;
                    if let Some(key) = last {
                        after = Some((ring_position(&key), key));
                    }
                    // Objects are merged with DVV sync, one unlogged write
                    // per storage shard for the whole chunk.
                    let merge = async {
                        self.replica.merge_pulled(records).await.map_err(|e| e.to_string())?;
                        self.progress.add(partition, "pull", count, size);
                        Ok::<(), String>(())
                    };
                    if done {
                        merge.await?;
                    } else {
                        let next = async {
                            self.pace(size).await;
                            self.fetch(&addr, partition, after.clone()).await
                        };
                        let (merged, next) = futures::join!(merge, next);
                        merged?;
                        chunk = next?;
                    }
                    keys += count;
                    bytes += size;
                    if done {
                        return Ok::<(), String>(());
                    }
                }
            }
            .await;
            match outcome {
                Ok(()) => {
                    let secs = started.elapsed().as_secs_f64();
                    log::info!(
                        "transfer of partition {partition} from {peer}: done, {keys} keys, {bytes} bytes in {secs:.2} s ({:.1} MB/s)",
                        bytes as f64 / 1e6 / secs.max(1e-3)
                    );
                    self.progress.end(partition, "pull");
                    return true;
                }
                Err(e) => {
                    log::warn!("transfer of partition {partition} from {peer} interrupted ({e}); resuming elsewhere")
                }
            }
        }
        self.progress.end(partition, "pull");
        false
    }

    /// Hand one chunk of `partition` over to its owners, dropping each key
    /// here once every owner stored it. Owners are first asked what they
    /// hold (a digest per key): after a join they pulled the partition
    /// already, so usually only keys written since need to travel.
    async fn handover(&self, partition: u32, owners: Vec<(NodeId, String)>) -> Handed {
        // Background work: it waits while this node's clients are slow.
        self.replica.node_stats().foreground.admit().await;
        let (from, to) = partition_range(partition, self.q);
        let (items, _) = match self
            .replica
            .scan_range(from, to, None, MAX_AE_ITEMS, self.chunk_bytes)
            .await
        {
            Ok(chunk) => chunk,
            Err(e) => {
                log::warn!("reading partition {partition} for handover failed: {e}");
                return Handed::Failed;
            }
        };
        if items.is_empty() {
            return Handed::Empty;
        }
        let started = Instant::now();
        let peer = owners.iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>().join(",");
        log::info!(
            "handover of partition {partition} to {peer}: {} keys (this node {} no longer replicates it)",
            items.len(),
            self.me
        );
        self.progress.begin(TransferInfo {
            partition,
            kind: "handover",
            peer,
            keys: 0,
            bytes: 0,
            started,
        });
        let leaves = leaves_per_partition(self.q);
        let leaf_level = MerkleTree::from_leaves(vec![0; leaves as usize]).depth() as u32 - 1;
        let leaf_of: Vec<usize> = items
            .iter()
            .map(|(k, _)| leaf_of_position(ring_position(k), self.q).1 as usize)
            .collect();
        // A leaf whose digest is the same here and there holds the same
        // versions of the same keys: those keys need not be asked about.
        let ours = self.replica.digests().leaves(partition);
        let wanted = Wanted {
            partition,
            items: &items,
            leaf_of: &leaf_of,
            ours: &ours,
            leaf_level,
            leaves,
        };
        // Every owner at once: under load each call waits its turn on a
        // busy peer, and one after another they would add up.
        let answers = futures::future::join_all(owners.iter().map(|(_, addr)| self.hand_to(addr, &wanted))).await;
        let Some(sent) = answers.into_iter().sum::<Option<u64>>() else {
            self.progress.end(partition, "handover");
            return Handed::Failed;
        };
        // Keys are dropped here only once every owner holds what this node
        // holds (equal digest, or stored just now), and only if unchanged.
        let count = items.len() as u64;
        let moved = match self.replica.drop_if_unchanged(items).await {
            Ok(dropped) => dropped as u64,
            Err(e) => {
                log::warn!("dropping handed-over keys failed: {e}");
                0
            }
        };
        self.progress.add(partition, "handover", moved, sent);
        log::debug!("handover of partition {partition}: {moved} of {count} keys dropped, {sent} bytes sent");
        self.progress.end(partition, "handover");
        Handed::Moved(moved)
    }
}

/// One handover chunk, as each owner is asked about it.
struct Wanted<'a> {
    partition: u32,
    items: &'a [(Vec<u8>, Object)],
    /// Each item's Merkle leaf.
    leaf_of: &'a [usize],
    /// This node's leaf digests of the partition.
    ours: &'a [u64],
    leaf_level: u32,
    leaves: u32,
}

impl Job {
    /// Make sure the owner at `addr` holds every item of `wanted`: compare
    /// leaf digests, then key digests where leaves differ, and send what
    /// it lacks. The bytes sent, or `None` if the owner failed.
    async fn hand_to(&self, addr: &str, wanted: &Wanted<'_>) -> Option<u64> {
        let request = PeerRequest::AeTree {
            partition: wanted.partition,
            q: self.q,
            level: wanted.leaf_level,
            indices: (0..wanted.leaves).collect(),
        };
        let same_leaf: Vec<bool> = match self.transport.call(addr, request, self.timeout).await {
            Ok(PeerResponse::AeNodes(theirs)) if theirs.len() == wanted.ours.len() => {
                wanted.ours.iter().zip(&theirs).map(|(a, b)| a == b).collect()
            }
            _ => return None,
        };
        let unsure: Vec<&(Vec<u8>, Object)> = wanted
            .items
            .iter()
            .zip(wanted.leaf_of)
            .filter(|(_, &leaf)| !same_leaf.get(leaf).copied().unwrap_or(false))
            .map(|(item, _)| item)
            .collect();
        if unsure.is_empty() {
            return Some(0);
        }
        let request = PeerRequest::KeyDigests {
            keys: unsure.iter().map(|(k, _)| k.clone()).collect(),
        };
        let theirs = match self.transport.call(addr, request, self.timeout).await {
            Ok(PeerResponse::KeyDigests(theirs)) if theirs.len() == unsure.len() => theirs,
            _ => return None,
        };
        let missing: Vec<(Vec<u8>, Object)> = unsure
            .into_iter()
            .zip(theirs)
            .filter(|((k, o), theirs)| *theirs != Some(key_digest(k, &encode_object(o))))
            .map(|(item, _)| item.clone())
            .collect();
        if missing.is_empty() {
            return Some(0);
        }
        let size = weight(&missing);
        self.pace(size).await;
        let request = PeerRequest::ReplicateMany { items: missing };
        match self.transport.call(addr, request, self.timeout).await {
            Ok(PeerResponse::Stored) => Some(size),
            _ => None,
        }
    }
}

/// What one handover step did.
enum Handed {
    /// The partition holds nothing here any more.
    Empty,
    /// This many keys were handed over and dropped.
    Moved(u64),
    /// An owner or the store failed; try again later.
    Failed,
}

/// A chunk of pulled data and whether the partition is exhausted.
type Chunk = (Records, bool);

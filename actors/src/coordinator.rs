//! The coordinator: runs client operations against a key's replicas.
//!
//! Any node accepts any request (Dynamo §4.5). If this node is not on the
//! key's preference list it forwards the request to one that is; otherwise
//! it coordinates: a write is first applied to the local replica, which
//! mints the new version's dot, and the resulting object is then sent to the
//! other N−1 replicas in parallel; the client is answered after W of them
//! (this one included) stored it, and the rest finish in the background. A
//! read asks all N, answers after R, then keeps listening briefly and
//! repairs any replica that was stale (read repair, Dynamo §5).
//!
//! The actor reads the cluster view the gossiper publishes; each request
//! runs as its own future, so one slow replica never holds up other
//! requests. Every HTTP worker thread runs its own coordinator with its own
//! peer connections, so a client request never changes threads except to
//! reach a storage shard.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use dynamo_core::membership::ClusterState;
use dynamo_core::quorum::{Outcome, Tally};
use dynamo_core::ring::{partition_of, Role};
use dynamo_core::wire::{ClientOp, ClientReply, OpError, OpKind, PeerRequest, PeerResponse};
use dynamo_core::{Actor as ClockActor, NodeId, Object, Value, VersionVector};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::failure_detector::{LivenessCell, LivenessView, Unresponsive};
use crate::gossiper::ClusterCell;
use crate::replica::Replica;
use crate::stats::NodeStats;
use crate::transport::Transport;

/// Longest a read keeps listening for late replicas after answering, to
/// repair them.
const READ_REPAIR_WAIT: Duration = Duration::from_millis(1000);

/// Run a client operation.
#[derive(Message)]
#[rtype(result = "Result<ClientReply, OpError>")]
pub struct Coordinate {
    /// The operation.
    pub op: ClientOp,
    /// Whether this node may forward it (false once it has been forwarded,
    /// so differing ring views cannot bounce a request around).
    pub may_forward: bool,
}

/// Quorum defaults and timing, from config.
#[derive(Clone, Copy, Debug)]
pub struct Quorums {
    /// Replicas per key.
    pub n: usize,
    /// Default read quorum.
    pub r: usize,
    /// Default write quorum.
    pub w: usize,
    /// How long to wait for a quorum.
    pub timeout: Duration,
}

/// The node-wide pieces a coordinator works with.
pub struct CoordinatorParts {
    /// The cluster view.
    pub cluster: Arc<ClusterCell>,
    /// Liveness verdicts.
    pub liveness: Arc<LivenessCell>,
    /// Where to report unresponsive peers.
    pub detector: Recipient<Unresponsive>,
    /// Peer calls.
    pub transport: Rc<dyn Transport>,
    /// The local replica.
    pub replica: Replica,
    /// Counters.
    pub stats: Arc<NodeStats>,
}

/// What every request of this node shares.
struct Shared {
    me: NodeId,
    actor: ClockActor,
    quorums: Quorums,
    transport: Rc<dyn Transport>,
    replica: Replica,
    stats: Arc<NodeStats>,
    liveness: Arc<LivenessCell>,
    detector: Recipient<Unresponsive>,
}

impl Shared {
    /// A call to `target` failed: tell the failure detector, which routes
    /// around it until it answers a probe.
    fn report_failure(&self, target: &Target) {
        NodeStats::bump(&self.stats.peer_failures);
        self.detector.do_send(Unresponsive {
            node: target.node.clone(),
            addr: target.addr.clone(),
        });
    }
}

/// The coordinator actor.
pub struct Coordinator {
    shared: Rc<Shared>,
    cluster: Arc<ClusterCell>,
}

impl Coordinator {
    /// A coordinator for node `me`, minting dots as `actor`.
    pub fn new(me: NodeId, actor: ClockActor, quorums: Quorums, parts: CoordinatorParts) -> Self {
        Coordinator {
            shared: Rc::new(Shared {
                me,
                actor,
                quorums,
                transport: parts.transport,
                replica: parts.replica,
                stats: parts.stats,
                liveness: parts.liveness,
                detector: parts.detector,
            }),
            cluster: parts.cluster,
        }
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;
}

impl Handler<Coordinate> for Coordinator {
    type Result = ResponseFuture<Result<ClientReply, OpError>>;
    fn handle(&mut self, msg: Coordinate, _: &mut Self::Context) -> Self::Result {
        let started = std::time::Instant::now();
        let stats = self.shared.stats.clone();
        let work = coordinate(self.shared.clone(), self.cluster.get(), msg.op, msg.may_forward);
        Box::pin(async move {
            let reply = work.await;
            // What background work is admitted by (see `admission`).
            stats.foreground.observe(started.elapsed());
            reply
        })
    }
}

/// A replica to contact: its id and peer address.
#[derive(Clone, Debug)]
struct Target {
    node: NodeId,
    addr: String,
    /// Set when the target stands in for this down primary.
    hint_for: Option<NodeId>,
}

impl Target {
    fn is_primary(&self) -> bool {
        self.hint_for.is_none()
    }
}

/// Where a key's operation goes.
struct Plan {
    /// The first N healthy nodes walking the ring (sloppy quorum, Dynamo
    /// §4.6), resolved to addresses.
    targets: Vec<Target>,
    /// Down primaries no fallback stands in for (the cluster has too few
    /// live nodes): the coordinator keeps a hint for each, beyond W.
    uncovered: Vec<NodeId>,
    /// Owners-to-be while a membership change transfers data: writes reach
    /// them too (not counted towards W), so the transfer misses nothing.
    incoming: Vec<Target>,
}

fn plan(cluster: &ClusterState, liveness: &LivenessView, me: &str, key: &[u8], n: usize) -> Plan {
    let partition = partition_of(key, cluster.ring.partitions());
    let live = |node: &str| cluster.member(node).is_some() && (node == me || liveness.is_live(node));
    let targets: Vec<Target> = cluster
        .ring
        .preference_list(partition, n, live)
        .into_iter()
        .filter_map(|entry| {
            let member = cluster.member(&entry.node)?;
            Some(Target {
                node: entry.node,
                addr: member.peer_addr.clone(),
                hint_for: match entry.role {
                    Role::Primary => None,
                    Role::Fallback { for_node } => Some(for_node),
                },
            })
        })
        .collect();
    let uncovered = cluster
        .ring
        .owners_of(partition, n)
        .into_iter()
        // A removed node gets no hints: it is never coming back.
        .filter(|owner| cluster.member(owner).is_some())
        .filter(|owner| {
            !targets
                .iter()
                .any(|t| &t.node == owner || t.hint_for.as_ref() == Some(owner))
        })
        .collect();
    let incoming = cluster
        .incoming_owners(partition, n)
        .into_iter()
        .filter(|o| !targets.iter().any(|t| &t.node == o) && live(o))
        .filter_map(|o| {
            cluster.member(&o).map(|m| Target {
                node: o.clone(),
                addr: m.peer_addr.clone(),
                hint_for: None,
            })
        })
        .collect();
    Plan {
        targets,
        uncovered,
        incoming,
    }
}

async fn coordinate(
    shared: Rc<Shared>,
    cluster: Arc<ClusterState>,
    op: ClientOp,
    may_forward: bool,
) -> Result<ClientReply, OpError> {
    let q = shared.quorums;
    let needed = match op.kind {
        OpKind::Get => op.quorum.unwrap_or(q.r),
        _ => op.quorum.unwrap_or(q.w),
    };
    if needed == 0 || needed > q.n {
        return Err(OpError::BadRequest(format!(
            "quorum {needed} is not between 1 and n = {}",
            q.n
        )));
    }
    if cluster.ring.version == 0 {
        return Err(OpError::Unavailable {
            needed,
            ok: 0,
            tried: 0,
            coordinator: shared.me.clone(),
        });
    }
    let Plan {
        targets,
        uncovered,
        incoming,
    } = plan(&cluster, &shared.liveness.get(), &shared.me, &op.key, q.n);
    // Only a primary mints versions: its replica holds every earlier
    // version it minted for the key, which is what keeps dots unique and
    // contexts exact. Reads may be coordinated by anyone.
    let is_write = !matches!(op.kind, OpKind::Get);
    let can_coordinate = if is_write {
        targets.iter().any(|t| t.node == shared.me && t.is_primary())
    } else {
        !may_forward || targets.iter().any(|t| t.node == shared.me)
    };
    if !can_coordinate {
        let primaries: Vec<Target> = targets.into_iter().filter(|t| t.is_primary() || !is_write).collect();
        if !may_forward || primaries.is_empty() {
            // Nothing was tried: a forwarder takes this as "ask another".
            return Err(unavailable(&shared, needed, 0, 0));
        }
        return forward(&shared, primaries, op, needed).await;
    }
    if targets.len() < needed {
        // Honest: never pretend a smaller cluster is N replicas.
        return Err(unavailable(&shared, needed, 0, targets.len()));
    }
    match op.kind {
        OpKind::Get => read(shared, targets, op.key, needed).await,
        OpKind::Put { value, context } => {
            write(&shared, targets, uncovered, incoming, op.key, value, context, needed).await
        }
        OpKind::Delete { context } => {
            write(
                &shared,
                targets,
                uncovered,
                incoming,
                op.key,
                Value::tombstone(),
                context,
                needed,
            )
            .await
        }
    }
}

fn unavailable(shared: &Shared, needed: usize, ok: usize, tried: usize) -> OpError {
    log::debug!("quorum not reached at {}: {ok} of {needed} ({tried} tried)", shared.me);
    OpError::Unavailable {
        needed,
        ok,
        tried,
        coordinator: shared.me.clone(),
    }
}

/// Hand the operation to the first replica that answers.
async fn forward(shared: &Shared, targets: Vec<Target>, op: ClientOp, needed: usize) -> Result<ClientReply, OpError> {
    NodeStats::bump(&shared.stats.forwarded);
    let deadline = Instant::now() + shared.quorums.timeout;
    let tried = targets.len();
    for target in targets {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let call = shared
            .transport
            .call(&target.addr, PeerRequest::Coordinate(op.clone()), left);
        match call.await {
            // A node whose ring view is older or newer than ours may not
            // consider itself a primary (it refuses with nothing tried):
            // views converge within a gossip round, so ask the next one.
            Ok(PeerResponse::Coordinated(Err(OpError::Unavailable { tried: 0, .. }))) => {
                log::debug!(
                    "{} would not coordinate (ring views differ); trying the next",
                    target.node
                );
            }
            Ok(PeerResponse::Coordinated(result)) => return result,
            Ok(other) => log::warn!("{} answered a forwarded request with {other:?}", target.node),
            Err(e) => {
                shared.report_failure(&target);
                log::debug!("forwarding to {} failed: {e}", target.node);
            }
        }
    }
    Err(unavailable(shared, needed, 0, tried))
}

/// Wait for answers on `rx` until the tally is decided or the deadline
/// passes. Returns the final outcome.
async fn collect<T>(
    tally: &mut Tally,
    rx: &mut mpsc::Receiver<(usize, Option<T>)>,
    deadline: Instant,
    mut on_answer: impl FnMut(usize, T),
) -> Outcome {
    while tally.outcome() == Outcome::Pending {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((i, answer))) => {
                let ok = answer.is_some();
                if let Some(a) = answer {
                    on_answer(i, a);
                }
                tally.record(ok);
            }
            Ok(None) | Err(_) => break,
        }
    }
    match tally.outcome() {
        Outcome::Pending => Outcome::Failed,
        decided => decided,
    }
}

#[allow(clippy::too_many_arguments)]
async fn write(
    shared: &Rc<Shared>,
    targets: Vec<Target>,
    uncovered: Vec<NodeId>,
    incoming: Vec<Target>,
    key: Vec<u8>,
    value: Value,
    context: VersionVector,
    needed: usize,
) -> Result<ClientReply, OpError> {
    let deadline = Instant::now() + shared.quorums.timeout;
    // The local replica mints the dot from its own history of this key, so
    // counters never repeat; then the whole object goes to the others. (A
    // minted version lost to a power cut before its fsync cannot be minted
    // again: counters restart above a floor persisted ahead of use.)
    let (object, clock) = shared
        .replica
        .update(key.clone(), context, shared.actor.clone(), value)
        .await
        .map_err(|e| match e {
            crate::replica::ReplicaError::TooManySiblings(_) => OpError::Conflict(e.to_string()),
            other => OpError::Internal(other.to_string()),
        })?;
    // Hints for down owners nobody else stands in for: kept here, durably,
    // but not counted towards W (this node already counts once).
    let hints = futures::future::join_all(
        uncovered
            .into_iter()
            .map(|owner| shared.replica.merge(key.clone(), object.clone(), Some(owner))),
    );
    for target in incoming {
        let call = shared.transport.call(
            &target.addr,
            PeerRequest::Replicate {
                key: key.clone(),
                object: object.clone(),
                hint_for: None,
            },
            shared.quorums.timeout,
        );
        tokio::task::spawn_local(async move {
            if call.await.is_err() {
                log::debug!("a write did not reach incoming owner {}", target.node);
            }
        });
    }
    let mut tally = Tally::new(needed, targets.len());
    let (tx, mut rx) = mpsc::channel(targets.len().max(1));
    for (i, target) in targets.iter().enumerate() {
        if target.node == shared.me {
            if !shared.replica.syncs_writes() {
                // In the WAL already: stored.
                tally.record(true);
                continue;
            }
            // The local fsync runs beside the remote replicas' writes
            // rather than before them; the local copy counts once durable.
            let (tx, replica) = (tx.clone(), shared.replica.clone());
            tokio::task::spawn_local(async move {
                let durable = replica.durable().await;
                if let Err(e) = &durable {
                    log::warn!("fsync of a local write failed: {e}");
                }
                let _ = tx.send((i, durable.ok())).await;
            });
            continue;
        }
        let call = shared.transport.call(
            &target.addr,
            PeerRequest::Replicate {
                key: key.clone(),
                object: object.clone(),
                hint_for: target.hint_for.clone(),
            },
            shared.quorums.timeout,
        );
        let tx = tx.clone();
        let shared = shared.clone();
        let target = target.clone();
        let (key, object) = (key.clone(), object.clone());
        // Spawned, not awaited: replicas beyond W finish in the background.
        tokio::task::spawn_local(async move {
            let stored = matches!(call.await, Ok(PeerResponse::Stored));
            let _ = tx.send((i, stored.then_some(()))).await;
            if !stored {
                shared.report_failure(&target);
                // The primary missed this write: keep it here as a hint for
                // it (not counted towards W), so handoff delivers it later.
                if target.is_primary() {
                    if let Err(e) = shared.replica.merge(key, object, Some(target.node.clone())).await {
                        log::warn!("keeping a hint for {} failed: {e}", target.node);
                    }
                }
            }
        });
    }
    drop(tx);
    for hint in hints.await {
        if let Err(e) = hint {
            log::warn!("keeping a hint failed: {e}");
        }
    }
    match collect(&mut tally, &mut rx, deadline, |_, ()| {}).await {
        Outcome::Reached => Ok(ClientReply::Written {
            context: clock,
            replicas: tally.ok(),
            coordinator: shared.me.clone(),
        }),
        _ => Err(unavailable(shared, needed, tally.ok(), tally.asked())),
    }
}

async fn read(shared: Rc<Shared>, targets: Vec<Target>, key: Vec<u8>, needed: usize) -> Result<ClientReply, OpError> {
    let deadline = Instant::now() + shared.quorums.timeout;
    let mut tally = Tally::new(needed, targets.len());
    let (tx, mut rx) = mpsc::channel(targets.len().max(1));
    for (i, target) in targets.iter().enumerate() {
        let tx = tx.clone();
        if target.node == shared.me {
            let replica = shared.replica.clone();
            let key = key.clone();
            tokio::task::spawn_local(async move {
                let answer = replica.get(key, None).await.ok().map(Option::unwrap_or_default);
                let _ = tx.send((i, answer)).await;
            });
        } else {
            let call = shared.transport.call(
                &target.addr,
                PeerRequest::Fetch {
                    key: key.clone(),
                    hint_for: target.hint_for.clone(),
                },
                shared.quorums.timeout,
            );
            let shared = shared.clone();
            let target = target.clone();
            tokio::task::spawn_local(async move {
                let answer = match call.await {
                    Ok(PeerResponse::Fetched(object)) => Some(object.unwrap_or_default()),
                    _ => {
                        shared.report_failure(&target);
                        None
                    }
                };
                let _ = tx.send((i, answer)).await;
            });
        }
    }
    drop(tx);
    let mut answers: Vec<Option<Object>> = vec![None; targets.len()];
    let outcome = collect(&mut tally, &mut rx, deadline, |i, object| answers[i] = Some(object)).await;
    if outcome != Outcome::Reached {
        return Err(unavailable(&shared, needed, tally.ok(), tally.asked()));
    }
    let merged = answers
        .iter()
        .flatten()
        .fold(Object::empty(), |acc, object| acc.sync(object));
    let replicas = tally.ok();
    tokio::task::spawn_local(read_repair(shared.clone(), targets, key, answers, rx));
    Ok(ClientReply::Read {
        object: merged,
        replicas,
        coordinator: shared.me.clone(),
    })
}

/// After answering a read: wait briefly for the remaining replicas, then
/// send the reconciled object to every replica whose copy differed.
async fn read_repair(
    shared: Rc<Shared>,
    targets: Vec<Target>,
    key: Vec<u8>,
    mut answers: Vec<Option<Object>>,
    mut rx: mpsc::Receiver<(usize, Option<Object>)>,
) {
    let wait = READ_REPAIR_WAIT.min(shared.quorums.timeout);
    let deadline = Instant::now() + wait;
    while let Ok(Some((i, answer))) = tokio::time::timeout_at(deadline, rx.recv()).await {
        answers[i] = answer;
    }
    let merged = answers
        .iter()
        .flatten()
        .fold(Object::empty(), |acc, object| acc.sync(object));
    if merged.is_empty() {
        return;
    }
    for (target, answer) in targets.iter().zip(&answers) {
        let Some(seen) = answer else { continue };
        if *seen == merged {
            continue;
        }
        NodeStats::bump(&shared.stats.read_repairs);
        if target.node == shared.me {
            if let Err(e) = shared.replica.merge(key.clone(), merged.clone(), None).await {
                log::warn!("read repair of the local replica failed: {e}");
            }
        } else {
            let request = PeerRequest::Replicate {
                key: key.clone(),
                object: merged.clone(),
                hint_for: target.hint_for.clone(),
            };
            let _ = shared
                .transport
                .call(&target.addr, request, shared.quorums.timeout)
                .await;
        }
    }
}

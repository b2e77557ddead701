//! The checker against a whole cluster in one process, over real sockets
//! wrapped in the faulty transport: the nemesis partitions nodes (one from
//! the rest, everyone from everyone), makes links lossy or slow and blocks
//! replication, and the clients drive the coordinators directly (as
//! tests/cluster_faults.rs does). Same model and checks as the real-process
//! run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dynamo_actors::coordinator::Coordinate;
use dynamo_core::wire::{ClientOp, ClientReply, OpError, OpKind};
use dynamo_core::{Object, Value};

use crate::common::inproc::InProcCluster;
use crate::model::*;

/// Bound for one client operation (the nodes' request timeout is 400 ms).
const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// What the checker does with the in-process cluster: client calls through
/// its coordinators, and direct looks at its replicas.
trait ClientCalls {
    async fn run(&self, via: usize, key: &[u8], kind: OpKind, quorum: usize) -> Option<Result<ClientReply, OpError>>;
    fn owners(&self, key: &[u8]) -> Vec<usize>;
    async fn local(&self, i: usize, key: &[u8]) -> VersionSet;
}

impl ClientCalls for InProcCluster {
    /// One client operation through node `via`, bounded by [`OP_TIMEOUT`]
    /// (`None` on timeout).
    async fn run(&self, via: usize, key: &[u8], kind: OpKind, quorum: usize) -> Option<Result<ClientReply, OpError>> {
        let op = ClientOp {
            key: key.to_vec(),
            kind,
            quorum: Some(quorum),
        };
        let sent = self.nodes[via].coordinator.send(Coordinate { op, may_forward: true });
        match tokio::time::timeout(OP_TIMEOUT, sent).await {
            Ok(answer) => Some(answer.expect("coordinator alive")),
            Err(_) => None,
        }
    }

    /// Indices of the nodes whose replicas hold `key` (its N owners).
    fn owners(&self, key: &[u8]) -> Vec<usize> {
        let state = self.nodes[0].cluster.get();
        let ring = &state.ring;
        let part = dynamo_core::ring::partition_of(key, ring.partitions());
        ring.owners_of(part, self.nodes[0].config.n)
            .iter()
            .map(|id| {
                self.nodes
                    .iter()
                    .position(|n| &n.config.node_id == id)
                    .unwrap_or_else(|| panic!("owner {id} is not a node"))
            })
            .collect()
    }

    /// What node `i`'s own replica holds for `key` (dot and context as the clock).
    async fn local(&self, i: usize, key: &[u8]) -> VersionSet {
        let object = self.nodes[i]
            .replica
            .get(key.to_vec(), None)
            .await
            .expect("local read")
            .unwrap_or_default();
        held(&object, true)
    }
}

fn held(object: &Object, clocks: bool) -> VersionSet {
    object
        .versions()
        .iter()
        .map(|v| Held {
            seen: Seen::of(v.value.data.as_deref()),
            clock: if clocks {
                format!("{:?} after {:?}", v.dot, v.context)
            } else {
                String::new()
            },
        })
        .collect()
}

async fn client(n: usize, p: &Params, c: &InProcCluster, history: &History, stop: &AtomicBool, deadline: Instant) {
    let mut rng = Rng::fork(p.seed, n as u64 + 1);
    let backoff = Duration::from_millis(20);
    let k = c.nodes.len();
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && history.writes_attempted() < p.ops {
        let key = rng.below(p.keys);
        let name = key_name(key).into_bytes();
        let via = rng.below(k);
        let r = if rng.chance(0.15) { 1 } else { 2 };
        let who = format!("node{}", via + 1);
        let (context, saw) = match c.run(via, &name, OpKind::Get, r).await {
            Some(Ok(ClientReply::Read { object, .. })) => {
                let sibs: Vec<Seen> = object
                    .versions()
                    .iter()
                    .map(|v| Seen::of(v.value.data.as_deref()))
                    .collect();
                (object.context(), history.read(key, &sibs, &who))
            }
            Some(Ok(other)) => {
                history.unexpected(format!("GET via {who}: {other:?}"));
                continue;
            }
            Some(Err(OpError::Unavailable { .. })) | None => {
                history.read_failed();
                tokio::time::sleep(backoff).await;
                continue;
            }
            Some(Err(e)) => {
                history.unexpected(format!("GET via {who}: {e}"));
                continue;
            }
        };
        let (id, value) = history.begin_write(key, saw);
        let via = if rng.chance(0.5) { via } else { rng.below(k) };
        let w = if rng.chance(0.15) { 1 } else { 2 };
        let kind = OpKind::Put {
            value: Value::bytes(value, CONTENT_TYPE),
            context,
        };
        let outcome = match c.run(via, &name, kind, w).await {
            Some(Ok(ClientReply::Written { .. })) => Outcome::Acked,
            Some(Err(OpError::Unavailable { .. })) | None => Outcome::Indeterminate,
            Some(other) => {
                history.unexpected(format!("PUT via node{} (id {id}): {other:?}", via + 1));
                Outcome::Indeterminate
            }
        };
        history.end_write(id, outcome);
        if outcome != Outcome::Acked {
            tokio::time::sleep(backoff).await;
        }
    }
}

async fn nap(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            return;
        }
        tokio::time::sleep((until - now).min(Duration::from_millis(50))).await;
    }
}

async fn nemesis(c: &InProcCluster, p: &Params, stop: &AtomicBool, deadline: Instant, log: &mut FaultLog) {
    let mut rng = Rng::fork(p.seed, 0);
    let n = c.addrs.len();
    let addr = |i: usize| c.addrs[i].as_str();
    nap(rng.millis(200, 600), stop).await;
    // Fault kinds take turns from a seeded starting point (see procs.rs).
    let mut round = rng.below(5);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let a = rng.below(n);
        let b = (a + 1 + rng.below(n - 1)) % n;
        let rest: Vec<&str> = (0..n).filter(|&i| i != a).map(addr).collect();
        round += 1;
        match round % 5 {
            0 => {
                // One node alone: it can only take w=1 writes.
                log.add("isolate1");
                c.faults.partition(&[addr(a)], &rest);
            }
            1 => {
                // Everyone alone: every side keeps accepting w=1 writes.
                log.add("isolate_all");
                for i in 0..n {
                    for j in i + 1..n {
                        c.faults.partition(&[addr(i)], &[addr(j)]);
                    }
                }
            }
            2 => {
                log.add("lossy");
                c.faults.drop_rate(0.3);
            }
            3 => {
                // Slower than the request timeout one way: calls time out
                // after the replica may already have stored the write.
                log.add("slow");
                c.faults.delay(addr(a), addr(b), rng.millis(200, 600));
                c.faults.delay(addr(b), addr(a), rng.millis(0, 200));
            }
            _ => {
                log.add("no_replicate");
                c.faults.block_kind(addr(a), addr(b), "replicate");
                c.faults.block_kind(addr(a), addr((b + 1) % n), "replicate");
            }
        }
        nap(rng.millis(300, 1500), stop).await;
        c.faults.heal();
        nap(rng.millis(300, 1000), stop).await;
    }
    c.faults.heal();
}

fn converged(finals: &[KeyFinal]) -> bool {
    finals
        .iter()
        .all(|f| f.replicas.windows(2).all(|w| w[0].1 == w[1].1) && f.strays.iter().all(|(_, s)| s.is_empty()))
}

/// The whole run; returns the report and the summary line.
pub async fn run(p: &Params) -> (Report, String) {
    let started = Instant::now();
    let c = InProcCluster::start("checker", p.nodes, p.seed, 100).await;
    let history = History::new();
    let stop = AtomicBool::new(false);
    let mut faults = FaultLog::default();
    let work_started = Instant::now();
    let deadline = work_started + p.duration();
    {
        let clients = futures::future::join_all((0..p.clients).map(|n| client(n, p, &c, &history, &stop, deadline)));
        let clients = async {
            clients.await;
            stop.store(true, Ordering::SeqCst);
        };
        futures::join!(clients, nemesis(&c, p, &stop, deadline, &mut faults));
    }
    let workload = work_started.elapsed();

    c.faults.heal();
    c.await_all_live().await;
    let heal_started = Instant::now();
    let converge_deadline = heal_started + p.converge_timeout();
    let keys: Vec<Vec<u8>> = (0..p.keys).map(|k| key_name(k).into_bytes()).collect();
    let mut finals = loop {
        let hints: u64 = c.nodes.iter().map(|n| n.replica.stats_pending_hints()).sum();
        let mut snap = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            let mut f = KeyFinal {
                key: k,
                ..KeyFinal::default()
            };
            let own = c.owners(key);
            for i in 0..c.nodes.len() {
                let set = c.local(i, key).await;
                if own.contains(&i) {
                    f.replicas.push((format!("node{}", i + 1), set));
                } else {
                    f.strays.push((format!("node{}", i + 1), set));
                }
            }
            snap.push(f);
        }
        if hints == 0 && converged(&snap) {
            break snap;
        }
        if Instant::now() >= converge_deadline {
            eprintln!("not converged within {:?}: {hints} hints pending", p.converge_timeout());
            break snap;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let convergence = heal_started.elapsed();
    for f in finals.iter_mut() {
        for via in 0..c.nodes.len() {
            let n = f.replicas.len();
            // A call the nemesis lost just before the heal times out after
            // it, and its caller rightly routes around that peer until a
            // probe finds it again: an r=N read refused meanwhile is asked
            // again once every node sees every peer up (a few times, so a
            // node that stays unreachable still shows).
            let mut reply = c.run(via, &keys[f.key], OpKind::Get, n).await;
            for _ in 0..3 {
                if !matches!(reply, Some(Err(OpError::Unavailable { .. }))) {
                    break;
                }
                c.await_all_live().await;
                reply = c.run(via, &keys[f.key], OpKind::Get, n).await;
            }
            let set = match reply {
                Some(Ok(ClientReply::Read { object, .. })) => held(&object, false),
                other => [Held {
                    seen: Seen::Junk(format!("GET r={n}: {other:?}")),
                    clock: String::new(),
                }]
                .into(),
            };
            f.reads.push((format!("GET r=N via node{}", via + 1), set));
        }
    }
    let report = history.check(&finals);
    let sizes: Vec<usize> = finals
        .iter()
        .map(|f| f.replicas.first().map_or(0, |r| r.1.len()))
        .collect();
    let summary = format!(
        "checker[in-process] seed={:#x} nodes={} clients={} keys={} workload={:.1}s faults={} converged_in={:.1}s total={:.1}s \
         siblings_per_key={sizes:?} | {report}",
        p.seed,
        p.nodes,
        p.clients,
        p.keys,
        workload.as_secs_f64(),
        faults,
        convergence.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    (report, summary)
}

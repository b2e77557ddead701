//! A node: the actors of one dynamo process, wired together.
//!
//! Start-up opens the store, establishes the node's identity (its id, the
//! epoch of this store incarnation, and a generation bumped at every
//! restart), restores the persisted cluster view, starts the replica shards,
//! the coordinator and the gossiper, and serves peers. The HTTP front door
//! (another crate) talks to the returned [`Node`].

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dynamo_core::context::ContextCodec;
use dynamo_core::membership::{ClusterState, Member, MemberState};
use dynamo_core::merkle::DigestTable;
use dynamo_core::storage::{Store, StoreError};
use dynamo_core::wire::{PeerRequest, PeerResponse, MAX_AE_ITEMS, MAX_CHUNK_BYTES};
use dynamo_core::{Actor as ClockActor, Config, NodeId};
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use crate::anti_entropy::AntiEntropy;
use crate::coordinator::{Coordinate, Coordinator, CoordinatorParts, Quorums};
use crate::failure_detector::{FailureDetector, LivenessCell};
use crate::gossiper::{ClusterCell, GossipSyn, Gossiper, CLUSTER_META};
use crate::handoff::{Delivering, Handoff};
use crate::hygiene::Hygiene;
use crate::replica::{Replica, RetireSets};
use crate::rocks::RocksStore;
use crate::stats::NodeStats;
use crate::transfer::{Transfer, TransferProgress};
use crate::transport::{serve_peers, PeerHandler, Secret, TcpTransport, Transport};

/// Metadata name of the node's identity record.
const IDENTITY_META: &str = "identity";
/// Replica shard threads: one per core (at least two); more only add
/// context switches (measured: 8 shards were slower than 2 on 2 cores).
/// Fsyncs never block a shard: they run in the group commit.
fn shards() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data dir cannot be used.
    #[error("data dir {dir}: {source}")]
    Store {
        /// The dir.
        dir: String,
        /// Why.
        source: StoreError,
    },
    /// The data dir belongs to another node.
    #[error("data dir {dir} belongs to node {found:?}, not {configured:?}")]
    WrongNode {
        /// The dir.
        dir: String,
        /// The id stored there.
        found: String,
        /// The configured id.
        configured: String,
    },
    /// The peer address cannot be bound.
    #[error("cannot listen on peer_addr {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// This store incarnation was removed from its cluster.
    #[error("node {node} was removed from its cluster (data dir {dir}); wipe the data dir to join again")]
    Removed {
        /// The dir.
        dir: String,
        /// The node.
        node: String,
    },
    /// Stored metadata is corrupt.
    #[error("data dir {dir}: corrupt {what}")]
    Corrupt {
        /// The dir.
        dir: String,
        /// Which record.
        what: &'static str,
    },
}

/// Who this store is: persisted so a restart comes back as itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Identity {
    node_id: NodeId,
    /// Drawn once per store incarnation: a wiped data dir gets a new one.
    epoch: u64,
    /// Bumped at every start.
    generation: u64,
}

/// Injectable pieces of a node (tests replace them).
#[derive(Default)]
pub struct NodeOptions {
    /// The node-to-node transport; `None` for TCP.
    pub transport: Option<Rc<dyn Transport>>,
    /// Seed for the node's randomness (gossip peer choice, epoch).
    pub seed: Option<u64>,
    /// An already-bound peer listener (tests bind port 0).
    pub peer_listener: Option<std::net::TcpListener>,
}

/// A running node.
#[derive(Clone)]
pub struct Node {
    /// Its configuration.
    pub config: Arc<Config>,
    /// Its clock identity.
    pub actor: ClockActor,
    /// The coordinator.
    pub coordinator: Addr<Coordinator>,
    /// The gossiper.
    pub gossiper: Addr<Gossiper>,
    /// The replica store.
    pub replica: Replica,
    /// Counters.
    pub stats: Arc<NodeStats>,
    /// Seals and opens client context tokens.
    pub contexts: ContextCodec,
    /// The bound peer address.
    pub peer_addr: SocketAddr,
    /// The cluster view the gossiper publishes.
    pub cluster: Arc<ClusterCell>,
    /// The failure detector's verdicts.
    pub liveness: Arc<LivenessCell>,
    /// The partition transfer in flight, if any.
    pub transfers: Arc<TransferProgress>,
    /// Set when the node must exit: 0 after a completed leave, 1 when the
    /// cluster removed it.
    pub exit: Arc<tokio::sync::watch::Sender<Option<i32>>>,
    detector: Addr<FailureDetector>,
    quorums: Quorums,
    secret: Secret,
    /// Whether each thread may run its own coordinator over TCP (false when
    /// a test injected a transport, which lives on one thread).
    per_thread_coordinators: bool,
    /// When it started.
    pub started: Instant,
    store: Arc<RocksStore>,
}

impl Node {
    /// Start a node from `config`. Must run inside an actix system.
    pub async fn start(config: Config, options: NodeOptions) -> Result<Node, NodeError> {
        let dir = config.data_dir();
        let dir_name = dir.display().to_string();
        let store_err = |source| NodeError::Store {
            dir: dir_name.clone(),
            source,
        };
        let mut rng = match options.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };

        let store = Arc::new(RocksStore::open(&dir).map_err(store_err)?);
        let identity = load_identity(store.as_ref(), &config, &mut rng, &dir_name)?;
        store
            .put_meta(IDENTITY_META, &postcard::to_allocvec(&identity).unwrap_or_default())
            .map_err(store_err)?;
        let actor = ClockActor::new(identity.node_id.clone(), identity.epoch);
        let cluster = load_cluster(store.as_ref(), &config, &identity, &dir_name)?;

        let listener = match options.peer_listener {
            Some(l) => {
                l.set_nonblocking(true).map_err(|source| NodeError::Bind {
                    addr: config.peer_addr.clone(),
                    source,
                })?;
                TcpListener::from_std(l)
            }
            None => TcpListener::bind(&config.peer_addr).await,
        }
        .map_err(|source| NodeError::Bind {
            addr: config.peer_addr.clone(),
            source,
        })?;
        let peer_addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: config.peer_addr.clone(),
            source,
        })?;

        let shards = shards();
        let stats = Arc::new(NodeStats::default());
        stats.foreground.set_target(config.background_latency_percent);
        let pending_hints = store.count_hints().map_err(store_err)?;
        stats
            .hints_pending
            .store(pending_hints, std::sync::atomic::Ordering::Relaxed);
        // Merkle leaves over what the store holds: one sequential scan.
        let digests = Arc::new(build_digests(store.as_ref(), cluster.ring.partitions()).map_err(store_err)?);
        let replica = Replica::start(
            store.clone() as Arc<dyn Store>,
            shards,
            stats.clone(),
            digests,
            config.sync_writes,
        )
        .map_err(store_err)?;
        replica.retire().install(RetireSets::of(&cluster));
        let quorums = Quorums {
            n: config.n,
            r: config.r,
            w: config.w,
            timeout: Duration::from_millis(config.request_timeout_ms),
        };
        let cell = ClusterCell::new(cluster.clone());
        let per_thread_coordinators = options.transport.is_none();
        let secret: Secret = config.cluster_secret.as_deref().map(|s| Arc::from(s.as_bytes()));
        let transport: Rc<dyn Transport> = options
            .transport
            .unwrap_or_else(|| Rc::new(TcpTransport::new(secret.clone())));
        let liveness = Arc::new(LivenessCell::default());
        let exit = Arc::new(tokio::sync::watch::channel(None).0);
        let detector = FailureDetector::new(
            config.node_id.clone(),
            Duration::from_millis(config.gossip_interval_ms),
            transport.clone(),
            liveness.clone(),
        )
        .start();
        let coordinator = Coordinator::new(
            config.node_id.clone(),
            actor.clone(),
            quorums,
            CoordinatorParts {
                cluster: cell.clone(),
                liveness: liveness.clone(),
                detector: detector.clone().recipient(),
                transport: transport.clone(),
                replica: replica.clone(),
                stats: stats.clone(),
            },
        )
        .start();
        let gossiper = Gossiper::new(
            config.node_id.clone(),
            config.n,
            cluster,
            config.other_seeds(),
            Duration::from_millis(config.gossip_interval_ms),
            transport.clone(),
            replica.clone(),
            StdRng::seed_from_u64(rng.gen()),
            cell.clone(),
            detector.clone(),
            exit.clone(),
        )
        .start();

        let delivering = Arc::new(Delivering::default());
        Handoff::new(
            config.node_id.clone(),
            Duration::from_millis(config.gossip_interval_ms),
            quorums.timeout,
            config.handoff_hints_per_sec,
            cell.clone(),
            liveness.clone(),
            replica.clone(),
            transport.clone(),
            delivering.clone(),
        )
        .start();

        AntiEntropy::new(
            config.node_id.clone(),
            config.n,
            Duration::from_millis(config.anti_entropy_interval_ms),
            quorums.timeout,
            cell.clone(),
            liveness.clone(),
            replica.clone(),
            transport.clone(),
            stats.clone(),
            delivering,
        )
        .start();

        Hygiene::new(
            config.node_id.clone(),
            Duration::from_millis(config.anti_entropy_interval_ms),
            cell.clone(),
            replica.clone(),
            gossiper.clone(),
            stats.clone(),
        )
        .start();

        let transfers = Arc::new(TransferProgress::default());
        Transfer::new(
            config.node_id.clone(),
            config.n,
            Duration::from_millis(config.gossip_interval_ms.min(1000)),
            quorums.timeout,
            cell.clone(),
            liveness.clone(),
            replica.clone(),
            transport.clone(),
            gossiper.clone(),
            transfers.clone(),
            config.transfer_bytes_per_sec,
        )
        .start();

        let handler: Rc<dyn PeerHandler> = Rc::new(Dispatcher {
            replica: replica.clone(),
            stats: stats.clone(),
            coordinator: coordinator.clone(),
            gossiper: gossiper.clone(),
            cluster: cell.clone(),
        });
        actix::spawn(serve_peers(listener, handler, secret.clone()));
        log::info!(
            "node {} (store epoch {:x}, generation {}) serving peers on {peer_addr}",
            config.node_id,
            identity.epoch,
            identity.generation
        );
        Ok(Node {
            contexts: ContextCodec::new(config.cluster_secret.as_deref()),
            config: Arc::new(config),
            actor,
            coordinator,
            gossiper,
            replica,
            stats,
            peer_addr,
            cluster: cell,
            liveness,
            transfers,
            exit,
            detector,
            quorums,
            per_thread_coordinators,
            secret,
            started: Instant::now(),
            store,
        })
    }

    /// A coordinator for the calling thread (an HTTP worker): its own actor
    /// and peer connections, so requests need not hop to another thread.
    /// Must be called on an actix arbiter.
    pub fn thread_coordinator(&self) -> Addr<Coordinator> {
        if !self.per_thread_coordinators {
            return self.coordinator.clone();
        }
        Coordinator::new(
            self.config.node_id.clone(),
            self.actor.clone(),
            self.quorums,
            CoordinatorParts {
                cluster: self.cluster.clone(),
                liveness: self.liveness.clone(),
                detector: self.detector.clone().recipient(),
                transport: Rc::new(TcpTransport::new(self.secret.clone())),
                replica: self.replica.clone(),
                stats: self.stats.clone(),
            },
        )
        .start()
    }

    /// Resolves with the exit code once the node must exit (after a leave,
    /// or when it learns it was removed).
    pub async fn exit_requested(&self) -> i32 {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(code) = *rx.borrow_and_update() {
                return code;
            }
            if rx.changed().await.is_err() {
                return 1;
            }
        }
    }

    /// Make every write durable and quiesce the store (at shutdown, after
    /// the HTTP server has drained).
    pub fn close(&self) {
        if let Err(e) = self.store.close() {
            log::error!("closing the store failed: {e}");
        }
    }
}

/// A generation above `previous` and above any this node id used before its
/// data dir was wiped: seconds since the Unix epoch, as Cassandra does, so
/// a fresh incarnation still outranks its predecessor's gossip.
fn fresh_generation(previous: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    now.max(previous + 1)
}

/// The client address other members and dashboards are told: `http_addr`,
/// unless it binds every interface (`0.0.0.0`, `[::]`), which names no
/// reachable host — then the peer address's host with the HTTP port.
fn advertised_http_addr(config: &Config) -> String {
    let Some((host, port)) = config.http_addr.rsplit_once(':') else {
        return config.http_addr.clone();
    };
    let unspecified = matches!(host, "0.0.0.0" | "[::]" | "::");
    match config.peer_addr.rsplit_once(':') {
        Some((peer_host, _)) if unspecified => format!("{peer_host}:{port}"),
        _ => config.http_addr.clone(),
    }
}

/// Rebuild the Merkle leaf digests from the store's contents.
fn build_digests(store: &dyn Store, q: u32) -> Result<DigestTable, StoreError> {
    let started = Instant::now();
    let table = DigestTable::new(q);
    let mut keys = 0u64;
    store.scan(0, u128::MAX, &mut |key, encoded| {
        table.apply(key, None, Some(encoded));
        keys += 1;
        true
    })?;
    log::info!("merkle leaves built over {keys} keys in {:?}", started.elapsed());
    Ok(table)
}

fn load_identity(store: &dyn Store, config: &Config, rng: &mut StdRng, dir: &str) -> Result<Identity, NodeError> {
    let stored = store.get_meta(IDENTITY_META).map_err(|source| NodeError::Store {
        dir: dir.to_string(),
        source,
    })?;
    match stored {
        None => Ok(Identity {
            node_id: config.node_id.clone(),
            epoch: rng.gen(),
            generation: fresh_generation(0),
        }),
        Some(bytes) => {
            let mut identity: Identity = postcard::from_bytes(&bytes).map_err(|_| NodeError::Corrupt {
                dir: dir.to_string(),
                what: "identity",
            })?;
            if identity.node_id != config.node_id {
                return Err(NodeError::WrongNode {
                    dir: dir.to_string(),
                    found: identity.node_id,
                    configured: config.node_id.clone(),
                });
            }
            identity.generation = fresh_generation(identity.generation);
            Ok(identity)
        }
    }
}

fn load_cluster(store: &dyn Store, config: &Config, identity: &Identity, dir: &str) -> Result<ClusterState, NodeError> {
    let me = Member {
        node_id: config.node_id.clone(),
        peer_addr: config.peer_addr.clone(),
        http_addr: advertised_http_addr(config),
        weight: config.weight,
        generation: identity.generation,
        version: 1,
        state: MemberState::Active,
        epoch: identity.epoch,
        ready_for: 0,
        hygiene: Default::default(),
    };
    let stored = store.get_meta(CLUSTER_META).map_err(|source| NodeError::Store {
        dir: dir.to_string(),
        source,
    })?;
    match stored {
        // With no seeds this node founds a cluster; with seeds it waits for
        // theirs (its placeholder ring loses to any real one).
        None => Ok(ClusterState::new(
            me,
            config.partitions,
            config.other_seeds().is_empty(),
        )),
        Some(bytes) => {
            let mut cluster: ClusterState = postcard::from_bytes(&bytes).map_err(|_| NodeError::Corrupt {
                dir: dir.to_string(),
                what: "cluster state",
            })?;
            if cluster.ring.partitions() != config.partitions {
                log::warn!(
                    "partitions = {} is ignored: the cluster was created with {}",
                    config.partitions,
                    cluster.ring.partitions()
                );
            }
            if cluster.is_removed(&me.node_id, me.epoch) {
                return Err(NodeError::Removed {
                    dir: dir.to_string(),
                    node: me.node_id,
                });
            }
            // Keep what the cluster knows of this member (its state, its
            // readiness), with this start's generation and addresses.
            let mut entry = cluster.members.get(&me.node_id).cloned().unwrap_or(me.clone());
            entry.generation = me.generation;
            entry.version = 1;
            entry.peer_addr = me.peer_addr;
            entry.http_addr = me.http_addr;
            entry.weight = me.weight;
            entry.epoch = me.epoch;
            // What this node claimed for clock hygiene it must claim anew:
            // its filter starts empty and its marks were for the last run.
            entry.hygiene = Default::default();
            cluster.members.insert(me.node_id.clone(), entry);
            Ok(cluster)
        }
    }
}

/// Routes peer requests to the actor that owns them.
struct Dispatcher {
    replica: Replica,
    stats: Arc<NodeStats>,
    coordinator: Addr<Coordinator>,
    gossiper: Addr<Gossiper>,
    cluster: Arc<ClusterCell>,
}

impl PeerHandler for Dispatcher {
    fn handle(&self, request: PeerRequest) -> LocalBoxFuture<'static, PeerResponse> {
        let replica = self.replica.clone();
        let coordinator = self.coordinator.clone();
        let gossiper = self.gossiper.clone();
        let cluster = self.cluster.clone();
        let stats = self.stats.clone();
        async move {
            let failed = |e: &dyn std::fmt::Display| PeerResponse::Error(e.to_string());
            match request {
                PeerRequest::Replicate { key, object, hint_for } => match replica.merge(key, object, hint_for).await {
                    Ok(_) => PeerResponse::Stored,
                    Err(e) => failed(&e),
                },
                PeerRequest::ReplicateMany { items } => {
                    if items.len() > MAX_AE_ITEMS {
                        return failed(&"batch too large");
                    }
                    match replica.merge_many(items).await {
                        Ok(()) => PeerResponse::Stored,
                        Err(e) => failed(&e),
                    }
                }
                PeerRequest::Fetch { key, hint_for } => match replica.get(key, hint_for).await {
                    Ok(object) => PeerResponse::Fetched(object),
                    Err(e) => failed(&e),
                },
                PeerRequest::Coordinate(op) => match coordinator.send(Coordinate { op, may_forward: false }).await {
                    Ok(result) => PeerResponse::Coordinated(result),
                    Err(e) => failed(&e),
                },
                PeerRequest::Gossip(state) => match gossiper.send(GossipSyn(state)).await {
                    Ok(state) => PeerResponse::Gossip(state),
                    Err(e) => failed(&e),
                },
                PeerRequest::Ping => PeerResponse::Pong,
                PeerRequest::AeTree {
                    partition,
                    q,
                    level,
                    indices,
                } => {
                    let digests = replica.digests();
                    if digests.partitions() != q || partition >= q || indices.len() > MAX_AE_ITEMS {
                        return failed(&"anti-entropy request for another ring or too large");
                    }
                    PeerResponse::AeNodes(digests.tree(partition).nodes(level as usize, &indices))
                }
                PeerRequest::AeKeys {
                    partition,
                    q,
                    leaves,
                    limit,
                } => {
                    if replica.digests().partitions() != q || partition >= q || leaves.len() > MAX_AE_ITEMS {
                        return failed(&"anti-entropy request for another ring or too large");
                    }
                    let limit = (limit as usize).min(MAX_AE_ITEMS);
                    match replica.leaf_keys(partition, leaves, q, limit).await {
                        Ok(pairs) => PeerResponse::AeKeyDigests(pairs),
                        Err(e) => failed(&e),
                    }
                }
                PeerRequest::PullPartition {
                    partition,
                    q,
                    after,
                    limit,
                    max_bytes,
                } => {
                    if partition >= q || q == 0 {
                        return failed(&"no such partition");
                    }
                    // Serving a partition is background work: it waits
                    // while this node's clients are slow (Dynamo §6.5).
                    stats.foreground.admit().await;
                    let (from, to) = dynamo_core::merkle::partition_range(partition, q);
                    let limit = (limit as usize).clamp(1, MAX_AE_ITEMS);
                    let max_bytes = max_bytes.min(MAX_CHUNK_BYTES) as usize;
                    match replica.scan_records(from, to, after, limit, max_bytes).await {
                        Ok((records, done)) => PeerResponse::Chunk { records, done },
                        Err(e) => failed(&e),
                    }
                }
                PeerRequest::KeyDigests { keys } => {
                    if keys.len() > MAX_AE_ITEMS {
                        return failed(&"key digest request too large");
                    }
                    match replica.key_digests(keys).await {
                        Ok(digests) => PeerResponse::KeyDigests(digests),
                        Err(e) => failed(&e),
                    }
                }
                PeerRequest::HasHint { key } => {
                    let members = cluster.get().members.keys().cloned().collect();
                    match replica.hinted_owners(key, members).await {
                        Ok(owners) => PeerResponse::HasHint(!owners.is_empty()),
                        Err(e) => failed(&e),
                    }
                }
                PeerRequest::Purge { key, expected } => match replica.purge(key, expected).await {
                    Ok(done) => PeerResponse::Purged(done),
                    Err(e) => failed(&e),
                },
            }
        }
        .boxed_local()
    }
}

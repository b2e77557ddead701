//! A whole cluster in one process, over real sockets, with a transport that
//! drops, delays and partitions messages between chosen nodes (seeded, so a
//! failure replays). What it shows: a write acknowledged by W replicas is
//! readable afterwards, and when the cluster is cut in two, both sides keep
//! accepting writes, which come back as siblings when it heals — never lost.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamo_actors::coordinator::Coordinate;
use dynamo_actors::gossiper::GetView;
use dynamo_actors::transport::{Faults, FaultyTransport, TcpTransport, Transport};
use dynamo_actors::{Node, NodeOptions};
use dynamo_core::wire::{ClientOp, ClientReply, OpError, OpKind};
use dynamo_core::{Config, Object, Value, VersionVector};

struct TestCluster {
    nodes: Vec<Node>,
    addrs: Vec<String>,
    faults: Arc<Faults>,
    dir: PathBuf,
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // Close RocksDB before the test process exits, not during its teardown.
        for node in &self.nodes {
            node.close();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestCluster {
    async fn start(k: usize, seed: u64) -> TestCluster {
        let dir = std::env::temp_dir().join(format!("dynamo-faults-{}-{seed}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let listeners: Vec<std::net::TcpListener> = (0..k)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
            .collect();
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().expect("bound address").to_string())
            .collect();
        let faults = Faults::new(seed);
        let mut nodes = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let config = Config {
                node_id: format!("node{}", i + 1),
                http_addr: format!("127.0.0.1:{}", 1 + i), // unused: no HTTP here
                peer_addr: addrs[i].clone(),
                data_dir: Some(dir.join(format!("node{}", i + 1))),
                seeds: addrs.clone(),
                partitions: 16,
                request_timeout_ms: 400,
                gossip_interval_ms: 50,
                ..Config::default()
            };
            let tcp: Rc<dyn Transport> = Rc::new(TcpTransport::new(None));
            let transport = Rc::new(FaultyTransport::new(tcp, addrs[i].clone(), faults.clone()));
            let options = NodeOptions {
                transport: Some(transport),
                seed: Some(seed + i as u64),
                peer_listener: Some(listener),
            };
            nodes.push(Node::start(config, options).await.expect("node starts"));
        }
        let cluster = TestCluster {
            nodes,
            addrs,
            faults,
            dir,
        };
        cluster.await_converged().await;
        cluster
    }

    /// Wait (bounded) until every node sees every member and the same ring.
    async fn await_converged(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut rings = BTreeSet::new();
            let mut complete = true;
            for node in &self.nodes {
                let view = node.gossiper.send(GetView).await.expect("gossiper alive");
                complete &=
                    view.state.members.len() == self.nodes.len() && view.state.ring.nodes().len() == self.nodes.len();
                rings.insert(format!("{:?}", view.state.ring));
            }
            if complete && rings.len() == 1 {
                return;
            }
            assert!(Instant::now() < deadline, "cluster did not converge");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait (bounded) until every node's failure detector sees every peer up.
    async fn await_all_live(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all_up = self.nodes.iter().all(|node| {
                let view = node.liveness.get();
                self.nodes
                    .iter()
                    .all(|other| view.of(&other.config.node_id) == dynamo_actors::failure_detector::Liveness::Up)
            });
            if all_up {
                return;
            }
            assert!(Instant::now() < deadline, "peers not seen up again after heal");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait (bounded) until no node holds a hint.
    async fn await_hints_delivered(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.nodes.iter().any(|n| n.replica.stats_pending_hints() > 0) {
            assert!(Instant::now() < deadline, "hints not delivered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn run(&self, via: usize, key: &str, kind: OpKind, quorum: usize) -> Result<ClientReply, OpError> {
        let op = ClientOp {
            key: key.as_bytes().to_vec(),
            kind,
            quorum: Some(quorum),
        };
        self.nodes[via]
            .coordinator
            .send(Coordinate { op, may_forward: true })
            .await
            .expect("coordinator alive")
    }

    async fn put(&self, via: usize, key: &str, value: &str, w: usize) -> Result<VersionVector, OpError> {
        let kind = OpKind::Put {
            value: Value::bytes(value.as_bytes().to_vec(), "text/plain"),
            context: VersionVector::new(),
        };
        match self.run(via, key, kind, w).await? {
            ClientReply::Written { context, .. } => Ok(context),
            other => panic!("unexpected reply {other:?}"),
        }
    }

    async fn get(&self, via: usize, key: &str, r: usize) -> Result<Object, OpError> {
        match self.run(via, key, OpKind::Get, r).await? {
            ClientReply::Read { object, .. } => Ok(object),
            other => panic!("unexpected reply {other:?}"),
        }
    }
}

fn values(object: &Object) -> BTreeSet<String> {
    object
        .versions()
        .iter()
        .filter_map(|v| v.value.data.as_ref())
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect()
}

#[actix_rt::test]
async fn acknowledged_writes_survive_lossy_and_slow_links() {
    let seed = 0x5eed_0001;
    let c = TestCluster::start(3, seed).await;
    // Every third message lost, one link slow.
    c.faults.drop_rate(0.3);
    c.faults.delay(&c.addrs[0], &c.addrs[2], Duration::from_millis(150));
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..60 {
        let key = format!("lossy-{i}");
        match c.put(i % 3, &key, &format!("v{i}"), 2).await {
            Ok(_) => acked.push((key, format!("v{i}"))),
            Err(OpError::Unavailable { .. }) => refused += 1,
            Err(e) => panic!("unexpected error {e} (seed {seed:#x})"),
        }
    }
    assert!(!acked.is_empty(), "no write succeeded (seed {seed:#x})");
    c.faults.heal();
    c.await_all_live().await;
    for (key, value) in &acked {
        for via in 0..3 {
            let object = c.get(via, key, 2).await.expect("read after heal");
            assert!(
                values(&object).contains(value),
                "acknowledged {key}={value} not readable via node{} (seed {seed:#x}, {refused} refused)",
                via + 1
            );
        }
    }
}

#[actix_rt::test]
async fn partitioned_sides_both_accept_writes_and_heal_into_siblings() {
    let seed = 0x5eed_0002;
    let c = TestCluster::start(3, seed).await;
    let (minority, majority) = (&c.addrs[0], [c.addrs[1].as_str(), c.addrs[2].as_str()]);
    c.faults.partition(&[minority.as_str()], &majority);

    let keys: Vec<String> = (0..20).map(|i| format!("split-{i}")).collect();
    for key in &keys {
        // The lone node can reach only itself: w=1 is all it can promise,
        // and a stricter write is refused rather than silently downgraded.
        assert!(matches!(
            c.put(0, key, "left", 2).await,
            Err(OpError::Unavailable { .. })
        ));
        c.put(0, key, "left", 1).await.expect("minority side accepts w=1");
        c.put(1, key, "right", 2).await.expect("majority side accepts w=2");
    }

    c.faults.heal();
    c.await_all_live().await;
    // Without any read: hints flow back and every replica ends up holding
    // both sides' writes.
    c.await_hints_delivered().await;
    for key in &keys {
        for (i, node) in c.nodes.iter().enumerate() {
            let local = node
                .replica
                .get(key.as_bytes().to_vec(), None)
                .await
                .expect("local read");
            let found = values(&local.unwrap_or_default());
            assert!(
                found.contains("left") && found.contains("right"),
                "{key} on node{}: {found:?} (seed {seed:#x})",
                i + 1
            );
        }
    }
    for key in &keys {
        let object = c.get(2, key, 3).await.expect("read all replicas after heal");
        let found = values(&object);
        assert!(
            found.contains("left") && found.contains("right"),
            "{key}: expected both sides' writes as siblings, found {found:?} (seed {seed:#x})"
        );
        // The client resolves with the merged context; one value remains.
        let resolve = OpKind::Put {
            value: Value::bytes(b"merged".to_vec(), "text/plain"),
            context: object.context(),
        };
        c.run(2, key, resolve, 3).await.expect("resolution written");
        let after = c.get(0, key, 3).await.expect("read resolution");
        assert_eq!(values(&after), BTreeSet::from(["merged".to_string()]));
    }
}

#[actix_rt::test]
async fn read_repair_fixes_a_replica_that_missed_a_write() {
    let seed = 0x5eed_0003;
    let c = TestCluster::start(3, seed).await;
    // node1's writes (and hand-offs) never reach node3; everything else does.
    c.faults.block_kind(&c.addrs[0], &c.addrs[2], "replicate");
    c.put(0, "repaired", "v1", 2).await.expect("w=2 without node3");
    c.await_all_live().await;
    let stale = c.nodes[2]
        .replica
        .get(b"repaired".to_vec(), None)
        .await
        .expect("local read");
    assert!(stale.is_none(), "node3 should have missed the write (seed {seed:#x})");

    // A read through node2 sees node3 is stale and repairs it.
    let repairs_before = dynamo_actors::stats::NodeStats::get(&c.nodes[1].stats.read_repairs);
    let object = c.get(1, "repaired", 3).await.expect("read all three");
    assert_eq!(values(&object), BTreeSet::from(["v1".to_string()]));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let local = c.nodes[2]
            .replica
            .get(b"repaired".to_vec(), None)
            .await
            .expect("local read");
        if local.is_some_and(|o| values(&o) == BTreeSet::from(["v1".to_string()])) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "read repair did not reach node3 (seed {seed:#x})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dynamo_actors::stats::NodeStats::get(&c.nodes[1].stats.read_repairs) > repairs_before);
}

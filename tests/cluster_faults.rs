//! A whole cluster in one process, over real sockets, with a transport that
//! drops, delays and partitions messages between chosen nodes (seeded, so a
//! failure replays). What it shows: a write acknowledged by W replicas is
//! readable afterwards, and when the cluster is cut in two, both sides keep
//! accepting writes, which come back as siblings when it heals — never lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

mod common;

use common::inproc::InProcCluster;
use dynamo_actors::coordinator::Coordinate;
use dynamo_core::wire::{ClientOp, ClientReply, OpError, OpKind};
use dynamo_core::{Object, Value, VersionVector};

/// The in-process cluster, with client calls through its coordinators.
struct TestCluster(InProcCluster);

impl std::ops::Deref for TestCluster {
    type Target = InProcCluster;
    fn deref(&self) -> &InProcCluster {
        &self.0
    }
}

impl TestCluster {
    async fn start(k: usize, seed: u64) -> TestCluster {
        TestCluster(InProcCluster::start("faults", k, seed, 500).await)
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

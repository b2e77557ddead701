//! A whole cluster in one process, over real loopback sockets, with every
//! node's transport wrapped in a [`FaultyTransport`] sharing one seeded
//! [`Faults`] plan — so a test can drop, delay and partition messages between
//! chosen nodes, and a failing seed replays.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamo_actors::failure_detector::Liveness;
use dynamo_actors::gossiper::GetView;
use dynamo_actors::transport::{Faults, FaultyTransport, TcpTransport, Transport};
use dynamo_actors::{Node, NodeOptions};
use dynamo_core::Config;

/// Nodes started in this process, their peer addresses and the fault plan.
pub struct InProcCluster {
    pub nodes: Vec<Node>,
    pub addrs: Vec<String>,
    pub faults: Arc<Faults>,
    dir: PathBuf,
}

impl Drop for InProcCluster {
    fn drop(&mut self) {
        // Close RocksDB before the test process exits, not during its teardown.
        for node in &self.nodes {
            node.close();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl InProcCluster {
    /// Start `k` nodes (Q=16, 400 ms request timeout, 50 ms gossip, the
    /// given anti-entropy interval) and wait until they form one cluster.
    pub async fn start(tag: &str, k: usize, seed: u64, anti_entropy_interval_ms: u64) -> InProcCluster {
        let dir = std::env::temp_dir().join(format!("dynamo-{tag}-{}-{seed:x}", std::process::id()));
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
                anti_entropy_interval_ms,
                ..Config::default()
            };
            let tcp: Rc<dyn Transport> = Rc::new(TcpTransport::new(None));
            let transport = Rc::new(FaultyTransport::new(tcp, addrs[i].clone(), faults.clone()));
            let options = NodeOptions {
                transport: Some(transport),
                seed: Some(seed.wrapping_add(i as u64)),
                peer_listener: Some(listener),
            };
            nodes.push(Node::start(config, options).await.expect("node starts"));
        }
        let cluster = InProcCluster {
            nodes,
            addrs,
            faults,
            dir,
        };
        cluster.await_converged().await;
        cluster
    }

    /// Wait (bounded) until every node sees every member and the same ring.
    pub async fn await_converged(&self) {
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
    pub async fn await_all_live(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all_up = self.nodes.iter().all(|node| {
                let view = node.liveness.get();
                self.nodes
                    .iter()
                    .all(|other| view.of(&other.config.node_id) == Liveness::Up)
            });
            if all_up {
                return;
            }
            assert!(Instant::now() < deadline, "peers not seen up again after heal");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait (bounded) until no node holds a hint.
    pub async fn await_hints_delivered(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.nodes.iter().any(|n| n.replica.stats_pending_hints() > 0) {
            assert!(Instant::now() < deadline, "hints not delivered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

//! Membership changes with real processes and a continuous writer: a node
//! joins, a node leaves, a dead node is removed — and every acknowledged
//! write stays readable, on exactly N replicas (SPEC §1, §2, §4).

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const KEYS: usize = 5_000;

/// Write `KEYS` keys through the first `via` nodes (w=2).
fn load(c: &Cluster, via: usize) -> Vec<Vec<u8>> {
    let keys: Vec<Vec<u8>> = (0..KEYS).map(|i| format!("member-{i}").into_bytes()).collect();
    for (i, key) in keys.iter().enumerate() {
        let r = c.kv(i % via, "PUT", key).body(key).send();
        assert_eq!(r.status, 204, "{r:?}");
    }
    keys
}

/// A writer that keeps writing new keys through the given HTTP addresses
/// until stopped (bounded: at most 3,000 writes, 60 s), recording every
/// acknowledged one.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Vec<u8>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(urls: Vec<String>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let (s, a) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            for i in 0..3_000usize {
                if s.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(60) {
                    break;
                }
                let key = format!("live-{i}").into_bytes();
                let url = format!("{}/kv/{}", urls[i % urls.len()], encode_key(&key));
                if let Ok(r) = try_http("PUT", &url, &[], Some(&key), Duration::from_secs(5)) {
                    if r.status == 204 {
                        a.lock().unwrap_or_else(|p| p.into_inner()).push(key);
                    }
                }
            }
        });
        Writer {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let acked = self.acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert!(!acked.is_empty(), "the writer got no write acknowledged");
        acked
    }
}

/// Nodes (by index, among `alive`) whose local store holds `key`.
fn holders(c: &Cluster, alive: &[usize], key: &[u8]) -> Vec<usize> {
    alive
        .iter()
        .copied()
        .filter(|&i| !local_versions(&c.admin_local(i, key)).is_empty())
        .collect()
}

/// Wait until the ring is stable everywhere with exactly `members`.
fn wait_stable(c: &Cluster, alive: &[usize], members: &[String], within: Duration) {
    let want: BTreeSet<&String> = members.iter().collect();
    poll("a stable ring with the expected members", within, || {
        alive
            .iter()
            .all(|&i| {
                let s = c.status(i);
                let ids: BTreeSet<String> = s["members"]
                    .as_array()
                    .map(|ms| {
                        ms.iter()
                            .filter_map(|m| m["node_id"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let owned: u64 = s["members"]
                    .as_array()
                    .map(|ms| ms.iter().filter_map(|m| m["partitions_owned"].as_u64()).sum())
                    .unwrap_or(0);
                let every_member_owns = s["members"]
                    .as_array()
                    .is_some_and(|ms| ms.iter().all(|m| m["partitions_owned"].as_u64().unwrap_or(0) > 0));
                ids.iter().collect::<BTreeSet<_>>() == want
                    && s["target_ring_version"].is_null()
                    && owned == c.partitions
                    && every_member_owns
                    && s["transfers"].as_array().is_some_and(|t| t.is_empty())
            })
            .then_some(())
    });
}

/// Every key readable with its value, and held by exactly N of `alive`.
fn check_all(c: &Cluster, alive: &[usize], keys: &[Vec<u8>]) {
    poll("every key on exactly N replicas", Duration::from_secs(60), || {
        keys.iter()
            .all(|k| holders(c, alive, k).len() == N as usize)
            .then_some(())
    });
    for (j, key) in keys.iter().enumerate() {
        let via = alive[j % alive.len()];
        let g = c.kv(via, "GET", key).send();
        assert_eq!((g.status, &g.body), (200, key), "{}: {g:?}", show_key(key));
    }
}

#[test]
fn a_node_joins_under_load_and_takes_its_share() {
    let mut c = Cluster::start(3, Opts::default());
    let keys = load(&c, 3);
    let writer = Writer::start((0..3).map(|i| format!("http://{}", c.http_addr(i))).collect());
    let joiner = c.add_node(&[]);
    c.wait_healthy(joiner);
    let members: Vec<String> = (0..4).map(node_id).collect();
    wait_stable(&c, &[0, 1, 2, 3], &members, Duration::from_secs(60));
    let live = writer.finish();

    let s = c.status(joiner);
    let me: &Value = s["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["node_id"] == "node4"))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(me["partitions_owned"].as_u64().unwrap_or(0) >= 3, "{s}");
    let all: Vec<Vec<u8>> = keys.into_iter().chain(live).collect();
    check_all(&c, &[0, 1, 2, 3], &all);
    assert!(
        all.iter()
            .any(|k| !local_versions(&c.admin_local(joiner, k)).is_empty()),
        "node4 holds nothing"
    );
}

#[test]
fn a_node_leaves_under_load_hands_everything_over_and_exits_0() {
    let mut c = Cluster::start(4, Opts::default());
    let keys = load(&c, 4);
    let writer = Writer::start((0..3).map(|i| format!("http://{}", c.http_addr(i))).collect());
    let r = c.http(3, "POST", "/admin/leave", &[], None);
    assert_eq!(r.status, 202, "{r:?}");
    poll("node4 shown leaving", Duration::from_secs(10), || {
        let s = c.status(0);
        let leaving = s["members"]
            .as_array()?
            .iter()
            .any(|m| m["node_id"] == "node4" && m["status"] == "leaving");
        let gone = !s["members"].as_array()?.iter().any(|m| m["node_id"] == "node4");
        (leaving || gone).then_some(())
    });
    let status = c
        .wait_exit(3, Duration::from_secs(60))
        .expect("node4 exits after its leave");
    assert!(status.success(), "node4 exited with {status:?}");
    let members: Vec<String> = (0..3).map(node_id).collect();
    wait_stable(&c, &[0, 1, 2], &members, Duration::from_secs(30));
    let live = writer.finish();
    let all: Vec<Vec<u8>> = keys.into_iter().chain(live).collect();
    check_all(&c, &[0, 1, 2], &all);
}

#[test]
fn a_dead_node_is_removed_and_every_key_regains_n_replicas() {
    let mut c = Cluster::start(4, Opts::default());
    let keys = load(&c, 4);
    c.kill(1);
    let r = c.http(0, "POST", "/admin/remove/node2", &[], None);
    assert_eq!(r.status, 202, "{r:?}");
    let members: Vec<String> = [0, 2, 3].iter().map(|&i| node_id(i)).collect();
    wait_stable(&c, &[0, 2, 3], &members, Duration::from_secs(60));
    check_all(&c, &[0, 2, 3], &keys);

    // The removed incarnation is refused if it comes back on its old disk.
    c.spawn(1);
    let status = c.wait_exit(1, Duration::from_secs(30)).expect("the removed node exits");
    assert!(!status.success(), "a removed node must not serve: {status:?}");
}

#[test]
fn membership_commands_refuse_what_makes_no_sense() {
    let c = Cluster::start(1, Opts::default());
    let r = c.http(0, "POST", "/admin/leave", &[], None);
    assert_json_error(&r, 409);
    let r = c.http(0, "POST", "/admin/remove/nobody", &[], None);
    assert_json_error(&r, 404);
    let r = c.http(0, "POST", "/admin/remove/node1", &[], None);
    assert_json_error(&r, 400);
}

#[test]
fn a_joining_node_that_crashes_mid_transfer_resumes_and_loses_nothing() {
    // Slow transfers, so the crash lands in the middle of one.
    let mut c = Cluster::start(3, Opts::args(&["--transfer-bytes-per-sec", "16000"]));
    let keys = load(&c, 3);
    let joiner = c.add_node(&[]);
    poll("a transfer in flight on node4", Duration::from_secs(30), || {
        let s = try_http("GET", &c.url(joiner, "/status"), &[], None, Duration::from_secs(2)).ok()?;
        let v: Value = serde_json::from_slice(&s.body).ok()?;
        v["transfers"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["keys"].as_u64() > Some(0)))
            .then_some(())
    });
    c.kill(joiner);
    c.spawn(joiner);
    c.wait_healthy(joiner);
    let members: Vec<String> = (0..4).map(node_id).collect();
    wait_stable(&c, &[0, 1, 2, 3], &members, Duration::from_secs(90));
    check_all(&c, &[0, 1, 2, 3], &keys);
}

/// The pulls `node` has in flight with some keys done: (partition, peer).
fn pulls_in_flight(c: &Cluster, node: usize) -> Option<Vec<(u64, String)>> {
    let s = try_http("GET", &c.url(node, "/status"), &[], None, Duration::from_secs(2)).ok()?;
    let v: Value = serde_json::from_slice(&s.body).ok()?;
    let pulls = v["transfers"]
        .as_array()?
        .iter()
        .filter(|t| t["kind"] == "pull")
        .filter_map(|t| {
            Some((
                t["partition"].as_u64()?,
                t["peer"].as_str()?.to_string(),
                t["keys"].as_u64()?,
            ))
        })
        .filter(|(_, _, keys)| *keys > 0)
        .map(|(p, peer, _)| (p, peer))
        .collect();
    Some(pulls)
}

#[test]
fn a_donor_that_crashes_mid_transfer_is_replaced_and_nothing_is_lost() {
    // Slow transfers, so the crash lands in the middle of one.
    let mut c = Cluster::start(3, Opts::args(&["--transfer-bytes-per-sec", "16000"]));
    let keys = load(&c, 3);
    let joiner = c.add_node(&[]);
    let (partition, peer) = poll("a pull in flight on node4", Duration::from_secs(30), || {
        pulls_in_flight(&c, joiner)?.into_iter().next()
    });
    let donor = (0..3)
        .find(|&i| node_id(i) == peer)
        .unwrap_or_else(|| panic!("node4 pulls from an unknown peer {peer}"));
    let pulled = |c: &Cluster| c.status(joiner)["rebalance"]["partitions_pulled"].as_u64();
    let before = pulled(&c).unwrap_or_else(|| panic!("{}", c.status(joiner)));
    c.kill(donor);
    // With the donor dead, the partition is pulled on from another replica
    // and the join goes on: more partitions are pulled before it is back.
    poll("the pull to leave the dead donor", Duration::from_secs(30), || {
        let pulls = pulls_in_flight(&c, joiner)?;
        (!pulls.iter().any(|(p, from)| *p == partition && *from == peer)).then_some(())
    });
    poll(
        "a partition pulled with the donor dead",
        Duration::from_secs(30),
        || (pulled(&c)? > before).then_some(()),
    );
    c.spawn(donor);
    c.wait_healthy(donor);
    let members: Vec<String> = (0..4).map(node_id).collect();
    wait_stable(&c, &[0, 1, 2, 3], &members, Duration::from_secs(90));
    check_all(&c, &[0, 1, 2, 3], &keys);
}

/// Whether any version `node` stores for `key` has a clock entry of `actor`
/// (a node id: any of its incarnations).
fn clock_mentions(c: &Cluster, node: usize, key: &[u8], actor: &str) -> bool {
    let prefix = format!("{actor}#");
    c.admin_local(node, key)["versions"].as_array().is_some_and(|vs| {
        vs.iter().any(|v| {
            v["clock"]
                .as_object()
                .is_some_and(|clock| clock.keys().any(|a| a.starts_with(&prefix)))
        })
    })
}

/// `clock_hygiene` of node `i`'s `/status`.
fn hygiene(c: &Cluster, i: usize) -> Value {
    c.status(i)["clock_hygiene"].clone()
}

#[test]
fn a_departed_nodes_clock_entries_leave_once_no_version_of_it_is_left() {
    let mut c = Cluster::start(4, Opts::args(&["--anti-entropy-interval-ms", "200"]));
    // Keys first written through node4 (its dots), then written over
    // through node1 with the context read: node4's versions are
    // superseded, but its entries stay in the clocks of what follows.
    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("hygiene-{i}").into_bytes()).collect();
    for key in &keys {
        c.put_ok(3, key, b"first", None);
    }
    let kept = b"hygiene-kept".to_vec();
    c.put_ok(3, &kept, b"only node4 wrote this", None);
    for key in &keys {
        let ctx = c.kv(0, "GET", key).send().context();
        c.put_ok(0, key, b"second", ctx.as_deref());
    }
    assert!(keys.iter().any(|k| clock_mentions(&c, 0, k, "node4")));

    let r = c.http(3, "POST", "/admin/leave", &[], None);
    assert_eq!(r.status, 202, "{r:?}");
    let status = c
        .wait_exit(3, Duration::from_secs(60))
        .expect("node4 exits after its leave");
    assert!(status.success(), "node4 exited with {status:?}");

    // One version node4 minted is still the key's current one: its entry
    // must stay, and every node says what holds the sweep up.
    poll(
        "the sweep counts node4's surviving version",
        Duration::from_secs(30),
        || {
            let left: Vec<u64> = (0..3)
                .map(|i| hygiene(&c, i)["versions_left"].as_u64())
                .collect::<Option<_>>()?;
            (left.iter().sum::<u64>() == N).then_some(())
        },
    );
    let h = hygiene(&c, 0);
    assert_eq!(h["retired_actors"], 1, "{h}");
    assert_eq!(h["forgotten_actors"], 0, "{h}");
    assert!(
        h["sweeping"][0].as_str().is_some_and(|a| a.starts_with("node4#")),
        "{h}"
    );
    let g = c.kv(1, "GET", &kept).send();
    assert_eq!(
        (g.status, g.body.as_slice()),
        (200, &b"only node4 wrote this"[..]),
        "{g:?}"
    );

    // Once it is written over too, node4 is forgotten and every stored
    // clock is rewritten without it.
    let ctx = g.context();
    c.put_ok(1, &kept, b"node2 wrote over it", ctx.as_deref());
    poll("node4 forgotten everywhere", Duration::from_secs(60), || {
        (0..3).all(|i| hygiene(&c, i)["forgotten_actors"] == 1).then_some(())
    });
    let all: Vec<&Vec<u8>> = keys.iter().chain([&kept]).collect();
    poll("no stored clock names node4", Duration::from_secs(30), || {
        all.iter()
            .all(|k| (0..3).all(|i| !clock_mentions(&c, i, k, "node4")))
            .then_some(())
    });
    assert!(
        (0..3)
            .map(|i| hygiene(&c, i)["objects_tidied"].as_u64().unwrap_or(0))
            .sum::<u64>()
            > 0
    );
    for key in &keys {
        let g = c.kv(2, "GET", key).send();
        assert_eq!((g.status, g.body.as_slice()), (200, &b"second"[..]), "{g:?}");
    }
    let g = c.kv(0, "GET", &kept).send();
    assert_eq!(
        (g.status, g.body.as_slice()),
        (200, &b"node2 wrote over it"[..]),
        "{g:?}"
    );
}

//! Failure handling with real processes: a node killed or paused, writes
//! that keep succeeding, and hints that bring the node up to date when it
//! returns (SPEC §1, §3; Dynamo §4.6, §4.8).

mod common;

use std::time::{Duration, Instant};

use common::*;

fn member_status(c: &Cluster, via: usize, node: &str) -> Option<String> {
    let s = c.status(via);
    let m = s["members"].as_array()?.iter().find(|m| m["node_id"] == node)?.clone();
    m["status"].as_str().map(str::to_string)
}

#[test]
fn a_killed_node_gets_every_missed_write_back_from_hints() {
    let mut c = Cluster::start(3, Opts::default());
    c.kill(2);

    // w=2 keeps working with one of three replicas gone.
    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("hinted-{i}").into_bytes()).collect();
    for (i, key) in keys.iter().enumerate() {
        let r = c.kv(i % 2, "PUT", key).query("w", "2").body(key).send();
        assert_eq!(r.status, 204, "w=2 with a node down: {r:?}");
    }
    // w=3 is refused, honestly.
    let r = c.kv(0, "PUT", b"needs-three").query("w", "3").body(b"x").send();
    assert_json_error(&r, 503);
    // A hint per key for node3 (the first writes learn it is gone from a
    // failed call and keep their hint just after answering).
    poll("a hint per key for node3", Duration::from_secs(5), || {
        let pending: u64 = (0..2).map(|i| uint(&c.status(i), "hints.pending")).sum();
        (pending >= keys.len() as u64).then_some(())
    });

    c.restart(2);
    // Within 30 s: node3 holds every key, the stand-ins hold no hint.
    poll("hints handed back to node3", Duration::from_secs(30), || {
        let pending: u64 = (0..2).map(|i| uint(&c.status(i), "hints.pending")).sum();
        (pending == 0).then_some(())
    });
    for key in &keys {
        let doc = c.admin_local(2, key);
        let values = local_versions(&doc);
        assert_eq!(
            values,
            vec![Some(key.clone())],
            "node3's replica of {}: {doc}",
            show_key(key)
        );
        for i in 0..2 {
            let doc = c.admin_local(i, key);
            assert_eq!(
                doc["hinted_for"].as_array().map(Vec::len),
                Some(0),
                "{}: {doc}",
                node_id(i)
            );
        }
    }
    let delivered: u64 = (0..2).map(|i| uint(&c.status(i), "hints.delivered")).sum();
    assert!(delivered >= keys.len() as u64, "delivered {delivered}");
}

#[test]
fn a_paused_node_is_routed_around_and_catches_up_when_resumed() {
    let c = Cluster::start(3, Opts::default());
    let pid = c.pid(2).expect("node3 runs");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGSTOP) };

    // Every request answers within the request timeout (1 s) plus slack,
    // and succeeds with the two live replicas.
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let key = format!("paused-{i}");
        let started = Instant::now();
        let r = c.kv(i % 2, "PUT", key.as_bytes()).body(key.as_bytes()).send();
        assert_eq!(r.status, 204, "{r:?}");
        let g = c.kv((i + 1) % 2, "GET", key.as_bytes()).send();
        assert_eq!((g.status, g.body.as_slice()), (200, key.as_bytes()), "{g:?}");
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(2500),
        "a request took {slowest:?} while node3 was paused"
    );
    poll("node3 seen down while paused", Duration::from_secs(10), || {
        (member_status(&c, 0, "node3").as_deref() == Some("down")).then_some(())
    });

    // SAFETY: as above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGCONT) };
    poll("node3 up again", Duration::from_secs(10), || {
        (member_status(&c, 0, "node3").as_deref() == Some("up")).then_some(())
    });
    poll("node3 caught up", Duration::from_secs(30), || {
        (0..20)
            .all(|i| {
                let key = format!("paused-{i}");
                local_versions(&c.admin_local(2, key.as_bytes())) == vec![Some(key.into_bytes())]
            })
            .then_some(())
    });
}

//! Crashes, restarts and shutdown (SPEC §2, §3): acknowledged writes survive
//! SIGKILL of every node, a restarted node keeps its identity and data, and
//! SIGTERM exits 0.

mod common;

use common::*;

fn key(i: usize) -> Vec<u8> {
    format!("durable/{i:03}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("value-{i}-").into_bytes();
    v.extend((0..(i % 50) * 7).map(|j| (j % 256) as u8));
    v
}

/// How many nodes' `/admin/local` hold `want` (as a live version) for `key`.
fn holders(c: &Cluster, key: &[u8], want: &[u8]) -> usize {
    (0..c.len())
        .filter(|&i| {
            local_versions(&c.admin_local(i, key))
                .iter()
                .any(|v| v.as_deref() == Some(want))
        })
        .count()
}

#[test]
fn acknowledged_writes_survive_sigkill_of_every_node() {
    let mut c = Cluster::start(3, Opts::default());
    const KEYS: usize = 200;

    for i in 0..KEYS {
        let r = c.kv(i % 3, "PUT", &key(i)).query("w", "2").body(&value(i)).send();
        assert_eq!(r.status, 204, "PUT #{i}: {r:?}");
    }
    // Right after the last ack: every node dies at once.
    for i in 0..3 {
        c.kill(i);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    c.wait_ready();

    // Each acknowledged write was stored by at least W replicas before the
    // ack, so at least W replicas still hold it after the crash ...
    let mut missing = Vec::new();
    for i in 0..KEYS {
        let h = holders(&c, &key(i), &value(i));
        if h < W as usize {
            missing.push(format!("{} on {h} replicas", show_key(&key(i))));
        }
    }
    assert!(missing.is_empty(), "acknowledged writes lost by the crash: {missing:?}");

    // ... and every one of them reads back through any node.
    let mut wrong = Vec::new();
    for i in 0..KEYS {
        let g = c.kv((i + 1) % 3, "GET", &key(i)).send();
        if g.status != 200 || g.body != value(i) {
            wrong.push(format!("{}: {g:?}", show_key(&key(i))));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {KEYS} keys read back wrong: {wrong:#?}",
        wrong.len()
    );
}

#[test]
fn sigkilled_node_restarts_with_its_identity_and_data() {
    let mut c = Cluster::start(3, Opts::default());
    const KEYS: usize = 20;
    for i in 0..KEYS {
        let r = c.kv(i % 3, "PUT", &key(i)).query("w", "3").body(&value(i)).send();
        assert_eq!(r.status, 204, "PUT #{i}: {r:?}");
    }

    c.kill(1);
    c.restart(1);

    // Straight from its own disk: what it held before the crash.
    for i in 0..KEYS {
        let local = local_versions(&c.admin_local(1, &key(i)));
        assert_eq!(
            local,
            vec![Some(value(i))],
            "node2 lost {} across SIGKILL",
            show_key(&key(i))
        );
    }

    // Same identity, and the cluster re-forms with three members (not four).
    c.wait_ready();
    for i in 0..3 {
        let s = c.status(i);
        if i == 1 {
            assert_eq!(string(&s, "node_id"), "node2", "{s}");
        }
        let mut ids: Vec<String> = field(&s, "members")
            .as_array()
            .unwrap()
            .iter()
            .map(|m| string(m, "node_id").to_string())
            .collect();
        ids.sort();
        assert_eq!(ids, c.node_ids(), "{s}");
    }

    // It serves again as a full replica.
    let r = c.kv(1, "PUT", b"after-restart").query("w", "3").body(b"fresh").send();
    assert_eq!(r.status, 204, "{r:?}");
    for i in 0..KEYS {
        let g = c.kv(1, "GET", &key(i)).query("r", "3").send();
        assert_eq!((g.status, &g.body), (200, &value(i)), "{g:?}");
    }
}

#[test]
fn sigterm_exits_zero_and_the_node_comes_back_with_its_data() {
    let mut c = Cluster::start(3, Opts::default());
    const KEYS: usize = 10;
    for i in 0..KEYS {
        let r = c.kv(i % 3, "PUT", &key(i)).query("w", "3").body(&value(i)).send();
        assert_eq!(r.status, 204, "PUT #{i}: {r:?}");
    }

    let st = c.stop(2);
    assert_eq!(st.code(), Some(0), "SIGTERM must exit 0, got {st:?}");

    c.restart(2);
    for i in 0..KEYS {
        let local = local_versions(&c.admin_local(2, &key(i)));
        assert_eq!(
            local,
            vec![Some(value(i))],
            "node3 lost {} across SIGTERM",
            show_key(&key(i))
        );
    }
    c.wait_ready();
    assert_eq!(string(&c.status(2), "node_id"), "node3");

    // Every node of the cluster stops cleanly.
    for i in 0..3 {
        let st = c.stop(i);
        assert_eq!(st.code(), Some(0), "{} SIGTERM exit {st:?}", node_id(i));
    }
}

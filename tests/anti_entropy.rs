//! Anti-entropy with real processes: replicas converge without an operator
//! after hints are lost and disks are wiped, and purged tombstones never
//! come back (SPEC §1, §3 DELETE, §4 `anti_entropy`).

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// Anti-entropy every 50 ms (default 500 ms), so a test converges quickly.
fn fast() -> Opts {
    Opts::args(&["--anti-entropy-interval-ms", "50"])
}

/// Every node's `/admin/local` view of `key`, versions only.
fn replicas_of(c: &Cluster, key: &[u8]) -> Vec<Value> {
    (0..c.len())
        .map(|i| c.admin_local(i, key)["versions"].clone())
        .collect()
}

fn converged(c: &Cluster, keys: &[Vec<u8>]) -> bool {
    keys.iter().all(|k| {
        let views = replicas_of(c, k);
        views
            .iter()
            .all(|v| *v == views[0] && v.as_array().is_some_and(|a| !a.is_empty()))
    })
}

#[test]
fn replicas_converge_after_lost_hints_and_a_wiped_disk() {
    let mut c = Cluster::start(3, fast());
    c.kill(2);
    let keys: Vec<Vec<u8>> = (0..300).map(|i| format!("ae-{i}").into_bytes()).collect();
    for key in &keys {
        let r = c.kv(0, "PUT", key).body(key).send();
        assert_eq!(r.status, 204, "{r:?}");
    }
    // node1 kept the hints for node3; it dies with its disk.
    c.kill(0);
    std::fs::remove_dir_all(c.data_dir(0)).expect("wipe node1");
    c.spawn(0);
    c.spawn(2);
    c.wait_ready();

    // Only node2 still has the data. Within 60 s every replica holds
    // identical versions of every key.
    poll("replicas identical", Duration::from_secs(60), || {
        converged(&c, &keys).then_some(())
    });
    for i in 0..3 {
        let s = c.status(i);
        assert!(uint(&s, "anti_entropy.exchanges") > 0, "{s}");
        assert!(s["anti_entropy"]["last_exchange_ms"].is_u64(), "{s}");
    }
    let repaired: u64 = (0..3).map(|i| uint(&c.status(i), "anti_entropy.keys_repaired")).sum();
    assert!(repaired >= 2 * keys.len() as u64, "keys repaired: {repaired}");
    for key in keys.iter().take(20) {
        let g = c.kv(2, "GET", key).query("r", "3").send();
        assert_eq!((g.status, &g.body), (200, key), "{g:?}");
    }
}

#[test]
fn a_node_restarted_on_an_empty_disk_is_refilled() {
    let mut c = Cluster::start(3, fast());
    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("refill-{i}").into_bytes()).collect();
    for key in &keys {
        let r = c.kv(0, "PUT", key).query("w", "3").body(key).send();
        assert_eq!(r.status, 204, "{r:?}");
    }
    assert!(c.stop(1).success());
    std::fs::remove_dir_all(c.data_dir(1)).expect("wipe node2");
    c.spawn(1);
    c.wait_ready();
    poll("node2 refilled", Duration::from_secs(60), || {
        keys.iter()
            .all(|k| local_versions(&c.admin_local(1, k)) == vec![Some(k.clone())])
            .then_some(())
    });
}

#[test]
fn a_purged_delete_stays_deleted_when_the_missing_replica_returns() {
    let mut c = Cluster::start(3, fast());
    let keys: Vec<Vec<u8>> = (0..50).map(|i| format!("gone-{i}").into_bytes()).collect();
    let mut contexts = Vec::new();
    for key in &keys {
        let r = c.kv(0, "PUT", key).query("w", "3").body(b"old value").send();
        assert_eq!(r.status, 204, "{r:?}");
        contexts.push(r.context());
    }
    // node3 goes away holding the old values; the deletes happen without it,
    // and node1 — holding the hints for node3 — loses its disk.
    c.kill(2);
    for (key, ctx) in keys.iter().zip(&contexts) {
        let r = c.kv(1, "DELETE", key).ctx(ctx.as_deref()).send();
        assert_eq!(r.status, 204, "{r:?}");
    }
    c.kill(0);
    std::fs::remove_dir_all(c.data_dir(0)).expect("wipe node1");
    c.spawn(0);
    c.spawn(2);
    c.wait_ready();

    // Anti-entropy spreads the tombstones, then every replica purges them.
    poll("tombstones purged everywhere", Duration::from_secs(60), || {
        keys.iter()
            .all(|k| (0..3).all(|i| local_versions(&c.admin_local(i, k)).is_empty()))
            .then_some(())
    });
    let purged: u64 = (0..3)
        .map(|i| uint(&c.status(i), "anti_entropy.tombstones_purged"))
        .sum();
    assert!(purged >= keys.len() as u64, "purged {purged}");
    // Keep exchanging for a while: nothing comes back.
    let exchanges_before: u64 = (0..3).map(|i| uint(&c.status(i), "anti_entropy.exchanges")).sum();
    poll("more exchanges", Duration::from_secs(20), || {
        let now: u64 = (0..3).map(|i| uint(&c.status(i), "anti_entropy.exchanges")).sum();
        (now > exchanges_before + 60).then_some(())
    });
    for key in &keys {
        for i in 0..3 {
            assert!(
                local_versions(&c.admin_local(i, key)).is_empty(),
                "{} back on {}",
                show_key(key),
                node_id(i)
            );
        }
        let g = c.kv(2, "GET", key).query("r", "3").send();
        assert_eq!(g.status, 404, "{g:?}");
    }
}

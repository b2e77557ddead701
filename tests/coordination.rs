//! Coordination details with real processes: forwarding by nodes outside a
//! key's preference list, and store incarnations that never reuse clock
//! identities (Riak's "kv679" data loss).

mod common;

use std::collections::BTreeSet;

use common::*;

fn sibling_values(r: &Resp) -> BTreeSet<Vec<u8>> {
    r.json()["siblings"]
        .as_array()
        .unwrap_or_else(|| panic!("no siblings: {r:?}"))
        .iter()
        .filter_map(|s| s["value"].as_str().map(b64_decode))
        .collect()
}

#[test]
fn a_node_outside_the_preference_list_forwards_to_a_replica() {
    // Five nodes, N=3: every key has two nodes that are not its replicas.
    let c = Cluster::start(5, Opts::default());
    let mut forwarded = 0;
    for i in 0..40 {
        let key = format!("fwd-{i}");
        let via = i % 5;
        let r = c.kv(via, "PUT", key.as_bytes()).body(key.as_bytes()).send();
        assert_eq!(r.status, 204, "{r:?}");
        let coordinator = r.header("x-dynamo-coordinator").unwrap_or_default().to_string();
        // The replicas are exactly the nodes whose local store has the key.
        let holders: Vec<String> = (0..5)
            .filter(|&j| !local_versions(&c.admin_local(j, key.as_bytes())).is_empty())
            .map(node_id)
            .collect();
        assert!(holders.len() >= 2, "{key} stored on {holders:?}");
        assert!(
            holders.contains(&coordinator),
            "{key}: coordinator {coordinator} is not a replica ({holders:?})"
        );
        if coordinator != node_id(via) {
            forwarded += 1;
        }
        let g = c.kv((via + 1) % 5, "GET", key.as_bytes()).send();
        assert_eq!((g.status, g.body.as_slice()), (200, key.as_bytes()), "{g:?}");
    }
    assert!(forwarded > 0, "no request was forwarded in 40 tries");
}

#[test]
fn a_wiped_node_never_reuses_its_old_clock_identity() {
    let mut c = Cluster::start(3, Opts::default());
    let r = c.kv(0, "PUT", b"kv679").query("w", "3").body(b"before").send();
    assert_eq!(r.status, 204, "{r:?}");
    let old_clock = c.admin_local(0, b"kv679")["versions"][0]["clock"].clone();

    // node1 loses its disk and comes back empty.
    assert!(c.stop(0).success());
    std::fs::remove_dir_all(c.data_dir(0)).expect("wipe node1");
    c.spawn(0);
    c.wait_ready();
    assert!(local_versions(&c.admin_local(0, b"kv679")).is_empty());

    // A blind write through the wiped node is concurrent with the old
    // version. Had it reused its old clock entry, the two versions would
    // share a dot and one value would be silently lost.
    let r = c.kv(0, "PUT", b"kv679").query("w", "3").body(b"after").send();
    assert_eq!(r.status, 204, "{r:?}");
    let new_clock = c.admin_local(0, b"kv679")["versions"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["value"] == b64_encode(b"after")).cloned())
        .map(|v| v["clock"].clone());
    assert_ne!(Some(old_clock.clone()), new_clock, "same clock identity after a wipe");
    let g = c.kv(1, "GET", b"kv679").query("r", "3").send();
    assert_eq!(g.status, 300, "{g:?}");
    assert_eq!(
        sibling_values(&g),
        BTreeSet::from([b"before".to_vec(), b"after".to_vec()]),
        "{g:?}"
    );
}

#[test]
fn ring_lists_every_partition_with_its_range_and_owners() {
    let c = Cluster::start(3, Opts::default());
    let ring = c.get(1, "/ring").json();
    let parts = ring["partitions"].as_array().unwrap_or_else(|| panic!("{ring}"));
    assert_eq!(parts.len() as u64, PARTITIONS, "{ring}");
    assert_eq!(ring["n"], N);
    let mut next_start = 0u128;
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p["index"], i as u64);
        let start = u128::from_str_radix(p["start"].as_str().unwrap_or(""), 16).expect("hex start");
        let end = u128::from_str_radix(p["end"].as_str().unwrap_or(""), 16).expect("hex end");
        assert_eq!(start, next_start, "ranges must tile the ring");
        assert!(end >= start);
        next_start = end.wrapping_add(1);
        let owners: BTreeSet<&str> = p["owners"]
            .as_array()
            .map(|o| o.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(owners.len() as u64, N, "{p}");
    }
    assert_eq!(next_start, 0, "the last range must end at 2^128 - 1");
    // The owners the ring names are where a key's replicas are.
    let key = b"ring-check";
    let r = c.kv(0, "PUT", key).query("w", "3").body(b"x").send();
    assert_eq!(r.status, 204);
    let digest = md5_partition(key, PARTITIONS as u32);
    let owners: BTreeSet<String> = parts[digest as usize]["owners"]
        .as_array()
        .map(|o| o.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let holders: BTreeSet<String> = (0..3)
        .filter(|&j| !local_versions(&c.admin_local(j, key)).is_empty())
        .map(node_id)
        .collect();
    assert_eq!(owners, holders);
}

fn md5_partition(key: &[u8], q: u32) -> u32 {
    dynamo_core::ring::partition_of(key, q)
}

//! Inputs the fuzzers (`fuzz/`, run by `scripts/fuzz.sh`) found to crash,
//! kept as tests so they stay fixed.
//!
//! `ring_merkle`: the ring and Merkle-leaf arithmetic overflowed (a panic in
//! debug builds, a wrapped range in release) for a leaf past the last one of
//! its partition, for a partition past the last, and for a ring of no
//! partitions. A peer names partitions and leaves in `AeKeys`, and the peer
//! handler checks the partition against Q but not the leaves, so one
//! request could panic a replica shard.
//!
//! `frame_decode`: a gossiped ring at version `u64::MAX` overflowed the
//! claimant's next ring version.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use dynamo_core::membership::{ClusterState, Member, MemberState};
use dynamo_core::merkle::{leaf_of_position, leaf_range, leaves_per_partition, partition_range};
use dynamo_core::ring::{partition_of_position, partition_start};
use dynamo_core::wire::{Frame, PeerRequest, PeerResponse};
use dynamo_core::Ring;

/// Crash input `ring_merkle` #1 (minimised): `partition_start` multiplied
/// past `u128::MAX` for an index above Q, and divided by zero for Q = 0.
#[test]
fn partition_start_of_an_index_past_the_last_or_an_empty_ring() {
    for q in [1u32, 3, 64, 65_536] {
        let last = partition_start(q - 1, q);
        assert_eq!(partition_start(q, q), last);
        assert_eq!(partition_start(u32::MAX, q), last);
    }
    assert_eq!(partition_start(1, 0), 0);
    assert_eq!(partition_start(u32::MAX, 0), 0);
    assert_eq!(
        partition_start(u32::MAX, u32::MAX),
        partition_start(u32::MAX - 1, u32::MAX)
    );
}

/// `partition_range` computed `p + 1` (overflow at `u32::MAX`) and the
/// start of a partition past the last.
#[test]
fn partition_range_of_a_partition_past_the_last() {
    for q in [1u32, 3, 64, 65_536] {
        let last = partition_range(q - 1, q);
        assert_eq!(last.1, u128::MAX);
        assert_eq!(partition_range(q, q), last);
        assert_eq!(partition_range(u32::MAX, q), last);
    }
    assert_eq!(partition_range(0, 0), (0, u128::MAX));
    assert_eq!(partition_range(u32::MAX, 0), (0, u128::MAX));
}

/// `leaf_range` multiplied the leaf width by any `u32` leaf, and added it
/// past `u128::MAX` in the last partition: the case a peer reaches.
#[test]
fn leaf_range_of_a_leaf_past_the_last() {
    for q in [1u32, 3, 64, 1000, 65_536] {
        let per = leaves_per_partition(q);
        for p in [0, q / 2, q - 1] {
            let last = leaf_range(p, per - 1, q);
            assert_eq!(last.1, partition_range(p, q).1);
            for leaf in [per, per + 1, u32::MAX / 2, u32::MAX - 1, u32::MAX] {
                assert_eq!(leaf_range(p, leaf, q), last, "q={q} p={p} leaf={leaf}");
            }
        }
    }
    // And with nonsense everywhere.
    assert_eq!(leaf_range(u32::MAX, u32::MAX, u32::MAX).1, u128::MAX);
    assert_eq!(leaf_range(u32::MAX, u32::MAX, 0).1, u128::MAX);
    assert_eq!(leaf_of_position(u128::MAX, 0), (0, leaves_per_partition(0) - 1));
    assert_eq!(partition_of_position(u128::MAX, 0), 0);
}

fn member(id: &str) -> Member {
    Member {
        node_id: id.into(),
        peer_addr: format!("{id}:9000"),
        http_addr: format!("{id}:8000"),
        weight: 1,
        generation: 1,
        version: 1,
        state: MemberState::Active,
        epoch: 1,
        ready_for: 0,
        hygiene: Default::default(),
    }
}

/// Crash input `frame_decode` #1: a gossiped ring at version `u64::MAX`
/// won the merge, and the claimant's next plan computed `version + 1`
/// (in `Ring::rebalance` and in `ClusterState::claim`).
#[test]
fn a_ring_gossiped_at_the_last_version_does_not_overflow_the_claim() {
    let mut mine = ClusterState::new(member("a"), 8, true);
    let mut theirs = mine.clone();
    theirs.members.insert("b".into(), member("b"));
    theirs.ring = Ring::from_owners(u64::MAX, vec!["a".into(); 8]);
    mine.merge(&theirs);
    assert_eq!(mine.ring.version, u64::MAX);
    assert!(mine.claim("a", 3), "b joined: the claimant plans a target ring");
    let target = mine.target.clone().expect("a target ring");
    assert_eq!(target.version, u64::MAX);
    assert_eq!(target.owned_counts().len(), 2);
    assert_eq!(Ring::single("a", 8).rebalance(&BTreeMap::new(), 3).version, 1);
    let top = Ring::from_owners(u64::MAX, vec!["a".into(); 8]);
    let members: BTreeMap<String, u32> = [("a".to_string(), 1), ("b".to_string(), 1)].into();
    assert_eq!(top.rebalance(&members, 3).version, u64::MAX);
}

fn send(stream: &mut TcpStream, frame: &Frame) {
    let body = frame.encode().expect("encodes");
    let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
    bytes.extend(body);
    stream.write_all(&bytes).expect("write");
}

fn receive(stream: &mut TcpStream) -> Option<Frame> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).ok()?;
    Frame::decode(&body).ok()
}

/// The same through a node: an `AeKeys` naming leaves past the last of a
/// partition is answered (as the last leaf), and the node keeps serving.
#[test]
fn a_peer_naming_leaves_past_the_last_gets_an_answer() {
    let c = Cluster::start(1, Opts::args(&[]));
    for i in 0..50 {
        let r = c
            .kv(0, "PUT", format!("k{i}").as_bytes())
            .query("w", "1")
            .body(b"v")
            .send();
        assert_eq!(r.status, 204, "{r:?}");
    }
    let q = c.partitions as u32;
    let per = leaves_per_partition(q);
    let mut peer = TcpStream::connect(c.peer_addr(0)).expect("connect");
    peer.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    for (id, partition) in [(1u64, 0u32), (2, q - 1)] {
        send(
            &mut peer,
            &Frame::Request {
                id,
                body: PeerRequest::AeKeys {
                    partition,
                    q,
                    leaves: vec![per, per + 1, u32::MAX],
                    limit: 10,
                },
            },
        );
        match receive(&mut peer) {
            Some(Frame::Response {
                id: got,
                body: PeerResponse::AeKeyDigests(pairs),
            }) => {
                assert_eq!(got, id);
                assert!(pairs.len() <= 10);
            }
            other => panic!("AeKeys for partition {partition}: {other:?}\n{}", c.logs()),
        }
    }
    send(
        &mut peer,
        &Frame::Request {
            id: 3,
            body: PeerRequest::Ping,
        },
    );
    assert!(matches!(
        receive(&mut peer),
        Some(Frame::Response {
            id: 3,
            body: PeerResponse::Pong
        })
    ));
    for i in 0..50 {
        let r = c.kv(0, "GET", format!("k{i}").as_bytes()).query("r", "1").send();
        assert_eq!(r.status, 200, "{r:?}");
    }
}

/// Writes the seed corpus `scripts/fuzz.sh` starts each target from
/// (`fuzz/corpus/<target>/`, committed): run it after a wire or storage
/// format change with
/// `cargo test --test fuzz_regressions -- --ignored write_fuzz_seed_corpus`.
#[test]
#[ignore = "writes fuzz/corpus; run by hand after a format change"]
fn write_fuzz_seed_corpus() {
    use dynamo_core::context::ContextCodec;
    use dynamo_core::storage::encode_object;
    use dynamo_core::wire::{ClientOp, OpError, OpKind};
    use dynamo_core::{Actor, Object, Value, VersionVector};

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
    };

    let (a, b) = (Actor::new("node1", 7), Actor::new("node2", 9));
    let (o1, c1) = Object::empty().update(&VersionVector::new(), &a, Value::bytes(b"v1".to_vec(), "text/plain"), 0);
    let (left, _) = o1.update(&c1, &a, Value::bytes(b"left".to_vec(), "text/plain"), 0);
    let (right, _) = o1.update(&c1, &b, Value::tombstone(), 0);
    let siblings = left.sync(&right);
    let context = siblings.context();

    // context_decode: [mode][key length][key][token or payload]; the
    // target's codec uses the secret "fuzz-secret".
    let codec = ContextCodec::new(Some("fuzz-secret"));
    let token = codec.encode(b"k", &context);
    let with_key = |mode: u8, key: &[u8], rest: &[u8]| {
        let mut out = vec![mode, key.len() as u8];
        out.extend_from_slice(key);
        out.extend_from_slice(rest);
        out
    };
    write("context_decode", "token", &with_key(0, b"k", token.as_bytes()));
    write("context_decode", "empty", &with_key(0, b"k", b""));
    write("context_decode", "garbage", &with_key(0, b"key", b"!!!"));
    let entries: Vec<(&Actor, u64)> = context.iter().collect();
    let payload = postcard::to_allocvec(&entries).expect("encodes");
    write("context_decode", "sealed-payload", &with_key(1, b"k", &payload));

    // frame_decode: one frame's bytes; peer_framing: [read size][stream].
    let me = Member {
        node_id: "node1".into(),
        peer_addr: "127.0.0.1:7001".into(),
        http_addr: "127.0.0.1:8001".into(),
        weight: 1,
        generation: 2,
        version: 3,
        state: MemberState::Active,
        epoch: 7,
        ready_for: 0,
        hygiene: Default::default(),
    };
    let frames = [
        ("hello", Frame::Hello { nonce: vec![7; 32] }),
        (
            "ping",
            Frame::Request {
                id: 1,
                body: PeerRequest::Ping,
            },
        ),
        (
            "replicate",
            Frame::Request {
                id: 2,
                body: PeerRequest::Replicate {
                    key: b"k".to_vec(),
                    object: siblings.clone(),
                    hint_for: Some("node3".into()),
                },
            },
        ),
        (
            "coordinate-put",
            Frame::Request {
                id: 3,
                body: PeerRequest::Coordinate(ClientOp {
                    key: b"k".to_vec(),
                    kind: OpKind::Put {
                        value: Value::bytes(b"v".to_vec(), "text/plain"),
                        context: context.clone(),
                    },
                    quorum: Some(2),
                }),
            },
        ),
        (
            "gossip",
            Frame::Request {
                id: 4,
                body: PeerRequest::Gossip(ClusterState::new(me, 8, true)),
            },
        ),
        (
            "ae-keys",
            Frame::Request {
                id: 5,
                body: PeerRequest::AeKeys {
                    partition: 7,
                    q: 8,
                    leaves: vec![0, 1023],
                    limit: 10,
                },
            },
        ),
        (
            "fetched",
            Frame::Response {
                id: 2,
                body: PeerResponse::Fetched(Some(siblings.clone())),
            },
        ),
        (
            "unavailable",
            Frame::Response {
                id: 3,
                body: PeerResponse::Coordinated(Err(OpError::Unavailable {
                    needed: 2,
                    ok: 1,
                    tried: 3,
                    coordinator: "node1".into(),
                })),
            },
        ),
    ];
    let mut stream = vec![3u8];
    for (name, frame) in &frames {
        let bytes = frame.encode().expect("encodes");
        write("frame_decode", name, &bytes);
        stream.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        stream.extend_from_slice(&bytes);
    }
    write("peer_framing", "stream", &stream);
    write("peer_framing", "partial", &stream[..stream.len() - 5]);

    // object_decode: stored objects.
    write("object_decode", "one", &encode_object(&o1));
    write("object_decode", "siblings", &encode_object(&siblings));
    write("object_decode", "empty", &encode_object(&Object::empty()));

    // ring_merkle: [position: 16][q: 4][partition: 4][leaf: 4][key].
    let ring = |position: u128, q: u32, p: u32, leaf: u32, key: &[u8]| {
        let mut out = position.to_be_bytes().to_vec();
        for n in [q, p, leaf] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(key);
        out
    };
    write("ring_merkle", "last", &ring(u128::MAX, 63, 63, 1023, b"k"));
    write("ring_merkle", "first", &ring(0, 0, 0, 0, b""));
    write("ring_merkle", "middle", &ring(u128::MAX / 3, 1023, 512, 40, b"key"));

    // http_parse: [n][path] 0xFF [query].
    write("http_parse", "escaped", b"\x03a%2Fb%00\xffr=2&w=3");
    write("http_parse", "repeated", b"\x05k\xffr=1&r=9&w=&x");
}

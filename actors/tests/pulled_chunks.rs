//! A pulled chunk (a partition transfer) ends up stored exactly as the same
//! objects merged one by one: the same bytes, the same Merkle leaves, the
//! same index of deleted keys. New keys are stored as the donor sent them;
//! keys held already, keys sent twice and mangled encodings go through DVV
//! sync and are encoded afresh.

use std::sync::Arc;

use dynamo_actors::replica::Replica;
use dynamo_actors::stats::NodeStats;
use dynamo_core::merkle::DigestTable;
use dynamo_core::storage::{encode_object, MemStore, Store};
use dynamo_core::wire::{Frame, PeerResponse, RecordsBuilder};
use dynamo_core::{Actor as ClockActor, Object, Value, VersionVector};

const Q: u32 = 8;

fn start(store: &Arc<MemStore>) -> Replica {
    Replica::start(
        store.clone() as Arc<dyn Store>,
        2,
        Arc::new(NodeStats::default()),
        Arc::new(DigestTable::new(Q)),
        false,
    )
    .expect("replica starts")
}

fn write(node: &str, value: Value) -> Object {
    Object::empty()
        .update(&VersionVector::new(), &ClockActor::new(node, 1), value, 0)
        .0
}

fn value(s: &str) -> Value {
    Value::bytes(s.as_bytes().to_vec(), "text/plain")
}

/// The same object's versions in reverse order: decodes to it, is not its
/// encoding.
fn mangled(object: &Object) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Versions<'a> {
        versions: Vec<&'a dynamo_core::dvv::Version>,
    }
    let mut bytes = encode_object(object)[..1].to_vec();
    let versions = Versions {
        versions: object.versions().iter().rev().collect(),
    };
    bytes.extend(postcard::to_allocvec(&versions).expect("encodes"));
    bytes
}

#[actix_rt::test]
async fn a_pulled_chunk_is_stored_as_its_objects_merged_one_by_one() {
    let (pulled_store, merged_store) = (Arc::new(MemStore::new()), Arc::new(MemStore::new()));
    let (pulled, merged) = (start(&pulled_store), start(&merged_store));
    // Both replicas already hold a write the donor has not seen, and a
    // tombstone the donor's write for that key supersedes.
    let held = write("node9", value("held here"));
    let both = write("node1", value("a")).sync(&write("node2", value("b")));
    for replica in [&pulled, &merged] {
        replica
            .merge(b"held".to_vec(), held.clone(), None)
            .await
            .expect("merged");
        replica
            .merge(b"revived".to_vec(), write("node1", Value::tombstone()), None)
            .await
            .expect("merged");
    }
    let revived = write("node1", Value::tombstone()).update(
        &write("node1", Value::tombstone()).context(),
        &ClockActor::new("node1", 1),
        value("back"),
        0,
    );
    let chunk: Vec<(&[u8], Vec<u8>)> = vec![
        (b"new", encode_object(&write("node1", value("new")))),
        (b"deleted", encode_object(&write("node2", Value::tombstone()))),
        (b"held", encode_object(&write("node1", value("pulled")))),
        (b"revived", encode_object(&revived.0)),
        (b"twice", encode_object(&write("node1", value("first")))),
        (b"twice", encode_object(&write("node2", value("second")))),
        (b"mangled", mangled(&both)),
    ];
    let mut records = RecordsBuilder::default();
    for (key, bytes) in &chunk {
        records.push(key, bytes);
    }
    pulled.merge_pulled(records.finish()).await.expect("chunk merged");
    for (key, bytes) in &chunk {
        let object = dynamo_core::storage::decode_object(bytes).expect("decodes");
        merged.merge(key.to_vec(), object, None).await.expect("merged");
    }

    for key in ["new", "deleted", "held", "revived", "twice", "mangled"] {
        let stored = pulled_store.get(key.as_bytes()).expect("read");
        assert_eq!(stored, merged_store.get(key.as_bytes()).expect("read"), "{key}");
        assert!(stored.is_some(), "{key} stored");
    }
    assert_eq!(
        pulled_store.get(b"mangled").expect("read"),
        Some(encode_object(&both)),
        "a mangled encoding is stored re-encoded"
    );
    for p in 0..Q {
        assert_eq!(pulled.digests().leaves(p), merged.digests().leaves(p), "partition {p}");
    }
    let deleted = |store: &MemStore| store.scan_tombstones(0, u128::MAX, 100).expect("scan");
    assert_eq!(deleted(&pulled_store), vec![b"deleted".to_vec()]);
    assert_eq!(deleted(&pulled_store), deleted(&merged_store));
}

#[actix_rt::test]
async fn a_chunk_cut_short_is_refused_whole() {
    let store = Arc::new(MemStore::new());
    let replica = start(&store);
    let mut records = RecordsBuilder::default();
    for i in 0..20 {
        records.push(format!("k{i}").as_bytes(), &encode_object(&write("node1", value("v"))));
    }
    let frame = Frame::Response {
        id: 1,
        body: PeerResponse::Chunk {
            records: records.finish(),
            done: true,
        },
    }
    .encode()
    .expect("encodes");
    // The frame's head decodes; its records end inside the last one.
    let Ok(Frame::Response {
        body: PeerResponse::Chunk { records, .. },
        ..
    }) = Frame::decode(&frame[..frame.len() - 1])
    else {
        panic!("not a chunk");
    };
    assert!(replica.merge_pulled(records).await.is_err());
    for i in 0..20 {
        assert_eq!(store.get(format!("k{i}").as_bytes()).expect("read"), None, "k{i}");
    }
}

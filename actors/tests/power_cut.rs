//! `sync_writes`: what a replica acknowledged survives a power cut.
//!
//! The store is the in-memory one in its volatile mode, which loses every
//! write since the last sync when the power is "cut" — the way a machine
//! loses what its OS had not yet written. With `sync_writes` every write
//! the replica acknowledged must still be there afterwards; without it the
//! same writes are lost, which shows the check can fail.

use std::sync::Arc;

use dynamo_actors::replica::Replica;
use dynamo_actors::stats::NodeStats;
use dynamo_core::merkle::DigestTable;
use dynamo_core::storage::{MemStore, Store};
use dynamo_core::{Actor as ClockActor, Object, Value, VersionVector};

const Q: u32 = 8;

fn start(store: &Arc<MemStore>, sync_writes: bool) -> Replica {
    Replica::start(
        store.clone() as Arc<dyn Store>,
        2,
        Arc::new(NodeStats::default()),
        Arc::new(DigestTable::new(Q)),
        sync_writes,
    )
    .expect("replica starts")
}

fn value(i: usize) -> Value {
    Value::bytes(format!("v{i}").into_bytes(), "text/plain")
}

/// Acknowledged writes, all concurrent: replica-side merges (`updates`
/// false), or coordinator-side updates each followed by the wait the
/// coordinator makes before it counts its own copy. Returns each key with
/// the object acknowledged.
async fn write_some(replica: &Replica, updates: bool) -> Vec<(Vec<u8>, Object)> {
    let actor = ClockActor::new("node1", 1);
    let writes = (0..100).map(|i| {
        let replica = replica.clone();
        let actor = actor.clone();
        async move {
            if updates {
                let key = format!("updated-{i}").into_bytes();
                let (object, _) = replica
                    .update(key.clone(), VersionVector::new(), actor, value(i))
                    .await
                    .expect("update applied");
                replica.durable().await.expect("update durable");
                (key, object)
            } else {
                let key = format!("merged-{i}").into_bytes();
                let (object, _) = Object::empty().update(&VersionVector::new(), &actor, value(i), 0);
                let stored = replica
                    .merge(key.clone(), object, None)
                    .await
                    .expect("merge acknowledged");
                (key, stored)
            }
        }
    });
    futures::future::join_all(writes).await
}

#[actix_rt::test]
async fn with_sync_writes_every_acknowledged_write_survives_a_power_cut() {
    let store = Arc::new(MemStore::volatile());
    let replica = start(&store, true);
    // Each kind on its own: a sync covers every earlier write, so one kind
    // waiting for its syncs must not hide the other not waiting.
    for updates in [false, true] {
        let acked = write_some(&replica, updates).await;
        store.power_cut().expect("volatile store");
        for (key, object) in acked {
            let kept = replica.get(key.clone(), None).await.expect("read after the cut");
            assert_eq!(
                kept.as_ref(),
                Some(&object),
                "{} was acknowledged but lost",
                String::from_utf8_lossy(&key)
            );
        }
    }
    assert!(store.syncs() > 0);
    assert!(
        store.syncs() < 200,
        "{} syncs for 200 writes: group commit shares them",
        store.syncs()
    );
}

#[actix_rt::test]
async fn without_sync_writes_a_power_cut_loses_them() {
    let store = Arc::new(MemStore::volatile());
    let replica = start(&store, false);
    // Merges only: an update's first dot reserves counters in synced
    // metadata, which would sync the writes before it too.
    let acked = write_some(&replica, false).await;
    store.power_cut().expect("volatile store");
    for (key, _) in &acked {
        assert!(
            replica.get(key.clone(), None).await.expect("read").is_none(),
            "{} survived though nothing synced it",
            String::from_utf8_lossy(key)
        );
    }
}

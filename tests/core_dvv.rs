//! Property tests of dotted version vectors against a model of causality.
//!
//! A random history of clients reading from some replicas, writing through
//! some coordinator with what they read, and replicas syncing in any order
//! is replayed twice: through the real [`Object`] operations and through an
//! oracle that tracks, for every write, exactly which writes its client had
//! seen. After every replica has synced with every other, the surviving
//! siblings must be exactly the writes no later write has seen — nothing
//! lost, nothing stale kept.

use std::collections::{BTreeSet, HashMap};

use dynamo_core::storage::{decode_object, encode_object, encoded_len};
use dynamo_core::{Actor, Object, Retired, Value, VersionVector};
use proptest::prelude::*;

const REPLICAS: usize = 3;
const CLIENTS: usize = 3;

#[derive(Clone, Debug)]
enum Step {
    /// Client reads from the replicas in the mask (bit i = replica i).
    Read { client: usize, mask: u8 },
    /// Client writes (or deletes) through a coordinator, which then
    /// replicates to the replicas in the mask.
    Write {
        client: usize,
        coordinator: usize,
        fanout: u8,
        delete: bool,
    },
    /// Replica `from` pushes its object to replica `to`.
    Sync { from: usize, to: usize },
    /// Client forgets its context (a blind write follows).
    Forget { client: usize },
    /// A copy of some earlier object, delayed in flight, reaches a replica.
    Late { pick: usize, to: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..CLIENTS, 1u8..8).prop_map(|(client, mask)| Step::Read { client, mask }),
        (0..CLIENTS, 0..REPLICAS, 0u8..8, proptest::bool::weighted(0.2)).prop_map(
            |(client, coordinator, fanout, delete)| Step::Write {
                client,
                coordinator,
                fanout,
                delete
            }
        ),
        (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Step::Sync { from, to }),
        (0..CLIENTS).prop_map(|client| Step::Forget { client }),
        (0usize..1000, 0..REPLICAS).prop_map(|(pick, to)| Step::Late { pick, to }),
    ]
}

/// Write ids are the values' bytes.
fn id_of(object: &Object) -> BTreeSet<u64> {
    object
        .versions()
        .iter()
        .map(|v| {
            let bytes: [u8; 8] = v.value.content_type.as_bytes().try_into().unwrap_or([0; 8]);
            u64::from_be_bytes(bytes)
        })
        .collect()
}

struct Run {
    replicas: Vec<Object>,
    /// Per client: (context token contents, oracle set of seen write ids).
    clients: Vec<(VersionVector, BTreeSet<u64>)>,
    /// Oracle: write id → ids its client had seen.
    seen_by: HashMap<u64, BTreeSet<u64>>,
    next_id: u64,
    /// Every object that existed, for the merge-law checks.
    objects: Vec<Object>,
    /// The coordinators' counter floor.
    floor: u64,
    /// What clock hygiene applies to every object a replica stores.
    retired: Retired,
}

impl Run {
    fn new() -> Self {
        Run {
            replicas: vec![Object::empty(); REPLICAS],
            clients: vec![(VersionVector::new(), BTreeSet::new()); CLIENTS],
            seen_by: HashMap::new(),
            next_id: 1,
            objects: Vec::new(),
            floor: 0,
            retired: Retired::default(),
        }
    }

    fn actor(coordinator: usize) -> Actor {
        Actor::new(format!("r{coordinator}"), 7)
    }

    /// Store `object` at replica `i`, as a replica does: merged with
    /// what is there, then tidied by clock hygiene.
    fn store(&mut self, i: usize, object: &Object) {
        self.replicas[i] = self.replicas[i].sync(object).forget(&self.retired);
    }

    fn closure(&self, ids: &BTreeSet<u64>) -> BTreeSet<u64> {
        let mut all = ids.clone();
        let mut frontier: Vec<u64> = ids.iter().copied().collect();
        while let Some(id) = frontier.pop() {
            for seen in self.seen_by.get(&id).into_iter().flatten() {
                if all.insert(*seen) {
                    frontier.push(*seen);
                }
            }
        }
        all
    }

    fn apply(&mut self, step: &Step) {
        match *step {
            Step::Read { client, mask } => {
                let read = (0..REPLICAS)
                    .filter(|i| mask & (1 << i) != 0)
                    .fold(Object::empty(), |acc, i| acc.sync(&self.replicas[i]));
                let seen = self.closure(&id_of(&read));
                self.clients[client] = (read.context(), seen);
            }
            Step::Write {
                client,
                coordinator,
                fanout,
                delete,
            } => {
                let id = self.next_id;
                self.next_id += 1;
                let (context, seen) = self.clients[client].clone();
                self.seen_by.insert(id, seen);
                // The id rides in the content type so tombstones carry it too.
                let tag = String::from_utf8_lossy(&id.to_be_bytes()).into_owned();
                let value = if delete {
                    Value {
                        data: None,
                        content_type: tag,
                    }
                } else {
                    Value::bytes(vec![1], tag)
                };
                // A retired coordinator mints nothing more.
                let retired = Self::actor(coordinator);
                let coordinator =
                    if self.retired.superseded.contains(&retired) || self.retired.forgotten.contains(&retired) {
                        (coordinator + 1) % REPLICAS
                    } else {
                        coordinator
                    };
                let (object, _) =
                    self.replicas[coordinator].update(&context, &Self::actor(coordinator), value, self.floor);
                let object = object.forget(&self.retired);
                // Node-wide counters may jump ahead (other keys' writes).
                self.floor += id % 3;
                self.replicas[coordinator] = object.clone();
                for i in 0..REPLICAS {
                    if fanout & (1 << i) != 0 {
                        self.store(i, &object);
                    }
                }
                self.objects.push(object);
            }
            Step::Sync { from, to } => {
                let from = self.replicas[from].clone();
                self.store(to, &from);
                self.objects.push(self.replicas[to].clone());
            }
            Step::Forget { client } => self.clients[client] = (VersionVector::new(), BTreeSet::new()),
            Step::Late { pick, to } => {
                if let Some(old) = self.objects.get(pick % self.objects.len().max(1)).cloned() {
                    self.store(to, &old);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn converged_replicas_keep_exactly_the_unseen_writes(steps in proptest::collection::vec(step(), 1..60)) {
        let mut run = Run::new();
        for s in &steps {
            run.apply(s);
        }
        let all = run.replicas.iter().fold(Object::empty(), |acc, o| acc.sync(o));
        for r in &run.replicas {
            prop_assert_eq!(&r.sync(&all), &all, "sync with the union must converge");
        }
        let superseded: BTreeSet<u64> = run.seen_by.values().flatten().copied().collect();
        let expected: BTreeSet<u64> = run.seen_by.keys().copied().filter(|id| !superseded.contains(id)).collect();
        // Binary tags are lossy through from_utf8_lossy only for ids >= 128;
        // histories are shorter than that.
        prop_assert_eq!(id_of(&all), expected);
    }

    /// Clock hygiene: once no replica holds a version a retired
    /// coordinator minted, dropping its late copies and then its entries
    /// loses no write and revives none, however stale the copies still in
    /// flight and however old the clients' contexts.
    #[test]
    fn forgetting_a_superseded_actor_loses_and_revives_nothing(
        before in proptest::collection::vec(step(), 1..40),
        after in proptest::collection::vec(step(), 0..40),
        switch in 0usize..40,
    ) {
        let mut run = Run::new();
        for s in &before {
            run.apply(s);
        }
        // Supersede everything: read every replica, write through r0 to all.
        run.apply(&Step::Read { client: 0, mask: 7 });
        run.apply(&Step::Write { client: 0, coordinator: 0, fanout: 7, delete: false });
        let gone: BTreeSet<Actor> = [Run::actor(2)].into();
        for r in &run.replicas {
            prop_assert_eq!(r.minted_by(&gone), 0);
        }
        run.retired.superseded = gone.clone();
        for (i, s) in after.iter().enumerate() {
            if i == switch {
                run.retired.forgotten = gone.clone();
            }
            run.apply(s);
        }
        run.retired.forgotten = gone.clone();
        // Converge, with every replica tidied (the rewrite pass).
        let all = run
            .replicas
            .iter()
            .fold(Object::empty(), |acc, o| acc.sync(o))
            .forget(&run.retired);
        for r in &run.replicas {
            prop_assert_eq!(&r.sync(&all).forget(&run.retired), &all);
        }
        prop_assert!(!all.mentions(&gone), "the retired actor left every clock");
        let superseded: BTreeSet<u64> = run.seen_by.values().flatten().copied().collect();
        let expected: BTreeSet<u64> = run.seen_by.keys().copied().filter(|id| !superseded.contains(id)).collect();
        prop_assert_eq!(id_of(&all), expected);
    }

    #[test]
    fn sync_is_a_semilattice(steps in proptest::collection::vec(step(), 1..40), picks in proptest::collection::vec(0usize..1000, 3)) {
        let mut run = Run::new();
        for s in &steps {
            run.apply(s);
        }
        prop_assume!(!run.objects.is_empty());
        let pick = |i: usize| run.objects[picks[i] % run.objects.len()].clone();
        let (a, b, c) = (pick(0), pick(1), pick(2));
        prop_assert_eq!(a.sync(&b), b.sync(&a));
        prop_assert_eq!(a.sync(&b).sync(&c), a.sync(&b.sync(&c)));
        prop_assert_eq!(a.sync(&a), a.clone());
        // Merging by value is the same merge.
        prop_assert_eq!(a.clone().sync_owned(b.clone()), a.sync(&b));
        prop_assert_eq!(a.clone().sync_owned(a.clone()), a.clone());
        // Stored bytes: sized exactly, and decoded to the same object.
        let encoded = encode_object(&a);
        prop_assert_eq!(encoded.len(), encoded_len(&a));
        prop_assert_eq!(decode_object(&encoded).ok(), Some(a.clone()));
        // The merge never drops a version nothing in the other side has seen.
        let merged = a.sync(&b);
        for v in a.versions().iter().chain(b.versions()) {
            let dominated = a.versions().iter().chain(b.versions()).any(|w| w.dominates(v));
            prop_assert_eq!(merged.versions().contains(v), !dominated);
        }
    }

    #[test]
    fn version_vector_order_is_a_partial_order(
        a in proptest::collection::btree_map(0u8..4, 0u64..5, 0..4),
        b in proptest::collection::btree_map(0u8..4, 0u64..5, 0..4),
        c in proptest::collection::btree_map(0u8..4, 0u64..5, 0..4),
    ) {
        let vv = |m: &std::collections::BTreeMap<u8, u64>| -> VersionVector {
            m.iter().map(|(k, v)| (Actor::new(format!("n{k}"), 1), *v)).collect()
        };
        let (a, b, c) = (vv(&a), vv(&b), vv(&c));
        prop_assert!(a.descends(&a));
        if a.descends(&b) && b.descends(&a) {
            prop_assert_eq!(&a, &b);
        }
        if a.descends(&b) && b.descends(&c) {
            prop_assert!(a.descends(&c));
        }
        let mut j = a.clone();
        j.join(&b);
        prop_assert!(j.descends(&a) && j.descends(&b));
    }
}

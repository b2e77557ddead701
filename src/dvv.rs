//! Causality for versions: version vectors and dotted version vectors.
//!
//! Every write is stamped by its *coordinator* with a **dot** — a pair (actor,
//! counter) that names the write uniquely — and carries the **causal context**
//! the client read before writing (a version vector). A stored version is
//! therefore a dotted version vector (Preguiça, Baquero, Almeida, Fonte,
//! Gonçalves: "Dotted Version Vectors: Logical Clocks for Optimistic
//! Replication", 2010; the DVV-set variant in Almeida et al., "Scalable and
//! Accurate Causality Tracking for Eventually Consistent Stores", 2014).
//!
//! Why dots and not plain vector clocks (Dynamo §4.4): with server-id clocks,
//! two clients writing through the same coordinator with the same context
//! would get clocks that look ordered, and one write would silently vanish.
//! The dot separates "what this write is" from "what it has seen", so such
//! writes are correctly concurrent, while clocks stay bounded by the number of
//! coordinators (never pruned by length, which loses writes).
//!
//! Actors are *store incarnations*, not node names: a node whose data dir was
//! wiped starts with a new epoch, so it can never mint a dot that collides
//! with one it minted before (Riak's "kv679" data-loss bug).
//!
//! The coordinator applies [`Object::update`] to its own replica first and
//! replicates the whole resulting object; other replicas [`Object::sync`] it
//! in. That keeps per-key counters contiguous and guarantees that a replica
//! holding a dot of actor `a` also holds (or has seen superseded) every
//! earlier dot of `a` for that key — the invariant that makes a context
//! cover exactly what the client saw.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// One incarnation of one node's store: the identity that mints dots.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// The node's configured id.
    pub node: String,
    /// Random number drawn when the node's store was created.
    pub epoch: u64,
}

impl Actor {
    /// An actor for `node` in store incarnation `epoch`.
    pub fn new(node: impl Into<String>, epoch: u64) -> Self {
        Actor {
            node: node.into(),
            epoch,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{:x}", self.node, self.epoch)
    }
}

/// A single event: the `counter`-th write of `actor` for one key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// Who minted it.
    pub actor: Actor,
    /// Its position in that actor's sequence for the key (starts at 1).
    pub counter: u64,
}

/// A version vector: for each actor, the highest counter seen (Mattern,
/// Fidge). Absent actors are at 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector(BTreeMap<Actor, u64>);

impl VersionVector {
    /// The empty vector: has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter recorded for `actor` (0 if none).
    pub fn get(&self, actor: &Actor) -> u64 {
        self.0.get(actor).copied().unwrap_or(0)
    }

    /// Whether the event `dot` is in the past this vector describes.
    pub fn covers(&self, dot: &Dot) -> bool {
        self.get(&dot.actor) >= dot.counter
    }

    /// Raise the entry for `dot.actor` to at least `dot.counter`.
    pub fn add(&mut self, dot: &Dot) {
        let entry = self.0.entry(dot.actor.clone()).or_insert(0);
        *entry = (*entry).max(dot.counter);
    }

    /// Pointwise maximum (least upper bound).
    pub fn join(&mut self, other: &VersionVector) {
        for (actor, &counter) in &other.0 {
            let entry = self.0.entry(actor.clone()).or_insert(0);
            *entry = (*entry).max(counter);
        }
    }

    /// `self >= other` in the causal partial order.
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.0.iter().all(|(a, &c)| self.get(a) >= c)
    }

    /// Neither descends from the other.
    pub fn concurrent(&self, other: &VersionVector) -> bool {
        !self.descends(other) && !other.descends(self)
    }

    /// Entries, ordered by actor.
    pub fn iter(&self) -> impl Iterator<Item = (&Actor, u64)> {
        self.0.iter().map(|(a, &c)| (a, c))
    }

    /// Drop the entries of `retired` actors (clock hygiene: see
    /// [`Object::forget`]).
    pub fn forget(&mut self, retired: &BTreeSet<Actor>) {
        self.0.retain(|actor, _| !retired.contains(actor));
    }

    /// Whether any of `actors` has an entry.
    pub fn mentions(&self, actors: &BTreeSet<Actor>) -> bool {
        self.0.keys().any(|a| actors.contains(a))
    }

    /// Number of actors with a non-zero entry.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no actor has an entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(Actor, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (Actor, u64)>>(iter: I) -> Self {
        let mut vv = VersionVector::new();
        for (actor, counter) in iter {
            if counter > 0 {
                vv.add(&Dot { actor, counter });
            }
        }
        vv
    }
}

/// What clock hygiene has established about retired store incarnations
/// (see [`Object::forget`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retired {
    /// Actors none of whose versions is left anywhere: any copy that turns
    /// up is a stale one, dropped.
    pub superseded: BTreeSet<Actor>,
    /// Superseded actors every member knows about: their entries may leave
    /// clocks.
    pub forgotten: BTreeSet<Actor>,
}

impl Retired {
    /// Whether hygiene has nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.superseded.is_empty() && self.forgotten.is_empty()
    }

    /// Whether `version` was minted by an actor whose versions are dropped.
    fn drops(&self, version: &Version) -> bool {
        self.superseded.contains(&version.dot.actor) || self.forgotten.contains(&version.dot.actor)
    }
}

/// What a version holds: bytes with their content type, or a tombstone.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Value {
    /// `None` marks a delete (tombstone). Encoded as one byte string rather
    /// than a sequence of bytes: the same postcard bytes, a memcpy instead
    /// of a loop per byte.
    #[serde(with = "serde_bytes")]
    pub data: Option<Vec<u8>>,
    /// MIME type given at write time.
    pub content_type: String,
}

impl Value {
    /// The default content type when a client sends none.
    pub const DEFAULT_CONTENT_TYPE: &'static str = "application/octet-stream";

    /// A value with bytes.
    pub fn bytes(data: Vec<u8>, content_type: impl Into<String>) -> Self {
        Value {
            data: Some(data),
            content_type: content_type.into(),
        }
    }

    /// A tombstone.
    pub fn tombstone() -> Self {
        Value {
            data: None,
            content_type: String::new(),
        }
    }

    /// Whether this is a delete marker.
    pub fn is_tombstone(&self) -> bool {
        self.data.is_none()
    }
}

/// One immutable version of a key: a dotted version vector and its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version {
    /// The write that made it.
    pub dot: Dot,
    /// What the writer had seen (its causal past, excluding `dot`).
    pub context: VersionVector,
    /// The payload.
    pub value: Value,
}

impl Version {
    /// The full clock of this version: its context plus its own dot.
    pub fn clock(&self) -> VersionVector {
        let mut vv = self.context.clone();
        vv.add(&self.dot);
        vv
    }

    /// Whether `self` has seen `other` (and is not `other`).
    pub fn dominates(&self, other: &Version) -> bool {
        self.dot != other.dot && self.context.covers(&other.dot)
    }
}

/// Everything a replica keeps for one key: the set of mutually concurrent
/// versions (siblings). Kept sorted by dot, so equal sets are equal values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Object {
    versions: Vec<Version>,
}

impl Object {
    /// The object of a key never written.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The siblings, ordered by dot.
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    /// Whether there is no version at all.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// The value of the version `dot` made, moved out of the object (to
    /// mint it again when storing this object did not go ahead).
    pub fn into_value_of(self, dot: &Dot) -> Option<Value> {
        self.versions.into_iter().find(|v| v.dot == *dot).map(|v| v.value)
    }

    /// Whether every version is a tombstone (and there is at least one).
    pub fn is_deleted(&self) -> bool {
        !self.versions.is_empty() && self.versions.iter().all(|v| v.value.is_tombstone())
    }

    /// The causal context a reader of this object gets: everything any
    /// sibling has seen, plus the siblings themselves.
    pub fn context(&self) -> VersionVector {
        let mut vv = VersionVector::new();
        for v in &self.versions {
            vv.join(&v.context);
            vv.add(&v.dot);
        }
        vv
    }

    /// Coordinator-side write (DVV `update`): mint a new dot for `actor`,
    /// drop exactly the siblings the client's `context` has seen, and add
    /// the new version. Returns the new object and the new version's clock
    /// (the context the client gets back).
    ///
    /// The new counter exceeds everything this replica knows for the actor,
    /// anything the client claims to have seen from it, and `floor` — the
    /// actor's node-wide high-water mark, which keeps counters rising even
    /// for a key whose history was purged, so an old context can never
    /// cover a version written after the purge.
    pub fn update(&self, context: &VersionVector, actor: &Actor, value: Value, floor: u64) -> (Object, VersionVector) {
        let counter = self.context().get(actor).max(context.get(actor)).max(floor) + 1;
        let dot = Dot {
            actor: actor.clone(),
            counter,
        };
        let mut versions: Vec<Version> = self
            .versions
            .iter()
            .filter(|v| !context.covers(&v.dot))
            .cloned()
            .collect();
        let new = Version {
            dot,
            context: context.clone(),
            value,
        };
        let clock = new.clock();
        versions.push(new);
        (Object::from_versions(versions), clock)
    }

    /// Replica-side merge (DVV `sync`): the union of both sibling sets minus
    /// every version some other version has seen. Commutative, associative
    /// and idempotent, so replicas may exchange objects in any order.
    pub fn sync(&self, other: &Object) -> Object {
        // Only the survivors are copied: values are the bulk of an object.
        let all = self.versions.iter().chain(&other.versions).collect();
        Object::from_versions(survivors(all).into_iter().cloned().collect())
    }

    /// [`Object::sync`] of two objects the caller no longer needs: moves
    /// the surviving versions instead of copying them.
    pub fn sync_owned(self, other: Object) -> Object {
        Object::from_versions(survivors(self.versions.into_iter().chain(other.versions).collect()))
    }

    /// How many of the siblings `actors` minted.
    pub fn minted_by(&self, actors: &BTreeSet<Actor>) -> usize {
        self.versions.iter().filter(|v| actors.contains(&v.dot.actor)).count()
    }

    /// Whether any sibling's dot or context names one of `actors`.
    pub fn mentions(&self, actors: &BTreeSet<Actor>) -> bool {
        self.versions
            .iter()
            .any(|v| actors.contains(&v.dot.actor) || v.context.mentions(actors))
    }

    /// Clock hygiene: this object as `retired` says it may be — versions
    /// minted by a superseded actor dropped, and forgotten actors' entries
    /// gone from every context.
    ///
    /// Sound because an actor is *superseded* only once it is retired for
    /// good (it mints nothing more) and none of its versions is left
    /// anywhere in the cluster, every one superseded on every replica: a
    /// version of it that still turns up (a copy delayed in flight) is one
    /// of those, and must stay gone. It is *forgotten* once every member
    /// drops such copies; from then on its entries in a context can only
    /// cover versions that are gone and can never come back, so they say
    /// nothing. Never by length, as Dynamo §4.4 truncates: that loses
    /// writes.
    pub fn forget(self, retired: &Retired) -> Object {
        if !self.untidy(retired) {
            return self;
        }
        let versions = self
            .versions
            .into_iter()
            .filter(|v| !retired.drops(v))
            .map(|mut v| {
                v.context.forget(&retired.forgotten);
                v
            })
            .collect();
        // Forgetting entries only ever removes dominance, so the survivors
        // are still mutually concurrent.
        Object::from_versions(versions)
    }

    /// Whether [`Object::forget`] would change this object.
    pub fn untidy(&self, retired: &Retired) -> bool {
        self.versions
            .iter()
            .any(|v| retired.drops(v) || v.context.mentions(&retired.forgotten))
    }

    /// Build from versions, keeping the canonical order. Callers in this
    /// module guarantee no version dominates another.
    fn from_versions(mut versions: Vec<Version>) -> Object {
        versions.sort_by(|a, b| a.dot.cmp(&b.dot));
        Object { versions }
    }

    /// Rebuild an object from stored or received versions, enforcing the
    /// invariants (no duplicate dots, no dominated version) whatever the
    /// source sent.
    pub fn from_untrusted(versions: Vec<Version>) -> Object {
        Object::from_versions(survivors(versions))
    }

    /// This object with its invariants re-checked, for one that was decoded
    /// from bytes (see [`Object::from_untrusted`]).
    pub fn checked(self) -> Object {
        Object::from_untrusted(self.versions)
    }
}

/// The versions of `all` that no other one has seen, one per dot (the first
/// given wins a tie): the union step of DVV `sync`, over owned versions or
/// references alike.
fn survivors<V: std::borrow::Borrow<Version>>(mut all: Vec<V>) -> Vec<V> {
    all.sort_by(|a, b| a.borrow().dot.cmp(&b.borrow().dot));
    all.dedup_by(|a, b| a.borrow().dot == b.borrow().dot);
    let dominated: Vec<bool> = all
        .iter()
        .map(|v| all.iter().any(|w| w.borrow().dominates(v.borrow())))
        .collect();
    all.into_iter()
        .zip(dominated)
        .filter_map(|(v, dominated)| (!dominated).then_some(v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: &str) -> Actor {
        Actor::new(n, 1)
    }

    fn val(s: &str) -> Value {
        Value::bytes(s.as_bytes().to_vec(), "text/plain")
    }

    /// Objects stored before values were encoded as byte strings must
    /// still decode, and new ones must encode exactly as they did.
    #[test]
    fn value_bytes_encode_as_they_did_as_a_sequence() {
        #[derive(Serialize)]
        struct AsSequence {
            data: Option<Vec<u8>>,
            content_type: String,
        }
        for data in [None, Some(vec![]), Some(vec![0, 1, 127, 128, 255]), Some(vec![7; 300])] {
            let old = postcard::to_allocvec(&AsSequence {
                data: data.clone(),
                content_type: "text/plain".into(),
            })
            .unwrap();
            let value = Value {
                data,
                content_type: "text/plain".into(),
            };
            assert_eq!(postcard::to_allocvec(&value).unwrap(), old);
            assert_eq!(postcard::from_bytes::<Value>(&old).unwrap(), value);
        }
    }

    #[test]
    fn write_with_context_supersedes() {
        let o = Object::empty();
        let (o, c1) = o.update(&VersionVector::new(), &a("x"), val("v1"), 0);
        let (o, _) = o.update(&c1, &a("x"), val("v2"), 0);
        assert_eq!(o.versions().len(), 1);
        assert_eq!(o.versions()[0].value, val("v2"));
    }

    #[test]
    fn the_value_of_a_minted_version_can_be_taken_back() {
        let (o, _) = Object::empty().update(&VersionVector::new(), &a("x"), val("v1"), 0);
        let (o, clock) = o.update(&VersionVector::new(), &a("x"), val("v2"), 0);
        let dot = Dot {
            actor: a("x"),
            counter: clock.get(&a("x")),
        };
        assert_eq!(o.clone().into_value_of(&dot), Some(val("v2")));
        let absent = Dot {
            actor: a("y"),
            counter: 1,
        };
        assert_eq!(o.into_value_of(&absent), None);
    }

    #[test]
    fn blind_writes_through_one_node_are_siblings() {
        let o = Object::empty();
        let (o, _) = o.update(&VersionVector::new(), &a("x"), val("v1"), 0);
        let (o, _) = o.update(&VersionVector::new(), &a("x"), val("v2"), 0);
        assert_eq!(o.versions().len(), 2);
    }

    #[test]
    fn same_context_through_two_nodes_are_siblings() {
        let (base, c1) = Object::empty().update(&VersionVector::new(), &a("x"), val("v1"), 0);
        let (left, _) = base.update(&c1, &a("x"), val("l"), 0);
        let (right, _) = base.update(&c1, &a("y"), val("r"), 0);
        let merged = left.sync(&right);
        assert_eq!(merged.versions().len(), 2);
        let ctx = merged.context();
        let (resolved, _) = merged.update(&ctx, &a("y"), val("resolved"), 0);
        assert_eq!(resolved.versions().len(), 1);
        // The resolution also wins against either side's stale copy.
        assert_eq!(resolved.sync(&left), resolved);
    }

    #[test]
    fn tombstone_loses_to_unseen_write() {
        let (base, c1) = Object::empty().update(&VersionVector::new(), &a("x"), val("v1"), 0);
        let (deleted, _) = base.update(&c1, &a("x"), Value::tombstone(), 0);
        let (written, _) = base.update(&c1, &a("y"), val("v2"), 0);
        let merged = deleted.sync(&written);
        assert_eq!(merged.versions().len(), 2);
        assert!(!merged.is_deleted());
    }

    #[test]
    fn untrusted_input_is_normalised() {
        let (o, c1) = Object::empty().update(&VersionVector::new(), &a("x"), val("v1"), 0);
        let (o2, _) = o.update(&c1, &a("x"), val("v2"), 0);
        let mut raw = o.versions().to_vec();
        raw.extend(o2.versions().iter().cloned());
        raw.extend(o2.versions().iter().cloned());
        assert_eq!(Object::from_untrusted(raw), o2);
    }
}

//! The node-to-node protocol: typed requests and responses.
//!
//! One enum per direction, as in Garage's RPC enums: the replica protocol
//! (riak_core's vnode get/put), forwarded client operations, and gossip.
//! Frames carry a request id so many calls share one connection; the codec
//! is postcard (compact, serde), the framing a 4-byte length prefix bounded
//! by [`MAX_FRAME_BYTES`]. A pulled partition chunk's records are the one
//! bulk payload: they follow the frame's encoding as raw bytes, so neither
//! side copies them into or out of a postcard buffer.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::dvv::{Object, Value, VersionVector};
use crate::membership::ClusterState;
use crate::ring::NodeId;

/// Largest frame a node sends or accepts. A value is at most 64 MiB by
/// config and an object holds few siblings, so this bounds memory per frame
/// without refusing legitimate traffic.
pub const MAX_FRAME_BYTES: usize = 128 * 1024 * 1024;

/// A client operation, as the coordinator executes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientOp {
    /// The key.
    pub key: Vec<u8>,
    /// What to do.
    pub kind: OpKind,
    /// R or W for this request (`None`: the coordinator's default).
    pub quorum: Option<usize>,
}

/// The three client operations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OpKind {
    /// Read every sibling.
    Get,
    /// Write a value superseding what `context` has seen.
    Put {
        /// The value.
        value: Value,
        /// The client's causal context.
        context: VersionVector,
    },
    /// Write a tombstone superseding what `context` has seen.
    Delete {
        /// The client's causal context.
        context: VersionVector,
    },
}

/// What a client operation produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientReply {
    /// A PUT or DELETE reached W replicas.
    Written {
        /// The clock of the new version (what it supersedes plus itself).
        context: VersionVector,
        /// Replicas that acknowledged in time.
        replicas: usize,
        /// The coordinating node.
        coordinator: NodeId,
    },
    /// A GET reached R replicas.
    Read {
        /// The reconciled object (possibly empty).
        object: Object,
        /// Replicas that answered in time.
        replicas: usize,
        /// The coordinating node.
        coordinator: NodeId,
    },
}

/// Why a client operation failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum OpError {
    /// Fewer than the required replicas answered in time.
    #[error("quorum not reached: {ok} of {needed} required replicas answered ({tried} tried)")]
    Unavailable {
        /// R or W.
        needed: usize,
        /// Replicas that answered.
        ok: usize,
        /// Replicas asked.
        tried: usize,
        /// The coordinating node.
        coordinator: NodeId,
    },
    /// The request itself is invalid (e.g. quorum above N).
    #[error("{0}")]
    BadRequest(String),
    /// The request conflicts with the key's state (too many siblings).
    #[error("{0}")]
    Conflict(String),
    /// The node failed internally (storage error).
    #[error("internal error: {0}")]
    Internal(String),
}

/// A request from one node to another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Merge `object` into the replica for `key`; answered once durable.
    Replicate {
        /// The key.
        key: Vec<u8>,
        /// The coordinator's object after its update.
        object: Object,
        /// Set when the receiver stands in for this down owner: keep it as
        /// a hint to hand back (sloppy quorum, Dynamo §4.6).
        hint_for: Option<NodeId>,
    },
    /// Read the replica's object for `key`.
    Fetch {
        /// The key.
        key: Vec<u8>,
        /// Include the hint kept for this owner.
        hint_for: Option<NodeId>,
    },
    /// Coordinate a client operation (sent by a node that is not a replica).
    Coordinate(ClientOp),
    /// Push-pull gossip: the sender's view; the answer is the receiver's.
    Gossip(ClusterState),
    /// Are you there? (the failure detector's probe of a silent peer)
    Ping,
    /// Anti-entropy: the digests of Merkle nodes `indices` at `level` of
    /// partition `partition`'s tree, for a ring of `q` partitions.
    AeTree {
        /// The partition.
        partition: u32,
        /// Ring size both sides must share.
        q: u32,
        /// Tree level (0 is the root).
        level: u32,
        /// Node indices at that level (at most [`MAX_AE_ITEMS`]).
        indices: Vec<u32>,
    },
    /// Anti-entropy: the (key, digest) pairs stored in some leaves.
    AeKeys {
        /// The partition.
        partition: u32,
        /// Ring size both sides must share.
        q: u32,
        /// Leaf indices (at most [`MAX_AE_ITEMS`]).
        leaves: Vec<u32>,
        /// At most this many pairs (capped at [`MAX_AE_ITEMS`]).
        limit: u32,
    },
    /// Partition transfer: the next chunk of `partition`'s data after key
    /// `after` (ring order), at most `limit` keys and about `max_bytes`.
    PullPartition {
        /// The partition.
        partition: u32,
        /// Ring size both sides must share.
        q: u32,
        /// Resume after this (ring position, key); `None` from the start.
        after: Option<(u128, Vec<u8>)>,
        /// At most this many keys (capped at [`MAX_AE_ITEMS`]).
        limit: u32,
        /// About this many bytes of keys and objects (capped at
        /// [`MAX_CHUNK_BYTES`]); a chunk always holds at least one key.
        max_bytes: u32,
    },
    /// Partition handover: the Merkle digest of what the receiver stores
    /// for each key, so the sender only sends what the owner lacks.
    KeyDigests {
        /// The keys, at most [`MAX_AE_ITEMS`].
        keys: Vec<Vec<u8>>,
    },
    /// Tombstone purge: does the receiver keep a hint for `key`?
    HasHint {
        /// The key.
        key: Vec<u8>,
    },
    /// Tombstone purge: delete `key` if it still holds exactly `expected`.
    Purge {
        /// The key.
        key: Vec<u8>,
        /// The tombstone every replica was seen to hold.
        expected: Object,
    },
    /// Merge many objects into the receiver's replica (hinted handoff and
    /// partition handover send a batch per call); answered `Stored` once
    /// every one is durable.
    ReplicateMany {
        /// (key, object) pairs, at most [`MAX_AE_ITEMS`].
        items: Vec<(Vec<u8>, Object)>,
    },
}

/// Most indices, leaves or keys one anti-entropy request may name or return.
pub const MAX_AE_ITEMS: usize = 4096;

/// Most bytes of data a `PullPartition` chunk asks for. Far below
/// [`MAX_FRAME_BYTES`], which must still fit one key at the largest value
/// size a node accepts.
pub const MAX_CHUNK_BYTES: u32 = 8 * 1024 * 1024;

impl PeerRequest {
    /// A short name of the request's kind (for logs and fault injection).
    pub fn kind(&self) -> &'static str {
        match self {
            // One kind for both: a fault that stops replica writes between
            // two nodes stops batches too.
            PeerRequest::Replicate { .. } | PeerRequest::ReplicateMany { .. } => "replicate",
            PeerRequest::Fetch { .. } => "fetch",
            PeerRequest::Coordinate(_) => "coordinate",
            PeerRequest::Gossip(_) => "gossip",
            PeerRequest::Ping => "ping",
            PeerRequest::AeTree { .. } => "ae-tree",
            PeerRequest::AeKeys { .. } => "ae-keys",
            PeerRequest::PullPartition { .. } => "pull-partition",
            PeerRequest::KeyDigests { .. } => "key-digests",
            PeerRequest::HasHint { .. } => "has-hint",
            PeerRequest::Purge { .. } => "purge",
        }
    }
}

/// The answer to a [`PeerRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PeerResponse {
    /// `Replicate` is durable.
    Stored,
    /// `Fetch` result.
    Fetched(Option<Object>),
    /// `Coordinate` result.
    Coordinated(Result<ClientReply, OpError>),
    /// `Gossip` answer.
    Gossip(ClusterState),
    /// `Ping` answer.
    Pong,
    /// `AeTree` answer: digests in the order asked.
    AeNodes(Vec<u64>),
    /// `AeKeys` answer.
    AeKeyDigests(Vec<(Vec<u8>, u64)>),
    /// `PullPartition` answer: keys with their objects as the donor stores
    /// them, and whether the partition is exhausted.
    Chunk {
        /// (key, stored object) records in ring order: the frame's payload,
        /// which travels after its encoding (see [`Frame::encode_framed`]).
        #[serde(skip)]
        records: Records,
        /// No more keys after these.
        done: bool,
    },
    /// `KeyDigests` answer, in the order asked (`None`: nothing stored).
    KeyDigests(Vec<Option<u64>>),
    /// `HasHint` answer.
    HasHint(bool),
    /// `Purge` answer: whether the key was deleted.
    Purged(bool),
    /// The request failed on the receiver.
    Error(String),
}

/// Keys with their objects' stored encodings (see
/// [`crate::storage::encode_object`]), packed in one buffer: what a donor
/// sends of a partition. The donor copies its stored bytes in as they are,
/// without decoding them, and the buffer goes to the socket as it is; the
/// receiver reads the records where they arrived and checks each object as
/// it decodes it. One buffer per chunk rather than two vectors per key: a
/// transfer moves hundreds of keys per MB.
///
/// Each record is the key's length and the object's length (`u32`, little
/// endian), then the key and the object.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Records(Bytes);

/// Bytes of a record's header: the two lengths.
const RECORD_HEADER: usize = 8;

/// Records being gathered (see [`Records`]).
#[derive(Default)]
pub struct RecordsBuilder(Vec<u8>);

impl RecordsBuilder {
    /// An empty buffer with room for `bytes` of records.
    pub fn with_capacity(bytes: usize) -> RecordsBuilder {
        RecordsBuilder(Vec::with_capacity(bytes))
    }

    /// Append a record. A key or object of 4 GiB or more cannot be stored
    /// in the first place (values are bounded far below that).
    pub fn push(&mut self, key: &[u8], object: &[u8]) {
        self.0.reserve(RECORD_HEADER + key.len() + object.len());
        self.0.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.0.extend_from_slice(&(object.len() as u32).to_le_bytes());
        self.0.extend_from_slice(key);
        self.0.extend_from_slice(object);
    }

    /// Bytes of all records so far, headers included.
    pub fn byte_len(&self) -> usize {
        self.0.len()
    }

    /// The records gathered.
    pub fn finish(self) -> Records {
        Records(Bytes::from(self.0))
    }
}

impl Records {
    /// Bytes of all records, headers included.
    pub fn byte_len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The (key, stored object) records in order; an error, and nothing
    /// after it, where the buffer is cut short (a peer sent garbage).
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter { rest: &self.0 }
    }
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Records({} bytes)", self.0.len())
    }
}

/// A record list ended inside a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("record list cut short")]
pub struct TruncatedRecords;

/// The records of a [`Records`] buffer.
pub struct RecordIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), TruncatedRecords>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let record = (|| {
            let (header, body) = self.rest.split_at_checked(RECORD_HEADER)?;
            let key_len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
            let object_len = u32::from_le_bytes(header[4..].try_into().ok()?) as usize;
            let (key, body) = body.split_at_checked(key_len)?;
            let (object, rest) = body.split_at_checked(object_len)?;
            Some((key, object, rest))
        })();
        match record {
            Some((key, object, rest)) => {
                self.rest = rest;
                Some(Ok((key, object)))
            }
            None => {
                self.rest = &[];
                Some(Err(TruncatedRecords))
            }
        }
    }
}

/// One frame on a peer connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// Handshake 1 (connecting side, when a cluster secret is set): a nonce.
    Hello {
        /// Fresh random bytes.
        nonce: Vec<u8>,
    },
    /// Handshake 2 (accepting side): its nonce and its proof.
    Challenge {
        /// Fresh random bytes.
        nonce: Vec<u8>,
        /// `auth::server_proof` over both nonces.
        proof: Vec<u8>,
    },
    /// Handshake 3 (connecting side): its proof.
    Proof {
        /// `auth::client_proof` over both nonces.
        proof: Vec<u8>,
    },
    /// A call, answered by a `Response` with the same id.
    Request {
        /// Chosen by the caller, unique per connection.
        id: u64,
        /// The call.
        body: PeerRequest,
    },
    /// The answer to the request with the same id.
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        body: PeerResponse,
    },
}

/// Why a frame did not encode or decode.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Postcard refused it.
    #[error("undecodable peer frame: {0}")]
    Codec(#[from] postcard::Error),
    /// Larger than [`MAX_FRAME_BYTES`].
    #[error("peer frame of {0} bytes is over the limit")]
    TooLarge(usize),
}

/// Bytes of the length prefix before each frame on the wire (big endian,
/// counting the frame alone): tokio-util's `LengthDelimitedCodec` default.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// A frame ready for the wire: its length prefix and postcard encoding in
/// one buffer, and its payload, if it has one, in another, as it was built
/// (see [`Frame::encode_framed`]).
#[derive(Debug)]
pub struct Framed {
    /// The length prefix and the encoding.
    pub head: Vec<u8>,
    /// The payload, sent right after the head.
    pub payload: Option<Bytes>,
}

impl Frame {
    /// The bulk bytes that travel after this frame's encoding rather than
    /// inside it (a pulled chunk's records).
    fn payload(&self) -> Option<&Records> {
        match self {
            Frame::Response {
                body: PeerResponse::Chunk { records, .. },
                ..
            } => Some(records),
            _ => None,
        }
    }

    fn payload_mut(&mut self) -> Option<&mut Records> {
        match self {
            Frame::Response {
                body: PeerResponse::Chunk { records, .. },
                ..
            } => Some(records),
            _ => None,
        }
    }

    /// Encode as one buffer, the payload after the encoding (without the
    /// length prefix).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = postcard::to_allocvec(self)?;
        if let Some(records) = self.payload() {
            out.extend_from_slice(&records.0);
        }
        Ok(out)
    }

    /// Encode for the wire: the length prefix and the encoding in a buffer
    /// sized first (its bytes are written once and never moved), and the
    /// payload as it is, to go to the socket after it uncopied. The prefix
    /// counts both.
    pub fn encode_framed(&self) -> Result<Framed, FrameError> {
        let payload = self.payload().filter(|r| !r.is_empty()).map(|r| r.0.clone());
        let len = postcard::serialize_with_flavor::<_, _, usize>(self, postcard::ser_flavors::Size::default())?;
        let total = len + payload.as_ref().map_or(0, Bytes::len);
        if total > MAX_FRAME_BYTES {
            return Err(FrameError::TooLarge(total));
        }
        let mut head = Vec::with_capacity(FRAME_PREFIX_BYTES + len);
        head.extend_from_slice(&(total as u32).to_be_bytes());
        postcard::to_io(self, &mut head)?;
        Ok(Framed { head, payload })
    }

    /// Decode bytes a peer sent; never panics on garbage.
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        Frame::decode_shared(Bytes::copy_from_slice(bytes))
    }

    /// Decode a frame as received, without copying its payload: the
    /// payload is the rest of the frame's bytes after its encoding.
    pub fn decode_shared(bytes: Bytes) -> Result<Frame, FrameError> {
        let (mut frame, rest) = postcard::take_from_bytes::<Frame>(&bytes)?;
        let consumed = bytes.len() - rest.len();
        if let Some(records) = frame.payload_mut() {
            *records = Records(bytes.slice(consumed..));
        }
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn records(pairs: &[(Vec<u8>, Vec<u8>)]) -> Records {
        let mut r = RecordsBuilder::default();
        for (k, o) in pairs {
            r.push(k, o);
        }
        r.finish()
    }

    #[test]
    fn a_framed_encoding_is_the_length_then_the_frame_then_its_payload() {
        let chunk = records(&[(b"k".to_vec(), vec![1; 300])]);
        for frame in [
            Frame::Request {
                id: 1,
                body: PeerRequest::Ping,
            },
            Frame::Response {
                id: u64::MAX,
                body: PeerResponse::Chunk {
                    records: chunk.clone(),
                    done: true,
                },
            },
        ] {
            let plain = frame.encode().unwrap();
            let Framed { head, payload } = frame.encode_framed().unwrap();
            assert_eq!(head.capacity(), head.len());
            assert_eq!(head[..FRAME_PREFIX_BYTES], (plain.len() as u32).to_be_bytes());
            let mut wire = head[FRAME_PREFIX_BYTES..].to_vec();
            wire.extend_from_slice(payload.as_deref().unwrap_or_default());
            assert_eq!(wire, plain);
            assert_eq!(Frame::decode_shared(Bytes::from(wire)).unwrap(), frame);
        }
    }

    proptest! {
        #[test]
        fn records_come_back_as_pushed_through_a_frame(
            pairs in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40), proptest::collection::vec(any::<u8>(), 0..300)),
                0..20,
            ),
            done: bool,
        ) {
            let frame = Frame::Response { id: 7, body: PeerResponse::Chunk { records: records(&pairs), done } };
            let Ok(Frame::Response { body: PeerResponse::Chunk { records: back, done: back_done }, .. }) =
                Frame::decode(&frame.encode().unwrap())
            else {
                panic!("not a chunk");
            };
            prop_assert_eq!(back_done, done);
            let got: Vec<(Vec<u8>, Vec<u8>)> =
                back.iter().map(|r| r.map(|(k, o)| (k.to_vec(), o.to_vec()))).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(got, pairs);
        }

        /// A buffer cut anywhere (or garbage from a peer) yields the whole
        /// records before the cut, then one error, then nothing.
        #[test]
        fn a_cut_record_list_ends_in_one_error(
            pairs in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..8), proptest::collection::vec(any::<u8>(), 0..30)),
                1..8,
            ),
            cut in any::<prop::sample::Index>(),
        ) {
            let whole = records(&pairs);
            let at = cut.index(whole.byte_len());
            let ends: Vec<usize> = pairs
                .iter()
                .scan(0, |end, (k, o)| {
                    *end += RECORD_HEADER + k.len() + o.len();
                    Some(*end)
                })
                .collect();
            let complete = ends.iter().take_while(|&&end| end <= at).count();
            let cut_inside = at > 0 && !ends.contains(&at);
            let cut = Records(whole.0.slice(..at));
            let items: Vec<_> = cut.iter().collect();
            prop_assert_eq!(items.len(), complete + usize::from(cut_inside));
            for (item, (k, o)) in items.iter().zip(&pairs[..complete]) {
                prop_assert_eq!(item, &Ok((&k[..], &o[..])));
            }
            if cut_inside {
                prop_assert_eq!(items.last(), Some(&Err(TruncatedRecords)));
            }
        }
    }
}

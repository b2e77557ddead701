//! The node-to-node protocol: typed requests and responses.
//!
//! One enum per direction, as in Garage's RPC enums: the replica protocol
//! (riak_core's vnode get/put), forwarded client operations, and gossip.
//! Frames carry a request id so many calls share one connection; the codec
//! is postcard (compact, serde), the framing a 4-byte length prefix bounded
//! by [`MAX_FRAME_BYTES`].

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
    /// `PullPartition` answer: keys with their objects, and whether the
    /// partition is exhausted.
    Chunk {
        /// (key, object) pairs in ring order.
        items: Vec<(Vec<u8>, Object)>,
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

/// Why a frame did not decode.
#[derive(Debug, thiserror::Error)]
#[error("undecodable peer frame: {0}")]
pub struct FrameError(#[from] postcard::Error);

impl Frame {
    /// Encode for the wire (without the length prefix).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        Ok(postcard::to_allocvec(self)?)
    }

    /// Decode bytes a peer sent; never panics on garbage.
    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

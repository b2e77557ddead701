//! The peer frame decoder (`wire::Frame::decode`): the bytes of one
//! length-delimited frame as any peer (or anyone reaching the peer port)
//! sends them. A frame that decodes must re-encode to one that decodes to
//! the same frame, and the objects it carries must survive the replica's
//! normalisation (`Object::from_untrusted`) without panicking (a pulled
//! chunk's records are read as a joining node reads them), and a
//! gossiped view must merge into a node's own (`ClusterState::merge`, then
//! the claimant's `claim`) without panicking.
#![no_main]

use dynamo_core::membership::{ClusterState, Member, MemberState};
use dynamo_core::storage::{decode_object, decode_stored, encode_object, sole_version_as_stored};
use dynamo_core::wire::{ClientReply, Frame, OpKind, PeerRequest, PeerResponse};
use dynamo_core::Object;
use libfuzzer_sys::fuzz_target;

fn normalise(object: &Object) {
    let normal = Object::from_untrusted(object.versions().to_vec());
    // Normalising is idempotent, and the result is canonical.
    assert_eq!(Object::from_untrusted(normal.versions().to_vec()), normal);
    let _ = normal.context();
    let _ = normal.is_deleted();
}

/// A pulled record's object, read both ways a joining node reads it: what
/// either takes as stored must be exactly the encoding of what it decodes to.
fn pulled(stored: &[u8]) {
    if let Some(deleted) = sole_version_as_stored(stored) {
        let object = decode_object(stored).expect("what the view takes decodes");
        assert_eq!(encode_object(&object), stored);
        assert_eq!(object.is_deleted(), deleted);
    }
    if let Ok((object, exact)) = decode_stored(stored) {
        normalise(&object);
        assert_eq!(exact, encode_object(&object) == stored);
    }
}

fn absorb(theirs: &ClusterState) {
    let me = Member {
        node_id: "a".into(),
        peer_addr: "127.0.0.1:1".into(),
        http_addr: "127.0.0.1:2".into(),
        weight: 1,
        generation: 1,
        version: 1,
        state: MemberState::Active,
        epoch: 1,
        ready_for: 0,
        hygiene: Default::default(),
    };
    let mut mine = ClusterState::new(me, 8, true);
    mine.merge(theirs);
    mine.claim("a", 3);
    mine.sweep_step("a");
    let _ = mine.retired();
    let _ = mine.partitions_to_pull("a", 3);
    let _ = mine.incoming_owners(0, 3);
    // Merging is idempotent.
    let once = mine.clone();
    mine.merge(theirs);
    assert_eq!(mine.members, once.members);
}

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = Frame::decode(data) else { return };
    let bytes = frame.encode().expect("a decoded frame encodes");
    assert_eq!(Frame::decode(&bytes).expect("a re-encoded frame decodes"), frame);
    match &frame {
        Frame::Request { body, .. } => {
            let _ = body.kind();
            match body {
                PeerRequest::Replicate { object, .. } | PeerRequest::Purge { expected: object, .. } => {
                    normalise(object)
                }
                PeerRequest::Coordinate(op) => match &op.kind {
                    OpKind::Put { context, .. } | OpKind::Delete { context } => {
                        let _ = context.iter().count();
                    }
                    OpKind::Get => {}
                },
                PeerRequest::Gossip(state) => absorb(state),
                _ => {}
            }
        }
        Frame::Response { body, .. } => match body {
            PeerResponse::Fetched(Some(object)) => normalise(object),
            PeerResponse::Chunk { records, .. } => records
                .iter()
                .map_while(Result::ok)
                .for_each(|(_, stored)| pulled(stored)),
            PeerResponse::Coordinated(Ok(ClientReply::Read { object, .. })) => normalise(object),
            PeerResponse::Gossip(state) => absorb(state),
            _ => {}
        },
        _ => {}
    }
});

//! The opaque causal-context token clients carry in `X-Context`.
//!
//! A token is a [`VersionVector`] the client read, bound to the key it was
//! read for, versioned, and sealed with an HMAC-SHA256 tag. The tag turns a
//! garbled token, a token for another key, or a hand-made one into a clean
//! `400` instead of a wrong merge: a forged context could otherwise claim to
//! have seen (and so silently supersede) versions its writer never read.
//!
//! Layout before base64url: `[format version: u8][postcard(entries)][tag: 16 bytes]`,
//! the tag computed over `key || version || payload`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::dvv::{Actor, VersionVector};

/// Current token format.
const FORMAT_V1: u8 = 1;
/// Bytes of HMAC tag kept (128 bits).
const TAG_LEN: usize = 16;
/// A token longer than this is rejected before decoding (bounded work).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// A context naming more actors than this is rejected: clocks are bounded by
/// the number of coordinators, never by trimming.
pub const MAX_ENTRIES: usize = 1024;

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError {
    /// Not base64url, too short, or too long.
    #[error("the context token is malformed")]
    Malformed,
    /// A format this node does not know.
    #[error("the context token has unknown format {0}")]
    UnknownFormat(u8),
    /// The tag does not match: garbled, forged, or for another key.
    #[error("the context token is not valid for this key")]
    BadSignature,
    /// The payload does not decode to a version vector.
    #[error("the context token's payload does not decode")]
    BadPayload,
}

/// Seals and opens context tokens with one cluster-wide key.
#[derive(Clone)]
pub struct ContextCodec {
    key: Vec<u8>,
}

impl std::fmt::Debug for ContextCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContextCodec { .. }")
    }
}

impl ContextCodec {
    /// A codec keyed by the cluster secret, or by a fixed key when the
    /// cluster has none (then tokens are integrity-checked but forgeable by
    /// anyone who reads this source; set `cluster_secret` to prevent that).
    pub fn new(cluster_secret: Option<&str>) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"dynamo-context-key").expect("HMAC takes any key length");
        mac.update(cluster_secret.unwrap_or("").as_bytes());
        ContextCodec {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn tag(&self, key: &[u8], body: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&(key.len() as u64).to_be_bytes());
        mac.update(key);
        mac.update(body);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Seal `vv` for `key`.
    pub fn encode(&self, key: &[u8], vv: &VersionVector) -> String {
        let entries: Vec<(&Actor, u64)> = vv.iter().collect();
        let mut body = vec![FORMAT_V1];
        // Serialising plain strings and integers into a Vec cannot fail.
        body.extend(postcard::to_allocvec(&entries).unwrap_or_default());
        let tag = self.tag(key, &body);
        body.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(body)
    }

    /// Open a token for `key`. An empty token is the empty context.
    pub fn decode(&self, key: &[u8], token: &str) -> Result<VersionVector, ContextError> {
        let token = token.trim();
        if token.is_empty() {
            return Ok(VersionVector::new());
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(ContextError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| ContextError::Malformed)?;
        if raw.len() < 1 + TAG_LEN {
            return Err(ContextError::Malformed);
        }
        let (body, tag) = raw.split_at(raw.len() - TAG_LEN);
        if body[0] != FORMAT_V1 {
            return Err(ContextError::UnknownFormat(body[0]));
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(&(key.len() as u64).to_be_bytes());
        mac.update(key);
        mac.update(body);
        // Constant-time comparison of the truncated tag.
        mac.verify_truncated_left(tag).map_err(|_| ContextError::BadSignature)?;
        let entries: Vec<(Actor, u64)> = postcard::from_bytes(&body[1..]).map_err(|_| ContextError::BadPayload)?;
        if entries.len() > MAX_ENTRIES {
            return Err(ContextError::BadPayload);
        }
        Ok(entries.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dvv::Dot;

    fn vv() -> VersionVector {
        let mut vv = VersionVector::new();
        vv.add(&Dot {
            actor: Actor::new("n1", 7),
            counter: 3,
        });
        vv.add(&Dot {
            actor: Actor::new("n2", 9),
            counter: 1,
        });
        vv
    }

    #[test]
    fn round_trips() {
        let codec = ContextCodec::new(None);
        let token = codec.encode(b"k", &vv());
        assert_eq!(codec.decode(b"k", &token), Ok(vv()));
        assert_eq!(codec.decode(b"k", ""), Ok(VersionVector::new()));
    }

    #[test]
    fn rejects_other_key_other_secret_and_flips() {
        let codec = ContextCodec::new(Some("s"));
        let token = codec.encode(b"k", &vv());
        assert_eq!(codec.decode(b"other", &token), Err(ContextError::BadSignature));
        assert_eq!(
            ContextCodec::new(None).decode(b"k", &token),
            Err(ContextError::BadSignature)
        );
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let flipped = String::from_utf8(bytes).unwrap_or_default();
            if flipped != token {
                assert!(codec.decode(b"k", &flipped).is_err(), "flip at {i} accepted");
            }
        }
        assert_eq!(codec.decode(b"k", "!!!"), Err(ContextError::Malformed));
    }
}

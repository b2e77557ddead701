//! Mutual authentication of peers holding the cluster secret.
//!
//! A three-message challenge-response before any other frame, in the
//! manner of SCRAM's mutual proof: the connecting side sends a fresh nonce
//! (`Hello`), the accepting side answers with its own nonce and an HMAC of
//! both under the secret (`Challenge`), and the connecting side proves
//! itself with an HMAC in the other direction (`Proof`). Each proof is bound
//! to the other side's fresh nonce, so a recorded handshake cannot be
//! replayed, and the two directions use different labels, so one side's
//! proof cannot be reflected back as the other's. Comparisons are constant
//! time. This authenticates; it does not encrypt (see the README).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of a handshake nonce.
pub const NONCE_LEN: usize = 32;

fn mac(secret: &[u8], label: &[u8], first: &[u8], second: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(label);
    m.update(first);
    m.update(second);
    m
}

/// The accepting side's proof, over the connecting side's nonce and its own.
pub fn server_proof(secret: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> Vec<u8> {
    mac(secret, b"dynamo-peer-server-v1", client_nonce, server_nonce)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// The connecting side's proof, over the accepting side's nonce and its own.
pub fn client_proof(secret: &[u8], server_nonce: &[u8], client_nonce: &[u8]) -> Vec<u8> {
    mac(secret, b"dynamo-peer-client-v1", server_nonce, client_nonce)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// Check the accepting side's proof (constant time).
pub fn verify_server(secret: &[u8], client_nonce: &[u8], server_nonce: &[u8], proof: &[u8]) -> bool {
    mac(secret, b"dynamo-peer-server-v1", client_nonce, server_nonce)
        .verify_slice(proof)
        .is_ok()
}

/// Check the connecting side's proof (constant time).
pub fn verify_client(secret: &[u8], server_nonce: &[u8], client_nonce: &[u8], proof: &[u8]) -> bool {
    mac(secret, b"dynamo-peer-client-v1", server_nonce, client_nonce)
        .verify_slice(proof)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_secret_and_nonces() {
        let (c, s) = ([1u8; NONCE_LEN], [2u8; NONCE_LEN]);
        let sp = server_proof(b"k", &c, &s);
        assert!(verify_server(b"k", &c, &s, &sp));
        assert!(!verify_server(b"other", &c, &s, &sp));
        assert!(
            !verify_server(b"k", &[3u8; NONCE_LEN], &s, &sp),
            "bound to the client's nonce"
        );
        let cp = client_proof(b"k", &s, &c);
        assert!(verify_client(b"k", &s, &c, &cp));
        assert!(
            !verify_client(b"k", &[4u8; NONCE_LEN], &c, &cp),
            "bound to the server's nonce"
        );
        assert!(
            !verify_client(b"k", &c, &s, &sp),
            "a server proof is not a client proof"
        );
    }
}

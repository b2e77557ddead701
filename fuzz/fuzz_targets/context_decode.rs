//! The `X-Context` token decoder (`ContextCodec::decode`), which parses
//! whatever a client puts in the header.
//!
//! Input: `[mode][key length][key][rest]`. Mode bit 0 clear: `rest` is the
//! token as sent. Set: `rest` is a payload that this target seals with a
//! valid tag (recomputed as `src/context.rs` documents), so the postcard
//! payload decoder behind the HMAC check is reached too. Any token that
//! opens must re-encode to a token that opens to the same clock.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dynamo_core::context::{ContextCodec, ContextError, MAX_ENTRIES};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &str = "fuzz-secret";

/// A token for `key` whose body is `[1] ++ payload`, with a valid tag.
fn seal(key: &[u8], payload: &[u8]) -> String {
    let mut derive = Hmac::<Sha256>::new_from_slice(b"dynamo-context-key").unwrap();
    derive.update(SECRET.as_bytes());
    let codec_key = derive.finalize().into_bytes();
    let mut body = vec![1u8];
    body.extend_from_slice(payload);
    let mut mac = Hmac::<Sha256>::new_from_slice(&codec_key).unwrap();
    mac.update(&(key.len() as u64).to_be_bytes());
    mac.update(key);
    mac.update(&body);
    body.extend_from_slice(&mac.finalize().into_bytes()[..16]);
    URL_SAFE_NO_PAD.encode(body)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some((&key_len, rest)) = rest.split_first() else {
        return;
    };
    let (key, rest) = rest.split_at((key_len as usize).min(rest.len()));
    let codec = ContextCodec::new(Some(SECRET));
    let token = if mode & 1 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        seal(key, rest)
    };
    let opened = codec.decode(key, &token);
    if mode & 1 == 1 {
        // If this fails, the token layout changed: update `seal` above.
        assert_ne!(opened, Err(ContextError::BadSignature), "a sealed token did not verify");
    }
    // The same token never opens for another secret (or, by construction,
    // under the keyless default codec) unless it is the empty context.
    if !token.trim().is_empty() {
        assert!(ContextCodec::new(None).decode(key, &token).is_err());
    }
    if let Ok(vv) = opened {
        assert!(vv.iter().count() <= MAX_ENTRIES);
        assert!(vv.iter().all(|(_, counter)| counter > 0));
        let again = codec.encode(key, &vv);
        assert_eq!(codec.decode(key, &again), Ok(vv));
    }
});

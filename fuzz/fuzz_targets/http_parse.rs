//! The HTTP front door's key and quorum parsing (`http/src/parse.rs`,
//! compiled here as is: the http crate links RocksDB through the actors).
//!
//! Input: `[n][path bytes] 0xFF [query bytes]` (lossily made UTF-8, as any
//! `&str` actix may hand over). Keys that parse are non-empty, at most
//! `MAX_KEY_BYTES`, and the percent-decoding of the path after the prefix;
//! quorums that parse lie in 1..=N.
#![no_main]

#[path = "../../http/src/parse.rs"]
mod parse;

use dynamo_core::config::MAX_KEY_BYTES;
use libfuzzer_sys::fuzz_target;
use parse::{key_from_path, quorum_from_query, KeyError};

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = n as usize; // 0 is a valid fuzz case: nothing is then accepted.
    let (path, query) = match rest.iter().position(|&b| b == 0xFF) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let path = String::from_utf8_lossy(path);
    let query = String::from_utf8_lossy(query);

    for prefix in ["/kv/", "/admin/local/"] {
        let full = format!("{prefix}{path}");
        match key_from_path(&full, prefix) {
            Ok(key) => {
                assert!(!key.is_empty() && key.len() <= MAX_KEY_BYTES);
                let expected: Vec<u8> = percent_encoding::percent_decode_str(&path).collect();
                assert_eq!(key, expected);
            }
            Err(KeyError::Empty) => assert!(path.is_empty()),
            Err(KeyError::TooLong(len)) => assert!(len > MAX_KEY_BYTES),
        }
        // The raw string as the path (prefix possibly missing).
        let _ = key_from_path(&path, prefix);
    }
    for name in ["r", "w"] {
        if let Ok(Some(q)) = quorum_from_query(&query, name, n) {
            assert!((1..=n).contains(&q));
        }
        if let Err(e) = quorum_from_query(&query, name, n) {
            let _ = e.to_string();
        }
    }
});

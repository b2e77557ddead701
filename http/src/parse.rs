//! Pure parsing of what a client puts in the request line: the key in the
//! path and the `r`/`w` quorum parameters in the query string.
//!
//! No actix types and no node, so these are unit-tested here and fuzzed on
//! their own (`fuzz/fuzz_targets/http_parse.rs` compiles this file as is,
//! which is why it depends on nothing else in this crate). The handlers in
//! [`crate::api`] map the errors to [`crate::error::ApiError`].

use dynamo_core::config::MAX_KEY_BYTES;

/// Why the key in a path was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Nothing after the prefix (or the prefix is missing).
    #[error("the key must not be empty")]
    Empty,
    /// The decoded key has this many bytes, more than [`MAX_KEY_BYTES`].
    #[error("key is {0} bytes; the limit is {MAX_KEY_BYTES}")]
    TooLong(usize),
}

/// The key of a `/kv/...` or `/admin/local/...` request: the rest of the
/// raw `path` after `prefix`, percent-decoded to bytes (any bytes: `%00`,
/// `%FF` and `/` are all key bytes). Non-empty and at most
/// [`MAX_KEY_BYTES`] long.
pub fn key_from_path(path: &str, prefix: &str) -> Result<Vec<u8>, KeyError> {
    let raw = path.strip_prefix(prefix).unwrap_or("");
    let key: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KeyError::TooLong(key.len()));
    }
    Ok(key)
}

/// Why a quorum parameter was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// The query string is not `application/x-www-form-urlencoded`.
    #[error("the query string is malformed")]
    MalformedQuery,
    /// The parameter is not an integer from 1 to N.
    #[error("{name} = {value:?} must be an integer from 1 to {n}")]
    OutOfRange {
        /// The parameter (`r` or `w`).
        name: String,
        /// What the client sent, decoded.
        value: String,
        /// The replication factor.
        n: usize,
    },
}

/// The quorum parameter `name` (`r` or `w`) in the raw `query` string,
/// checked against the replication factor `n`: `None` when absent; the last
/// occurrence wins when repeated. Parsed exactly as actix-web's
/// `web::Query<Vec<(String, String)>>` does.
pub fn quorum_from_query(query: &str, name: &str, n: usize) -> Result<Option<usize>, QuorumError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|_| QuorumError::MalformedQuery)?;
    match pairs.iter().rev().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => match v.parse::<usize>() {
            Ok(q) if (1..=n).contains(&q) => Ok(Some(q)),
            _ => Err(QuorumError::OutOfRange {
                name: name.to_string(),
                value: v.clone(),
                n,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_percent_decoded_bytes() {
        assert_eq!(key_from_path("/kv/a%2Fb/c", "/kv/"), Ok(b"a/b/c".to_vec()));
        assert_eq!(key_from_path("/kv/%00%ff", "/kv/"), Ok(vec![0, 0xff]));
        // A stray or truncated escape is kept literally, as before.
        assert_eq!(key_from_path("/kv/%zz%4", "/kv/"), Ok(b"%zz%4".to_vec()));
        assert_eq!(key_from_path("/admin/local/k", "/admin/local/"), Ok(b"k".to_vec()));
    }

    #[test]
    fn empty_missing_and_long_keys_are_refused() {
        assert_eq!(key_from_path("/kv/", "/kv/"), Err(KeyError::Empty));
        assert_eq!(key_from_path("/other/k", "/kv/"), Err(KeyError::Empty));
        let at_limit = format!("/kv/{}", "k".repeat(MAX_KEY_BYTES));
        assert_eq!(key_from_path(&at_limit, "/kv/").map(|k| k.len()), Ok(MAX_KEY_BYTES));
        let over = format!("/kv/{}", "%41".repeat(MAX_KEY_BYTES + 1));
        assert_eq!(key_from_path(&over, "/kv/"), Err(KeyError::TooLong(MAX_KEY_BYTES + 1)));
        assert_eq!(
            KeyError::Empty.to_string(),
            "the key must not be empty",
            "the message the API has always given"
        );
    }

    #[test]
    fn quorum_parameters_are_checked_against_n() {
        assert_eq!(quorum_from_query("", "r", 3), Ok(None));
        assert_eq!(quorum_from_query("w=2", "r", 3), Ok(None));
        assert_eq!(quorum_from_query("r=2", "r", 3), Ok(Some(2)));
        assert_eq!(quorum_from_query("r=1&r=3", "r", 3), Ok(Some(3)));
        assert_eq!(quorum_from_query("%72=2", "r", 3), Ok(Some(2)));
        for bad in ["r=0", "r=4", "r=-1", "r=two", "r=", "r=18446744073709551616"] {
            let err = quorum_from_query(bad, "r", 3).unwrap_err();
            assert!(matches!(err, QuorumError::OutOfRange { .. }), "{bad}: {err:?}");
        }
        assert_eq!(
            quorum_from_query("r=0", "r", 3).unwrap_err().to_string(),
            "r = \"0\" must be an integer from 1 to 3"
        );
        // Invalid UTF-8 decodes lossily, so it is an out-of-range value, and a
        // query of bare names and empty pairs still parses.
        assert!(matches!(
            quorum_from_query("r=%FF", "r", 3),
            Err(QuorumError::OutOfRange { .. })
        ));
        assert_eq!(quorum_from_query("a&&=&b=%zz&r=1", "r", 3), Ok(Some(1)));
    }
}

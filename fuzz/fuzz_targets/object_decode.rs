//! The stored-object decoder (`storage::decode_object`): what a replica
//! reads back from RocksDB (or gets handed as a hint), possibly corrupt. An
//! object that decodes must be canonical (sorted, no duplicate or dominated
//! sibling) and must round-trip through `encode_object`.
#![no_main]

use dynamo_core::storage::{decode_object, encode_object};
use dynamo_core::Object;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(object) = decode_object(data) else { return };
    let versions = object.versions();
    assert!(
        versions.windows(2).all(|w| w[0].dot < w[1].dot),
        "siblings sorted, no duplicate dot"
    );
    for v in versions {
        assert!(!versions.iter().any(|w| w.dominates(v)), "a dominated sibling survived");
    }
    assert_eq!(Object::from_untrusted(versions.to_vec()), object);
    let encoded = encode_object(&object);
    assert_eq!(decode_object(&encoded).expect("an encoded object decodes"), object);
    let _ = object.context();
    let _ = object.is_deleted();
});

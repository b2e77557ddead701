//! Ring and Merkle-leaf arithmetic (`ring::partition_of`,
//! `merkle::leaf_of_position`, `merkle::leaf_range`, `merkle::partition_range`).
//!
//! Input: `[position: 16][q: 4][partition: 4][leaf: 4][key...]`, big-endian,
//! zero-padded when short. First the properties for arguments in the
//! domain a node uses (Q from 1 to 65,536 as config allows, partition < Q,
//! leaf < leaves per partition), then the same functions with the raw
//! numbers: a peer's anti-entropy request names partitions and leaves, so
//! nothing may panic or overflow whatever they are.
#![no_main]

use dynamo_core::merkle::{leaf_of_position, leaf_range, leaves_per_partition, partition_range};
use dynamo_core::ring::{partition_of, partition_of_position, partition_start, ring_position};
use libfuzzer_sys::fuzz_target;

fn take<const N: usize>(data: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = data.len().min(N);
    out[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    out
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let position = u128::from_be_bytes(take::<16>(&mut data));
    let raw_q = u32::from_be_bytes(take::<4>(&mut data));
    let raw_p = u32::from_be_bytes(take::<4>(&mut data));
    let raw_leaf = u32::from_be_bytes(take::<4>(&mut data));
    let key = data;

    // In the domain a node uses.
    let q = raw_q % 65_536 + 1;
    let per = leaves_per_partition(q);
    assert!((1..=1024).contains(&per));
    let p = raw_p % q;
    let leaf = raw_leaf % per;

    let kp = partition_of(key, q);
    assert!(kp < q);
    assert_eq!(kp, partition_of_position(ring_position(key), q));

    let (lp, ll) = leaf_of_position(position, q);
    assert_eq!(lp, partition_of_position(position, q));
    assert!(lp < q && ll < per);
    let (pfirst, plast) = partition_range(lp, q);
    assert!(pfirst <= position && position <= plast);
    assert_eq!(pfirst, partition_start(lp, q));
    let (first, last) = leaf_range(lp, ll, q);
    assert!(
        first <= position && position <= last,
        "leaf {ll} of {lp} misses its position"
    );

    let (pfirst, plast) = partition_range(p, q);
    assert!(pfirst <= plast);
    assert_eq!(p == 0, pfirst == 0);
    assert_eq!(p == q - 1, plast == u128::MAX);
    let (first, last) = leaf_range(p, leaf, q);
    assert!(pfirst <= first && first <= last && last <= plast);
    assert_eq!(leaf_of_position(first, q), (p, leaf));
    assert_eq!(leaf_of_position(last, q), (p, leaf));
    if leaf == 0 {
        assert_eq!(first, pfirst);
    }
    if leaf + 1 < per {
        assert_eq!(leaf_range(p, leaf + 1, q).0, last + 1, "leaves are contiguous");
    } else {
        assert_eq!(last, plast);
    }

    // Any numbers at all: no panic, no overflow.
    let _ = partition_of(key, raw_q);
    let _ = partition_of_position(position, raw_q);
    let _ = leaves_per_partition(raw_q);
    let _ = leaf_of_position(position, raw_q);
    let _ = partition_start(raw_p, raw_q);
    let _ = partition_range(raw_p, raw_q);
    let _ = leaf_range(p, raw_leaf, q);
    let _ = leaf_range(raw_p, raw_leaf, raw_q);
});

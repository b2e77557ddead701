//! The transport's length-delimited framing feeding `Frame::decode_shared`:
//! a byte stream from a peer connection, cut into reads of fuzzer-chosen
//! sizes. What decodes must go back on the wire (`Frame::encode_framed`) in
//! the framing the reader reads.
//!
//! The codec is built exactly as `codec()` in `actors/src/transport.rs`
//! builds it (that crate links RocksDB, so it is not a dependency here):
//! a 4-byte big-endian length prefix, frames of at most `MAX_FRAME_BYTES`.
//! Input: `[read size seed][stream]`.
#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use dynamo_core::wire::{Frame, FRAME_PREFIX_BYTES, MAX_FRAME_BYTES};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(FRAME_PREFIX_BYTES)
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let read_size = (seed as usize % 17) + 1;
    let mut codec = codec();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut failed = false;
    'reading: for chunk in stream.chunks(read_size) {
        buf.put_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= MAX_FRAME_BYTES);
                    frames.push(frame.freeze());
                }
                Ok(None) => break,
                // A frame over the limit: the connection is closed.
                Err(_) => {
                    failed = true;
                    break 'reading;
                }
            }
        }
    }
    if !failed {
        // End of stream: a partial frame left over is an error, not a panic.
        let _ = codec.decode_eof(&mut buf);
    }
    // What came out re-frames to the bytes that went in.
    let mut out = BytesMut::new();
    for payload in &frames {
        codec
            .encode(payload.clone(), &mut out)
            .expect("a decoded frame re-encodes");
    }
    assert_eq!(&out[..], &stream[..out.len()]);
    for payload in frames {
        if let Ok(frame) = Frame::decode_shared(payload) {
            let bytes = frame.encode().expect("a decoded frame encodes");
            assert_eq!(Frame::decode(&bytes).expect("a re-encoded frame decodes"), frame);
            let framed = frame.encode_framed().expect("a decoded frame fits a frame");
            let mut wire = framed.head;
            wire.extend_from_slice(&framed.payload.unwrap_or_default());
            let mut expected = BytesMut::new();
            codec
                .encode(Bytes::from(bytes), &mut expected)
                .expect("a frame encodes");
            assert_eq!(wire, expected);
        }
    }
});

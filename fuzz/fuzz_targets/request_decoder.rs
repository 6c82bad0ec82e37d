//! The request decoder, fed the input whole and in the chunks its first byte chooses: both
//! must give the same messages and errors, never panic, and never buffer past the limits.
#![no_main]

use chathttp_core::FrameLimits;
use chathttp_core::wire::RequestDecoder;
use libfuzzer_sys::fuzz_target;

fn decode(chunks: &[&[u8]], limits: FrameLimits) -> Vec<String> {
    let mut decoder = RequestDecoder::new(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.decode_each(chunk, |decoded| {
            out.push(match decoded {
                Ok(message) => format!("{message:?}"),
                Err(error) => format!("{error:?}"),
            })
        });
        assert!(decoder.buffered() <= limits.max_head_bytes + limits.max_body_bytes);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let limits = FrameLimits {
        max_head_bytes: 256,
        max_header_lines: 8,
        max_body_bytes: 128,
    };
    let whole = decode(&[stream], limits);
    let chunks: Vec<&[u8]> = stream.chunks(usize::from(chunk % 16) + 1).collect();
    assert_eq!(
        whole,
        decode(&chunks, limits),
        "the split changed the outcome"
    );
});

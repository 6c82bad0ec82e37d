//! The response decoder: whole and chunked input agree, nothing panics.
#![no_main]

use chathttp_core::FrameLimits;
use chathttp_core::wire::ResponseDecoder;
use libfuzzer_sys::fuzz_target;

fn decode(chunks: &[&[u8]]) -> Vec<String> {
    let limits = FrameLimits {
        max_head_bytes: 256,
        max_header_lines: 8,
        max_body_bytes: 128,
    };
    let mut decoder = ResponseDecoder::new(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        decoder.decode_each(chunk, |decoded| {
            out.push(match decoded {
                Ok(message) => format!("{message:?}"),
                Err(error) => format!("{error:?}"),
            })
        });
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunks: Vec<&[u8]> = stream.chunks(usize::from(chunk % 16) + 1).collect();
    assert_eq!(
        decode(&[stream]),
        decode(&chunks),
        "the split changed the outcome"
    );
});

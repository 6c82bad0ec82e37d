//! Decoder throughput against httparse, on a stream of the seed's POST request repeated.
//!
//! `cargo bench -p chathttp-core --bench decode` prints MB/s and messages/s for:
//! our incremental decoder over the whole stream in one buffer and fed in 1,500-byte
//! chunks, and httparse over the same stream, whole and in the same chunks (a buffer that
//! accumulates reads and is parsed again after a partial head, as a server built on
//! httparse does). Each figure is the best of 30 rounds, the two decoders interleaved round
//! by round, so a noisy neighbour costs both alike. A plain harness rather than criterion: the figures go into docs/BENCHMARKS.md with
//! the ratio, and this keeps the bench a single file with one dependency.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chathttp_core::FrameLimits;
use chathttp_core::wire::RequestDecoder;

const SEED_POST: &[u8] = b"POST 127.0.0.1 HTTP/1.1\nDatetime: 2015-11-29 10:17:48\nUser_Agent: Alice\nHost: 127.0.0.1\nAccept_Language: en\nAccept: text\nAccept_Encoding: utf-8\nContent_Length: 17\nContent_Language: en\nContent_Encoding: utf-8\nContent_Type: text\n\nHello, everyone!\n";

const MESSAGES: usize = 20_000;
const CHUNK: usize = 1500;
const ROUNDS: usize = 30;

fn ours(stream: &[u8], chunk: usize) -> (usize, usize) {
    let mut decoder = RequestDecoder::new(FrameLimits::default());
    let (mut messages, mut body_bytes) = (0, 0);
    for piece in stream.chunks(chunk) {
        decoder.decode_each(piece, |decoded| {
            let request = decoded.expect("the bench stream is valid");
            messages += 1;
            body_bytes += black_box(request).body.len();
        });
    }
    (messages, body_bytes)
}

fn content_length(headers: &[httparse::Header<'_>]) -> usize {
    headers
        .iter()
        .find(|h| {
            h.name.len() == 14
                && h.name.bytes().zip(b"content-length".iter()).all(|(a, &e)| {
                    (if a == b'_' {
                        b'-'
                    } else {
                        a.to_ascii_lowercase()
                    }) == e
                })
        })
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

fn httparse_stream(stream: &[u8], chunk: usize) -> (usize, usize) {
    let (mut messages, mut body_bytes) = (0, 0);
    let mut buf: Vec<u8> = Vec::with_capacity(2 * chunk.min(stream.len()) + 4096);
    let mut start = 0;
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buf[start..]) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let body = content_length(request.headers);
                    if buf.len() - start < head_len + body {
                        break;
                    }
                    black_box(&request);
                    messages += 1;
                    body_bytes += body;
                    start += head_len + body;
                }
                Ok(httparse::Status::Partial) => break,
                Err(e) => panic!("the bench stream is valid: {e}"),
            }
        }
        buf.drain(..start);
        start = 0;
    }
    (messages, body_bytes)
}

/// The best time of each decoder over `ROUNDS` rounds, the two interleaved round by round so
/// that a burst of load from elsewhere hits both alike.
fn best_of_interleaved(
    stream: &[u8],
    reference: impl Fn(&[u8]) -> (usize, usize),
    ours: impl Fn(&[u8]) -> (usize, usize),
) -> (Duration, Duration) {
    let (mut best_reference, mut best_ours) = (Duration::MAX, Duration::MAX);
    for _ in 0..ROUNDS {
        for (run, best) in [
            (
                &reference as &dyn Fn(&[u8]) -> (usize, usize),
                &mut best_reference,
            ),
            (&ours, &mut best_ours),
        ] {
            let started = Instant::now();
            let (messages, body_bytes) = run(black_box(stream));
            *best = (*best).min(started.elapsed());
            assert_eq!(
                (messages, body_bytes),
                (MESSAGES, MESSAGES * 17),
                "every message decoded"
            );
        }
    }
    (best_reference, best_ours)
}

fn main() {
    let stream = SEED_POST.repeat(MESSAGES);
    let rate = |d: Duration| {
        (
            stream.len() as f64 / d.as_secs_f64() / 1e6,
            MESSAGES as f64 / d.as_secs_f64() / 1e6,
        )
    };
    println!(
        "stream: {MESSAGES} seed POST requests, {} bytes; best of {ROUNDS} rounds",
        stream.len()
    );
    println!(
        "{:<34} {:>9} {:>12} {:>8}",
        "decoder", "MB/s", "M msgs/s", "ratio"
    );
    for (label, chunk) in [("whole buffer", stream.len()), ("1,500-byte chunks", CHUNK)] {
        let (reference, ours) =
            best_of_interleaved(&stream, |s| httparse_stream(s, chunk), |s| ours(s, chunk));
        let (rmb, rmsg) = rate(reference);
        let (omb, omsg) = rate(ours);
        println!(
            "{:<34} {:>9.0} {:>12.2} {:>8}",
            format!("httparse, {label}"),
            rmb,
            rmsg,
            "1.00"
        );
        println!(
            "{:<34} {:>9.0} {:>12.2} {:>8.2}",
            format!("chathttp-core, {label}"),
            omb,
            omsg,
            reference.as_secs_f64() / ours.as_secs_f64()
        );
    }
}

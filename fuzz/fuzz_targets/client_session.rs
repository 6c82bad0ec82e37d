//! The client session fed arbitrary server bytes, with intents interleaved: no panic, and
//! the session's own state stays coherent (a closed session refuses intents).
#![no_main]

use chathttp_core::Timestamp;
use chathttp_core::client::{ClientSession, Intent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut session = ClientSession::new("127.0.0.1");
    let now = Timestamp::from_millis(0);
    for (i, piece) in data.split(|&b| b == 0xff).enumerate() {
        let intent = match i % 5 {
            0 => {
                Intent::Join(String::from_utf8_lossy(piece.get(..8).unwrap_or(piece)).into_owned())
            }
            1 => Intent::Say("hi".into()),
            2 => Intent::ListUsers,
            3 => Intent::Leave,
            _ => Intent::Say(String::new()),
        };
        let _ = session.handle_intent(now, intent);
        let _ = session.poll_transmit();
        session.handle_received(piece);
        while session.poll_event().is_some() {}
        if session.is_closed() {
            assert!(session.handle_intent(now, Intent::ListUsers).is_err());
        }
    }
});

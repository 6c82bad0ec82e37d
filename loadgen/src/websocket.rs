//! The client side of the browser gateway (`--http`, B1) for the load tools: the upgrade
//! request, each request as one masked text message, and a decoder of the server's frames
//! that turns them back into the ChatHTTP byte stream the tools already parse.

use std::io::{self, Cursor};

use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// The `GET /ws` upgrade request for `host`, and the `Sec-WebSocket-Accept` the gateway
/// must answer with.
pub fn upgrade_request(host: &str) -> (Vec<u8>, String) {
    let key = generate_key();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    );
    (request.into_bytes(), derive_accept_key(key.as_bytes()))
}

/// Appends `request` to `out` as one text message. The mask is zero, which RFC 6455 allows
/// (a client should pick it at random to defeat proxy cache poisoning, which a load tool on
/// loopback need not), so the payload is the request's bytes as they are.
pub fn frame_request(out: &mut Vec<u8>, request: &[u8]) {
    let header = FrameHeader {
        opcode: OpCode::Data(Data::Text),
        mask: Some([0; 4]),
        ..FrameHeader::default()
    };
    // Writing to a vector cannot fail.
    let _ = header.format(request.len() as u64, out);
    out.extend_from_slice(request);
}

/// Reads the gateway's `101`, then its frames: the payloads of text messages, in order, are
/// the ChatHTTP responses.
#[derive(Debug)]
pub struct Deframer {
    accept: Option<String>,
    raw: Vec<u8>,
}

impl Deframer {
    /// A decoder for a connection that sent [`upgrade_request`] and expects `accept`.
    pub fn new(accept: String) -> Self {
        Self {
            accept: Some(accept),
            raw: Vec::new(),
        }
    }

    /// Takes bytes read from the socket and appends the messages' payloads to `out`.
    /// Returns false once the gateway has sent a close frame.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> io::Result<bool> {
        self.raw.extend_from_slice(bytes);
        if let Some(accept) = &self.accept {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Ok(true);
            };
            let head = String::from_utf8_lossy(&self.raw[..end]).to_ascii_lowercase();
            let upgraded = head.starts_with("http/1.1 101")
                && head.contains(&format!(
                    "sec-websocket-accept: {}",
                    accept.to_ascii_lowercase()
                ));
            if !upgraded {
                let status = head.lines().next().unwrap_or_default().to_owned();
                return Err(io::Error::other(format!("no upgrade: {status}")));
            }
            self.raw.drain(..end + 4);
            self.accept = None;
        }
        let mut used = 0;
        let mut open = true;
        loop {
            let mut cursor = Cursor::new(&self.raw[used..]);
            let Some((header, length)) =
                FrameHeader::parse(&mut cursor).map_err(io::Error::other)?
            else {
                break;
            };
            let start = used + cursor.position() as usize;
            let end = start + length as usize;
            if end > self.raw.len() {
                break;
            }
            match header.opcode {
                OpCode::Data(Data::Text | Data::Continue) => {
                    out.extend_from_slice(&self.raw[start..end])
                }
                OpCode::Control(Control::Close) => open = false,
                _ => {}
            }
            used = end;
        }
        self.raw.drain(..used);
        Ok(open)
    }
}

//! WebSocket framing for browser members (B1), Sans-IO like TLS.
//!
//! After the gateway's HTTP library has upgraded a request to `/ws` (see
//! [`crate::gateway`]), the socket joins the room like any accepted connection, and this
//! [`WebSocket`] sits in the driver between the socket (or TLS, T4) and the room machine:
//! the text messages the browser sends are handed to the machine byte for byte, and every
//! frame the machine asks for (one ChatHTTP response) goes out as one text message. The room
//! machine, its limits and its rules are therefore the same for browser members; none of
//! them knows how a member is connected.
//!
//! tungstenite's [`WebSocketContext`] reads frames (masking, fragments, control frames, UTF-8,
//! size limits) and answers pings and closes; the machine's frames are framed with
//! tungstenite's [`FrameHeader`], each header followed by the machine's own buffer, so a
//! broadcast is not copied once per browser member.

use std::io::{self, Read, Write};

use bytes::Bytes;
use chathttp_core::FrameLimits;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{CloseFrame, FrameHeader};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error, Message};

use crate::buffers::Frames;

/// What tungstenite keeps for reading a connection's frames: a ChatHTTP request is small,
/// and ten thousand idle browser members each keep one.
const READ_BUFFER_BYTES: usize = 512;

/// Why a browser's WebSocket was failed. A close frame with the matching code goes out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WebSocketError {
    /// A binary message: ChatHTTP is text (close code 1003).
    #[error("a binary message; ChatHTTP over WebSocket is text")]
    Binary,
    /// tungstenite refused the frames: unmasked, reserved bits, bad UTF-8, too large.
    #[error("{0}")]
    Protocol(#[from] Error),
}

/// One browser member's WebSocket, driven by the driver alone: raw bytes in, the text of the
/// messages out; the room's frames framed as text messages.
#[derive(Debug)]
pub(crate) struct WebSocket {
    context: WebSocketContext,
    /// Frames ready to go out, in order: the context's control frames (pongs, closes) and the
    /// room's frames, each behind its header.
    out: Frames,
    /// A close frame has gone out or been received: no more data frames.
    closing: bool,
    /// The browser sent a close frame: the connection ends in order.
    peer_closed: bool,
}

impl WebSocket {
    /// The WebSocket of a connection the gateway upgraded; `read` is what the HTTP library
    /// read past the request (frames a client sent before the `101`).
    pub(crate) fn new(limits: &FrameLimits, read: Bytes) -> Self {
        // A message larger than a request may be is refused by tungstenite before it is
        // buffered; the room machine's W5 limits then apply to what is left.
        let largest = limits.max_head_bytes + limits.max_body_bytes;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(0)
            .max_message_size(Some(largest))
            .max_frame_size(Some(largest));
        let context =
            WebSocketContext::from_partially_read(read.to_vec(), Role::Server, Some(config));
        Self {
            context,
            out: Frames::default(),
            closing: false,
            peer_closed: false,
        }
    }

    /// Takes bytes read from the socket; returns the text of the messages they completed, in
    /// order. Pings are answered unless `backlogged` (the peer is not reading what was
    /// written: RFC 6455 lets an endpoint skip pongs, and queueing them would let a peer that
    /// pings and never reads grow the server's memory). A close is answered and noted
    /// ([`peer_closed`](Self::peer_closed)). An error is final: the close frame saying why is
    /// queued, and the caller closes after it.
    pub(crate) fn receive(
        &mut self,
        raw: &[u8],
        backlogged: bool,
    ) -> Result<Vec<u8>, WebSocketError> {
        let mut control = Vec::new();
        let mut stream = Duplex {
            input: raw,
            output: &mut control,
        };
        let mut text = Vec::new();
        let result = loop {
            if self.peer_closed {
                break Ok(());
            }
            match self.context.read(&mut stream) {
                Ok(Message::Text(message)) => text.extend_from_slice(message.as_bytes()),
                Ok(Message::Binary(_)) => break Err(WebSocketError::Binary),
                Ok(Message::Close(_)) | Err(Error::ConnectionClosed | Error::AlreadyClosed) => {
                    self.peer_closed = true;
                    self.closing = true;
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Err(Error::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => {
                    break Ok(());
                }
                Err(error) => break Err(WebSocketError::Protocol(error)),
            }
        };
        // The close reply is queued by the read that met the close, written by the next.
        let _ = self.context.flush(&mut stream);
        if backlogged && !self.peer_closed {
            // Only pongs are here: the close reply and a failure's close frame are kept.
            stream.output.clear();
        }
        if let Err(error) = &result {
            let code = match error {
                WebSocketError::Binary => CloseCode::Unsupported,
                WebSocketError::Protocol(Error::Capacity(_)) => CloseCode::Size,
                WebSocketError::Protocol(Error::Utf8(_)) => CloseCode::Invalid,
                WebSocketError::Protocol(_) => CloseCode::Protocol,
            };
            self.close_with(&mut stream, code, &error.to_string());
        }
        if !control.is_empty() {
            self.out.push(Bytes::from(control));
        }
        result.map(|()| text)
    }

    /// Frames whole frames of `frames` (one ChatHTTP response each) as text messages, until
    /// `room` bytes of them are taken; returns how many bytes were taken.
    pub(crate) fn frame(&mut self, frames: &mut Frames, room: usize) -> usize {
        let mut taken = 0;
        while taken < room {
            let Some(frame) = frames.pop() else { break };
            taken += frame.len();
            if self.closing {
                continue;
            }
            let header = FrameHeader {
                opcode: OpCode::Data(Data::Text),
                ..FrameHeader::default()
            };
            let mut head = Vec::with_capacity(header.len(frame.len() as u64));
            // Writing to a vector cannot fail.
            let _ = header.format(frame.len() as u64, &mut head);
            self.out.push(Bytes::from(head));
            self.out.push(frame);
        }
        taken
    }

    /// The frames ready to go out.
    pub(crate) fn output(&mut self) -> &mut Frames {
        &mut self.out
    }

    /// Frames what is left of `frames` (a close's last frames) and a close frame after them
    /// (code 1000), unless a close has gone out already.
    pub(crate) fn finish(&mut self, frames: &mut Frames) {
        self.frame(frames, usize::MAX);
        if !self.closing {
            let mut control = Vec::new();
            let mut stream = Duplex {
                input: &[],
                output: &mut control,
            };
            self.close_with(&mut stream, CloseCode::Normal, "");
            self.out.push(Bytes::from(control));
        }
    }

    /// The bytes of the frames waiting to be taken.
    pub(crate) fn pending(&self) -> usize {
        self.out.len()
    }

    /// Whether frames wait to be taken.
    pub(crate) fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Whether the browser sent a close frame.
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    fn close_with(&mut self, stream: &mut Duplex<'_>, code: CloseCode, reason: &str) {
        self.closing = true;
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        // Into a vector: only a close already sent can make it fail, and then none is due.
        let _ = self.context.close(stream, Some(frame));
    }
}

/// The socket as tungstenite sees it: the bytes just read, then "would block"; writes
/// collect in a vector.
struct Duplex<'a> {
    input: &'a [u8],
    output: &'a mut Vec<u8>,
}

impl Read for Duplex<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.input.read(buf)
    }
}

impl Write for Duplex<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's masked text frame.
    fn client_text(text: &str) -> Vec<u8> {
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Text),
            mask: Some([1, 2, 3, 4]),
            ..FrameHeader::default()
        };
        let mut out = Vec::new();
        header.format(text.len() as u64, &mut out).expect("vec");
        out.extend(
            text.bytes()
                .enumerate()
                .map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]),
        );
        out
    }

    fn drain(ws: &mut WebSocket) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(frame) = ws.output().pop() {
            all.extend_from_slice(&frame);
        }
        all
    }

    #[test]
    fn b1_messages_in_any_split_reach_the_room_in_order() {
        let mut ws = WebSocket::new(&FrameLimits::default(), Bytes::new());
        let mut wire = client_text("GET / HTTP/1.1\n\n");
        wire.extend(client_text("POST / HTTP/1.1\n"));
        let mut got = Vec::new();
        for chunk in wire.chunks(3) {
            got.extend(ws.receive(chunk, false).expect("valid frames"));
        }
        assert_eq!(got, b"GET / HTTP/1.1\n\nPOST / HTTP/1.1\n");
        assert!(drain(&mut ws).is_empty(), "nothing to answer");
    }

    #[test]
    fn b1_each_frame_of_the_room_is_one_text_message() {
        let mut ws = WebSocket::new(&FrameLimits::default(), Bytes::new());
        let mut frames = Frames::default();
        frames.push(Bytes::from_static(b"HTTP/1.1 200 OK\n\n"));
        frames.push(Bytes::from(vec![b'x'; 300]));
        assert_eq!(ws.frame(&mut frames, usize::MAX), 17 + 300);
        let wire = drain(&mut ws);
        assert_eq!(&wire[..2], &[0x81, 17], "FIN, text, unmasked, length 17");
        assert_eq!(&wire[19..23], &[0x81, 126, 1, 44], "a 16-bit length: 300");
        assert_eq!(wire.len(), 2 + 17 + 4 + 300);
    }

    #[test]
    fn b1_a_binary_message_is_refused_with_1003() {
        let mut ws = WebSocket::new(&FrameLimits::default(), Bytes::new());
        let frame = [0x82, 0x81, 0, 0, 0, 0, b'x'];
        assert!(matches!(
            ws.receive(&frame, false),
            Err(WebSocketError::Binary)
        ));
        let wire = drain(&mut ws);
        assert_eq!(&wire[..4], &[0x88, wire[1], 0x03, 0xEB], "close, code 1003");
    }

    #[test]
    fn b1_an_unmasked_frame_is_a_protocol_error() {
        let mut ws = WebSocket::new(&FrameLimits::default(), Bytes::new());
        assert!(ws.receive(&[0x81, 0x01, b'x'], false).is_err());
        let wire = drain(&mut ws);
        assert_eq!(&wire[2..4], &[0x03, 0xEA], "close, code 1002");
    }

    #[test]
    fn b1_a_close_is_answered_and_no_data_follows() {
        let mut ws = WebSocket::new(&FrameLimits::default(), Bytes::new());
        let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8];
        assert_eq!(ws.receive(&close, false).expect("a clean close"), b"");
        assert!(ws.peer_closed());
        let reply = drain(&mut ws);
        assert_eq!(reply[0], 0x88, "the close is answered");
        let mut frames = Frames::default();
        frames.push(Bytes::from_static(b"late"));
        ws.finish(&mut frames);
        assert!(drain(&mut ws).is_empty(), "nothing after the close");
    }

    #[test]
    fn b1_pings_get_pongs_unless_the_peer_leaves_a_backlog_unread() {
        let mut ws = WebSocket::new(&FrameLimits::default(), Bytes::new());
        let ping = [0x89, 0x81, 0, 0, 0, 0, b'p'];
        ws.receive(&ping, false).expect("a ping");
        assert_eq!(
            &drain(&mut ws)[..3],
            &[0x8A, 1, b'p'],
            "answered with a pong"
        );
        ws.receive(&ping.repeat(100), true).expect("pings");
        assert!(drain(&mut ws).is_empty(), "no pongs while backlogged");
        let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8];
        ws.receive(&close, true).expect("a close");
        assert_eq!(drain(&mut ws)[0], 0x88, "a close is answered even so");
    }

    #[test]
    fn b1_a_message_larger_than_a_request_may_be_is_refused() {
        let limits = FrameLimits {
            max_head_bytes: 10,
            max_body_bytes: 10,
            ..FrameLimits::default()
        };
        let mut ws = WebSocket::new(&limits, Bytes::new());
        assert!(ws.receive(&client_text(&"x".repeat(21)), false).is_err());
        let wire = drain(&mut ws);
        assert_eq!(&wire[2..4], &[0x03, 0xF1], "close, code 1009");
    }

    #[test]
    fn b1_bytes_read_with_the_upgrade_are_not_lost() {
        let mut ws = WebSocket::new(&FrameLimits::default(), client_text("GET").into());
        assert_eq!(ws.receive(&[], false).expect("valid"), b"GET");
    }
}

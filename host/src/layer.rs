//! What sits in the driver between a connection's socket and the room machine: TLS (section
//! T), WebSocket framing for a browser member (B1), or both (T4). A plaintext TCP connection
//! has no layer at all.
//!
//! Both are Sans-IO: [`receive`](Layer::receive) turns the bytes a reader read into the
//! bytes the machine is fed, and [`seal`](Layer::seal) turns the machine's frames into what is
//! written, just before it is written. The driver reports to the machine the frames a layer
//! has taken as written (S8 counts the machine's bytes, not the layer's); a layer holds at
//! most [`SEALED_BACKLOG`](crate::tls::SEALED_BACKLOG) bytes the kernel has not taken, and
//! what is left waits as the machine's frames, counted by the machine.

use crate::buffers::Frames;
use crate::tls::Session;
use crate::websocket::{WebSocket, WebSocketError};

/// Why a layer failed; the connection is closed after what the layer still has to send (a
/// TLS alert, a WebSocket close frame).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LayerError {
    /// TLS failed: a plaintext client, garbage, a failed handshake (T1).
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The browser broke the WebSocket protocol, or sent a binary message.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] WebSocketError),
}

/// A connection's TLS session, WebSocket, or both (the WebSocket inside the TLS).
#[derive(Debug)]
pub(crate) struct Layer {
    /// Boxed: a session is a kilobyte or more, which a WebSocket without TLS would carry
    /// empty.
    tls: Option<Box<Session>>,
    ws: Option<WebSocket>,
}

impl Layer {
    /// TLS on a connection accepted from the ChatHTTP listener.
    pub(crate) fn tls(session: Session) -> Self {
        Self {
            tls: Some(Box::new(session)),
            ws: None,
        }
    }

    /// A WebSocket the gateway upgraded, inside TLS if the gateway serves HTTPS.
    pub(crate) fn websocket(ws: WebSocket, tls: Option<Session>) -> Self {
        Self {
            tls: tls.map(Box::new),
            ws: Some(ws),
        }
    }

    /// Takes bytes read from the socket; returns what they carry for the room machine.
    /// `backlogged`: the peer leaves written frames unread, so pings get no pong. An error
    /// is final: the caller writes what [`take_records`](Self::take_records) gives and
    /// closes.
    pub(crate) fn receive(&mut self, raw: &[u8], backlogged: bool) -> Result<Vec<u8>, LayerError> {
        match (&mut self.tls, &mut self.ws) {
            (Some(session), Some(ws)) => Ok(ws.receive(&session.receive(raw)?, backlogged)?),
            (Some(session), None) => Ok(session.receive(raw)?),
            (None, Some(ws)) => Ok(ws.receive(raw, backlogged)?),
            (None, None) => Ok(raw.to_vec()),
        }
    }

    /// Moves up to `room` bytes of the machine's `frames` into the layer (whole frames for a
    /// WebSocket); returns how many it took.
    pub(crate) fn seal(&mut self, frames: &mut Frames, room: usize) -> usize {
        match (&mut self.ws, &mut self.tls) {
            (Some(ws), tls) => {
                let taken = ws.frame(frames, room);
                if let Some(session) = tls {
                    session.seal(ws.output(), usize::MAX);
                }
                taken
            }
            (None, Some(session)) => session.seal(frames, room),
            (None, None) => 0,
        }
    }

    /// Appends what is ready to be written (TLS records, WebSocket frames) to `out`.
    pub(crate) fn take_records(&mut self, out: &mut Frames) {
        match (&mut self.ws, &mut self.tls) {
            (Some(ws), Some(session)) => {
                session.seal(ws.output(), usize::MAX);
                session.take_records(out);
            }
            (Some(ws), None) => out.append(ws.output()),
            (None, Some(session)) => session.take_records(out),
            (None, None) => {}
        }
    }

    /// Whether each of the machine's frames must reach [`seal`](Self::seal) on its own: a
    /// WebSocket sends each as one message. TLS takes any run of bytes.
    pub(crate) fn frames_each(&self) -> bool {
        self.ws.is_some()
    }

    /// Whether a TLS handshake is still going on.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.tls.as_deref().is_some_and(Session::is_handshaking)
    }

    /// Takes what is left of `frames` (a close's last frames) and what ends the layer in
    /// order (a WebSocket close frame, TLS's `close_notify`), and appends every record to
    /// `records`. After a failure, only what says so.
    pub(crate) fn finish(&mut self, frames: &mut Frames, records: &mut Frames) {
        match (&mut self.ws, &mut self.tls) {
            (Some(ws), tls) => {
                ws.finish(frames);
                match tls {
                    Some(session) => session.finish(ws.output(), records),
                    None => records.append(ws.output()),
                }
            }
            (None, Some(session)) => session.finish(frames, records),
            (None, None) => records.append(frames),
        }
    }

    /// Bytes the layer holds ready to go out that it has not handed over yet.
    pub(crate) fn pending(&self) -> usize {
        self.ws.as_ref().map_or(0, WebSocket::pending)
    }

    /// Whether records wait to be taken.
    pub(crate) fn wants_write(&self) -> bool {
        self.tls.as_deref().is_some_and(Session::wants_write)
            || self.ws.as_ref().is_some_and(WebSocket::has_output)
    }

    /// Whether the peer ended the layer in order (a WebSocket close frame): the connection
    /// ends as if the peer had closed it.
    pub(crate) fn peer_closed(&self) -> bool {
        self.ws.as_ref().is_some_and(WebSocket::peer_closed)
    }
}

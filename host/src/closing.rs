//! Closing a connection the room machine has let go: at once, or after its last frames
//! and a linger for the peer to close too.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chathttp_core::{CloseMode, ConnId, Timestamp};

use crate::buffers::{self, Frames};
use crate::driver::CLOSES_PER_ROUND;
use crate::layer::Layer;
use crate::outbox::{Outbox, Slot, start_writer};
use crate::socket::abort_socket;

/// How long a connection that has sent its last bytes and shut down its sending side waits
/// for the peer to close, while the reader discards what still arrives (W8). Closing with
/// unread input would make the kernel send a reset, which can destroy the final `400` in
/// flight.
pub const LINGER: Duration = Duration::from_secs(2);

/// Carries out a close the machine asked for, on a connection already off the table.
///
/// Most closes need no writer: a connection cut at once is shut down here, and one closed
/// after a last frame (a `400`, a `408`) has it taken by the kernel at once, so the driver
/// half-closes it and lets it linger. A thousand such closes (a wave of request
/// timeouts) then start no task or thread. Only a connection whose writer already
/// runs, or whose last frames the kernel does not take, is left to its writer. Returns how
/// many writers it started (zero or one).
pub(crate) fn close<O: Outbox>(
    mut slot: Slot<O>,
    mode: CloseMode,
    now: Timestamp,
    lingering: &mut Lingering<O>,
) -> usize {
    if mode == CloseMode::Now {
        abort_socket(&slot.outbox);
    }
    let deadline = now.saturating_add(LINGER);
    if let Some((mut session, mut records)) = slot.layer.take() {
        if mode == CloseMode::AfterFlush {
            // Before the handshake nothing can be sealed: the last frames (a 503) wait for it,
            // within the linger (T1).
            if session.is_handshaking() && !buffers::lock(slot.outbox.queue()).with_writer() {
                // The handshake's replies so far go first; a peer that does not take them is
                // not worth waiting for.
                let length = records.len();
                if records.send_now(&slot.outbox) == length {
                    lingering.handshake(slot.conn, slot.outbox, session, slot.batch, deadline);
                } else {
                    abort_socket(&slot.outbox);
                    slot.outbox.release();
                    lingering.released.push(slot.conn);
                }
                return 0;
            }
            session.finish(&mut slot.batch, &mut records);
        }
        slot.batch = records;
    }
    let mut queue = buffers::lock(slot.outbox.queue());
    if !queue.with_writer() {
        match mode {
            CloseMode::Now => {
                drop(queue);
                slot.outbox.release();
                lingering.released.push(slot.conn);
                return 0;
            }
            CloseMode::AfterFlush => {
                // The machine has forgotten `conn`: what is written needs no report.
                slot.batch.send_now(&slot.outbox);
                if slot.batch.is_empty() {
                    drop(queue);
                    lingering.start(slot.conn, slot.outbox, deadline);
                    return 0;
                }
            }
        }
    }
    queue.append(&mut slot.batch);
    let start = queue.close(mode);
    drop(queue);
    let started = if start { start_writer(&slot.outbox) } else { 0 };
    match mode {
        // The writer owns the socket now; the driver keeps a handle only to hold it to the
        // linger deadline (S13), so a peer that never takes the last bytes is reset.
        CloseMode::AfterFlush => lingering.watch(slot.conn, slot.outbox, deadline),
        // Aborted above: the writer stops at its next write.
        CloseMode::Now => lingering.released.push(slot.conn),
    }
    started
}

/// Connections the driver has closed after their last frames (S13). Each waits, at most
/// [`LINGER`]:
///
/// * **half-closed**, when the kernel took the last bytes at once: its sending side is shut
///   down and its reader discards input until the peer closes too (its reader's
///   [`Input::Closed`]), so that the descriptor is closed with nothing unread in it and the
///   peer gets a clean end of stream, not a reset;
/// * **with its writer**, when the kernel did not: the writer owns the socket and finishes
///   the close itself.
///
/// At the deadline a connection still waiting is aborted: a reset, which also frees what the
/// kernel holds for it, however the peer's window behaves.
///
/// Until then each still counts against the connection limit: the ids of those done (and of
/// those cut at once) are collected in `released`, for the driver to report to the machine.
#[derive(Debug)]
pub(crate) struct Lingering<O> {
    outboxes: HashMap<ConnId, (O, Wait)>,
    /// When each one's time is up, earliest first (every connection lingers as long).
    /// Connections whose peers closed early stay here until then, matching nothing.
    deadlines: VecDeque<(Timestamp, ConnId)>,
    /// Closed connections whose sockets are let go, not yet reported to the machine.
    pub(crate) released: Vec<ConnId>,
}

impl<O> Default for Lingering<O> {
    fn default() -> Self {
        Self {
            outboxes: HashMap::new(),
            deadlines: VecDeque::new(),
            released: Vec::new(),
        }
    }
}

/// What a lingering connection waits for.
#[derive(Debug)]
enum Wait {
    /// Half-closed: the peer's end of stream.
    PeerClose,
    /// Its writer, which owns the socket, to finish.
    Writer,
    /// With TLS, the end of the handshake, to seal these last frames; then as `PeerClose`.
    Handshake(Box<Layer>, Frames),
}

impl<O: Outbox> Lingering<O> {
    /// Half-closes `outbox`'s socket and lets it linger until `deadline`.
    pub(crate) fn start(&mut self, conn: ConnId, outbox: O, deadline: Timestamp) {
        let _ = socket2::SockRef::from(&outbox).shutdown(std::net::Shutdown::Write);
        self.outboxes.insert(conn, (outbox, Wait::PeerClose));
        self.deadlines.push_back((deadline, conn));
    }

    /// Holds `outbox`, whose writer is finishing a close, until `deadline`.
    pub(crate) fn watch(&mut self, conn: ConnId, outbox: O, deadline: Timestamp) {
        self.outboxes.insert(conn, (outbox, Wait::Writer));
        self.deadlines.push_back((deadline, conn));
    }

    /// Holds `outbox`, whose TLS handshake is not done, until `deadline`: what the reader
    /// reads goes to [`receive`](Self::receive), which finishes the handshake and the close.
    pub(crate) fn handshake(
        &mut self,
        conn: ConnId,
        outbox: O,
        session: Box<Layer>,
        last: Frames,
        deadline: Timestamp,
    ) {
        self.outboxes
            .insert(conn, (outbox, Wait::Handshake(session, last)));
        self.deadlines.push_back((deadline, conn));
    }

    /// Bytes read from a lingering connection. Discarded, unless its TLS handshake is still
    /// going on: then they go to the session, whose replies are written at once, and once
    /// the handshake is done the last frames, sealed, and the `close_notify`; then the socket
    /// is half-closed as in [`start`](Self::start). A failed handshake, or replies the kernel
    /// does not take at once, end it with a reset.
    pub(crate) fn receive(&mut self, conn: ConnId, bytes: &[u8]) {
        let Some((outbox, Wait::Handshake(session, last))) = self.outboxes.get_mut(&conn) else {
            return;
        };
        let mut records = Frames::default();
        let received = session.receive(bytes, true);
        let done = received.is_ok() && !session.is_handshaking();
        if done {
            session.finish(last, &mut records);
        } else {
            session.take_records(&mut records);
        }
        let length = records.len();
        let sent = records.send_now(outbox) == length;
        if received.is_err() || !sent {
            if let Some((outbox, _)) = self.outboxes.remove(&conn) {
                abort_socket(&outbox);
                outbox.release();
                self.released.push(conn);
            }
        } else if done {
            let _ = socket2::SockRef::from(&*outbox).shutdown(std::net::Shutdown::Write);
            if let Some(entry) = self.outboxes.get_mut(&conn) {
                entry.1 = Wait::PeerClose;
            }
        }
    }

    /// The peer closed. A half-closed socket can now close cleanly, and so can one whose
    /// writer has returned; one whose writer is still at work is held to its deadline, since
    /// a peer that stopped sending may still not read.
    pub(crate) fn release(&mut self, conn: ConnId) {
        let done = match self.outboxes.get(&conn) {
            Some((_, Wait::PeerClose | Wait::Handshake(..))) => true,
            Some((outbox, Wait::Writer)) => buffers::lock(outbox.queue()).is_writer_gone(),
            None => false,
        };
        if done && let Some((outbox, _)) = self.outboxes.remove(&conn) {
            outbox.release();
            self.released.push(conn);
        }
    }

    /// Aborts up to [`CLOSES_PER_ROUND`] connections whose time is up and that are still
    /// waiting; that ends each one's reader and writer, which drop the last handles.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        for _ in 0..CLOSES_PER_ROUND {
            let Some(&(deadline, conn)) = self.deadlines.front() else {
                break;
            };
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            let Some((outbox, wait)) = self.outboxes.remove(&conn) else {
                continue;
            };
            let unfinished = match wait {
                Wait::PeerClose | Wait::Handshake(..) => true,
                Wait::Writer => !buffers::lock(outbox.queue()).is_writer_gone(),
            };
            if unfinished {
                // Ends the reader and any writer, and makes the close a reset.
                abort_socket(&outbox);
            }
            outbox.release();
            self.released.push(conn);
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.front().map(|&(deadline, _)| deadline)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.outboxes.is_empty()
    }
}

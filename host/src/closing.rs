//! Closing a connection the room machine has let go: at once, or after its last frames
//! and a linger for the peer to close too.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chathttp_core::{CloseMode, ConnId, Timestamp};

use crate::buffers;
use crate::driver::CLOSES_PER_ROUND;
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
    let mut queue = buffers::lock(slot.outbox.queue());
    if !queue.with_writer() {
        match mode {
            CloseMode::Now => {
                drop(queue);
                slot.outbox.release();
                return 0;
            }
            CloseMode::AfterFlush => {
                // The machine has forgotten `conn`: what is written needs no report.
                slot.batch.send_now(&slot.outbox);
                if slot.batch.is_empty() {
                    drop(queue);
                    let deadline = now.saturating_add(LINGER);
                    lingering.start(slot.conn, slot.outbox, deadline);
                    return 0;
                }
            }
        }
    }
    queue.append(&mut slot.batch);
    if queue.close(mode) {
        drop(queue);
        return start_writer(&slot.outbox);
    }
    0
}

/// Connections the driver has closed after their last frames: each has its sending side shut
/// down and waits, its reader discarding input, until the peer closes too (its reader's
/// [`Input::Closed`]) or [`LINGER`] passes, when it is shut down for good. Until then the
/// driver keeps a handle on the socket, so that the descriptor is closed with nothing unread
/// in it and the peer gets a clean end of stream, not a reset.
#[derive(Debug)]
pub(crate) struct Lingering<O> {
    outboxes: HashMap<ConnId, O>,
    /// When each one's time is up, earliest first (every connection lingers as long).
    /// Connections whose peers closed early stay here until then, matching nothing.
    deadlines: VecDeque<(Timestamp, ConnId)>,
}

impl<O> Default for Lingering<O> {
    fn default() -> Self {
        Self {
            outboxes: HashMap::new(),
            deadlines: VecDeque::new(),
        }
    }
}

impl<O: Outbox> Lingering<O> {
    /// Half-closes `outbox`'s socket and lets it linger until `deadline`.
    pub(crate) fn start(&mut self, conn: ConnId, outbox: O, deadline: Timestamp) {
        let _ = socket2::SockRef::from(&outbox).shutdown(std::net::Shutdown::Write);
        self.outboxes.insert(conn, outbox);
        self.deadlines.push_back((deadline, conn));
    }

    /// The peer closed: the reader has read everything, so the socket can close cleanly.
    pub(crate) fn release(&mut self, conn: ConnId) {
        if let Some(outbox) = self.outboxes.remove(&conn) {
            outbox.release();
        }
    }

    /// Shuts down for good up to [`CLOSES_PER_ROUND`] connections whose time is up; that
    /// ends each one's reader, which drops the last handle.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        for _ in 0..CLOSES_PER_ROUND {
            let Some(&(deadline, conn)) = self.deadlines.front() else {
                break;
            };
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if let Some(outbox) = self.outboxes.remove(&conn) {
                let _ = socket2::SockRef::from(&outbox).shutdown(std::net::Shutdown::Both);
                outbox.release();
            }
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines.front().map(|&(deadline, _)| deadline)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.outboxes.is_empty()
    }
}

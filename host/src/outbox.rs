//! The connections the driver holds: each one's [`Outbox`] (how the runtime reaches its
//! socket and writer) and the frames queued for it this round.

use std::io;
use std::os::fd::AsFd;
use std::sync::Mutex;

use chathttp_core::ConnId;

use crate::buffers::{self, Frames, Outgoing};
use crate::layer::Layer;
use crate::socket::abort_socket;
use crate::tls::SEALED_BACKLOG;

/// One connection as the [`Driver`](crate::Driver) holds it: the socket, and the queue it
/// shares with the connection's writer (which also holds the writer's waker).
pub trait Outbox: AsFd {
    /// The frames waiting for this connection.
    fn queue(&self) -> &Mutex<Outgoing>;
    /// Starts the connection's writer (see [`crate::buffers`]), which sends
    /// [`Input::WriterFinished`](crate::Input::WriterFinished) when it ends. Must not block.
    fn start_writer(&self) -> io::Result<()>;
    /// Lets go of the driver's handle on the socket. Dropping the last handle closes the
    /// socket, a few system calls that an async runtime can leave to one of its tasks rather
    /// than make the driver's round wait for (a hundred peers closing at once).
    fn release(self)
    where
        Self: Sized,
    {
        drop(self);
    }
}

/// An open connection as the driver keeps it: its outbox, and the frames queued for it this
/// round, which only the driver touches (no lock per frame).
#[derive(Debug)]
pub(crate) struct Slot<O> {
    pub(crate) conn: ConnId,
    pub(crate) outbox: O,
    pub(crate) batch: Frames,
    /// On the driver's list of connections to write at the end of the round.
    pub(crate) listed: bool,
    /// With TLS or a WebSocket: the connection's [`Layer`], and the records it has sealed
    /// that are not yet written or handed to the writer.
    pub(crate) layer: Option<(Box<Layer>, Frames)>,
}

impl<O: Outbox> Slot<O> {
    /// Writes the batch now (sealed first, with TLS), or gives it to the writer if the writer
    /// owns the socket or the kernel does not take it all. Returns the bytes of the batch
    /// written (with TLS, sealed: see [`crate::tls`]), and how many writers were started
    /// (zero or one).
    pub(crate) fn write(&mut self) -> (usize, usize) {
        if self.layer.is_some() {
            return self.write_sealed();
        }
        let mut queue = buffers::lock(self.outbox.queue());
        let written = if queue.with_writer() {
            0
        } else {
            self.batch.send_now(&self.outbox)
        };
        if self.batch.is_empty() {
            return (written, 0);
        }
        queue.append(&mut self.batch);
        if queue.hand_to_writer() {
            drop(queue);
            return (written, start_writer(&self.outbox));
        }
        (written, 0)
    }

    /// [`write`](Self::write) with a layer (TLS, WebSocket): seals the batch as far as the sealed backlog allows,
    /// writes the records while the kernel takes them, and seals more after each write that
    /// the kernel took whole. What the kernel does not take goes to the writer, whose writes
    /// make room (see the driver's [`Input::Drained`](crate::Input::Drained)).
    fn write_sealed(&mut self) -> (usize, usize) {
        let Some((session, records)) = &mut self.layer else {
            return (0, 0);
        };
        let mut queue = buffers::lock(self.outbox.queue());
        let mut sealed = 0;
        loop {
            let room = SEALED_BACKLOG.saturating_sub(queue.backlog() + records.len());
            let more = session.seal(&mut self.batch, room);
            sealed += more;
            session.take_records(records);
            if !queue.with_writer() {
                records.send_now(&self.outbox);
            }
            if !records.is_empty() || more == 0 || self.batch.is_empty() {
                break;
            }
        }
        if records.is_empty() {
            return (sealed, 0);
        }
        queue.append(records);
        if queue.hand_to_writer() {
            drop(queue);
            return (sealed, start_writer(&self.outbox));
        }
        (sealed, 0)
    }

    /// Whether a connection with a layer still holds frames it could not seal for want of
    /// room (see [`write`](Self::write)), to be written once its writer has made some.
    pub(crate) fn has_unsealed(&self) -> bool {
        self.layer.is_some() && !self.batch.is_empty()
    }
}

/// The connections the driver holds, at their [`ConnId::index`]: a broadcast looks up every
/// member, so a vector indexed by slot, not a hash map, whose probing would dominate a large
/// room's broadcasts.
#[derive(Debug)]
pub(crate) struct Outboxes<O> {
    slots: Vec<Option<Slot<O>>>,
}

impl<O> Default for Outboxes<O> {
    fn default() -> Self {
        Self { slots: Vec::new() }
    }
}

impl<O> Outboxes<O> {
    pub(crate) fn insert(&mut self, conn: ConnId, outbox: O, layer: Option<Layer>) {
        let index = conn.index();
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index] = Some(Slot {
            conn,
            outbox,
            batch: Frames::default(),
            listed: false,
            layer: layer.map(|layer| (Box::new(layer), Frames::default())),
        });
    }

    pub(crate) fn get_mut(&mut self, conn: ConnId) -> Option<&mut Slot<O>> {
        match self.slots.get_mut(conn.index()) {
            Some(Some(slot)) if slot.conn == conn => Some(slot),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, conn: ConnId) -> Option<Slot<O>> {
        let slot = self.slots.get_mut(conn.index())?;
        match slot {
            Some(entry) if entry.conn == conn => slot.take(),
            _ => None,
        }
    }
}

/// Starts `outbox`'s writer; returns 1 if it runs. If it cannot be started (no threads left),
/// the connection is cut: its reader then ends and the machine forgets it.
pub(crate) fn start_writer(outbox: &impl Outbox) -> usize {
    match outbox.start_writer() {
        Ok(()) => 1,
        Err(error) => {
            tracing::error!(%error, "cannot start a writer; cutting the connection");
            abort_socket(outbox);
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chathttp_core::{Disconnect, Server, ServerConfig, Timestamp};

    use super::*;

    #[test]
    fn outboxes_ignore_a_closed_connection_whose_slot_was_reused() {
        let now = Timestamp::new(Duration::ZERO, chrono::NaiveDateTime::default());
        let mut server = Server::new(ServerConfig::default(), now);
        let mut outboxes = Outboxes::default();
        let old = server.handle_open(now);
        outboxes.insert(old, "old", None);
        server.handle_closed(now, old, Disconnect::Eof);
        server.handle_released(old);
        assert_eq!(outboxes.remove(old).map(|slot| slot.outbox), Some("old"));
        let new = server.handle_open(now);
        assert_eq!(new.index(), old.index(), "the slot is reused");
        outboxes.insert(new, "new", None);
        let late = outboxes.get_mut(old).map(|slot| slot.outbox);
        assert_eq!(late, None, "a late event for the old id finds nothing");
        assert!(outboxes.remove(old).is_none());
        assert_eq!(outboxes.get_mut(new).map(|slot| slot.outbox), Some("new"));
    }
}

//! A connection's two buffers: what it reads into, and what waits to be written to it.
//!
//! # Who writes a socket
//!
//! The [`Driver`](crate::Driver) writes each connection's [`Outgoing`] frames straight
//! to its socket, once per round of inputs, with a `send` that never waits
//! ([`Frames::send_now`]). While the kernel takes everything, that is the whole write path:
//! one system call per connection per round, however many frames the round queued, and no
//! task or thread wakes up for it. Only when the kernel's buffer for a connection is full
//! does the driver hand the queue to the connection's **writer** (started then, the first
//! time it is needed), which waits on the socket, writes until the queue is empty, hands it
//! back and ends. Closing is the writer's job too. The two never write at the same time:
//! [`Outgoing::with_writer`] says which one owns the socket, and both read it under the
//! queue's lock.
//!
//! Writing in the driver also keeps the slow-reader arithmetic (S8) honest: the room machine
//! counts every byte it hands out as unsent until the host reports it written, so a burst of
//! notices to a healthy member is reported written as it goes, long before it could add up to
//! `--max-output-bytes`; only a member whose kernel buffer is full accumulates.

use std::collections::VecDeque;
use std::io::{ErrorKind, IoSlice};
use std::os::fd::AsFd;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::Waker;

use bytes::{Buf, Bytes};
use chathttp_core::CloseMode;

use crate::gate::ReadGate;

/// How many queued frames one vectored write hands to the kernel at most (below `IOV_MAX`).
pub const MAX_WRITE_SLICES: usize = 64;

/// How many entries an empty queue keeps room for: a few, because ten thousand idle
/// connections each keep them.
const IDLE_QUEUE_CAPACITY: usize = 4;

/// Locks a connection's queue. Nothing panics while holding it, and if something did, the
/// queue is still consistent: every method leaves it so between statements.
pub fn lock(queue: &Mutex<Outgoing>) -> MutexGuard<'_, Outgoing> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether a connection's reader may start its next read (see [`Outgoing::may_read`]); if
/// not, `waker` is woken when it may. One atomic load while the room is not paced (S8.1).
pub fn may_read(queue: &Mutex<Outgoing>, gate: &ReadGate, waker: &Waker) -> bool {
    gate.is_open() || lock(queue).may_read(gate, waker)
}

/// What a connection's writer does next (see [`Outgoing::writer_step`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write these frames (one vectored write), then look again.
    Write(Vec<Bytes>),
    /// The backlog is written: the socket is the driver's again, and the writer ends
    /// without touching it (the next backlog starts a new writer).
    Return,
    /// Everything is written and the connection is closing after flush: shut down the
    /// sending side, linger (see [`LINGER`](crate::LINGER)), close.
    Finish,
    /// Close now, dropping what is queued.
    Stop,
}

/// Frames not yet written, in order, and their length in bytes.
///
/// No limit of its own: the room machine counts every byte it hands out against each
/// connection and cuts a connection whose unsent bytes would pass `max_output_bytes` (S8),
/// so no connection's frames ever add up to more than that (plus one frame).
#[derive(Debug, Default)]
pub struct Frames {
    frames: VecDeque<Bytes>,
    bytes: usize,
}

impl Frames {
    /// Appends a frame.
    pub fn push(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// Moves every frame of `other` to the end of these.
    pub fn append(&mut self, other: &mut Frames) {
        self.bytes += std::mem::take(&mut other.bytes);
        self.frames.append(&mut other.frames);
        other.shrink_if_idle();
    }

    /// Takes the first frame (what is left of it, if a write took part of it).
    pub fn pop(&mut self) -> Option<Bytes> {
        let frame = self.frames.pop_front()?;
        self.bytes -= frame.len();
        Some(frame)
    }

    /// The bytes waiting.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// Nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Writes what the kernel takes at once, never waiting, and returns how many bytes it
    /// took. Stops at the first short write: the kernel's buffer is full, and the caller
    /// hands what is left to the writer. A failed socket stops it too: the writer will meet
    /// the same error and end the connection.
    pub fn send_now(&mut self, socket: &impl AsFd) -> usize {
        let socket = socket2::SockRef::from(socket);
        let mut written = 0;
        while !self.frames.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_WRITE_SLICES];
            let count = self.io_slices(&mut slices);
            let offered: usize = slices[..count].iter().map(|slice| slice.len()).sum();
            // MSG_DONTWAIT makes this one call non-blocking even on a blocking socket, so
            // the same code serves the std and the async servers.
            let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
            match socket.send_vectored_with_flags(&slices[..count], flags) {
                Ok(sent) => {
                    self.consume(sent);
                    written += sent;
                    if sent < offered {
                        break;
                    }
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        written
    }

    /// Points `slices` at the front frames, for one vectored write; returns how many.
    fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.io_slices_upto(slices, usize::MAX)
    }

    /// [`io_slices`](Self::io_slices), covering at most `limit` bytes.
    pub(crate) fn io_slices_upto<'a>(&'a self, slices: &mut [IoSlice<'a>], limit: usize) -> usize {
        let (mut count, mut left) = (0, limit);
        for (slot, frame) in slices.iter_mut().zip(&self.frames) {
            if left == 0 {
                break;
            }
            let take = frame.len().min(left);
            *slot = IoSlice::new(&frame[..take]);
            left -= take;
            count += 1;
        }
        count
    }

    /// Drops the first `written` bytes, which the socket took.
    pub fn consume(&mut self, written: usize) {
        self.bytes -= written.min(self.bytes);
        let mut left = written;
        while left > 0 {
            let Some(front) = self.frames.front_mut() else {
                break;
            };
            if left < front.len() {
                front.advance(left);
                break;
            }
            left -= front.len();
            self.frames.pop_front();
        }
        self.shrink_if_idle();
    }

    fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.shrink_if_idle();
    }

    /// A burst (a thousand joins at once) can grow the queue to thousands of entries; an
    /// idle connection should not keep that room for the rest of its life.
    fn shrink_if_idle(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > IDLE_QUEUE_CAPACITY {
            self.frames.shrink_to(IDLE_QUEUE_CAPACITY);
        }
    }
}

/// What a connection's driver and writer share: the frames handed to the writer, who owns
/// the socket, and how to wake the writer.
#[derive(Debug, Default)]
pub struct Outgoing {
    /// Frames the writer is to write: empty unless it owns the socket.
    frames: Frames,
    /// A writer runs and owns the socket: the kernel's buffer filled up, or the connection
    /// closes. Cleared by the writer when it returns the socket.
    with_writer: bool,
    closing: Option<CloseMode>,
    /// The reader has seen the end of the stream: a lingering writer may close.
    reader_ended: bool,
    /// How to wake a writer lingering for the reader's end.
    writer: Option<Waker>,
    /// How to wake a reader waiting at the closed [`ReadGate`] when the connection closes.
    reader: Option<Waker>,
    /// A writer that carried out a close has returned: nothing of the connection is left in
    /// it.
    writer_gone: bool,
}

impl Outgoing {
    /// Whether the writer owns the socket (the driver must only queue).
    pub fn with_writer(&self) -> bool {
        self.with_writer
    }

    /// The bytes the writer has yet to write.
    pub fn backlog(&self) -> usize {
        self.frames.len()
    }

    /// Queues `frames` for the writer, after what it already has.
    pub fn append(&mut self, frames: &mut Frames) {
        self.frames.append(frames);
    }

    /// Gives the socket to the writer. Returns `true` if no writer runs: the caller starts
    /// one. (A writer runs only while there is a backlog or a close to carry out: most
    /// connections never need one, and an idle connection keeps no task or thread for it.)
    #[must_use = "a `true` means that a writer must be started"]
    pub fn hand_to_writer(&mut self) -> bool {
        !std::mem::replace(&mut self.with_writer, true)
    }

    /// The room machine closes the connection: from now on only the writer acts. Returns
    /// `true` if the caller must start the writer (see [`hand_to_writer`](Self::hand_to_writer)).
    #[must_use = "a `true` means that a writer must be started"]
    pub fn close(&mut self, mode: CloseMode) -> bool {
        if mode == CloseMode::Now {
            self.frames.clear();
            self.closing = Some(mode);
        }
        self.closing.get_or_insert(mode);
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
        self.hand_to_writer()
    }

    /// Whether the reader may start its next read: the room is not paced (see
    /// [`ReadGate`]), or the connection is closing, and its reader must see the peer close
    /// to end the linger. If not, `waker` is woken when that changes. Readers call the
    /// free function [`may_read`], which spares the lock while the gate is open.
    pub fn may_read(&mut self, gate: &ReadGate, waker: &Waker) -> bool {
        if self.closing.is_some() || gate.poll_open(waker) {
            return true;
        }
        self.reader = Some(waker.clone());
        false
    }

    /// The reader saw the end of the stream (or gave up): a writer lingering after a
    /// half-close (see [`Step::Finish`]) may close now.
    pub fn end_reading(&mut self) {
        self.reader_ended = true;
        self.wake_writer();
    }

    /// Whether the reader has ended; if not, `waker` is woken when it does.
    pub fn reader_ended(&mut self, waker: &Waker) -> bool {
        if !self.reader_ended {
            self.writer = Some(waker.clone());
        }
        self.reader_ended
    }

    fn wake_writer(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.wake();
        }
    }

    /// The writer has carried out the close (or met an error) and is about to return.
    pub fn end_writing(&mut self) {
        self.writer_gone = true;
    }

    /// Whether a writer that carried out a close has returned (see
    /// [`end_writing`](Self::end_writing)).
    pub fn is_writer_gone(&self) -> bool {
        self.writer_gone
    }

    /// The writer's next step.
    pub fn writer_step(&mut self) -> Step {
        match (self.closing, self.frames.is_empty()) {
            (Some(CloseMode::Now), _) => Step::Stop,
            (_, false) => {
                let front = self.frames.frames.iter().take(MAX_WRITE_SLICES);
                Step::Write(front.cloned().collect())
            }
            (Some(CloseMode::AfterFlush), true) => Step::Finish,
            (None, true) => {
                self.with_writer = false;
                Step::Return
            }
        }
    }

    /// Drops the first `written` bytes, which the writer wrote.
    pub fn consume(&mut self, written: usize) {
        self.frames.consume(written);
    }
}

/// The bytes a reader reads into before copying them out for the driver.
///
/// An idle connection waits in `read` for as long as it lives, holding its buffer all that
/// time, and a 4 KiB buffer each adds up over thousands of idle connections. So a
/// reader starts with a small buffer inside itself and takes a large one from the heap only
/// while a read fills the small one (a client sending fast), giving it back once reads are
/// small again.
#[derive(Debug)]
pub struct ReadBuffer {
    small: [u8; Self::SMALL],
    large: Option<Box<[u8]>>,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        Self {
            small: [0; Self::SMALL],
            large: None,
        }
    }
}

impl ReadBuffer {
    /// Enough for a typical request (a `POST` with a line of text).
    const SMALL: usize = 512;
    /// Enough for a pipelined burst of requests per read.
    const LARGE: usize = 16 * 1024;

    /// Where the next read goes.
    pub fn space(&mut self) -> &mut [u8] {
        match &mut self.large {
            Some(large) => large,
            None => &mut self.small,
        }
    }

    /// Copies out the `n` bytes the last read put in [`space`](Self::space), and picks the
    /// buffer for the next read.
    pub fn take(&mut self, n: usize) -> Bytes {
        let space = self.space();
        let full = n == space.len();
        let bytes = Bytes::copy_from_slice(&space[..n]);
        match (&self.large, full) {
            (None, true) => self.large = Some(vec![0; Self::LARGE].into_boxed_slice()),
            (Some(_), false) if n < Self::SMALL => self.large = None,
            _ => {}
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn frames_consume_partial_writes_across_frames() {
        let mut frames = Frames::default();
        frames.push(Bytes::from_static(b"abc"));
        frames.push(Bytes::from_static(b"de"));
        frames.consume(4);
        assert_eq!(frames.len(), 1);
        let mut slices = [IoSlice::new(&[]); MAX_WRITE_SLICES];
        let count = frames.io_slices(&mut slices);
        assert_eq!(&*slices[0], b"e");
        assert_eq!(count, 1);
        frames.consume(1);
        assert!(frames.is_empty());
    }

    fn frames(parts: &[&'static [u8]]) -> Frames {
        let mut frames = Frames::default();
        parts
            .iter()
            .for_each(|part| frames.push(Bytes::from_static(part)));
        frames
    }

    #[test]
    fn a_writer_runs_while_there_is_a_backlog_or_a_close() {
        let mut out = Outgoing::default();
        out.append(&mut frames(&[b"abc"]));
        assert!(out.hand_to_writer(), "the first hand-over starts a writer");
        let abc = vec![Bytes::from_static(b"abc")];
        assert_eq!(out.writer_step(), Step::Write(abc));
        out.append(&mut frames(&[b"d"]));
        assert!(!out.hand_to_writer(), "it still runs");
        out.consume(3);
        assert_eq!(
            out.writer_step(),
            Step::Write(vec![Bytes::from_static(b"d")])
        );
        out.consume(1);
        assert_eq!(out.writer_step(), Step::Return);
        assert!(!out.with_writer(), "an empty queue goes back to the driver");
        out.append(&mut frames(&[b"x"]));
        assert!(
            out.close(CloseMode::AfterFlush),
            "the close starts a new writer"
        );
        assert_eq!(
            out.writer_step(),
            Step::Write(vec![Bytes::from_static(b"x")])
        );
        out.consume(1);
        assert_eq!(out.writer_step(), Step::Finish, "flushed, then closed");
        assert!(!out.close(CloseMode::Now));
        assert_eq!(out.writer_step(), Step::Stop);
    }

    #[test]
    fn a_lingering_writer_is_woken_by_the_end_of_reading() {
        let (waker, wakes) = counting_waker();
        let mut out = Outgoing::default();
        assert!(!out.reader_ended(&waker));
        out.end_reading();
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        assert!(out.reader_ended(&waker));
    }

    fn counting_waker() -> (Waker, Arc<AtomicUsize>) {
        struct Count(Arc<AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(AtomicUsize::new(0));
        (Waker::from(Arc::new(Count(Arc::clone(&count)))), count)
    }

    #[test]
    fn send_now_writes_what_the_kernel_takes_and_stops_when_it_is_full() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let mut out = frames(&[b"hello ", b"world"]);
        assert_eq!(out.send_now(&server), 11);
        let mut received = [0; 11];
        std::io::Read::read_exact(&mut &client, &mut received).expect("read");
        assert_eq!(&received, b"hello world");
        // Nobody reads `client` now: the kernel's buffers fill and send_now returns short
        // instead of blocking.
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let (mut pushed, mut taken) = (0, 0);
        for _ in 0..1024 {
            out.push(chunk.clone());
            pushed += chunk.len();
            taken += out.send_now(&server);
            if !out.is_empty() {
                break;
            }
        }
        assert!(
            !out.is_empty(),
            "the kernel took {taken} bytes and wanted more"
        );
        assert_eq!(
            out.len(),
            pushed - taken,
            "what the kernel did not take stays queued"
        );
    }

    #[test]
    fn a_read_buffer_grows_for_fast_senders_and_shrinks_back() {
        let mut buffer = ReadBuffer::default();
        assert_eq!(buffer.space().len(), ReadBuffer::SMALL);
        let n = buffer.space().len();
        buffer.space().fill(b'a');
        assert_eq!(buffer.take(n).len(), n);
        assert_eq!(
            buffer.space().len(),
            ReadBuffer::LARGE,
            "a full read grows it"
        );
        buffer.space()[..3].copy_from_slice(b"abc");
        assert_eq!(&buffer.take(3)[..], b"abc");
        assert_eq!(
            buffer.space().len(),
            ReadBuffer::SMALL,
            "a small read shrinks it"
        );
    }
}

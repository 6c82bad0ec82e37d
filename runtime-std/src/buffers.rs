//! A connection's two buffers: what it reads into, and what waits to be written to it.
//!
//! # Who writes a socket
//!
//! The [`Driver`](crate::host::Driver) writes each connection's [`Outgoing`] frames straight
//! to its socket, once per round of inputs, with a `send` that never waits
//! ([`Outgoing::send_now`]). While the kernel takes everything, that is the whole write path:
//! one system call per connection per round, however many frames the round queued, and no
//! task or thread wakes up for it. Only when the kernel's buffer for a connection is full
//! does the driver hand the queue to the connection's **writer** (started then, the first
//! time it is needed), which waits on the socket, writes until the queue is empty and hands
//! it back. Closing is the writer's job too. The two never write at the same time:
//! [`Outgoing::with_writer`] says which one owns the socket, and both read it under the
//! queue's lock. A waiting writer leaves its [`Waker`] in the queue (an async task's own, or
//! one that unparks a thread), so waking it costs no channel and no allocation.
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

/// What a connection's writer does next (see [`Outgoing::writer_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The driver owns the socket, or there is nothing to write: wait to be woken.
    Wait,
    /// Write the frames put in the batch (one vectored write), then look again.
    Write,
    /// Everything is written and the connection is closing after flush: shut down the
    /// sending side, linger (see [`LINGER`](crate::host::LINGER)), close.
    Finish,
    /// Close now, dropping what is queued.
    Stop,
}

/// One connection's frames not yet written, in order.
///
/// Its size needs no limit of its own: the room machine counts every byte it hands out
/// against each connection and cuts a connection whose unsent bytes would pass
/// `max_output_bytes` (S8), so a queue never holds more than that (plus one frame).
#[derive(Debug, Default)]
pub struct Outgoing {
    frames: VecDeque<Bytes>,
    /// The bytes in `frames`.
    bytes: usize,
    /// The writer owns the socket: the kernel's buffer filled up, or the connection closes.
    with_writer: bool,
    /// The connection is on the driver's list of queues to write at the end of the round.
    listed: bool,
    closing: Option<CloseMode>,
    /// The reader has seen the end of the stream: a lingering writer may close.
    reader_ended: bool,
    /// How to wake the writer, left here while it waits.
    writer: Option<Waker>,
    /// A writer has been started (it may have ended since).
    writer_started: bool,
}

impl Outgoing {
    /// Appends a frame.
    pub fn push(&mut self, frame: Bytes) {
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// The bytes waiting.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// Nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Whether the writer owns the socket (the driver must only queue).
    pub fn with_writer(&self) -> bool {
        self.with_writer
    }

    /// Marks the queue as listed for the end of the round; `false` if it already was.
    pub fn list(&mut self) -> bool {
        !std::mem::replace(&mut self.listed, true)
    }

    /// Takes the queue off the end-of-round list.
    pub fn unlist(&mut self) {
        self.listed = false;
    }

    /// Gives the socket to the writer and wakes it. Returns `true` if the connection has no
    /// writer yet: the caller starts one. (Most connections never need a writer: the driver
    /// writes for them. Starting it on first need saves a task or a thread per idle
    /// connection.)
    #[must_use = "a `true` means that a writer must be started"]
    pub fn hand_to_writer(&mut self) -> bool {
        self.with_writer = true;
        self.wake_writer();
        !std::mem::replace(&mut self.writer_started, true)
    }

    /// The room machine closes the connection: from now on only the writer acts. Returns
    /// `true` if the caller must start the writer (see [`hand_to_writer`](Self::hand_to_writer)).
    #[must_use = "a `true` means that a writer must be started"]
    pub fn close(&mut self, mode: CloseMode) -> bool {
        if mode == CloseMode::Now {
            self.frames.clear();
            self.bytes = 0;
            self.closing = Some(mode);
        }
        self.closing.get_or_insert(mode);
        self.hand_to_writer()
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

    /// The writer's next step. For `Wait`, `waker` is kept and woken when there is work;
    /// `Wait` also gives the socket back to the driver when the writer has emptied the queue.
    /// For `Write`, `batch` holds the frames to write.
    pub fn writer_step(&mut self, waker: &Waker, batch: &mut Vec<Bytes>) -> Step {
        let step = self.next_step(batch);
        if step == Step::Wait {
            self.writer = Some(waker.clone());
        }
        step
    }

    fn next_step(&mut self, batch: &mut Vec<Bytes>) -> Step {
        if !self.with_writer {
            return Step::Wait;
        }
        match (self.closing, self.frames.is_empty()) {
            (Some(CloseMode::Now), _) => Step::Stop,
            (_, false) => {
                batch.clear();
                batch.extend(self.frames.iter().take(MAX_WRITE_SLICES).cloned());
                Step::Write
            }
            (Some(CloseMode::AfterFlush), true) => Step::Finish,
            (None, true) => {
                self.with_writer = false;
                Step::Wait
            }
        }
    }

    /// Points `slices` at the front frames, for one vectored write; returns how many.
    fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut count = 0;
        for (slot, frame) in slices.iter_mut().zip(&self.frames) {
            *slot = IoSlice::new(frame);
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
        // A burst (a thousand joins at once) can grow the queue to thousands of entries;
        // an idle connection should not keep that room for the rest of its life.
        if self.frames.is_empty() && self.frames.capacity() > IDLE_QUEUE_CAPACITY {
            self.frames.shrink_to(IDLE_QUEUE_CAPACITY);
        }
    }
}

/// The bytes a reader reads into before copying them out for the driver.
///
/// An idle connection waits in `read` for as long as it lives, holding its buffer all that
/// time; at ten thousand connections a 4 KiB buffer each would be 40 MB doing nothing. So a
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
    fn outgoing_consumes_partial_writes_across_frames() {
        let mut out = Outgoing::default();
        out.push(Bytes::from_static(b"abc"));
        out.push(Bytes::from_static(b"de"));
        out.consume(4);
        assert_eq!(out.len(), 1);
        let mut slices = [IoSlice::new(&[]); MAX_WRITE_SLICES];
        let count = out.io_slices(&mut slices);
        assert_eq!(&*slices[0], b"e");
        assert_eq!(count, 1);
        out.consume(1);
        assert!(out.is_empty());
    }

    #[test]
    fn the_writer_acts_only_once_handed_the_socket_and_gives_it_back_when_done() {
        let (waker, wakes) = counting_waker();
        let mut out = Outgoing::default();
        let mut batch = Vec::new();
        out.push(Bytes::from_static(b"abc"));
        assert_eq!(
            out.writer_step(&waker, &mut batch),
            Step::Wait,
            "driver owns it"
        );
        assert!(
            out.hand_to_writer(),
            "the first hand-over starts the writer"
        );
        assert_eq!(
            wakes.load(Ordering::SeqCst),
            1,
            "handing over wakes the writer"
        );
        assert_eq!(out.writer_step(&waker, &mut batch), Step::Write);
        assert_eq!(batch, [Bytes::from_static(b"abc")]);
        out.consume(3);
        assert_eq!(out.writer_step(&waker, &mut batch), Step::Wait);
        assert!(!out.with_writer(), "an empty queue goes back to the driver");
        out.push(Bytes::from_static(b"x"));
        assert!(
            !out.close(CloseMode::AfterFlush),
            "the writer is already there"
        );
        assert_eq!(wakes.load(Ordering::SeqCst), 2, "closing wakes the writer");
        assert_eq!(
            out.writer_step(&waker, &mut batch),
            Step::Write,
            "flush first"
        );
        out.consume(1);
        assert_eq!(out.writer_step(&waker, &mut batch), Step::Finish);
        assert!(!out.reader_ended(&waker));
        out.end_reading();
        assert_eq!(
            wakes.load(Ordering::SeqCst),
            3,
            "the reader's end wakes a lingerer"
        );
        assert!(out.reader_ended(&waker));
        assert!(!out.close(CloseMode::Now));
        assert_eq!(out.writer_step(&waker, &mut batch), Step::Stop);
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
        let mut out = Outgoing::default();
        out.push(Bytes::from_static(b"hello "));
        out.push(Bytes::from_static(b"world"));
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

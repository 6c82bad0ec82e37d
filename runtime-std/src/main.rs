//! `chat-server-std`: the room machine on blocking `std::net` sockets and threads.
//!
//! # Thread layout
//!
//! * **accept**: one thread blocks in `accept` and hands each stream to the driver.
//! * **driver**: the main thread owns the [`Driver`] (and through it the room machine). It
//!   blocks on one channel of [`Input`]s with a timeout set by the machine's next deadline.
//!   After each round of inputs it writes every connection's new frames with a `send` that
//!   never waits (see [`chathttp_host::buffers`]): no write can make it wait. Between
//!   writes it takes the inputs that arrived meanwhile (see [`Driver::flush`]).
//! * **reader**, one per connection: blocks in `read` and sends what it gets to the driver.
//! * **writer**, a thread that runs only while a connection has a backlog or is closing:
//!   started when the driver finds the peer's kernel buffer full, it blocks in
//!   `write_vectored` for the backlog (only that peer waits, S8) and ends; it also carries
//!   out closes.
//! * **spawner**: creates the connections' reader and writer threads, so that the driver
//!   never waits for `pthread_create`.
//! * **signals**: raises the shutdown flag on SIGINT and SIGTERM and wakes the driver (S11).
//!
//! Blocking sockets offer no way to wait for "readable or writable or a message", so each
//! connection's reading needs a thread of its own, and so does its writing whenever the peer
//! is slower than the driver; anything fewer lets one slow peer hold up others. The price is
//! one small-stack thread per connection (two while it falls behind or closes), which is
//! fine for thousands of connections and the reason the async binaries exist for more.
//!
//! The driver's input channel is bounded: when the driver falls behind, readers stop reading
//! and TCP pushes back on the senders. Outgoing queues have no bound of their own, because
//! the driver must never block, and are bounded instead by the room machine's arithmetic: it
//! cuts a connection whose unsent bytes would pass `--max-output-bytes`.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

use chathttp_core::{ConnId, Disconnect};
use chathttp_host::buffers::{self, Outgoing, ReadBuffer, Step};
use chathttp_host::{self as host, Driver, Input, Outbox, ReadGate};

/// Per-connection threads only read, write and copy; their stacks stay small, which keeps
/// thousands of them cheap.
const CONNECTION_STACK_BYTES: usize = 64 * 1024;

type ToDriver = SyncSender<Input<TcpStream>>;

/// The way to the spawner thread (see [`spawner_loop`]).
type Spawner = mpsc::Sender<Job>;

fn main() -> ExitCode {
    let settings = host::start("chat-server-std");
    let (to_driver, inputs) = mpsc::sync_channel(host::INPUT_CAPACITY);
    let on_signal = to_driver.clone();
    host::on_shutdown_signal(move || {
        let _ = on_signal.try_send(Input::Shutdown);
    });
    let gateway = host::listen_http(&settings);
    let listener = host::listen(&settings);
    let accepted = to_driver.clone();
    let max_output_bytes = settings.config.max_output_bytes;
    thread::Builder::new()
        .name("accept".into())
        .spawn(move || accept_loop(&listener, max_output_bytes, &accepted))
        .expect("one thread can be spawned at start-up");
    let (spawner, jobs) = mpsc::channel();
    thread::Builder::new()
        .name("spawner".into())
        .spawn(move || spawner_loop(&jobs))
        .expect("one thread can be spawned at start-up");
    let mut driver = Driver::new(settings.config);
    if let Some(tls) = settings.tls {
        driver.use_tls(tls);
    }
    let background = to_driver.clone();
    driver.attach(
        settings.cluster.as_ref(),
        settings.history_db,
        move |input| {
            let _ = background.send(input);
        },
    );
    if let Some(gateway) = gateway {
        let upgraded = to_driver.clone();
        gateway.serve(driver.metrics(), move |stream, upgrade| {
            match upgraded.try_send(Input::Upgraded(stream, upgrade)) {
                Err(TrySendError::Full(Input::Upgraded(stream, upgrade))) => Err((stream, upgrade)),
                _ => Ok(()),
            }
        });
    }
    drive(driver, &inputs, &to_driver, &spawner);
    ExitCode::SUCCESS
}

fn accept_loop(listener: &TcpListener, max_output_bytes: usize, to_driver: &ToDriver) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                host::tune_socket(&stream, max_output_bytes);
                if to_driver.send(Input::Accepted(stream)).is_err() {
                    return;
                }
            }
            Err(error) => {
                host::accept_failed(&error);
                thread::sleep(host::ACCEPT_BACKOFF);
            }
        }
    }
}

/// The driver loop: wait for an input or the next deadline, feed it, until shutdown is done.
fn drive(
    mut driver: Driver<Connection>,
    inputs: &Receiver<Input<TcpStream>>,
    to_driver: &ToDriver,
    spawner: &Spawner,
) {
    let gate = driver.read_gate();
    while !driver.is_finished() {
        let input = match driver.next_wakeup() {
            Some(delay) => inputs.recv_timeout(delay),
            None => inputs.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let start = |conn, stream| Ok(open(conn, stream, to_driver, spawner, &gate));
        match input {
            Ok(input) => {
                driver.handle(input, start);
                // Take everything already waiting before writing: under load that is many
                // inputs, and many frames per write, per round.
                while let Ok(input) = inputs.try_recv() {
                    driver.handle(input, start);
                }
            }
            Err(RecvTimeoutError::Timeout) => driver.handle_timeout(),
            // Unreachable while `to_driver` lives; nothing could wake the driver again.
            Err(RecvTimeoutError::Disconnected) => return,
        }
        driver.flush(|| inputs.try_recv().ok(), start);
    }
}

/// A connection as the driver holds it: the socket, the queue it shares with the writer, and
/// what starting the writer takes. Reader and writer share the one socket through
/// `&TcpStream`, which implements `Read` and `Write`; the descriptor closes when the last
/// handle is dropped.
#[derive(Debug)]
struct Connection {
    conn: ConnId,
    stream: Arc<TcpStream>,
    queue: Arc<Mutex<Outgoing>>,
    to_driver: ToDriver,
    spawner: Spawner,
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl Outbox for Connection {
    fn queue(&self) -> &Mutex<Outgoing> {
        &self.queue
    }

    fn start_writer(&self) -> io::Result<()> {
        let conn = self.conn;
        let writer = (
            Arc::clone(&self.stream),
            Arc::clone(&self.queue),
            self.to_driver.clone(),
        );
        let to_driver = self.to_driver.clone();
        let job = Job {
            body: Box::new(move || write_loop(conn, &writer.0, &writer.1, &writer.2)),
            // The driver counted this writer; it will never report its end itself.
            if_not_started: Box::new(move || drop(to_driver.send(Input::WriterFinished))),
            stream: Arc::clone(&self.stream),
        };
        self.spawner
            .send(job)
            .map_err(|_| io::Error::other("the spawner thread has ended"))
    }
}

/// Starts the reader of a new connection (through the spawner).
fn open(
    conn: ConnId,
    stream: TcpStream,
    to_driver: &ToDriver,
    spawner: &Spawner,
    gate: &Arc<ReadGate>,
) -> Connection {
    let stream = Arc::new(stream);
    let queue = Arc::new(Mutex::new(Outgoing::default()));
    let reader = (
        Arc::clone(&stream),
        to_driver.clone(),
        Arc::clone(&queue),
        Arc::clone(gate),
    );
    let closed = to_driver.clone();
    let job = Job {
        body: Box::new(move || read_loop(conn, &reader.0, &reader.1, &reader.2, &reader.3)),
        // Without a reader the connection is as good as gone: say so, as a reader would.
        if_not_started: Box::new(move || drop(closed.send(Input::Closed(conn, Disconnect::Error)))),
        stream: Arc::clone(&stream),
    };
    // The spawner outlives the driver, so this cannot fail while the driver runs.
    let _ = spawner.send(job);
    Connection {
        conn,
        stream,
        queue,
        to_driver: to_driver.clone(),
        spawner: spawner.clone(),
    }
}

/// A connection's thread to start, and what to do if it cannot be started.
struct Job {
    body: Box<dyn FnOnce() + Send>,
    if_not_started: Box<dyn FnOnce() + Send>,
    /// Cut if the thread cannot be started.
    stream: Arc<TcpStream>,
}

/// Starts the connections' reader and writer threads, so that the driver never waits for
/// the system to create one: a wave of connections opening or closing at once would
/// otherwise make every member's next message wait for all those `pthread_create`s.
fn spawner_loop(jobs: &Receiver<Job>) {
    for job in jobs {
        let started = thread::Builder::new()
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(job.body);
        if let Err(error) = started {
            tracing::error!(%error, "cannot start a connection's thread; cutting it");
            host::abort_socket(&*job.stream);
            (job.if_not_started)();
        }
    }
}

/// Reads until the stream ends and hands every chunk to the driver; then tells the writer,
/// which may be lingering for it (see [`write_loop`]).
fn read_loop(
    conn: ConnId,
    stream: &TcpStream,
    to_driver: &ToDriver,
    queue: &Mutex<Outgoing>,
    gate: &ReadGate,
) {
    let mut buffer = ReadBuffer::default();
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let how = loop {
        // While the room is paced (S8.1), wait: unparked when it resumes or the
        // connection closes.
        while !buffers::may_read(queue, gate, &waker) {
            thread::park();
        }
        let input = match (&*stream).read(buffer.space()) {
            Ok(0) => break Some(Disconnect::Eof),
            Ok(n) => Input::Received(conn, buffer.take(n)),
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break Some(Disconnect::Error),
        };
        if to_driver.send(input).is_err() {
            break None;
        }
    };
    buffers::lock(queue).end_reading();
    if let Some(how) = how {
        let _ = to_driver.send(Input::Closed(conn, how));
    }
}

/// Writes the queue while the driver has handed it the socket (the peer's kernel buffer was
/// full, or the connection closes), one vectored write at a time; returns the socket to the
/// driver when the backlog is written, or closes as told.
fn write_loop(conn: ConnId, stream: &TcpStream, queue: &Mutex<Outgoing>, to_driver: &ToDriver) {
    loop {
        let step = buffers::lock(queue).writer_step();
        match step {
            Step::Write(batch) => {
                let slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
                let written = match (&*stream).write_vectored(&slices) {
                    Ok(0) => break,
                    Ok(written) => written,
                    Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                buffers::lock(queue).consume(written);
                let _ = to_driver.send(Input::Drained(conn, written));
            }
            Step::Return => {
                let _ = to_driver.send(Input::WriterFinished);
                return;
            }
            Step::Finish => {
                // Half-close, then let the reader discard input until the peer closes. Waking
                // this thread is unparking it; `park_timeout` may also return early.
                let _ = stream.shutdown(Shutdown::Write);
                let waker = Waker::from(Arc::new(Unpark(thread::current())));
                let deadline = Instant::now() + host::LINGER;
                while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                    if buffers::lock(queue).reader_ended(&waker) {
                        break;
                    }
                    thread::park_timeout(left);
                }
                break;
            }
            Step::Stop => break,
        }
    }
    buffers::lock(queue).end_writing();
    let _ = stream.shutdown(Shutdown::Both);
    let _ = to_driver.send(Input::WriterFinished);
}

/// A [`Waker`] for a thread that waits with [`thread::park`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

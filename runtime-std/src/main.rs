//! `chat-server-std`: the room machine on blocking `std::net` sockets and threads.
//!
//! # Thread layout
//!
//! * **accept**: one thread blocks in `accept` and hands each stream to the driver.
//! * **driver**: the main thread owns the [`Driver`] (and through it the room machine). It
//!   blocks on one channel of [`Input`]s with a timeout set by the machine's next deadline,
//!   and never touches a socket beyond `shutdown`: no write can make it wait.
//! * **reader**, one per connection: blocks in `read` with a reusable buffer and sends what
//!   it gets to the driver.
//! * **writer**, one per connection: the only thread that writes its socket. It blocks in
//!   `write_vectored` when the peer does not read, and only that peer waits (S8).
//! * **signals**: raises the shutdown flag on SIGINT and SIGTERM and wakes the driver (S11).
//!
//! Blocking sockets offer no way to wait for "readable or writable or a message", so each
//! direction of each socket needs a thread of its own; anything fewer lets one slow peer hold
//! up others. The price is two small-stack threads per connection, which is fine for
//! thousands of connections and the reason the async binaries exist for more.
//!
//! The driver's input channel is bounded: when the driver falls behind, readers stop reading
//! and TCP pushes back on the senders. Writer queues are unbounded channels, because the
//! driver must never block, and are bounded instead by the room machine's arithmetic: it
//! cuts a connection whose unsent bytes would pass `--max-output-bytes`.

use std::io::{self, ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::thread;

use bytes::Bytes;
use chathttp_core::{ConnId, Disconnect};
use chathttp_runtime_std::host::{self, Driver, Input, Outbox, Outgoing, Step, WriterCommand};

/// Per-connection threads only read, write and copy; their stacks stay small, which keeps
/// thousands of them cheap.
const CONNECTION_STACK_BYTES: usize = 64 * 1024;

type ToDriver = SyncSender<Input<TcpStream>>;

fn main() -> ExitCode {
    let settings = host::start("chat-server-std");
    let (to_driver, inputs) = mpsc::sync_channel(host::INPUT_CAPACITY);
    let on_signal = to_driver.clone();
    host::on_shutdown_signal(move || {
        let _ = on_signal.try_send(Input::Shutdown);
    });
    let listener = host::listen(settings.bind);
    let accepted = to_driver.clone();
    thread::Builder::new()
        .name("accept".into())
        .spawn(move || accept_loop(&listener, &accepted))
        .expect("one thread can be spawned at start-up");
    let mut driver = Driver::new(settings.config);
    if let Some(cluster) = &settings.cluster {
        let to_driver = to_driver.clone();
        driver.share(
            cluster,
            Arc::new(move |event| {
                let _ = to_driver.send(Input::Log(event));
            }),
        );
    }
    drive(driver, &inputs, &to_driver);
    ExitCode::SUCCESS
}

fn accept_loop(listener: &TcpListener, to_driver: &ToDriver) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                host::tune_socket(&stream);
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
) {
    while !driver.is_finished() {
        let input = match driver.next_wakeup() {
            Some(delay) => inputs.recv_timeout(delay),
            None => inputs.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match input {
            Ok(input) => driver.handle(input, |conn, stream| open(conn, stream, to_driver)),
            Err(RecvTimeoutError::Timeout) => driver.handle_timeout(),
            // Unreachable while `to_driver` lives; nothing could wake the driver again.
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// A connection as the driver holds it: its writer's queue, and the socket for `abort`.
/// Reader and writer share the one socket through `&TcpStream`, which implements `Read` and
/// `Write`; the descriptor closes when the last of the three handles is dropped.
#[derive(Debug)]
struct Connection {
    commands: Sender<WriterCommand>,
    stream: Arc<TcpStream>,
}

impl Outbox for Connection {
    fn push(&self, command: WriterCommand) {
        // Fails only once the writer has ended, when there is nobody left to tell.
        let _ = self.commands.send(command);
    }

    fn abort(&self) {
        host::abort_socket(&*self.stream);
    }
}

/// Starts the reader and the writer of a new connection.
fn open(conn: ConnId, stream: TcpStream, to_driver: &ToDriver) -> io::Result<Connection> {
    let stream = Arc::new(stream);
    let (commands, queue) = mpsc::channel();
    let reader = (Arc::clone(&stream), to_driver.clone(), commands.clone());
    spawn(move || read_loop(conn, &reader.0, &reader.1, reader.2))?;
    let writer = (Arc::clone(&stream), to_driver.clone());
    if let Err(error) = spawn(move || write_loop(conn, &writer.0, &queue, &writer.1)) {
        // The reader ends on the shutdown; the driver forgets the connection.
        let _ = stream.shutdown(Shutdown::Both);
        return Err(error);
    }
    Ok(Connection { commands, stream })
}

fn spawn(body: impl FnOnce() + Send + 'static) -> io::Result<()> {
    thread::Builder::new()
        .stack_size(CONNECTION_STACK_BYTES)
        .spawn(body)
        .map(drop)
}

/// Reads until the stream ends and hands every chunk to the driver. `_writer_link` is a
/// handle on the writer's queue that is never used to send: dropping it when the stream
/// ends is how a lingering writer learns that the peer has closed (see [`write_loop`]).
fn read_loop(
    conn: ConnId,
    stream: &TcpStream,
    to_driver: &ToDriver,
    _writer_link: Sender<WriterCommand>,
) {
    let mut buffer = vec![0; host::READ_BUFFER_BYTES];
    let how = loop {
        let input = match (&*stream).read(&mut buffer) {
            Ok(0) => break Disconnect::Eof,
            Ok(n) => Input::Received(conn, Bytes::copy_from_slice(&buffer[..n])),
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break Disconnect::Error,
        };
        if to_driver.send(input).is_err() {
            return;
        }
    };
    let _ = to_driver.send(Input::Closed(conn, how));
}

/// Writes what the driver queues, one vectored write per wake-up, and closes as told.
fn write_loop(
    conn: ConnId,
    stream: &TcpStream,
    queue: &Receiver<WriterCommand>,
    to_driver: &ToDriver,
) {
    let mut outgoing = Outgoing::default();
    loop {
        // One wake-up: wait if there is nothing to do, then take everything already queued.
        if outgoing.step() == Step::Wait {
            match queue.recv() {
                Ok(command) => outgoing.apply(command),
                Err(_) => break,
            }
        }
        queue.try_iter().for_each(|command| outgoing.apply(command));
        match outgoing.step() {
            Step::Wait => continue,
            Step::Write => {
                let mut slices = [IoSlice::new(&[]); host::MAX_WRITE_SLICES];
                let count = outgoing.io_slices(&mut slices);
                match (&*stream).write_vectored(&slices[..count]) {
                    Ok(0) => break,
                    Ok(written) => {
                        outgoing.consume(written);
                        let _ = to_driver.send(Input::Drained(conn, written));
                    }
                    Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            Step::Finish => {
                // Half-close, then let the reader discard input until the peer closes: the
                // driver has dropped its handle, so the queue disconnects when the reader
                // ends. Nothing else arrives here after a close.
                let _ = stream.shutdown(Shutdown::Write);
                let _ = queue.recv_timeout(host::LINGER);
                break;
            }
            Step::Stop => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    let _ = to_driver.send(Input::WriterFinished);
}

//! `chat-server-smol`: the room machine on smol, the project's main server.
//!
//! The same four parts as `chat-server-std`, as tasks on smol's executor instead of threads:
//!
//! * **accept**: one task accepts streams and hands them to the driver.
//! * **driver**: the main future owns the [`Driver`] (and through it the room machine). It
//!   awaits one channel of [`Input`]s, or a timer set to the machine's next deadline.
//! * **reader**, one task per connection: reads into a reusable buffer and sends what it
//!   gets to the driver.
//! * **writer**, one task per connection: the only task that writes its socket, one
//!   vectored write per wake-up. A peer that does not read parks only its own writer (S8).
//!
//! Signals arrive through the shared host's signal thread, which raises the shutdown flag
//! and wakes the driver with an [`Input::Shutdown`] (S11).
//!
//! The driver's input channel is bounded: when the driver falls behind, readers stop reading
//! and TCP pushes back on the senders. Writer queues are unbounded channels, because the
//! driver must never wait, and are bounded instead by the room machine's arithmetic: it cuts
//! a connection whose unsent bytes would pass `--max-output-bytes`.
//!
//! Everything that is not I/O lives in [`chathttp_runtime_std::host`], shared by all three
//! servers.

use std::io::{ErrorKind, IoSlice};
use std::net::Shutdown;
use std::process::ExitCode;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use chathttp_core::{ConnId, Disconnect};
use chathttp_runtime_std::host::{self, Driver, Input, Outbox, Outgoing, Step, WriterCommand};
use futures_lite::{AsyncReadExt, AsyncWriteExt, future};
use smol::Timer;
use smol::net::{TcpListener, TcpStream};

type ToDriver = Sender<Input<TcpStream>>;

fn main() -> ExitCode {
    let settings = host::start("chat-server-smol");
    let (to_driver, inputs) = async_channel::bounded(host::INPUT_CAPACITY);
    let on_signal = to_driver.clone();
    host::on_shutdown_signal(move || {
        let _ = on_signal.try_send(Input::Shutdown);
    });
    let listener = host::listen(settings.bind);
    smol::block_on(async {
        let listener =
            TcpListener::try_from(listener).expect("a bound listener can join the reactor");
        smol::spawn(accept_loop(listener, to_driver.clone())).detach();
        drive(Driver::new(settings.config), inputs, to_driver).await;
    });
    ExitCode::SUCCESS
}

async fn accept_loop(listener: TcpListener, to_driver: ToDriver) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                host::tune_socket(&stream);
                if to_driver.send(Input::Accepted(stream)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                host::accept_failed(&error);
                Timer::after(host::ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The driver loop: wait for an input or the next deadline, feed it, until shutdown is done.
async fn drive(
    mut driver: Driver<Connection>,
    inputs: Receiver<Input<TcpStream>>,
    to_driver: ToDriver,
) {
    while !driver.is_finished() {
        let timer = match driver.next_wakeup() {
            Some(delay) => Timer::after(delay),
            None => Timer::never(),
        };
        let input = future::or(async { Some(inputs.recv().await) }, async {
            timer.await;
            None
        })
        .await;
        match input {
            Some(Ok(input)) => {
                driver.handle(input, |conn, stream| Ok(open(conn, stream, &to_driver)))
            }
            None => driver.handle_timeout(),
            // Unreachable while `to_driver` lives; nothing could wake the driver again.
            Some(Err(_)) => return,
        }
    }
}

/// A connection as the driver holds it: its writer's queue, and the socket for `abort`.
/// `TcpStream` is a shared handle: reader, writer and driver hold clones of one socket.
#[derive(Debug)]
struct Connection {
    commands: Sender<WriterCommand>,
    stream: TcpStream,
}

impl Outbox for Connection {
    fn push(&self, command: WriterCommand) {
        // Unbounded, so it never waits; fails only once the writer has ended.
        let _ = self.commands.try_send(command);
    }

    fn abort(&self) {
        host::abort_socket(&self.stream);
    }
}

/// Starts the reader and the writer of a new connection.
fn open(conn: ConnId, stream: TcpStream, to_driver: &ToDriver) -> Connection {
    let (commands, queue) = async_channel::unbounded();
    smol::spawn(read_loop(
        conn,
        stream.clone(),
        to_driver.clone(),
        commands.clone(),
    ))
    .detach();
    smol::spawn(write_loop(conn, stream.clone(), queue, to_driver.clone())).detach();
    Connection { commands, stream }
}

/// Reads until the stream ends and hands every chunk to the driver. `_writer_link` is a
/// handle on the writer's queue that is never used to send: dropping it when the stream
/// ends is how a lingering writer learns that the peer has closed (see [`write_loop`]).
async fn read_loop(
    conn: ConnId,
    mut stream: TcpStream,
    to_driver: ToDriver,
    _writer_link: Sender<WriterCommand>,
) {
    let mut buffer = vec![0; host::READ_BUFFER_BYTES];
    let how = loop {
        let input = match stream.read(&mut buffer).await {
            Ok(0) => break Disconnect::Eof,
            Ok(n) => Input::Received(conn, Bytes::copy_from_slice(&buffer[..n])),
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break Disconnect::Error,
        };
        if to_driver.send(input).await.is_err() {
            return;
        }
    };
    let _ = to_driver.send(Input::Closed(conn, how)).await;
}

/// Writes what the driver queues, one vectored write per wake-up, and closes as told.
async fn write_loop(
    conn: ConnId,
    mut stream: TcpStream,
    queue: Receiver<WriterCommand>,
    to_driver: ToDriver,
) {
    let mut outgoing = Outgoing::default();
    loop {
        // One wake-up: wait if there is nothing to do, then take everything already queued.
        if outgoing.step() == Step::Wait {
            match queue.recv().await {
                Ok(command) => outgoing.apply(command),
                Err(_) => break,
            }
        }
        while let Ok(command) = queue.try_recv() {
            outgoing.apply(command);
        }
        match outgoing.step() {
            Step::Wait => continue,
            Step::Write => {
                let mut slices = [IoSlice::new(&[]); host::MAX_WRITE_SLICES];
                let count = outgoing.io_slices(&mut slices);
                match stream.write_vectored(&slices[..count]).await {
                    Ok(0) => break,
                    Ok(written) => {
                        outgoing.consume(written);
                        let _ = to_driver.send(Input::Drained(conn, written)).await;
                    }
                    Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            Step::Finish => {
                // Half-close, then let the reader discard input until the peer closes: the
                // driver has dropped its handle, so the queue closes when the reader ends.
                // Nothing else arrives here after a close.
                let _ = stream.shutdown(Shutdown::Write);
                let linger = async {
                    Timer::after(host::LINGER).await;
                };
                future::or(async { drop(queue.recv().await) }, linger).await;
                break;
            }
            Step::Stop => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    let _ = to_driver.send(Input::WriterFinished).await;
}

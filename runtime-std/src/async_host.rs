//! The four parts of an async server, written once for every async runtime.
//!
//! `chat-server-smol` and `chat-server-asyncstd` differ only in how they spawn a task,
//! sleep, accept and shut a socket down. Those four operations are the [`Runtime`] trait;
//! everything else is here, generic over it:
//!
//! * **accept**: one task accepts streams and hands them to the driver.
//! * **driver**: the serving future owns the [`Driver`] (and through it the room machine). It
//!   awaits one channel of [`Input`]s, or a sleep until the machine's next deadline.
//! * **reader**, one task per connection: reads into a reusable buffer and sends what it gets
//!   to the driver.
//! * **writer**, one task per connection: the only task that writes its socket, one vectored
//!   write per wake-up. A peer that does not read parks only its own writer (S8).
//!
//! Signals arrive through the shared host's signal thread, which sends [`Input::Shutdown`] on
//! the driver's channel (S11).
//!
//! The driver's input channel is bounded: when the driver falls behind, readers stop reading
//! and TCP pushes back on the senders. Writer queues are unbounded channels, because the
//! driver must never wait, and are bounded instead by the room machine's arithmetic: it cuts
//! a connection whose unsent bytes would pass `--max-output-bytes`.

use std::fmt::Debug;
use std::future::Future;
use std::io::{self, ErrorKind, IoSlice};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use chathttp_core::{ConnId, Disconnect, ServerConfig};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, future};

use crate::cluster::ClusterSettings;
use crate::host::{self, Driver, Input, Outbox, Outgoing, Step, WriterCommand};

/// What an async runtime must provide to serve the room.
pub trait Runtime: 'static {
    /// A connected socket; clones are handles on the same socket.
    type Stream: AsyncRead + AsyncWrite + AsFd + Clone + Unpin + Send + Sync + Debug + 'static;
    /// A listening socket.
    type Listener: Send + 'static;

    /// Runs `task` in the background.
    fn spawn(task: impl Future<Output = ()> + Send + 'static);
    /// Completes after `duration`.
    fn sleep(duration: Duration) -> impl Future<Output = ()> + Send;
    /// Accepts the next connection.
    fn accept(listener: &Self::Listener) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    /// Shuts down one or both directions of `stream`.
    fn shutdown(stream: &Self::Stream, how: Shutdown) -> io::Result<()>;
}

type ToDriver<R> = Sender<Input<<R as Runtime>::Stream>>;

/// A server that has installed its signal handlers and waits for its listener.
#[derive(Debug)]
pub struct Service<R: Runtime> {
    config: ServerConfig,
    to_driver: ToDriver<R>,
    inputs: Receiver<Input<R::Stream>>,
    cluster: Option<ClusterSettings>,
}

impl<R: Runtime> Service<R> {
    /// Installs the SIGINT and SIGTERM handlers. Call it before [`host::listen`], so that a
    /// signal that arrives once the `listening on` line is out means a clean shutdown.
    pub fn new(config: ServerConfig) -> Self {
        let (to_driver, inputs) = async_channel::bounded(host::INPUT_CAPACITY);
        let on_signal = to_driver.clone();
        host::on_shutdown_signal(move || {
            let _ = on_signal.try_send(Input::Shutdown);
        });
        Self {
            config,
            to_driver,
            inputs,
            cluster: None,
        }
    }

    /// With `--redis`: share the room through Redis (see [`crate::cluster`]).
    pub fn share(mut self, cluster: Option<ClusterSettings>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Serves connections from `listener` until shutdown is done.
    pub async fn run(self, listener: R::Listener) {
        R::spawn(accept_loop::<R>(listener, self.to_driver.clone()));
        let mut driver = Driver::new(self.config);
        if let Some(cluster) = &self.cluster {
            let to_driver = self.to_driver.clone();
            let deliver = move |event| {
                let _ = to_driver.send_blocking(Input::Log(event));
            };
            driver.share(cluster, std::sync::Arc::new(deliver));
        }
        drive::<R>(driver, self.inputs, self.to_driver).await;
    }
}

async fn accept_loop<R: Runtime>(listener: R::Listener, to_driver: ToDriver<R>) {
    loop {
        match R::accept(&listener).await {
            Ok(stream) => {
                host::tune_socket(&stream);
                if to_driver.send(Input::Accepted(stream)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                host::accept_failed(&error);
                R::sleep(host::ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The driver loop: wait for an input or the next deadline, feed it, until shutdown is done.
async fn drive<R: Runtime>(
    mut driver: Driver<Connection<R>>,
    inputs: Receiver<Input<R::Stream>>,
    to_driver: ToDriver<R>,
) {
    while !driver.is_finished() {
        let wakeup = driver.next_wakeup();
        let timer = async {
            match wakeup {
                Some(delay) => R::sleep(delay).await,
                None => future::pending().await,
            }
        };
        let input = future::or(async { Some(inputs.recv().await) }, async {
            timer.await;
            None
        })
        .await;
        let start = |conn, stream| Ok(open::<R>(conn, stream, &to_driver));
        match input {
            Some(Ok(input)) => {
                driver.handle(input, start);
                // Take everything already waiting before arming a new timer: under load that
                // is many inputs per wake-up instead of one.
                while let Ok(input) = inputs.try_recv() {
                    driver.handle(input, start);
                }
            }
            None => driver.handle_timeout(),
            // Unreachable while `to_driver` lives; nothing could wake the driver again.
            Some(Err(_)) => return,
        }
    }
}

/// A connection as the driver holds it: its writer's queue, and the socket for `abort`.
/// The stream is a shared handle: reader, writer and driver hold clones of one socket.
#[derive(Debug)]
struct Connection<R: Runtime> {
    commands: Sender<WriterCommand>,
    stream: R::Stream,
}

impl<R: Runtime> Outbox for Connection<R> {
    fn push(&self, command: WriterCommand) {
        // Unbounded, so it never waits; fails only once the writer has ended.
        let _ = self.commands.try_send(command);
    }

    fn abort(&self) {
        host::abort_socket(&self.stream);
    }
}

/// Starts the reader and the writer of a new connection.
fn open<R: Runtime>(conn: ConnId, stream: R::Stream, to_driver: &ToDriver<R>) -> Connection<R> {
    let (commands, queue) = async_channel::unbounded();
    R::spawn(read_loop::<R>(
        conn,
        stream.clone(),
        to_driver.clone(),
        commands.clone(),
    ));
    R::spawn(write_loop::<R>(
        conn,
        stream.clone(),
        queue,
        to_driver.clone(),
    ));
    Connection { commands, stream }
}

/// Reads until the stream ends and hands every chunk to the driver. `_writer_link` is a
/// handle on the writer's queue that is never used to send: dropping it when the stream
/// ends is how a lingering writer learns that the peer has closed (see [`write_loop`]).
async fn read_loop<R: Runtime>(
    conn: ConnId,
    mut stream: R::Stream,
    to_driver: ToDriver<R>,
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
async fn write_loop<R: Runtime>(
    conn: ConnId,
    mut stream: R::Stream,
    queue: Receiver<WriterCommand>,
    to_driver: ToDriver<R>,
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
                let _ = R::shutdown(&stream, Shutdown::Write);
                future::or(async { drop(queue.recv().await) }, R::sleep(host::LINGER)).await;
                break;
            }
            Step::Stop => break,
        }
    }
    let _ = R::shutdown(&stream, Shutdown::Both);
    let _ = to_driver.send(Input::WriterFinished).await;
}

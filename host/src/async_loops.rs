//! The four parts of an async server, written once for every async runtime.
//!
//! `chat-server-smol` and `chat-server-asyncstd` differ only in how they spawn a task,
//! sleep, accept, adopt a socket the browser gateway upgraded, shut a socket down and let
//! readers run in the middle of a round. Those six operations are the [`Runtime`] trait;
//! everything else is here, generic over it:
//!
//! * **accept**: one task accepts streams and hands them to the driver.
//! * **driver**: the serving future owns the [`Driver`] (and through it the room machine). It
//!   awaits one channel of [`Input`]s, or a sleep until the machine's next deadline, and
//!   after each round of inputs writes every connection's new frames straight to its socket
//!   without waiting (see [`crate::buffers`]), taking the inputs that arrive meanwhile
//!   between its writes (see [`Driver::flush`]).
//! * **reader**, one task per connection: reads into a small buffer (larger while the client
//!   sends fast) and sends what it gets to the driver.
//! * **writer**, a task that runs only while a connection has a backlog: started when the
//!   driver finds the peer's kernel buffer full, it waits on the socket, writes the backlog,
//!   one vectored write per wake-up, and ends; it also finishes a close whose last frames
//!   the kernel did not take (other closes the driver carries out itself). A peer that does
//!   not read parks only its own writer (S8).
//!
//! Signals arrive through the shared host's signal thread, which sends [`Input::Shutdown`] on
//! the driver's channel (S11).
//!
//! The driver's input channel is bounded: when the driver falls behind, readers stop reading
//! and TCP pushes back on the senders. Outgoing queues have no bound of their own, because the
//! driver must never wait, and are bounded instead by the room machine's arithmetic: it cuts
//! a connection whose unsent bytes would pass `--max-output-bytes`.

use std::fmt::Debug;
use std::future::Future;
use std::io::{self, ErrorKind, IoSlice};
use std::net::Shutdown;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use chathttp_core::{ConnId, Disconnect, ServerConfig};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, future};

use chathttp_cluster::ClusterSettings;

use crate::buffers::{self, Outgoing, ReadBuffer, Step};
use crate::gateway;
use crate::history::HistoryDb;
use crate::tls::Tls;
use crate::{self as host, Driver, Input, Outbox, ReadGate};

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
    /// Makes a socket the gateway has upgraded (`--http`) one of the runtime's streams.
    fn adopt(stream: std::net::TcpStream) -> io::Result<Self::Stream>;
    /// Shuts down one or both directions of `stream`.
    fn shutdown(stream: &Self::Stream, how: Shutdown) -> io::Result<()>;
    /// Lets the connections' readers run in the middle of the driver's round, without
    /// waiting: polls the runtime's reactor and, where the runtime allows it, runs the tasks
    /// it woke on this thread. The driver calls it between its writes (see
    /// [`Driver::flush`]), so that a message that arrives during a fan-out can join it; the
    /// reactor is otherwise polled only between rounds, by the thread that runs the driver.
    fn let_readers_run();
}

/// How many of its writes the driver makes between two [`Runtime::let_readers_run`]: a poll
/// of the reactor costs a system call of its own, so not one per write, but often enough
/// that a message arriving during a long fan-out joins it soon.
const WRITES_PER_IO_POLL: usize = 8;

type ToDriver<R> = Sender<Input<<R as Runtime>::Stream>>;

/// A server that has installed its signal handlers and waits for its listener.
#[derive(Debug)]
pub struct Service<R: Runtime> {
    config: ServerConfig,
    to_driver: ToDriver<R>,
    inputs: Receiver<Input<R::Stream>>,
    cluster: Option<ClusterSettings>,
    tls: Option<Arc<Tls>>,
    history: Option<HistoryDb>,
    gateway: Option<gateway::Listening>,
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
            tls: None,
            history: None,
            gateway: None,
        }
    }

    /// With `--redis`: share the room through Redis (see [`chathttp_cluster`]).
    pub fn share(mut self, cluster: Option<ClusterSettings>) -> Self {
        self.cluster = cluster;
        self
    }

    /// With `--tls-cert`: speak TLS on every connection (see [`crate::tls`]).
    pub fn tls(mut self, tls: Option<Arc<Tls>>) -> Self {
        self.tls = tls;
        self
    }

    /// With `--history-db`: keep the history in that file (see [`crate::history`]).
    pub fn history(mut self, db: Option<HistoryDb>) -> Self {
        self.history = db;
        self
    }

    /// With `--http`: serve the browser gateway (see [`crate::gateway`]).
    pub fn gateway(mut self, gateway: Option<gateway::Listening>) -> Self {
        self.gateway = gateway;
        self
    }

    /// Serves connections from `listener` until shutdown is done.
    pub async fn run(self, listener: R::Listener) {
        let max_output_bytes = self.config.max_output_bytes;
        R::spawn(accept_loop::<R>(
            listener,
            max_output_bytes,
            self.to_driver.clone(),
        ));
        let mut driver = Driver::new(self.config);
        driver.tidy_when_quiet(host::return_freed_memory);
        if let Some(tls) = self.tls {
            driver.use_tls(tls);
        }
        let background = self.to_driver.clone();
        driver.attach(self.cluster.as_ref(), self.history, move |input| {
            let _ = background.send_blocking(input);
        });
        if let Some(gateway) = self.gateway {
            let to_driver = self.to_driver.clone();
            gateway.serve(driver.metrics(), move |stream, upgrade| {
                if to_driver.is_full() {
                    return Err((stream, upgrade));
                }
                match R::adopt(stream) {
                    // Another sender may have filled the channel since: a short wait then.
                    Ok(stream) => drop(to_driver.send_blocking(Input::Upgraded(stream, upgrade))),
                    Err(error) => tracing::warn!(%error, "cannot adopt an upgraded connection"),
                }
                Ok(())
            });
        }
        drive::<R>(driver, self.inputs, self.to_driver).await;
    }
}

async fn accept_loop<R: Runtime>(
    listener: R::Listener,
    max_output_bytes: usize,
    to_driver: ToDriver<R>,
) {
    loop {
        match R::accept(&listener).await {
            Ok(stream) => {
                host::tune_socket(&stream, max_output_bytes);
                if to_driver.send(Input::Accepted(stream)).await.is_err() {
                    return;
                }
                // A thousand connections waiting to be accepted are all ready at once: let
                // the members' readers run between them.
                future::yield_now().await;
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
    let gate = driver.read_gate();
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
        let start = |conn, stream| Ok(open::<R>(conn, stream, &to_driver, &gate));
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
        let mut asked = 0;
        let arrived = || {
            asked += 1;
            if asked % WRITES_PER_IO_POLL == 0 {
                R::let_readers_run();
            }
            inputs.try_recv().ok()
        };
        driver.flush(arrived, start);
    }
}

/// A connection as the driver holds it: the socket, the queue it shares with the writer, and
/// what starting the writer takes. The stream is a shared handle: reader, writer and driver
/// hold clones of one socket.
#[derive(Debug)]
struct Connection<R: Runtime> {
    conn: ConnId,
    stream: R::Stream,
    queue: Arc<Mutex<Outgoing>>,
    to_driver: ToDriver<R>,
}

impl<R: Runtime> AsFd for Connection<R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl<R: Runtime> Outbox for Connection<R> {
    fn queue(&self) -> &Mutex<Outgoing> {
        &self.queue
    }

    fn release(self) {
        R::spawn(async move { drop(self) });
    }

    fn start_writer(&self) -> io::Result<()> {
        R::spawn(write_loop::<R>(
            self.conn,
            self.stream.clone(),
            Arc::clone(&self.queue),
            self.to_driver.clone(),
        ));
        Ok(())
    }
}

/// Starts the reader of a new connection.
fn open<R: Runtime>(
    conn: ConnId,
    stream: R::Stream,
    to_driver: &ToDriver<R>,
    gate: &Arc<ReadGate>,
) -> Connection<R> {
    let queue = Arc::new(Mutex::new(Outgoing::default()));
    R::spawn(read_loop::<R>(
        conn,
        stream.clone(),
        to_driver.clone(),
        Arc::clone(&queue),
        Arc::clone(gate),
    ));
    Connection {
        conn,
        stream,
        queue,
        to_driver: to_driver.clone(),
    }
}

/// Reads until the stream ends and hands every chunk to the driver; then tells the writer,
/// which may be lingering for it (see [`write_loop`]).
async fn read_loop<R: Runtime>(
    conn: ConnId,
    mut stream: R::Stream,
    to_driver: ToDriver<R>,
    queue: Arc<Mutex<Outgoing>>,
    gate: Arc<ReadGate>,
) {
    let mut buffer = ReadBuffer::default();
    let how = loop {
        // While the room is paced (S8.1), wait: woken when it resumes or the connection
        // closes.
        future::poll_fn(|cx| match buffers::may_read(&queue, &gate, cx.waker()) {
            true => Poll::Ready(()),
            false => Poll::Pending,
        })
        .await;
        let input = match stream.read(buffer.space()).await {
            Ok(0) => break Some(Disconnect::Eof),
            Ok(n) => Input::Received(conn, buffer.take(n)),
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break Some(Disconnect::Error),
        };
        if to_driver.send(input).await.is_err() {
            break None;
        }
    };
    buffers::lock(&queue).end_reading();
    if let Some(how) = how {
        let _ = to_driver.send(Input::Closed(conn, how)).await;
    }
}

/// Writes the queue while the driver has handed it the socket (the peer's kernel buffer was
/// full, or the connection closes), one vectored write per wake-up; returns the socket to the
/// driver when the backlog is written, or closes as told.
async fn write_loop<R: Runtime>(
    conn: ConnId,
    mut stream: R::Stream,
    queue: Arc<Mutex<Outgoing>>,
    to_driver: ToDriver<R>,
) {
    loop {
        let step = buffers::lock(&queue).writer_step();
        match step {
            Step::Write(batch) => {
                let slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
                let written = match stream.write_vectored(&slices).await {
                    Ok(0) => break,
                    Ok(written) => written,
                    Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                buffers::lock(&queue).consume(written);
                let _ = to_driver.send(Input::Drained(conn, written)).await;
            }
            Step::Return => {
                let _ = to_driver.send(Input::WriterFinished).await;
                return;
            }
            Step::Finish => {
                // Half-close, then let the reader discard input until the peer closes.
                let _ = R::shutdown(&stream, Shutdown::Write);
                let reader_ended = future::poll_fn(|cx| {
                    if buffers::lock(&queue).reader_ended(cx.waker()) {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                });
                future::or(reader_ended, R::sleep(host::LINGER)).await;
                break;
            }
            Step::Stop => break,
        }
    }
    buffers::lock(&queue).end_writing();
    let _ = R::shutdown(&stream, Shutdown::Both);
    let _ = to_driver.send(Input::WriterFinished).await;
}

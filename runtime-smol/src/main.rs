//! `chat-server-smol`: the room machine on smol, the project's main server.
//!
//! The four parts of an async server (accept loop, driver, a reader and a writer per
//! connection) are written once, in [`chathttp_host::async_loops`], generic over a
//! [`Runtime`]; this file supplies smol's six operations and the executor.
//! Everything that is not I/O lives in [`chathttp_host`], shared by all three
//! servers.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::process::ExitCode;
use std::time::Duration;

use chathttp_host as host;
use chathttp_host::async_loops::{Runtime, Service};
use smol::Timer;
use smol::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOCATOR: host::MiMalloc = host::MiMalloc;

fn main() -> ExitCode {
    let settings = host::start("chat-server-smol");
    let gateway = host::listen_http(&settings);
    let listener = host::listen(&settings);
    let service = Service::<Smol>::new(settings.config)
        .share(settings.cluster)
        .tls(settings.tls)
        .history(settings.history_db)
        .gateway(gateway);
    smol::block_on(EXECUTOR.run(async {
        let listener =
            TcpListener::try_from(listener).expect("a bound listener can join the reactor");
        service.run(listener).await;
    }));
    ExitCode::SUCCESS
}

/// The connections' tasks, run by the main thread between the driver's rounds and, through
/// [`Runtime::let_readers_run`], during them. One thread, not smol's global executor: with
/// the tasks on another thread, async-io hands its reactor from thread to thread and a
/// member's message can wait while both sit idle; and a second thread sits parked while the
/// driver writes, since nobody polls the reactor then. The driver polling the reactor and
/// running the woken readers itself avoids both (docs/BENCHMARKS.md).
static EXECUTOR: smol::Executor<'static> = smol::Executor::new();

/// The most tasks [`Runtime::let_readers_run`] runs per call: more than the senders a
/// round usually hears from, few enough that the driver's writes go on soon.
const TASKS_PER_POLL: usize = 16;

/// smol's executor, timers and sockets.
#[derive(Debug)]
struct Smol;

impl Runtime for Smol {
    type Stream = TcpStream;
    type Listener = TcpListener;

    fn spawn(task: impl Future<Output = ()> + Send + 'static) {
        EXECUTOR.spawn(task).detach();
    }

    async fn sleep(duration: Duration) {
        Timer::after(duration).await;
    }

    async fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
        listener.accept().await.map(|(stream, _)| stream)
    }

    fn adopt(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        smol::net::TcpStream::try_from(stream)
    }

    fn shutdown(stream: &TcpStream, how: Shutdown) -> io::Result<()> {
        stream.shutdown(how)
    }

    fn let_readers_run() {
        // Called from a task, this nested `block_on` polls async-io's reactor once without
        // waiting (the future is pending once, then ready) and wakes the readers whose
        // sockets have data; the driver's thread then runs them.
        smol::block_on(smol::future::yield_now());
        for _ in 0..TASKS_PER_POLL {
            if !EXECUTOR.try_tick() {
                break;
            }
        }
    }
}

//! `chat-server-smol`: the room machine on smol, the project's main server.
//!
//! The four parts of an async server (accept loop, driver, a reader and a writer per
//! connection) are written once, in [`chathttp_runtime_std::async_host`], generic over a
//! [`Runtime`]; this file supplies smol's four operations and the executor's threads.
//! Everything that is not I/O lives in [`chathttp_runtime_std::host`], shared by all three
//! servers.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::process::ExitCode;
use std::time::Duration;

use chathttp_runtime_std::async_host::{Runtime, Service};
use chathttp_runtime_std::host;
use smol::Timer;
use smol::net::{TcpListener, TcpStream};

#[global_allocator]
static ALLOCATOR: host::MiMalloc = host::MiMalloc;

fn main() -> ExitCode {
    let settings = host::start("chat-server-smol");
    let service = Service::<Smol>::new(settings.config).share(settings.cluster);
    let listener = host::listen(settings.bind);
    std::thread::Builder::new()
        .name("smol-tasks".into())
        .spawn(|| smol::block_on(EXECUTOR.run(smol::future::pending::<()>())))
        .expect("one thread can be spawned at start-up");
    smol::block_on(EXECUTOR.run(async {
        let listener =
            TcpListener::try_from(listener).expect("a bound listener can join the reactor");
        service.run(listener).await;
    }));
    ExitCode::SUCCESS
}

/// The connections' tasks, run by the main thread (between the driver's rounds) and one
/// more. Not smol's global executor: with the driver alone in `block_on` on the main thread
/// and the tasks on the global executor's thread, perf showed both cores idle for 10-25 ms
/// while a member's message waited, twice per slowloris run (async-io hands the reactor from
/// thread to thread, and its fallback thread backs off up to 10 ms). With every waiting
/// thread a runner of the one executor, a task woken by an event is run by a thread that is
/// awake anyway.
static EXECUTOR: smol::Executor<'static> = smol::Executor::new();

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

    fn shutdown(stream: &TcpStream, how: Shutdown) -> io::Result<()> {
        stream.shutdown(how)
    }
}

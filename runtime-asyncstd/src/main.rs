//! `chat-server-asyncstd`: the room machine on async-std.
//!
//! async-std is deprecated upstream (its authors point to smol), so this adapter is kept as
//! thin as it can be: it exists to show that the same room machine runs unchanged on a third
//! runtime. Prefer `chat-server-smol` for new deployments.
//!
//! The four parts of an async server (accept loop, driver, a reader and a writer per
//! connection) are written once, in [`chathttp_host::async_loops`], generic over a
//! [`Runtime`]; this file supplies async-std's six operations and nothing else.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::process::ExitCode;
use std::time::Duration;

use async_std::net::{TcpListener, TcpStream};
use async_std::task;
use chathttp_host as host;
use chathttp_host::async_loops::{Runtime, Service};

#[global_allocator]
static ALLOCATOR: host::MiMalloc = host::MiMalloc;

fn main() -> ExitCode {
    let settings = host::start("chat-server-asyncstd");
    let gateway = host::listen_http(&settings);
    let listener = host::listen(&settings);
    let service = Service::<AsyncStd>::new(settings.config)
        .share(settings.cluster)
        .tls(settings.tls)
        .history(settings.history_db)
        .gateway(gateway);
    task::block_on(service.run(TcpListener::from(listener)));
    ExitCode::SUCCESS
}

/// async-std's executor, timers and sockets.
#[derive(Debug)]
struct AsyncStd;

impl Runtime for AsyncStd {
    type Stream = TcpStream;
    type Listener = TcpListener;

    fn spawn(task: impl Future<Output = ()> + Send + 'static) {
        task::spawn(task);
    }

    async fn sleep(duration: Duration) {
        task::sleep(duration).await;
    }

    async fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
        listener.accept().await.map(|(stream, _)| stream)
    }

    fn adopt(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream::from(stream))
    }

    fn shutdown(stream: &TcpStream, how: Shutdown) -> io::Result<()> {
        stream.shutdown(how)
    }

    fn let_readers_run() {
        // async-std runs on async-io's reactor too: a nested `block_on` of a future that is
        // pending once polls it without waiting. The readers it wakes run on async-std's
        // own threads; it offers no way to run them here.
        async_io::block_on(futures_lite::future::yield_now());
    }
}

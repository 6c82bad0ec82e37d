//! A `redis-server` for the tests that share a room through Redis (docs/CLUSTER.md): started
//! on a free loopback port without persistence and killed through its own handle. Without
//! `redis-server` on PATH, [`Redis::start`] prints a loud skip line and returns `None`, unless
//! `CHATHTTP_REQUIRE_REDIS=1` (set by `.ci/run`), which makes it fail.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A `redis-server` child, killed (through its own handle) when dropped.
#[derive(Debug)]
pub struct Redis {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Redis {
    /// Starts `redis-server` on a free port, or says why not: `None` means skip. A port
    /// found free can be taken before Redis binds it (other cases run in parallel): then
    /// Redis exits, and another port is tried.
    pub fn start() -> Option<Redis> {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut redis = Redis::spawn(port)?;
            if redis.wait_ready() {
                return Some(redis);
            }
        }
        panic!("redis-server did not start on five free ports");
    }

    /// Starts `redis-server` on `port`, which must be free.
    pub fn start_on(port: u16) -> Option<Redis> {
        let mut redis = Redis::spawn(port)?;
        assert!(
            redis.wait_ready(),
            "redis-server did not start on port {port}"
        );
        Some(redis)
    }

    fn spawn(port: u16) -> Option<Redis> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(error) => {
                if std::env::var("CHATHTTP_REQUIRE_REDIS").as_deref() == Ok("1") {
                    panic!("CHATHTTP_REQUIRE_REDIS=1 but redis-server cannot be run: {error}");
                }
                eprintln!(
                    "\n!!!!! SKIPPED: redis-server is not on PATH ({error}); the cluster \
                     tests need it (apt-get install redis-server) !!!!!\n"
                );
                return None;
            }
        };
        Some(Redis { child, port })
    }

    /// Its URL for `--redis`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until the server answers PING; false if it exited (its port was taken).
    fn wait_ready(&mut self) -> bool {
        let started = Instant::now();
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                if stream.write_all(b"PING\r\n").is_ok() {
                    let mut line = String::new();
                    if BufReader::new(&stream).read_line(&mut line).is_ok() && line == "+PONG\r\n" {
                        return true;
                    }
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `redis-cli` against this server with `args`; returns its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// kill -9, and wait for the process to go.
    pub fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A server binary that a tool runs as its child on a loopback port it picks itself, watches
//! through `/proc/PID` and stops by its own PID.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::sys;

/// A server binary running as our child, listening on a loopback port it picked itself.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its PID (the server's own: `prlimit` execs it).
    pub pid: u32,
}

impl ServerProcess {
    /// Starts `binary --bind 127.0.0.1:0 ARGS…`, under `prlimit --nofile=N:N` when
    /// `nofile` is given, with standard error appended to `log`, and waits for its
    /// `listening on ADDR` line.
    pub fn start(
        binary: &Path,
        args: &[String],
        nofile: Option<u64>,
        log: &Path,
    ) -> io::Result<Self> {
        let mut command = match nofile {
            Some(limit) => {
                let mut command = Command::new("prlimit");
                command.arg(format!("--nofile={limit}:{limit}")).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let stderr = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let mut child = command
            // Load tools measure the server, not flood control (S12): it is off unless the
            // caller's own arguments turn it back on.
            .args(["--bind", "127.0.0.1:0", "--message-rate", "0"])
            .args(args)
            // Warnings only (failed accepts), unless the caller asks for more.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()?;
        let pid = child.id();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout pipe"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok());
        match addr {
            Some(addr) => Ok(Self { child, addr, pid }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::other(format!(
                    "{} did not say `listening on ADDR` (got {line:?})",
                    binary.display()
                )))
            }
        }
    }

    /// Whether the process has exited (and how).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Resident set size now, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        sys::proc_status(self.pid, "VmRSS")
    }

    /// Peak resident set size so far, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        sys::proc_status(self.pid, "VmHWM")
    }

    /// User plus system CPU time so far, in seconds.
    pub fn cpu_s(&self) -> Option<f64> {
        sys::proc_cpu_s(self.pid)
    }

    /// Open descriptors of the process now.
    pub fn open_fds(&self) -> Option<usize> {
        Some(fs::read_dir(format!("/proc/{}/fd", self.pid)).ok()?.count())
    }

    /// Stops it with SIGTERM (S11) and waits up to 6 s; kills it if it is still there.
    /// Returns the exit status of the graceful stop, or `None` if it had to be killed.
    pub fn stop(mut self) -> Option<ExitStatus> {
        if let Some(status) = self.exited() {
            return Some(status);
        }
        let pid = rustix::process::Pid::from_raw(self.pid as i32);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

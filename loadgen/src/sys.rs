//! What the tools read from the operating system: clocks, CPU time, memory, limits.
//!
//! All of it through safe wrappers (`rustix`, `/proc`), so the crate keeps `unsafe_code`
//! denied. Times are nanoseconds on `CLOCK_MONOTONIC`, the clock the pacing timer
//! (a timerfd) runs on, so deadlines and timestamps compare directly.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use rustix::time::{
    ClockId, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec,
};

/// Monotonic time in nanoseconds.
pub fn now_ns() -> u64 {
    ts_ns(rustix::time::clock_gettime(ClockId::Monotonic))
}

/// CPU time (user + system) this process has used, in seconds.
pub fn self_cpu_s() -> f64 {
    ts_ns(rustix::time::clock_gettime(ClockId::ProcessCPUTime)) as f64 / 1e9
}

fn ts_ns(t: Timespec) -> u64 {
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// Raises the soft limit on open files to the hard limit: a run with thousands of clients
/// needs one descriptor each. Returns the soft limit now in force.
pub fn raise_nofile() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        // Failure leaves the old limit; connects past it fail and are reported as such.
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current
}

/// CPU time (user + system, all threads) of another process, from `/proc/PID/stat`,
/// in seconds. Resolution is one clock tick (usually 10 ms).
pub fn proc_cpu_s(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = s.get(s.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the name start at field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / rustix::param::clock_ticks_per_second() as f64)
}

/// A `Key:  value kB` field of `/proc/PID/status` (VmRSS, VmHWM, Threads, ...).
pub fn proc_status(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|line| {
        let v = line.strip_prefix(key)?.strip_prefix(':')?;
        v.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Busy and total jiffies of the whole machine, and its number of CPUs, from `/proc/stat`.
fn machine_jiffies() -> (u64, u64, usize) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut lines = s.lines();
    let first = lines.next().unwrap_or("");
    let v: Vec<u64> = first
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let cpus = lines
        .take_while(|l| l.starts_with("cpu"))
        .filter(|l| l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    (total.saturating_sub(idle), total, cpus.max(1))
}

/// One reading of everything CPU-related, taken at the start and end of a phase.
#[derive(Clone, Copy, Debug)]
pub struct CpuSample {
    pub t_ns: u64,
    pub generator_s: f64,
    pub server_s: Option<f64>,
    busy_jiffies: u64,
    total_jiffies: u64,
    cpus: usize,
}

impl CpuSample {
    pub fn take(server_pid: Option<u32>) -> Self {
        let (busy_jiffies, total_jiffies, cpus) = machine_jiffies();
        Self {
            t_ns: now_ns(),
            generator_s: self_cpu_s(),
            server_s: server_pid.and_then(proc_cpu_s),
            busy_jiffies,
            total_jiffies,
            cpus,
        }
    }

    /// Server CPU seconds between `self` and a later sample.
    pub fn server_delta(&self, later: &CpuSample) -> Option<f64> {
        Some(later.server_s? - self.server_s?)
    }

    /// How many cores of the whole machine were busy on average between the two samples.
    pub fn machine_busy_cores(&self, later: &CpuSample) -> f64 {
        let busy = later.busy_jiffies.saturating_sub(self.busy_jiffies) as f64;
        let total = later.total_jiffies.saturating_sub(self.total_jiffies) as f64;
        if total > 0.0 {
            busy / total * self.cpus as f64
        } else {
            0.0
        }
    }
}

/// A one-shot timer on `CLOCK_MONOTONIC` that epoll can wait on: the pacing clock for
/// `--rate`, finer than epoll's millisecond timeout.
#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
}

impl Timer {
    pub fn new() -> io::Result<Self> {
        let fd = rustix::time::timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Self { fd })
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Fires once at the absolute monotonic time `at_ns` (at once if that has passed).
    pub fn arm_at(&self, at_ns: u64) {
        let at_ns = at_ns.max(1);
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: (at_ns / 1_000_000_000) as _,
                tv_nsec: (at_ns % 1_000_000_000) as _,
            },
        };
        // Cannot fail for a valid timerfd and a normalised time.
        let _ = rustix::time::timerfd_settime(&self.fd, TimerfdTimerFlags::ABSTIME, &spec);
    }

    /// Consumes an expiry so that the next one raises a new edge.
    pub fn acknowledge(&self) {
        let mut expirations = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut expirations);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(proc_cpu_s(pid).is_some());
        assert!(proc_status(pid, "VmRSS").is_some_and(|kb| kb > 0));
        assert!(proc_status(pid, "Threads").is_some_and(|n| n >= 1));
    }
}

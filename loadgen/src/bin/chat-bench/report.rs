//! The results: a human summary on stderr and one JSON line on stdout.
//!
//! JSON field names follow the shared fanout-bench where they mean the same thing, so the
//! same scripts read both.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};

use crate::engine::Bench;
use crate::stats::Histogram;
use chathttp_loadgen::sys::{self, CpuSample};

/// What the join phase measured.
#[derive(Debug)]
pub struct Join {
    pub connect_join_ms: f64,
    pub settle_ms: f64,
    pub server_cpu_s: Option<f64>,
    pub generator_cpu_s: f64,
    pub rss_before_kb: Option<u64>,
}

/// The measured window of a fan-out run.
#[derive(Debug)]
pub struct Window {
    pub expected: u64,
    pub receivers: u64,
    pub cpu0: CpuSample,
    pub cpu1: CpuSample,
    pub send_end: u64,
    /// Reads, polls and frames counted before the window (they include the joins).
    pub reads0: (u64, u64, u64),
}

/// How many members with order violations are listed one by one in the JSON.
const LISTED_MEMBERS: usize = 20;

/// A flat JSON object, written field by field.
struct Json(String);

impl Json {
    fn new() -> Self {
        Self(String::from("{"))
    }

    fn key(&mut self, k: &str) -> &mut String {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&quote(k));
        self.0.push(':');
        &mut self.0
    }

    fn num(&mut self, k: &str, v: impl Display) -> &mut Self {
        let _ = write!(self.key(k), "{v}");
        self
    }

    /// A float rounded to three decimals; `null` if not finite.
    fn f(&mut self, k: &str, v: f64) -> &mut Self {
        self.opt(k, Some(v))
    }

    fn opt(&mut self, k: &str, v: Option<f64>) -> &mut Self {
        let out = self.key(k);
        match v {
            Some(v) if v.is_finite() => {
                let _ = write!(out, "{}", (v * 1000.0).round() / 1000.0);
            }
            _ => out.push_str("null"),
        }
        self
    }

    fn s(&mut self, k: &str, v: &str) -> &mut Self {
        let q = quote(v);
        self.key(k).push_str(&q);
        self
    }

    fn map(&mut self, k: &str, m: &BTreeMap<String, u64>) -> &mut Self {
        let body: Vec<String> = m.iter().map(|(k, v)| format!("{}:{v}", quote(k))).collect();
        let _ = write!(self.key(k), "{{{}}}", body.join(","));
        self
    }

    /// `KIND_violations` (the sum over members), `receivers_with_KIND_violations` and
    /// `max_KIND_violations_per_receiver`, from each member's count.
    fn violations(
        &mut self,
        kind: &str,
        per_member: impl Iterator<Item = u64> + Clone,
    ) -> &mut Self {
        let total: u64 = per_member.clone().sum();
        let receivers = per_member.clone().filter(|&n| n > 0).count();
        let max = per_member.max().unwrap_or(0);
        self.num(&format!("{kind}_violations"), total)
            .num(&format!("receivers_with_{kind}_violations"), receivers)
            .num(&format!("max_{kind}_violations_per_receiver"), max)
    }

    fn raw(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k).push_str(v);
        self
    }

    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn fmt_opt(v: Option<impl Display>) -> String {
    v.map_or_else(|| "?".into(), |v| v.to_string())
}

fn common(b: &Bench, join: &Join, mode: &str) -> Json {
    let mut j = Json::new();
    j.s("tool", "chat-bench")
        .s("label", &b.o.label)
        .s("proto", "chathttp")
        .s("addr", &b.o.addr_text)
        .s("mode", mode)
        .num("members", b.o.members)
        .num("joined", b.c.joined)
        .num("join_failed", b.c.join_failed)
        .f("connect_join_ms", join.connect_join_ms)
        .f("settle_ms", join.settle_ms)
        .num("join_notices", b.c.join_notices)
        .num("join_notices_expected", b.expected_join_notices())
        .opt("join_server_cpu_s", join.server_cpu_s)
        .f("join_gen_cpu_s", join.generator_cpu_s)
        .num("timed_out", b.past_deadline());
    j
}

/// Server memory now: (VmRSS, VmHWM, threads).
fn server_memory(pid: Option<u32>) -> (Option<u64>, Option<u64>, Option<u64>) {
    (
        pid.and_then(|p| sys::proc_status(p, "VmRSS")),
        pid.and_then(|p| sys::proc_status(p, "VmHWM")),
        pid.and_then(|p| sys::proc_status(p, "Threads")),
    )
}

fn print_close_reasons(b: &Bench) {
    if !b.c.close_reasons.is_empty() {
        eprintln!("  close reasons: {:?}", b.c.close_reasons);
    }
    if !b.c.error_statuses.is_empty() {
        eprintln!("  error statuses: {:?}", b.c.error_statuses);
    }
}

pub fn idle(b: &Bench, join: &Join) {
    let (rss_after, hwm, threads) = server_memory(b.o.server_pid);
    let per_member = match (join.rss_before_kb, rss_after) {
        (Some(before), Some(after)) if b.c.joined > 0 => {
            Some((after as f64 - before as f64) * 1024.0 / b.c.joined as f64)
        }
        _ => None,
    };
    let mut j = common(b, join, "idle");
    j.opt("server_rss_kb_before", join.rss_before_kb.map(|v| v as f64))
        .opt("server_rss_kb_after", rss_after.map(|v| v as f64))
        .opt("server_rss_hwm_kb", hwm.map(|v| v as f64))
        .opt("server_threads", threads.map(|v| v as f64))
        .opt("rss_bytes_per_conn", per_member)
        .num("closed_after_join", b.c.closed_after_join)
        .map("close_reasons", &b.c.close_reasons)
        .map("error_statuses", &b.c.error_statuses)
        .num("bytes_in", b.c.bytes_in);
    eprintln!(
        "[{}] idle: {} joined ({} failed) in {:.0} ms, settle {:.0} ms; server RSS {} -> {} kB \
         (peak {}) = {} bytes per member; {} closed later",
        b.o.label,
        b.c.joined,
        b.c.join_failed,
        join.connect_join_ms,
        join.settle_ms,
        fmt_opt(join.rss_before_kb),
        fmt_opt(rss_after),
        fmt_opt(hwm),
        fmt_opt(per_member.map(|v| format!("{v:.0}"))),
        b.c.closed_after_join
    );
    print_close_reasons(b);
    println!("{}", j.finish());
}

fn latency_json(h: &Histogram) -> String {
    format!(
        "{{\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"max\":{:.1},\"mean\":{:.1}}}",
        us(h.percentile(50.0)),
        us(h.percentile(90.0)),
        us(h.percentile(99.0)),
        us(h.max()),
        h.mean() / 1000.0
    )
}

pub fn fanout(b: &Bench, join: &Join, w: &Window) {
    let c = &b.c;
    let o = &b.o;
    let now = sys::now_ns();
    let duration_s = c.last_delivery.saturating_sub(c.first_send) as f64 / 1e9;
    let send_s = c.last_send.saturating_sub(c.first_send) as f64 / 1e9;
    let sent = b.messages_sent();
    let lost = w.expected.saturating_sub(c.unique);

    let orders = b.member_orders();
    let fifo_total: u64 = orders.iter().map(|m| m.fifo).sum();
    let total_order: u64 = orders.iter().map(|m| m.total_order).sum();
    let disordered: Vec<_> = orders
        .iter()
        .filter(|m| m.fifo > 0 || m.total_order > 0)
        .collect();
    let listed: Vec<String> = disordered
        .iter()
        .take(LISTED_MEMBERS)
        .map(|m| {
            format!(
                "{{\"member\":{},\"fifo\":{},\"total_order\":{}}}",
                m.member, m.fifo, m.total_order
            )
        })
        .collect();

    let window_s = if duration_s > 0.0 {
        duration_s
    } else {
        (w.cpu1.t_ns - w.cpu0.t_ns) as f64 / 1e9
    };
    let gen_cpu = w.cpu1.generator_s - w.cpu0.generator_s;
    let srv_cpu = w.cpu0.server_delta(&w.cpu1);
    let busy = w.cpu0.machine_busy_cores(&w.cpu1);
    let per_s = |n: u64| {
        if duration_s > 0.0 {
            n as f64 / duration_s
        } else {
            0.0
        }
    };
    let per_delivery = |s: f64| {
        if c.deliveries > 0 {
            s * 1e6 / c.deliveries as f64
        } else {
            0.0
        }
    };
    let reads = c.reads - w.reads0.0;
    let frames_per_read = (c.frames - w.reads0.2) as f64 / reads.max(1) as f64;
    let (rss_after, hwm, threads) = server_memory(o.server_pid);

    let mut j = common(b, join, "fanout");
    j.num("senders", o.senders)
        .num("messages_per_sender", o.messages)
        .opt(
            "rate_per_sender",
            if o.rate > 0.0 { Some(o.rate) } else { None },
        )
        .num("payload", o.payload)
        .num("spin_us", o.spin_us)
        .s("headers", if o.min_headers { "min" } else { "full" })
        .num("receivers", w.receivers)
        .num("sent", sent)
        .num("expected", w.expected)
        .num("deliveries", c.deliveries)
        .num("unique", c.unique)
        .num("dups", c.duplicates)
        .num("lost", lost)
        .num("malformed", c.malformed)
        .f("send_s", send_s)
        .f("duration_s", duration_s)
        .f("drain_wait_s", (now - w.send_end) as f64 / 1e9)
        .f("deliveries_per_s", per_s(c.deliveries))
        .f("messages_per_s", per_s(sent))
        .raw("lat_us", &latency_json(&c.latency))
        .num("lat_samples", c.latency.count())
        .raw(
            "send_lag_us",
            &format!(
                "{{\"p50\":{:.1},\"p99\":{:.1},\"max\":{:.1}}}",
                us(c.send_lag.percentile(50.0)),
                us(c.send_lag.percentile(99.0)),
                us(c.send_lag.max())
            ),
        )
        .violations("fifo", orders.iter().map(|m| m.fifo))
        .violations("total_order", orders.iter().map(|m| m.total_order))
        .raw(
            "order_violations_by_member",
            &format!("[{}]", listed.join(",")),
        )
        .num("closed_after_join", c.closed_after_join)
        .map("close_reasons", &c.close_reasons)
        .map("error_statuses", &c.error_statuses)
        .num("leave_notices", c.leave_notices)
        .num("members_left", c.left.len())
        .num("other_msgs", c.other_responses)
        .f("gen_cpu_s", gen_cpu)
        .f("gen_cpu_share", gen_cpu / window_s)
        .opt("server_cpu_s", srv_cpu)
        .opt("server_cpu_share", srv_cpu.map(|v| v / window_s))
        .opt("server_cpu_us_per_delivery", srv_cpu.map(per_delivery))
        .f("machine_busy_cores", busy)
        .opt("server_rss_kb_before", join.rss_before_kb.map(|v| v as f64))
        .opt("server_rss_kb_after", rss_after.map(|v| v as f64))
        .opt("server_rss_hwm_kb", hwm.map(|v| v as f64))
        .opt("server_threads", threads.map(|v| v as f64))
        .num("gen_reads", reads)
        .num("gen_polls", c.polls - w.reads0.1)
        .f("gen_frames_per_read", frames_per_read)
        .f("gen_cpu_us_per_delivery", per_delivery(gen_cpu))
        .num("bytes_in", c.bytes_in)
        .num("bytes_out", c.bytes_out);

    let h = &c.latency;
    eprintln!(
        "[{}] {}x{} messages to {} members{}: joined {} ({} failed) in {:.0} ms (+{:.0} ms settle)",
        o.label,
        o.senders,
        o.messages,
        o.members,
        if o.rate > 0.0 {
            format!(" at {} msg/s per sender", o.rate)
        } else {
            " open loop".into()
        },
        c.joined,
        c.join_failed,
        join.connect_join_ms,
        join.settle_ms
    );
    eprintln!(
        "  deliveries {} of {} expected (lost {}, duplicated {}) in {:.3} s = {:.0} deliveries/s \
         ({:.0} messages/s)",
        c.deliveries,
        w.expected,
        lost,
        c.duplicates,
        duration_s,
        per_s(c.deliveries),
        per_s(sent)
    );
    eprintln!(
        "  latency µs p50 {:.0} p90 {:.0} p99 {:.0} max {:.0}; order violations: per-sender {} \
         and against the reference order {}, in {} members",
        us(h.percentile(50.0)),
        us(h.percentile(90.0)),
        us(h.percentile(99.0)),
        us(h.max()),
        fifo_total,
        total_order,
        disordered.len()
    );
    eprintln!(
        "  cpu: generator {:.2} s ({:.0}% of a core, {:.2} µs per delivery, {:.1} frames per read), \
         server {}, machine {:.2} cores busy; server RSS {} kB (peak {})",
        gen_cpu,
        100.0 * gen_cpu / window_s,
        per_delivery(gen_cpu),
        frames_per_read,
        srv_cpu.map_or("?".into(), |v| format!(
            "{v:.2} s ({:.0}% of a core, {:.3} µs per delivery)",
            100.0 * v / window_s,
            per_delivery(v)
        )),
        busy,
        fmt_opt(rss_after),
        fmt_opt(hwm)
    );
    print_close_reasons(b);
    println!("{}", j.finish());
}

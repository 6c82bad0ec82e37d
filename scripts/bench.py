#!/usr/bin/env python3
"""Fan-out benchmarks of the three ChatHTTP servers against ngIRCd.

Every run gets a freshly started server (started here, stopped by its own PID), so runs
share no state; peers are interleaved within each repetition and the order rotates from
one repetition to the next (A B C D, B C D A, ...). The ChatHTTP servers are driven by
our chat-bench (package chathttp-loadgen), ngIRCd by the shared fanout-bench (the IRC
yardstick); --chat-gen fanout-bench drives every peer with the shared generator instead.

Usually run through scripts/bench.sh, which builds and installs what this needs:

  scripts/bench.sh                                    # everything, 3 repetitions
  scripts/bench.sh --reps 3 --scenarios burst,latency,idle5k --peers smol,ngircd

Raw JSON lines go to target/bench-results/raw-<time>.jsonl; the table (median and
min-max per cell) is printed and written into docs/BENCHMARKS.md between the markers
<!-- bench:begin --> and <!-- bench:end --> (nothing outside them is touched).
"""

import argparse
import json
import os
import re
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target")
SHARED = os.path.join(TARGET, "shared-bench")  # writable copy of ../shared/bench
RESULTS = os.path.join(TARGET, "bench-results")
DOC = os.path.join(ROOT, "docs", "BENCHMARKS.md")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

CHAT_BENCH = os.path.join(TARGET, "release", "chat-bench")
FANOUT_BENCH = os.path.join(SHARED, "target", "release", "fanout-bench")


# Our servers run at their default flags but two: `--max-connections` above the largest
# scenario (10,000 idle members and the generator's own connections), and `--message-rate 0`,
# since the generator's senders send far faster than flood control (S12) allows a person to,
# as the IRC peers run with their flood limits lifted. `--max-output-bytes` stays at its
# default: when the generator reads slower than the senders send, overload pacing (S8.1)
# must slow the senders down rather than cut members.
OUR_FLAGS = ["--max-connections", "20000", "--message-rate", "0"]


# The "-tls" peers: the same servers with a self-signed pair made by `tls_pair()`, and the
# generator trusting it (`chat-bench --ca`).
TLS_DIR = os.path.join(TARGET, "bench-tls")
TLS_CERT = os.path.join(TLS_DIR, "cert.pem")
TLS_KEY = os.path.join(TLS_DIR, "key.pem")


def tls_pair():
    """A self-signed certificate for 127.0.0.1 (not a CA: rustls refuses a CA certificate
    as a server's own), made once with openssl."""
    if os.path.exists(TLS_CERT) and os.path.exists(TLS_KEY):
        return
    os.makedirs(TLS_DIR, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650",
                    "-keyout", TLS_KEY, "-out", TLS_CERT, "-subj", "/CN=chathttp bench",
                    "-addext", "subjectAltName=IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:FALSE"],
                   check=True, capture_output=True)


def chat_peer(binary, tls=False, extra=()):
    cmd = [os.path.join(TARGET, "release", binary), "--bind", "127.0.0.1:0"] + OUR_FLAGS
    cmd += list(extra)
    if tls:
        cmd += ["--tls-cert", TLS_CERT, "--tls-key", TLS_KEY]
    return dict(proto="chathttp", port=0, args=["--ca", TLS_CERT] if tls else [], cmd=cmd)


BASELINE = os.environ.get("BENCH_BASELINE")

PEERS = {
    "smol": chat_peer("chat-server-smol"),
    "asyncstd": chat_peer("chat-server-asyncstd"),
    "std": chat_peer("chat-server-std"),
    "smol-tls": chat_peer("chat-server-smol", tls=True),
    "asyncstd-tls": chat_peer("chat-server-asyncstd", tls=True),
    "std-tls": chat_peer("chat-server-std", tls=True),
    # History off (E1), and kept in a file (E4), against the default --history 100 in memory.
    "smol-nohistory": chat_peer("chat-server-smol", extra=["--history", "0"]),
    "smol-historydb": chat_peer("chat-server-smol", extra=[
        "--history-db", os.path.join(tempfile.gettempdir(), "chathttp-bench-history.db")]),
    # Browser members: every member joins through the gateway's /ws (B1).
    "smol-ws": dict(chat_peer("chat-server-smol", extra=["--http", "127.0.0.1:0"]),
                    args=["--ws"], ws=True),
    "std-ws": dict(chat_peer("chat-server-std", extra=["--http", "127.0.0.1:0"]),
                   args=["--ws"], ws=True),
    # ngIRCd listens with a backlog of 10: more connects in flight get SYNs dropped and
    # retried for minutes, so it gets 10 at once (as in the shared run.py).
    # BENCH_BASELINE=DIR: the same servers built from another commit, for a paired run.
    **({name + "-base": dict(chat_peer(binary), cmd=[os.path.join(BASELINE, binary)]
                             + chat_peer(binary)["cmd"][1:])
        for name, binary in [("smol", "chat-server-smol"), ("asyncstd", "chat-server-asyncstd"),
                             ("std", "chat-server-std")]} if BASELINE else {}),
    "ngircd": dict(proto="irc", port=17002, args=["--irc-echo"], join_conc=10,
                   cmd=["ngircd", "--nodaemon", "--config",
                        os.path.join(SHARED, "peers", "ngircd.conf")]),
}

# name -> generator arguments; "sustained" is a sweep (see sweep()).
SCENARIOS = {
    "burst": ["--members", "100", "--senders", "10", "--messages", "2000", "--payload", "64"],
    "sustained": None,
    "scale": ["--members", "1000", "--senders", "5", "--messages", "200", "--payload", "64",
              "--join-concurrency", "100"],
    "latency": ["--members", "100", "--senders", "10", "--messages", "1000", "--rate", "100",
                "--payload", "64"],
    "idle5k": ["--idle", "5000", "--join-concurrency", "100"],
    "idle10k": ["--idle", "10000", "--join-concurrency", "100"],
    # 5,000 members joining; the time counts until every join notice has arrived.
    "joins5k": ["--idle", "5000", "--join-concurrency", "100", "--idle-hold-ms", "0",
                "--settle-ms", "10000"],
}
SWEEP_RATES = [100, 150, 200, 300, 500, 700, 1000, 1500, 2000, 2500, 3000, 4000, 6000]
SWEEP_SECONDS = 2.0
SWEEP_P99_US = 100_000
RUN_TIMEOUT_S = 1200


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Server:
    """One server process, started fresh for one run and stopped by its PID."""

    def __init__(self, name, peer, logdir):
        self.name, self.peer = name, peer
        self.addr = None
        self.log = open(os.path.join(logdir, "%s.log" % name), "ab")
        cmd = peer["cmd"]
        self.log.write(("\n=== %s %s\n" % (time.strftime("%H:%M:%S"), shlex.join(cmd))).encode())
        self.log.flush()
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, cwd=ROOT)
        self.listening = threading.Event()
        # Drain stdout all the time: a server that logs there must never block on it.
        self.t = threading.Thread(target=self._drain, daemon=True)
        self.t.start()
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError("%s exited with %s" % (name, self.p.returncode))
            if self.listening.is_set():
                return
            if peer["port"] and port_open(peer["port"]):
                self.addr = "127.0.0.1:%d" % peer["port"]
                time.sleep(0.3)  # let the probe connection go away
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("%s did not start listening" % name)

    def _drain(self):
        for line in iter(self.p.stdout.readline, b""):
            # A peer over the browser gateway is reached at its `http listening on` address,
            # printed before the `listening on` line.
            m = re.match(rb"http listening on (\S+)", line)
            if m and self.peer.get("ws"):
                self.addr = m.group(1).decode()
            m = re.match(rb"listening on (\S+)", line)
            if m:
                if not self.peer.get("ws"):
                    self.addr = m.group(1).decode()
                self.listening.set()
            try:
                self.log.write(line)
            except ValueError:
                break

    @property
    def pid(self):
        return self.p.pid

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(8)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.t.join(2)
        self.log.close()


def generator_for(peer, chat_gen):
    if peer["proto"] == "irc" or chat_gen == "fanout-bench":
        return FANOUT_BENCH, ["--proto", peer["proto"]]
    return CHAT_BENCH, ["--no-progress"]


def run_gen(server, args, label, chat_gen):
    gen, gen_args = generator_for(server.peer, chat_gen)
    extra = list(server.peer["args"])
    if server.peer.get("join_conc"):
        extra += ["--join-concurrency", str(server.peer["join_conc"])]
    cmd = ([gen, "--addr", server.addr] + gen_args + extra + args
           + ["--server-pid", str(server.pid), "--label", label])
    load = float(open("/proc/loadavg").read().split()[0])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    sys.stderr.write(p.stderr)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError("generator failed (%s): %s" % (p.returncode, p.stderr[-500:]))
    r = json.loads(lines[-1])
    r["cmd"] = shlex.join([os.path.basename(gen)] + gen_args + extra + args)
    r["loadavg_before"] = load
    if r.get("server_cpu_share") is not None and "machine_busy_cores" in r:
        # CPU used by anything but this server and the generator during the window.
        r["other_cores"] = round(
            r["machine_busy_cores"] - r["server_cpu_share"] - r["gen_cpu_share"], 3)
    return r


def one(name, scenario, args, logdir, rep, chat_gen):
    srv = Server(name, PEERS[name], logdir)
    try:
        r = run_gen(srv, args, "%s/%s/%d" % (name, scenario, rep), chat_gen)
    finally:
        srv.stop()
    r.update(peer=name, scenario=scenario, rep=rep)
    return r


def sweep(name, logdir, rep, out, chat_gen):
    """Raise the paced rate until two steps in a row lose messages, fall behind or get
    slow (one noisy step does not end the sweep); report the highest step that passed."""
    best, fails = None, 0
    for rate in SWEEP_RATES:
        msgs = max(200, int(rate * SWEEP_SECONDS))
        args = ["--members", "100", "--senders", "10", "--messages", str(msgs),
                "--rate", str(rate), "--payload", "64", "--drain-ms", "3000"]
        r = one(name, "sustained-step", args, logdir, rep, chat_gen)
        offered = r["expected"] / (msgs / rate)
        ok = (r["lost"] == 0 and r["lat_us"]["p99"] <= SWEEP_P99_US
              and r["deliveries_per_s"] >= 0.95 * offered)
        r.update(step_ok=ok, offered_deliveries_per_s=offered)
        out.write(json.dumps(r) + "\n")
        out.flush()
        if not ok:
            fails += 1
            if fails >= 2:
                break
            continue
        fails, best = 0, r
    res = dict(best or {})
    res.update(peer=name, scenario="sustained", rep=rep,
               max_ok_rate_per_sender=best["rate_per_sender"] if best else 0)
    if not best:
        res["deliveries_per_s"] = 0
    return res


# ------------------------------------------------------------------ summary

def fmt(v):
    if v is None:
        return "-"
    if v == int(v) and abs(v) < 100:
        return "%d" % v
    if abs(v) >= 100:
        return "{:,.0f}".format(v)
    if abs(v) >= 10:
        return "{:.1f}".format(v)
    return "{:.2f}".format(v)


def cell(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt(m)
    return "%s (%s–%s)" % (fmt(m), fmt(min(vals)), fmt(max(vals)))


def lat(key):
    return lambda r: r["lat_us"][key] / 1000 if "lat_us" in r else None


def disorder(r):
    if "dups" not in r:
        return None
    return r["dups"] + r.get("fifo_violations", 0) + r.get("total_order_violations", 0)


DPS = ("deliveries/s", lambda r: r.get("deliveries_per_s"))
CPU_PER = ("server µs/delivery", lambda r: r.get("server_cpu_us_per_delivery"))
COMMON_LOAD = [("server CPU", lambda r: r.get("server_cpu_share")), CPU_PER,
               ("gen CPU", lambda r: r.get("gen_cpu_share")),
               ("other cores", lambda r: r.get("other_cores"))]
# Losses, then duplicates plus order violations, then members the server cut off.
FAULTS = [("lost", lambda r: r.get("lost")), ("dup+order", disorder),
          # Seen closed, or announced as gone by a leave notice (a tool that stops reading
          # can miss a close the notices tell of).
          ("cut", lambda r: max(r.get("closed_after_join") or 0, r.get("members_left") or 0))]

COLUMNS = {
    "burst": [DPS] + FAULTS + [("p50 ms", lat("p50")), ("p99 ms", lat("p99"))] + COMMON_LOAD,
    "sustained": [DPS, ("rate/sender", lambda r: r.get("max_ok_rate_per_sender")),
                  ("p99 ms", lat("p99"))] + COMMON_LOAD,
    "scale": [DPS] + FAULTS + [("p50 ms", lat("p50")), ("p99 ms", lat("p99"))] + COMMON_LOAD
             + [("join ms", lambda r: r.get("connect_join_ms"))],
    "latency": [("p50 ms", lat("p50")), ("p90 ms", lat("p90")), ("p99 ms", lat("p99")),
                ("max ms", lat("max"))] + FAULTS + COMMON_LOAD,
    "idle5k": [("bytes/member", lambda r: r.get("rss_bytes_per_conn")),
               ("RSS after kB", lambda r: r.get("server_rss_kb_after")),
               ("joined", lambda r: r.get("joined")),
               ("closed later", lambda r: r.get("closed_after_join"))],
    "joins5k": [("all joined + notices s",
                 lambda r: (r["connect_join_ms"] + r["settle_ms"]) / 1000
                 if r.get("join_notices") == r.get("join_notices_expected") else None),
                ("joins s", lambda r: r["connect_join_ms"] / 1000),
                ("notices / expected", lambda r: r["join_notices"] / max(1, r["join_notices_expected"])),
                ("server CPU s", lambda r: r.get("join_server_cpu_s")),
                ("joined", lambda r: r.get("joined"))],
}
COLUMNS["idle10k"] = COLUMNS["idle5k"]

# Per scenario: (column, True if higher is better) to compare with ngIRCd.
RATIO = {
    "burst": [("deliveries/s", True), ("server µs/delivery", False)],
    "sustained": [("deliveries/s", True)],
    "scale": [("deliveries/s", True), ("server µs/delivery", False)],
    "latency": [("p99 ms", False)],
    "idle5k": [("bytes/member", False)],
    "idle10k": [("bytes/member", False)],
    "joins5k": [("all joined + notices s", False)],
}


def medians(rs, cols):
    out = {}
    for name, f in cols:
        vals = []
        for r in rs:
            try:
                v = f(r)
            except (KeyError, TypeError, ZeroDivisionError):
                v = None
            if v is not None:
                vals.append(v)
        out[name] = (vals, statistics.median(vals) if vals else None)
    return out


def summarise(results, peers, scenarios, chat_gen):
    lines = []
    for sc in scenarios:
        cols = COLUMNS[sc]
        gen_note = "" if sc not in SCENARIOS or SCENARIOS[sc] is None else \
            " — `%s`" % " ".join(SCENARIOS[sc])
        lines.append("\n#### %s%s\n" % (sc, gen_note))
        ratio_cols = [c for c, _ in RATIO.get(sc, [])]
        head = ["peer", "generator"] + [c for c, _ in cols] + \
               ["× ngIRCd: " + c for c in ratio_cols] + ["runs", "errors"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        ref = None
        ok = lambda r: "error" not in r
        ng = [r for r in results if r["peer"] == "ngircd" and r["scenario"] == sc and ok(r)]
        if ng:
            ref = medians(ng, cols)
        for p in peers:
            rs_all = [r for r in results if r["peer"] == p and r["scenario"] == sc]
            if not rs_all:
                continue
            rs = [r for r in rs_all if ok(r)]
            m = medians(rs, cols)
            cells = [cell(m[c][0]) for c, _ in cols]
            ratios = []
            for c, higher in RATIO.get(sc, []):
                mine, theirs = m[c][1], ref[c][1] if ref else None
                if p == "ngircd" or mine is None or not theirs:
                    ratios.append("-")
                else:
                    ratios.append("%.2f×" % (mine / theirs))
            gen = os.path.basename(generator_for(PEERS[p], chat_gen)[0])
            lines.append("| %s | %s | %s | %s | %d | %d |" % (
                p, gen, " | ".join(cells), " | ".join(ratios) if ratios else "",
                len(rs), len(rs_all) - len(rs)))
        errs = [r for r in results if r["scenario"] == sc and "error" in r]
        for r in errs:
            lines.append("\n- %s rep %d failed: %s" % (r["peer"], r["rep"], r["error"][:200]))
    return "\n".join(lines) + "\n"


def write_doc(table, argv, started, reps, raw):
    cpu = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", cpu)
    ncpu = os.cpu_count()
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                             capture_output=True, text=True).stdout.strip() or "unknown"
    except OSError:
        rev = "unknown"
    block = "\n".join([
        BEGIN,
        "",
        "Generated by `scripts/bench.sh %s` at commit %s (%s UTC, %d repetition(s), peers "
        "interleaved, each server started fresh per run). Machine: %d CPUs (%s); "
        "load generator and server share them. Other builds or tests may have been running "
        "on this shared machine; the *other cores* column shows how much CPU something "
        "besides the server and the generator used during each window, and *server µs per "
        "delivery* is the figure least moved by such load. Cells: median (min–max) of the runs; "
        "× ngIRCd compares medians. Our servers run at their default flags but `%s` (why: "
        "`OUR_FLAGS` in scripts/bench.py); *cut* counts members the server disconnected. "
        "Raw results: `%s`."
        % (" ".join(shlex.quote(a) for a in argv), rev, started,
           reps, ncpu,
           model.group(1).strip() if model else "unknown CPU", " ".join(OUR_FLAGS),
           os.path.relpath(raw, ROOT)),
        table.rstrip(),
        "",
        END,
    ])
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    text = open(DOC).read() if os.path.exists(DOC) else "# Benchmarks\n"
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        pre = text[:text.index(BEGIN)]
        post = text[text.index(END) + len(END):]
        text = pre + block + post
    else:
        text = text.rstrip("\n") + "\n\n## Results (scripts/bench.sh)\n\n" + block + "\n"
    open(DOC, "w").write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peers", default="smol,asyncstd,std,ngircd")
    ap.add_argument("--scenarios",
                    default="burst,sustained,scale,latency,idle5k,idle10k,joins5k")
    ap.add_argument("--chat-gen", choices=["chat-bench", "fanout-bench"], default="chat-bench",
                    help="generator for the ChatHTTP servers (default chat-bench)")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/BENCHMARKS.md")
    ap.add_argument("--summarise", metavar="JSONL", help="only summarise an earlier raw file")
    a = ap.parse_args()
    raise_nofile()
    peers = [p for p in a.peers.split(",") if p]
    if any(p.endswith("-tls") for p in peers):
        tls_pair()
    scenarios = [s for s in a.scenarios.split(",") if s]
    for p in peers:
        if p not in PEERS:
            sys.exit("unknown peer %s (have %s)" % (p, ", ".join(PEERS)))
    for s in scenarios:
        if s not in SCENARIOS:
            sys.exit("unknown scenario %s (have %s)" % (s, ", ".join(SCENARIOS)))
    if a.summarise:
        # Re-summarise an earlier (perhaps interrupted) run, and write the doc from it.
        results = [json.loads(l) for l in open(a.summarise) if l.startswith("{")]
        results = [r for r in results if r.get("scenario") != "sustained-step"]
        table = summarise(results, peers, scenarios, a.chat_gen)
        print(table)
        if not a.no_doc:
            reps = len({r["rep"] for r in results}) if results else 0
            started = time.strftime("%Y-%m-%d %H:%M", time.gmtime(os.path.getmtime(a.summarise)))
            write_doc(table, sys.argv[1:], started, reps, a.summarise)
            print("wrote %s" % DOC)
        return
    for p in peers:
        exe = PEERS[p]["cmd"][0]
        if os.path.isabs(exe) and not os.path.exists(exe):
            sys.exit("%s is not built: %s (run scripts/bench.sh)" % (p, exe))
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logdir = os.path.join(RESULTS, "logs")
    os.makedirs(logdir, exist_ok=True)
    rawp = os.path.join(RESULTS, "raw-%s.jsonl" % stamp)
    results = []
    with open(rawp, "w") as out:
        for rep in range(a.reps):
            for sc in scenarios:
                k = rep % len(peers)
                for p in peers[k:] + peers[:k]:
                    try:
                        if sc == "sustained":
                            r = sweep(p, logdir, rep, out, a.chat_gen)
                        else:
                            r = one(p, sc, SCENARIOS[sc], logdir, rep, a.chat_gen)
                    except Exception as e:  # keep going; the failure is recorded and shown
                        sys.stderr.write("!! %s %s rep %d: %s\n" % (p, sc, rep, e))
                        r = dict(peer=p, scenario=sc, rep=rep, error=str(e))
                    results.append(r)
                    out.write(json.dumps(r) + "\n")
                    out.flush()
    table = summarise(results, peers, scenarios, a.chat_gen)
    print(table)
    print("raw: %s" % rawp)
    if not a.no_doc:
        write_doc(table, sys.argv[1:], started, a.reps, rawp)
        print("wrote %s" % DOC)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What one join costs in a room of MEMBERS, with and without `History: N` (E3).

Starts a server binary (default: chat-server-smol, release build) with its default
--history 100, fills the room with MEMBERS members that read everything they are sent,
says LINES lines of 64 bytes, then times JOINS joins of each kind, alternating: a join
without History, and one with `History: N`, each from connect to the last byte the joiner
is due (the welcome; with History, the marker after N replayed lines), then DELETE. Prints
the median and p90 wall time per join and the server's CPU per join of each kind (from
/proc/PID/stat), as one JSON line.

    cargo build --release -p chathttp-runtime-smol
    scripts/joincost.py --members 1000 --lines 100 --joins 200
"""

import argparse
import json
import os
import selectors
import socket
import statistics
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def request(method, name, body=b"", history=None):
    head = f"{method} / HTTP/1.1\nUser_Agent: {name}\n"
    if history is not None:
        head += f"History: {history}\n"
    head += f"Content_Length: {len(body)}\n\n"
    return head.encode() + body


def read_until(sock, marker, buffer=b""):
    """Reads until `marker` has been seen; returns what followed it."""
    while marker not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        buffer += chunk
    return buffer.split(marker, 1)[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/chat-server-smol"))
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--joins", type=int, default=200)
    args = parser.parse_args()

    server = subprocess.Popen(
        [args.binary, "--bind", "127.0.0.1:0", "--message-rate", "0",
         "--max-connections", str(args.members + 100)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addr = server.stdout.readline().strip().removeprefix("listening on ")
    host, port = addr.rsplit(":", 1)
    port = int(port)
    try:
        # The room: members that drain whatever they are sent, on one thread.
        selector = selectors.DefaultSelector()
        members = []
        for i in range(args.members):
            sock = socket.create_connection((host, port))
            sock.sendall(request("ADD", f"m{i}"))
            read_until(sock, b"Welcome, m%d!\n" % i)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            members.append(sock)
        stop = threading.Event()

        def drain():
            while not stop.is_set():
                for key, _ in selector.select(timeout=0.1):
                    try:
                        while key.fileobj.recv(1 << 20):
                            pass
                    except BlockingIOError:
                        pass

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
        speaker = members[0]
        for n in range(args.lines):
            speaker.sendall(request("POST", "m0", b"%-63d\n" % n))
        time.sleep(2)  # the lines and their fan-out settle

        times = {"plain": [], "history": []}
        cpu = {"plain": 0.0, "history": 0.0}
        for j in range(args.joins):
            kind = "history" if j % 2 else "plain"
            before = cpu_seconds(server.pid)
            started = time.perf_counter()
            sock = socket.create_connection((host, port))
            ask = args.lines if kind == "history" else None
            sock.sendall(request("ADD", f"joiner{j}", history=ask))
            rest = read_until(sock, b"Welcome, joiner%d!\n" % j)
            if kind == "history":
                read_until(sock, b"History: %d messages replayed\n" % args.lines, rest)
            times[kind].append(time.perf_counter() - started)
            sock.sendall(request("DELETE", f"joiner{j}"))
            read_until(sock, b"Goodbye")
            sock.close()
            time.sleep(0.05)  # the leave's fan-out, outside the next join's time
            cpu[kind] += cpu_seconds(server.pid) - before
        stop.set()
        drainer.join()

        def summary(kind):
            values = sorted(times[kind])
            return {
                "median_ms": round(statistics.median(values) * 1000, 3),
                "p90_ms": round(values[int(len(values) * 0.9)] * 1000, 3),
                "server_cpu_ms_per_join_and_leave": round(cpu[kind] / len(values) * 1000, 3),
            }

        print(json.dumps({"members": args.members, "lines": args.lines, "joins": args.joins,
                          "plain": summary("plain"), "history": summary("history")}))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()

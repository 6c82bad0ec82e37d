#!/usr/bin/env bash
# Connection scale (docs/BENCHMARKS.md): N members join one room on one server binary, then
# sit idle; prints fanout-bench's JSON line (joins, the server's RSS after settling and its
# peak RSS, VmHWM).
#
#   tests/bench/connection-scale.sh RUNTIME N [FANOUT_BENCH]
#
# RUNTIME is std, smol or asyncstd (the release binary target/release/chat-server-RUNTIME).
# FANOUT_BENCH defaults to fanout-bench on PATH: build it from shared/bench (copy the folder
# somewhere writable, `cargo build --release`). Raise the open-file limit first for large N:
# the generator and the server each need N descriptors, e.g. `ulimit -n 20000`.
set -euo pipefail
runtime=$1 members=$2 bench=${3:-fanout-bench}
root=$(cd "$(dirname "$0")/../.." && pwd)
server_bin=$root/target/release/chat-server-$runtime
out=$(mktemp)
"$server_bin" --bind 127.0.0.1:0 >"$out" 2>/dev/null &
pid=$!
# SIGTERM first (S11); if the server has not exited after 10 s, SIGKILL. When the generator
# exits, every member disconnects at once, and the leave notices that follow cost the server
# O(N^2) frames; see the note in docs/BENCHMARKS.md.
stop() {
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$out"
}
trap stop EXIT
until grep -q '^listening on ' "$out"; do sleep 0.05; done
addr=$(sed -n 's/^listening on //p' "$out")
"$bench" --addr "$addr" --proto chathttp --server-pid "$pid" --idle "$members" \
    --join-concurrency 100 --label "$runtime-$members"

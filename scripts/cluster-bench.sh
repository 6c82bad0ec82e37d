#!/usr/bin/env bash
# Issue #7: the fan-out benchmark against one chat-server-smol alone, then against two
# chat-server-smol nodes sharing the room through a local redis-server, members spread
# round robin over both. Release builds; prints chat-bench's JSON lines and a summary.
#
#   scripts/cluster-bench.sh [REPS]        # default 2 repetitions of each scenario
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-2}
cargo build --release -q -p chathttp-runtime-smol
cargo build --release -q -p chathttp-loadgen --bin chat-bench
bin=target/release
out=target/cluster-bench
mkdir -p "$out"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts a server with the given flags; sets $addr and $pid.
start() {
  local log=$out/server-$RANDOM.out
  "$bin/chat-server-smol" --bind 127.0.0.1:0 --max-output-bytes 268435456 --message-rate 0 "$@" >"$log" 2>/dev/null &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    addr=$(sed -n 's/^listening on //p' "$log")
    [ -n "$addr" ] && return
    sleep 0.05
  done
  echo "server did not start" >&2; exit 1
}

burst=(--members 100 --senders 10 --messages 2000 --payload 64 --no-progress)
latency=(--members 100 --senders 10 --messages 1000 --rate 100 --payload 64 --no-progress)

for rep in $(seq "$reps"); do
  for scenario in burst latency; do
    declare -n args=$scenario
    # One node alone.
    start
    "$bin/chat-bench" --addr "$addr" "${args[@]}" --server-pid "$pid" --label "single $scenario $rep" \
      | tee -a "$out/results.jsonl"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    # Two nodes and Redis.
    port=$(free_port)
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
    rpid=$!; pids+=("$rpid")
    sleep 0.3
    start --redis "redis://127.0.0.1:$port" --node-id a; a=$addr; apid=$pid
    start --redis "redis://127.0.0.1:$port" --node-id b; b=$addr; bpid=$pid
    "$bin/chat-bench" --addr "$a" --addr "$b" "${args[@]}" --label "cluster $scenario $rep" \
      | tee -a "$out/results.jsonl"
    kill "$apid" "$bpid"; wait "$apid" "$bpid" 2>/dev/null || true
    kill "$rpid"; wait "$rpid" 2>/dev/null || true
  done
done

#!/usr/bin/env bash
# Soak: a churning room against each server for MINUTES, then the delivery check
# of chat-soak (exactly once, one order, no ghosts, RSS back near the start).
#
#   scripts/soak.sh MINUTES [RUNTIME…]      # RUNTIME: smol, std, asyncstd (default: all three)
#   scripts/soak.sh MINUTES cluster         # three smol nodes through Redis, with faults
#
# `cluster` starts redis-server (which must be installed) and three chat-server-smol nodes
# sharing one room; a third of the way one node is killed (SIGKILL) and replaced, two thirds
# of the way Redis is restarted (chat-soak --nodes 3 --faults).
#
# Builds release binaries first, runs the runtimes one after another, and writes each run's
# output to target/soak-RUNTIME.log (the server's standard error to target/soak-RUNTIME-server.log).
# Extra chat-soak flags can be passed in SOAK_FLAGS, e.g. SOAK_FLAGS="--members 40 --seed 7".
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ || $1 -lt 1 ]]; then
    echo "usage: scripts/soak.sh MINUTES [smol|std|asyncstd]…" >&2
    exit 2
fi
minutes=$1
shift
runtimes=("${@:-smol}")
[[ $# -eq 0 ]] && runtimes=(smol std asyncstd)

cargo build --release -q -p chathttp-loadgen --bin chat-soak
for runtime in "${runtimes[@]}"; do
    case $runtime in
    smol | std | asyncstd) ;;
    cluster) runtime=smol ;;
    *) echo "soak.sh: unknown runtime $runtime" >&2 && exit 2 ;;
    esac
    cargo build --release -q -p "chathttp-runtime-$runtime" --bin "chat-server-$runtime"
done

# The churners and the observer need a socket each; raise the soft limit to the hard one.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

status=0
for runtime in "${runtimes[@]}"; do
    log=target/soak-$runtime.log
    echo "soak.sh: $runtime for $minutes min, log $log" >&2
    # A small output limit (32 KiB) so that the slowest readers are cut now and then (S8):
    # the check then also covers members the server drops.
    binary=$runtime
    cluster_flags=()
    if [[ $runtime == cluster ]]; then
        binary=smol
        cluster_flags=(--nodes 3 --faults)
    fi
    # shellcheck disable=SC2086
    if target/release/chat-soak --server "target/release/chat-server-$binary" "${cluster_flags[@]}" \
        --server-arg=--max-output-bytes --server-arg=32768 \
        --seconds $((minutes * 60)) --server-log "target/soak-$runtime-server.log" \
        ${SOAK_FLAGS:-} 2>&1 | tee "$log"; then
        echo "soak.sh: $runtime PASS" >&2
    else
        echo "soak.sh: $runtime FAIL (see $log)" >&2
        status=1
    fi
done
exit $status

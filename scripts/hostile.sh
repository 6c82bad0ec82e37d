#!/usr/bin/env bash
# Resource-exhaustion scenarios: EMFILE on accept, 1,000 clients that stop reading, 1,000
# slowloris connections, a flood of bad requests, 100 flooders (S12), closes that are never
# read (S13), each against a fresh server with 10 members chatting. See loadgen/src/bin/chat-hostile/main.rs and docs/RELIABILITY.md.
#
#   scripts/hostile.sh [RUNTIME…]     # RUNTIME: smol, std, asyncstd (default: all three)
#
# Builds release binaries first; writes each runtime's output to target/hostile-RUNTIME.log
# (the servers' standard error to target/hostile-RUNTIME-server.log). Extra chat-hostile
# flags can be passed in HOSTILE_FLAGS, e.g. HOSTILE_FLAGS="--scenarios emfile,badflood".
set -euo pipefail
cd "$(dirname "$0")/.."

runtimes=("$@")
[[ $# -eq 0 ]] && runtimes=(smol std asyncstd)
for runtime in "${runtimes[@]}"; do
    case $runtime in
    smol | std | asyncstd) ;;
    *) echo "usage: scripts/hostile.sh [smol|std|asyncstd]…" >&2 && exit 2 ;;
    esac
done

cargo build --release -q -p chathttp-loadgen --bin chat-hostile
for runtime in "${runtimes[@]}"; do
    cargo build --release -q -p "chathttp-runtime-$runtime" --bin "chat-server-$runtime"
done

# The load side holds 1,000+ sockets at once: raise the soft limit to the hard one. The
# server's own limit is set per scenario (prlimit in `emfile`, this one otherwise).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

status=0
for runtime in "${runtimes[@]}"; do
    log=target/hostile-$runtime.log
    server_log=target/hostile-$runtime-server.log
    : >"$server_log"
    echo "hostile.sh: $runtime, log $log" >&2
    # shellcheck disable=SC2086
    if target/release/chat-hostile --server "target/release/chat-server-$runtime" \
        --server-log "$server_log" ${HOSTILE_FLAGS:-} 2>&1 | tee "$log"; then
        echo "hostile.sh: $runtime PASS" >&2
    else
        echo "hostile.sh: $runtime FAIL (see $log)" >&2
        status=1
    fi
done
exit $status

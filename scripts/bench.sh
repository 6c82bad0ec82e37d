#!/usr/bin/env bash
# Fan-out benchmarks: our three ChatHTTP servers against ngIRCd, interleaved,
# each server started fresh for every run. Builds what it needs, then hands its arguments
# to scripts/bench.py (see `scripts/bench.py --help`):
#
#   scripts/bench.sh                                          # every scenario, 3 repetitions
#   scripts/bench.sh --reps 3 --scenarios burst,latency,idle5k --peers smol,ngircd
#
# Needs root for `apt-get install ngircd` (skipped when ngircd is already installed) and
# ../shared/bench beside the project (the shared generator, the IRC yardstick).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SHARED_SRC=${SHARED_BENCH:-$ROOT/../shared/bench}
SHARED_COPY=$ROOT/target/shared-bench

echo "bench.sh: building release binaries" >&2
cargo build --release -p chathttp-loadgen --bin chat-bench
for bin in smol:chat-server-smol asyncstd:chat-server-asyncstd std:chat-server-std; do
    pkg=chathttp-runtime-${bin%%:*}
    cargo build --release -p "$pkg" --bin "${bin#*:}" ||
        echo "bench.sh: warning: $pkg did not build; its runs will fail" >&2
done

if ! command -v ngircd >/dev/null; then
    echo "bench.sh: installing ngIRCd" >&2
    if ! apt-get install -y ngircd >/dev/null 2>&1; then
        apt-get update >/dev/null
        apt-get install -y ngircd >/dev/null
    fi
fi
# The Debian package starts a daemon on port 6667; the benchmark starts its own on 17002.
if command -v systemctl >/dev/null && systemctl is-active --quiet ngircd 2>/dev/null; then
    systemctl stop ngircd || true
fi

echo "bench.sh: building the shared generator in $SHARED_COPY" >&2
mkdir -p "$SHARED_COPY"
# A writable copy (the shared folder is read-only); its own target/ survives re-copies.
(cd "$SHARED_SRC" && tar --exclude=./target --exclude=./results -cf - .) |
    (cd "$SHARED_COPY" && tar -xf - && chmod -R u+w .)
# It sits under this workspace's directory: make it a workspace of its own.
grep -q '^\[workspace\]' "$SHARED_COPY/Cargo.toml" || printf '\n[workspace]\n' >>"$SHARED_COPY/Cargo.toml"
(cd "$SHARED_COPY" && cargo build --release -q)

# Thousands of members need thousands of descriptors, in the servers and the generators.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 || true
exec python3 "$ROOT/scripts/bench.py" "$@"

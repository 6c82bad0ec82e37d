#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), from the seed corpus in fuzz/seeds.
# Installs cargo-fuzz if it is missing. The machine has one stable toolchain, so libFuzzer's
# nightly flags are unlocked with RUSTC_BOOTSTRAP=1.
#
#   scripts/fuzz.sh 600            # ten minutes per target
#   scripts/fuzz.sh 30 room        # one target
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request_decoder response_decoder client_session room)
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
        tee "corpus/$target.log" | grep -E "^(#[0-9]+[[:space:]]+DONE|stat::|==[0-9]+==|SUMMARY|Done)" || true
    if grep -qE "^(==[0-9]+== ERROR|SUMMARY: libFuzzer|.*panicked at)" "corpus/$target.log"; then
        echo "$target: crash, see fuzz/artifacts/$target and fuzz/corpus/$target.log" >&2
        exit 1
    fi
done

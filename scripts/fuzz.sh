#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time, starting from its seed corpus in
# fuzz/corpus/<target>. scripts/test.sh calls it; run it alone to fuzz longer:
#
#   FUZZ_SECONDS=1800 scripts/fuzz.sh            # every target, 30 minutes each
#   FUZZ_SECONDS=600 scripts/fuzz.sh template    # one target
#   FUZZ_KEEP=1 ...                              # add what was found to fuzz/corpus
#
# Builds on the stable toolchain: `--sanitizer none` needs no nightly flag (Rust code
# is memory safe without AddressSanitizer; libFuzzer still finds panics, aborts,
# timeouts and memory blow-ups). New inputs go to a scratch directory, so the repo's
# corpus changes only with FUZZ_KEEP=1. A crash prints the input in hex and exits 1;
# turn it into a regression test in the crate that owns the decoder.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
# Its own target directory: fuzz builds use other compiler flags than the workspace.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/funnel/fuzz-target}"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: cargo-fuzz is not installed; scripts/setup-services.sh installs it" >&2
    exit 1
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

# fuzz/Cargo.lock is not --locked: cargo adds to it what the workspace's crates come to
# depend on, keeping every version already in it.
start=$(date +%s)
(cd fuzz && cargo fuzz build --sanitizer none)
echo "fuzz: built ${#targets[@]} targets in $(( $(date +%s) - start ))s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=0
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target/corpus" "$scratch/$target/artifacts" "fuzz/corpus/$target"
    log="$scratch/$target/log"
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: 2 GB is a blow-up.
    if (cd fuzz && cargo fuzz run --sanitizer none "$target" \
        "$scratch/$target/corpus" "corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$scratch/$target/artifacts/" -print_final_stats=1) >"$log" 2>&1; then
        runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
        echo "fuzz: $target: clean, $runs runs in ${SECONDS_PER_TARGET}s, corpus $(find "$scratch/$target/corpus" "fuzz/corpus/$target" -type f | wc -l) inputs"
    else
        failed=1
        echo "fuzz: $target FAILED; the end of its log:" >&2
        tail -n 60 "$log" >&2
        for artifact in "$scratch/$target/artifacts"/*; do
            [ -e "$artifact" ] || continue
            echo "fuzz: $target: input $(basename "$artifact") in hex:" >&2
            od -An -tx1 -v "$artifact" | tr -d ' \n' | head -c 8192 >&2
            echo >&2
        done
    fi
    if [ "${FUZZ_KEEP:-0}" = 1 ]; then
        cp -n "$scratch/$target/corpus"/* "fuzz/corpus/$target/" 2>/dev/null || true
        (cd fuzz && cargo fuzz cmin --sanitizer none "$target" "corpus/$target" >/dev/null 2>&1) || true
    fi
done
exit "$failed"

#!/usr/bin/env bash
# Runs every check the project holds itself to: formatting, lints, all tests.
# This is the one test command; `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# A persistent target directory, so repeated runs on one machine reuse earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
# Property tests run at least 300 random cases each.
export PROPTEST_CASES="${PROPTEST_CASES:-300}"

cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Services for the integration tests (PostgreSQL with wal_level=logical); idempotent.
scripts/setup-services.sh
cargo test --workspace --locked
# Every fuzz target for a bounded time (60 s each by default), from its corpus in the
# repo; the fuzz crate is linted in its own target directory.
CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/funnel/fuzz-target}" \
    cargo clippy --manifest-path fuzz/Cargo.toml -- -D warnings
scripts/fuzz.sh

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
# The kafka connector is behind the cargo feature `kafka` (off by default: librdkafka
# is a C build), so its crates are linted and tested with it on as well.
cargo clippy -p funnel-connectors -p funnel-runtime -p funnel-cli --features kafka \
    --all-targets --locked -- -D warnings
# Services for the integration tests (PostgreSQL with wal_level=logical); idempotent.
scripts/setup-services.sh
cargo test --workspace --locked
# The kafka connector against the broker setup-services.sh started (tansu), and the
# registry with it.
cargo test -p funnel-connectors --features kafka --locked --test kafka
cargo test -p funnel-runtime --features kafka --locked --test registry
# The kafka drills: the funnel binary under SIGKILLs and restarts, each drill on a
# private tansu with its memory storage (crates/funnel-cli/tests/drills/kafka.rs).
cargo test -p funnel-cli --features kafka --locked --test drills kafka::
# Every fuzz target for a bounded time (60 s each by default), from its corpus in the
# repo; the fuzz crate is linted in its own target directory.
CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/funnel/fuzz-target}" \
    cargo clippy --manifest-path fuzz/Cargo.toml -- -D warnings
scripts/fuzz.sh

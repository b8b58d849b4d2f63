#!/usr/bin/env bash
# Failover time of a fleet (docs/cluster.md): two `funnel run --cluster.enabled`
# instances on the local PostgreSQL store, one generator -> file pipeline whose records
# carry the name of the instance writing them. Each round SIGKILLs the instance running
# the pipeline and measures the time from the kill to the first record written by the
# other one, then starts the killed one again. Prints each round and the median.
#
#   bench/failover.sh                       default lease settings (10s, renewed every 2s)
#   LEASE=2s RENEW=500ms ROUNDS=10 bench/failover.sh
#
# PG (default postgres://postgres@127.0.0.1:5432/test) is the store's database; the
# store's tables are dropped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS="${ROUNDS:-5}"
LEASE="${LEASE:-10s}"
RENEW="${RENEW:-2s}"
PG="${PG:-postgres://postgres@127.0.0.1:5432/test}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
if [ -z "${FUNNEL_BIN:-}" ]; then
    cargo build --release --quiet --bin funnel
fi
BIN="${FUNNEL_BIN:-$CARGO_TARGET_DIR/release/funnel}"

dir="$(mktemp -d)"
table="bench_failover_$$"
cat >"$dir/p.yaml" <<'YAML'
version: "2.2"
pipelines:
  - id: failover
    connectors:
      - id: src
        type: source
        plugin: builtin:generator
        settings:
          format.type: raw
          format.options.id: int
          rate: "1000"
      - id: dst
        type: destination
        plugin: builtin:file
        settings:
          path: ${BENCH_OUT}
    processors:
      - id: tag
        plugin: field.set
        settings:
          field: .Metadata.owner
          value: ${BENCH_INSTANCE}
YAML

declare -A pids
start() { # name
    BENCH_OUT="$dir/out.jsonl" BENCH_INSTANCE="$1" "$BIN" run --pipelines.path "$dir/p.yaml" \
        --db.type postgres --db.postgres.connection-string "$PG" --db.postgres.table "$table" \
        --cluster.enabled --cluster.instance-id "$1" --cluster.lease-duration "$LEASE" \
        --cluster.renew-interval "$RENEW" --api.http.address "" 2>>"$dir/log.txt" &
    pids[$1]=$!
}

# The instance that wrote the last whole record.
last_owner() {
    [ -f "$dir/out.jsonl" ] || return 0
    tail -c 8192 "$dir/out.jsonl" | grep -o '"owner":"[^"]*"' | tail -1 | cut -d'"' -f4
}

cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql "$PG" -q -c "DROP TABLE IF EXISTS $table, ${table}_leases, ${table}_instances" >/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

generation=0
start "i$generation"
generation=$((generation + 1))
start "i$generation"
generation=$((generation + 1))
times=()
for round in $(seq 1 "$ROUNDS"); do
    owner=""
    for _ in $(seq 1 600); do
        owner="$(last_owner)"
        [ -n "$owner" ] && [ -n "${pids[$owner]:-}" ] && break
        sleep 0.1
    done
    [ -n "$owner" ] || { echo "no instance runs the pipeline; log:" >&2; tail -20 "$dir/log.txt" >&2; exit 1; }
    t0="$(date +%s.%N)"
    kill -9 "${pids[$owner]}"
    unset "pids[$owner]"
    while [ "$(last_owner)" = "$owner" ]; do sleep 0.01; done
    t1="$(date +%s.%N)"
    took="$(python3 -c "print(f'{$t1 - $t0:.2f}')")"
    echo "round $round: killed $owner, first record by $(last_owner) after ${took}s"
    times+=("$took")
    start "i$generation"
    generation=$((generation + 1))
done
python3 - "$LEASE" "$RENEW" "${times[@]}" <<'PY'
import statistics, sys
lease, renew, times = sys.argv[1], sys.argv[2], [float(t) for t in sys.argv[3:]]
print(f"failover (lease {lease}, renewal {renew}): median {statistics.median(times):.2f}s, "
      f"min {min(times):.2f}s, max {max(times):.2f}s over {len(times)} kills")
PY

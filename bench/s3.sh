#!/usr/bin/env bash
# S3 destination benchmark: the release `funnel` binary writing to the S3 test server
# (moto on 127.0.0.1:4566, started by scripts/setup-services.sh), next to boto3
# uploading objects of the same size to the same server, one after the other:
#
#   base put:  boto3 `put_object` (moto's own client library, from its virtualenv),
#              the objects Funnel wrote, one after the other (timed: upload only);
#   gen -> s3: builtin:generator (N records of the 1 KB payload, bench/payload-1k.txt)
#              into builtin:s3 with sdk.batch.size B: one object of B OpenCDC JSON
#              lines per batch (about 1.4 KB a record: the payload is base64), acked
#              after each upload.
#
# Funnel's time runs from starting `funnel run` until the pipeline's acked-records
# counter reaches N (start-up included). MB/s counts the bytes of the objects written
# (what went over the wire), and payload MB/s 1,000 bytes a record. Also printed:
# Funnel's CPU time, moto's CPU time over the same span, and the load average. moto is
# a Python server (werkzeug, one thread per request, the objects in memory): on this
# machine it, not Funnel, is the limit, as its CPU time shows.
#
#   bench/s3.sh                      N=100000 B=10000 (objects of about 14 MB)
#   N=50000 B=1000 bench/s3.sh
#   BIN=/path/to/funnel bench/s3.sh  another binary (no build)
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-100000}"
B="${B:-10000}"
PORT="${PORT:-18094}"
ENDPOINT=http://127.0.0.1:4566
PY="$HOME/.cache/funnel/moto/bin/python"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/funnel/target}"
if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet -p funnel-cli --no-default-features --features s3
    BIN="$CARGO_TARGET_DIR/release/funnel"
fi
PAYLOAD="$PWD/bench/payload-1k.txt"
WORK="$(mktemp -d)"
BUCKET="bench-$$-$RANDOM"
cleanup() {
    [ -n "${FUNNEL_PID:-}" ] && kill "$FUNNEL_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

s3py() { # python code with `s3` (a boto3 client of the test server) and BUCKET
    "$PY" -c "
import boto3, os, sys, time
s3 = boto3.client('s3', endpoint_url='$ENDPOINT', aws_access_key_id='test',
                  aws_secret_access_key='test', region_name='us-east-1')
BUCKET = '$BUCKET'
$1"
}

moto_cpu() {
    local pid
    pid="$(cat "$HOME/.cache/funnel/moto-run/moto.pid")"
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$pid/stat"
}

acked() {
    { curl -s "http://127.0.0.1:$PORT/metrics" 2>/dev/null || true; } |
        awk '/^funnel_pipeline_records_acked_total/ { s += $NF } END { printf "%d", s }'
}

s3py "s3.create_bucket(Bucket=BUCKET)"
echo "s3: N=$N records of 1 KB, sdk.batch.size $B, bucket $BUCKET on $ENDPOINT"

mkdir -p "$WORK/gen/pipelines"
cat >"$WORK/gen/pipelines/p.yaml" <<YAML
version: "2.2"
pipelines:
  - id: gen_s3
    status: running
    connectors:
      - id: src
        type: source
        plugin: builtin:generator
        settings:
          format.type: file
          format.options.path: $PAYLOAD
          recordCount: "$N"
      - id: dst
        type: destination
        plugin: builtin:s3
        settings:
          aws.accessKeyId: test
          aws.secretAccessKey: test
          aws.region: us-east-1
          aws.bucket: $BUCKET
          aws.endpoint: $ENDPOINT
          aws.pathStyle: "true"
          prefix: gen/
          sdk.batch.size: "$B"
YAML
m0="$(moto_cpu)"
start="$(date +%s.%N)"
(cd "$WORK/gen" && exec "$BIN" run --db.type memory --api.http.address "127.0.0.1:$PORT" 2>"$WORK/gen.log") &
FUNNEL_PID=$!
while [ "$(acked)" -lt "$N" ]; do
    if ! kill -0 "$FUNNEL_PID" 2>/dev/null; then
        echo "funnel exited early:" >&2; cat "$WORK/gen.log" >&2; exit 1
    fi
    sleep 0.05
done
end="$(date +%s.%N)"
m1="$(moto_cpu)"
cpu="$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$FUNNEL_PID/stat")"
kill "$FUNNEL_PID"; wait "$FUNNEL_PID" || true; FUNNEL_PID=""
read -r objects bytes <<<"$(s3py "
n = b = 0
for page in s3.get_paginator('list_objects_v2').paginate(Bucket=BUCKET, Prefix='gen/'):
    for o in page.get('Contents', []):
        n += 1; b += o['Size']
print(n, b)")"
python3 -c "s=$end-$start; print(f'funnel gen -> s3: {$N:,} records, $objects objects, {$bytes/1e6:.1f} MB in {s:.2f} s = {$bytes/s/1e6:.1f} MB/s ({$N/s:,.0f} records/s, payload {$N*1000/s/1e6:.1f} MB/s); funnel CPU $cpu s; moto CPU {$m1-$m0:.2f} s')"
echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# The same objects again, uploaded by boto3 one after the other.
m0="$(moto_cpu)"
s3py "
keys = [o['Key'] for p in s3.get_paginator('list_objects_v2').paginate(Bucket=BUCKET, Prefix='gen/') for o in p.get('Contents', [])]
bodies = [s3.get_object(Bucket=BUCKET, Key=k)['Body'].read() for k in keys]
total = sum(len(b) for b in bodies)
start = time.time()
for i, body in enumerate(bodies):
    s3.put_object(Bucket=BUCKET, Key=f'base/{i:08}', Body=body)
s = time.time() - start
print(f'boto3 put_object (base put): {len(bodies)} objects, {total/1e6:.1f} MB in {s:.2f} s = {total/s/1e6:.1f} MB/s')"
m1="$(moto_cpu)"
python3 -c "print(f'  moto CPU {$m1-$m0:.2f} s')"
echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/usr/bin/env bash
# The S3-compatible servers the s3 connector's tests use: moto's server mode (from PyPI,
# installed once into a virtualenv under ~/.cache/funnel/moto), keeping everything in
# memory:
#   127.0.0.1:4566  accepts any credentials; tests create their own buckets (unique
#                   names) with `test`/`test`;
#   127.0.0.1:4567  checks credentials (INITIAL_NO_AUTH_ACTION_COUNT=0) and knows none:
#                   every request is refused with InvalidAccessKeyId (the bad-credentials
#                   tests).
#
#   s3-server.sh ensure   install when missing; start when the port is free (idempotent)
#   s3-server.sh stop     stop the server this script started
set -euo pipefail

MOTO_VERSION=5.2.6
VENV="$HOME/.cache/funnel/moto"
DATA="$HOME/.cache/funnel/moto-run"
PORT=4566
AUTH_PORT=4567

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

install() {
    if [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
        return 0
    fi
    echo "s3-server.sh: installing moto[server] $MOTO_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

# start PORT NAME [ENV=VALUE...]: starts moto on PORT and waits until it accepts
# connections.
start() {
    local port="$1" name="$2"
    shift 2
    mkdir -p "$DATA"
    env "$@" setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >>"$DATA/$name.log" 2>&1 </dev/null &
    echo $! >"$DATA/$name.pid"
    for _ in $(seq 1 120); do
        if port_open "$port"; then
            return 0
        fi
        sleep 0.5
    done
    echo "s3-server.sh: moto does not accept connections on 127.0.0.1:$port; see $DATA/$name.log" >&2
    return 1
}

case "${1:-ensure}" in
ensure)
    install
    if ! port_open "$PORT"; then
        echo "s3-server.sh: starting moto on 127.0.0.1:$PORT"
        start "$PORT" moto
    fi
    if ! port_open "$AUTH_PORT"; then
        echo "s3-server.sh: starting moto checking credentials on 127.0.0.1:$AUTH_PORT"
        start "$AUTH_PORT" moto-auth INITIAL_NO_AUTH_ACTION_COUNT=0
    fi
    echo "s3-server.sh: S3 (moto) ready on 127.0.0.1:$PORT, with credential checks on 127.0.0.1:$AUTH_PORT"
    ;;
stop)
    for name in moto moto-auth; do
        if [ -f "$DATA/$name.pid" ]; then
            kill "$(cat "$DATA/$name.pid")" 2>/dev/null || true
            rm -f "$DATA/$name.pid"
        fi
    done
    ;;
*)
    echo "usage: s3-server.sh ensure|stop" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# The NATS server the nats connector's tests use: 127.0.0.1:4222 with JetStream
# (store in /var/lib/nats-server) and max_payload 8 MB, so a 5 MiB record fits in one
# message (the server's default is 1 MB). Run as root.
#
#   nats-server.sh ensure   install when missing; start when down; restart when it
#                           runs with a smaller max_payload (idempotent)
#   nats-server.sh stop     stop it (the restart drill of the nats tests)
#   nats-server.sh start    start it and wait until it accepts connections
set -euo pipefail

CONF=/root/.cache/funnel/nats-server.conf
PID_FILE=/var/run/nats-server-funnel.pid
MAX_PAYLOAD=8388608

write_conf() {
    mkdir -p "$(dirname "$CONF")" /var/lib/nats-server
    cat >"$CONF" <<CONF
listen: 127.0.0.1:4222
max_payload: $MAX_PAYLOAD
pid_file: "$PID_FILE"
log_file: "/var/log/nats-server.log"
jetstream {
    store_dir: "/var/lib/nats-server"
}
CONF
}

# The server's INFO line, or nothing when it does not answer.
info() {
    timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/4222 && head -1 <&3' 2>/dev/null || true
}

wait_up() {
    for _ in $(seq 1 100); do
        if info | grep -q '"jetstream":true'; then
            return 0
        fi
        sleep 0.1
    done
    echo "nats-server.sh: NATS does not accept connections on 127.0.0.1:4222" >&2
    return 1
}

start() {
    write_conf
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -c "$CONF"
    wait_up
}

stop() {
    start-stop-daemon --stop --oknodo --retry 10 --exec /usr/sbin/nats-server
    for _ in $(seq 1 100); do
        if [ -z "$(info)" ]; then
            return 0
        fi
        sleep 0.1
    done
}

case "${1:-ensure}" in
start) start ;;
stop) stop ;;
ensure)
    if [ ! -x /usr/sbin/nats-server ]; then
        echo "nats-server.sh: installing nats-server"
        apt-get install -y nats-server >/dev/null
    fi
    line="$(info)"
    if [ -z "$line" ]; then
        echo "nats-server.sh: NATS is down, starting it"
        start
    elif ! grep -q "\"max_payload\":$MAX_PAYLOAD" <<<"$line" || ! grep -q '"jetstream":true' <<<"$line"; then
        echo "nats-server.sh: NATS runs without JetStream or with a smaller max_payload; restarting it"
        stop
        start
    fi
    echo "nats-server.sh: NATS ready (JetStream on, max_payload $MAX_PAYLOAD)"
    ;;
*)
    echo "usage: nats-server.sh ensure|start|stop" >&2
    exit 2
    ;;
esac

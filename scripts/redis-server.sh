#!/usr/bin/env bash
# The Redis server the redis connector's tests use: 127.0.0.1:6379, no persistence
# (the machine's usual flags). Run as root.
#
#   redis-server.sh ensure   install when missing; start when down (idempotent)
#   redis-server.sh stop     stop it (the restart drill of the redis tests)
#   redis-server.sh start    start it and wait until it answers PING
set -euo pipefail

ping() {
    [ "$(timeout 3 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]
}

start() {
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 100); do
        if ping; then
            return 0
        fi
        sleep 0.1
    done
    echo "redis-server.sh: Redis does not answer on 127.0.0.1:6379" >&2
    return 1
}

stop() {
    timeout 10 redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true
    for _ in $(seq 1 100); do
        if ! ping; then
            return 0
        fi
        sleep 0.1
    done
    echo "redis-server.sh: Redis did not stop" >&2
    return 1
}

case "${1:-ensure}" in
start) start ;;
stop) stop ;;
ensure)
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "redis-server.sh: installing redis-server"
        apt-get install -y redis-server >/dev/null
    fi
    if ! ping; then
        echo "redis-server.sh: Redis is down, starting it"
        start
    fi
    echo "redis-server.sh: Redis ready on 127.0.0.1:6379"
    ;;
*)
    echo "usage: redis-server.sh ensure|start|stop" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Prepares the services and tools the tests use. Idempotent; run as root in CI.
# Kafka: tansu, built once and started on 127.0.0.1:9092 (at the end).
#
# PostgreSQL (127.0.0.1:5432, user postgres): the postgres connector's logical
# replication needs `wal_level = logical`. When the server runs with another level, this
# sets it with ALTER SYSTEM and restarts the cluster, then waits until it accepts
# connections again. A server that is down is started. TLS is turned on with a
# certificate signed by a CA made once in ~/.cache/funnel/pg-tls.
set -euo pipefail

# cargo-fuzz, for scripts/fuzz.sh (the libFuzzer targets in fuzz/); installed once into
# ~/.cargo/bin and kept there.
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
    echo "setup-services: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

PG_HOST=127.0.0.1
PG_USER=postgres

pg_ready() {
    psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'select 1' >/dev/null 2>&1
}

pg_wait() {
    for _ in $(seq 1 60); do
        if pg_ready; then
            return 0
        fi
        sleep 1
    done
    echo "setup-services: PostgreSQL does not accept connections on $PG_HOST" >&2
    return 1
}

pg_cluster() {
    local version
    version="$(ls /etc/postgresql | sort -V | tail -n 1)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main "$1"
}

if command -v psql >/dev/null 2>&1; then
    if ! pg_ready; then
        echo "setup-services: PostgreSQL is down, starting it"
        pg_cluster start || true
        pg_wait
    fi
    level="$(psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'show wal_level')"
    if [ "$level" != "logical" ]; then
        echo "setup-services: wal_level is $level; setting it to logical and restarting PostgreSQL"
        psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'ALTER SYSTEM SET wal_level = logical' >/dev/null
        pg_cluster restart
        pg_wait
    fi
    if ! psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc "select 1 from pg_database where datname = 'test'" | grep -q 1; then
        psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'CREATE DATABASE test' >/dev/null
    fi
    # TLS for the postgres connector's sslmode tests: a CA of our own and a server
    # certificate it signs for 127.0.0.1 and localhost, made once under
    # ~/.cache/funnel/pg-tls (the tests trust ca.crt with sslrootcert), copied where the
    # server can read them, and set with ALTER SYSTEM (ssl settings take a reload).
    PG_TLS="$HOME/.cache/funnel/pg-tls"
    if [ ! -s "$PG_TLS/server.crt" ] || [ ! -s "$PG_TLS/ca.crt" ]; then
        echo "setup-services: making a CA and a server certificate for PostgreSQL in $PG_TLS"
        mkdir -p "$PG_TLS"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Funnel test CA" \
            -keyout "$PG_TLS/ca.key" -out "$PG_TLS/ca.crt" 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout "$PG_TLS/server.key" -out "$PG_TLS/server.csr" 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$PG_TLS/server.ext"
        openssl x509 -req -in "$PG_TLS/server.csr" -CA "$PG_TLS/ca.crt" -CAkey "$PG_TLS/ca.key" \
            -CAcreateserial -days 3650 -extfile "$PG_TLS/server.ext" -out "$PG_TLS/server.crt" 2>/dev/null
    fi
    pg_data="$(psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'show data_directory')"
    pg_cert="$pg_data/funnel-server.crt"
    pg_key="$pg_data/funnel-server.key"
    if ! cmp -s "$PG_TLS/server.crt" "$pg_cert" || \
        [ "$(psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'show ssl_cert_file')" != "$pg_cert" ] || \
        [ "$(psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'show ssl')" != "on" ]; then
        echo "setup-services: turning on TLS in PostgreSQL with the certificate from $PG_TLS"
        install -o postgres -g postgres -m 0644 "$PG_TLS/server.crt" "$pg_cert"
        install -o postgres -g postgres -m 0600 "$PG_TLS/server.key" "$pg_key"
        psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc "ALTER SYSTEM SET ssl_cert_file = '$pg_cert'" >/dev/null
        psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc "ALTER SYSTEM SET ssl_key_file = '$pg_key'" >/dev/null
        psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc "ALTER SYSTEM SET ssl = on" >/dev/null
        psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'SELECT pg_reload_conf()' >/dev/null
    fi
    echo "setup-services: PostgreSQL ready (wal_level=$(psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'show wal_level'), ssl=$(psql -h "$PG_HOST" -U "$PG_USER" -d postgres -tAc 'show ssl'))"
fi

# MariaDB (127.0.0.1:3306, user root without password, database `test`): the mysql
# connector's source reads the binary log, which needs `log_bin` with
# `binlog_format=ROW`, `binlog_row_image=FULL` and a server id. When the server runs
# without them, this writes them to a configuration file and restarts mariadbd, then
# waits until it accepts connections again. A server that is down is started.
MY_HOST=127.0.0.1
MY_CONF_DIR=/etc/mysql/mariadb.conf.d
MY_CONF="$MY_CONF_DIR/60-funnel-binlog.cnf"

my_ready() {
    mysql -h "$MY_HOST" -u root -N -e 'select 1' >/dev/null 2>&1
}

my_wait() {
    for _ in $(seq 1 60); do
        if my_ready; then
            return 0
        fi
        sleep 1
    done
    echo "setup-services: MariaDB does not accept connections on $MY_HOST" >&2
    return 1
}

my_start() {
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
}

my_var() {
    mysql -h "$MY_HOST" -u root -N -e "select @@$1"
}

if [ -x /usr/sbin/mariadbd ]; then
    if ! my_ready; then
        echo "setup-services: MariaDB is down, starting it"
        my_start
        my_wait
    fi
    if [ "$(my_var log_bin)" != "1" ] || [ "$(my_var binlog_format)" != "ROW" ] ||
        [ "$(my_var binlog_row_image)" != "FULL" ] || [ "$(my_var server_id)" = "0" ]; then
        echo "setup-services: MariaDB binary log is off or not ROW/FULL; enabling it and restarting mariadbd"
        mkdir -p "$MY_CONF_DIR"
        cat >"$MY_CONF" <<'CNF'
# Written by funnel's scripts/setup-services.sh: the binary log the mysql source reads.
[mysqld]
server_id = 1
log_bin = mysql-bin
binlog_format = ROW
binlog_row_image = FULL
binlog_row_metadata = FULL
binlog_expire_logs_seconds = 86400
CNF
        # Debian's my.cnf includes this directory; a minimal one may not.
        if ! grep -qs "includedir $MY_CONF_DIR" /etc/mysql/my.cnf; then
            printf '\n!includedir %s/\n' "$MY_CONF_DIR" >>/etc/mysql/my.cnf
        fi
        start-stop-daemon --stop --oknodo --retry 60 --exec /usr/sbin/mariadbd
        my_start
        my_wait
    fi
    mysql -h "$MY_HOST" -u root -e 'CREATE DATABASE IF NOT EXISTS test'
    echo "setup-services: MariaDB ready (log_bin=$(my_var log_bin), binlog_format=$(my_var binlog_format))"
fi

# A TCP port on 127.0.0.1 that accepts connections.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

port_wait() {
    for _ in $(seq 1 60); do
        if port_open "$1"; then
            return 0
        fi
        sleep 1
    done
    echo "setup-services: nothing accepts connections on 127.0.0.1:$1" >&2
    return 1
}

# RabbitMQ (127.0.0.1:5672, guest/guest): the rabbitmq connector's tests. Installed from
# Debian when missing, started when down.
if ! command -v rabbitmq-server >/dev/null 2>&1; then
    echo "setup-services: installing rabbitmq-server"
    apt-get install -y rabbitmq-server >/dev/null
fi
if ! port_open 5672; then
    echo "setup-services: RabbitMQ is down, starting it"
    rabbitmq-server -detached
    port_wait 5672
fi
echo "setup-services: RabbitMQ ready on 127.0.0.1:5672"

# NATS with JetStream on 127.0.0.1:4222, max_payload 8 MB (scripts/nats-server.sh).
"$(dirname "$0")/nats-server.sh" ensure
# The nats credential and TLS tests start servers of their own with nats-server and
# make their certificates with the openssl command.
if ! command -v openssl >/dev/null 2>&1; then
    echo "setup-services: installing openssl"
    apt-get install -y openssl >/dev/null
fi

# Mosquitto (127.0.0.1:1883, anonymous): the mqtt connector's tests. Its defaults drop
# QoS 1 messages: a client gets at most 20 unacknowledged messages in flight, and a
# session holds at most 1000 more (beyond that the broker discards them, even for a
# persistent session). Funnel acknowledges only after delivery, so this lifts both
# limits in a drop-in file (max_queued_messages 0 = no limit) and restarts the broker
# once when they change; a broker that is down is started.
MQ_CONF=/etc/mosquitto/mosquitto.conf
MQ_DIR=/etc/mosquitto/conf.d
if ! command -v mosquitto >/dev/null 2>&1; then
    echo "setup-services: installing mosquitto"
    apt-get install -y mosquitto mosquitto-clients >/dev/null
fi
mkdir -p "$MQ_DIR"
MQ_WANT='# Written by funnel scripts/setup-services.sh: never drop QoS 1/2 messages.
max_inflight_messages 1000
max_queued_messages 0'
mq_changed=false
if [ "$(cat "$MQ_DIR/funnel.conf" 2>/dev/null)" != "$MQ_WANT" ]; then
    printf '%s\n' "$MQ_WANT" >"$MQ_DIR/funnel.conf"
    mq_changed=true
fi
if ! grep -qs "^include_dir $MQ_DIR" "$MQ_CONF"; then
    printf '\ninclude_dir %s\n' "$MQ_DIR" >>"$MQ_CONF"
    mq_changed=true
fi
mq_pid="$(cat /run/mosquitto/mosquitto.pid 2>/dev/null || true)"
if ! port_open 1883; then
    echo "setup-services: Mosquitto is down, starting it"
    mkdir -p /run/mosquitto /var/lib/mosquitto /var/log/mosquitto
    chown mosquitto: /run/mosquitto /var/lib/mosquitto /var/log/mosquitto 2>/dev/null || true
    mosquitto -d -c "$MQ_CONF"
    port_wait 1883
elif [ "$mq_changed" = true ] && [ -n "$mq_pid" ]; then
    # A reload (SIGHUP) does not lift the limits for Mosquitto 2.0.11: restart it. With
    # `persistence true` the sessions survive the restart.
    echo "setup-services: Mosquitto limits changed; restarting it"
    kill "$mq_pid"
    for _ in $(seq 1 30); do
        port_open 1883 || break
        sleep 1
    done
    mkdir -p /run/mosquitto
    chown mosquitto: /run/mosquitto 2>/dev/null || true
    mosquitto -d -c "$MQ_CONF"
    port_wait 1883
fi
echo "setup-services: Mosquitto ready on 127.0.0.1:1883"

# Redis on 127.0.0.1:6379 (scripts/redis-server.sh).
"$(dirname "$0")/redis-server.sh" ensure

# The dashboard's browser test (crates/funnel-cli/tests/dashboard.rs): Debian's
# chromium, node and npm, and playwright-core (which drives a browser it is given and
# downloads none) installed once into ~/.cache/funnel/browser.
PLAYWRIGHT_VERSION=1.65.2
BROWSER_TOOLS="$HOME/.cache/funnel/browser"
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null ||
        { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null; }
}
if ! command -v chromium >/dev/null 2>&1; then
    echo "setup-services: installing chromium"
    apt_install chromium
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "setup-services: installing node and npm"
    apt_install nodejs npm
fi
if [ "$(node -p "require('$BROWSER_TOOLS/node_modules/playwright-core/package.json').version" 2>/dev/null)" != "$PLAYWRIGHT_VERSION" ]; then
    echo "setup-services: installing playwright-core $PLAYWRIGHT_VERSION into $BROWSER_TOOLS"
    mkdir -p "$BROWSER_TOOLS"
    npm install --prefix "$BROWSER_TOOLS" --no-audit --no-fund --silent "playwright-core@$PLAYWRIGHT_VERSION"
fi
echo "setup-services: chromium and playwright-core ready for the browser test"

# Conduit's Python connector SDK, for the standalone connector tests (the plugins
# crate's fixtures are Python connectors written with it): a virtualenv in
# ~/.cache/funnel/conduit-py, made once and kept. The tests find its interpreter at
# ~/.cache/funnel/conduit-py/bin/python (or $FUNNEL_CONDUIT_PYTHON).
CONDUIT_SDK_VERSION=0.1.0.dev1
CONDUIT_VENV="$HOME/.cache/funnel/conduit-py"
if ! "$CONDUIT_VENV/bin/python" -c 'import conduit' 2>/dev/null \
    || ! "$CONDUIT_VENV/bin/pip" show conduit-connector-sdk 2>/dev/null | grep -qx "Version: $CONDUIT_SDK_VERSION"; then
    echo "setup-services: installing conduit-connector-sdk $CONDUIT_SDK_VERSION into $CONDUIT_VENV"
    python3 -m venv "$CONDUIT_VENV"
    "$CONDUIT_VENV/bin/pip" install --quiet "conduit-connector-sdk==$CONDUIT_SDK_VERSION"
fi
echo "setup-services: Conduit Python SDK ready in $CONDUIT_VENV"

# Kafka: no broker is packaged for this machine, so the kafka connector's tests run
# against tansu (a Kafka-protocol broker in Rust) with its SQLite storage, on
# 127.0.0.1:9092. It is built once (10 to 15 minutes on 2 cores) into
# ~/.cache/funnel/tools/tansu and kept there; the broker is started when the port is
# free and its data lives in ~/.cache/funnel/tansu.
TANSU_VERSION=0.6.0
TANSU_ROOT="$HOME/.cache/funnel/tools/tansu"
TANSU="$TANSU_ROOT/bin/tansu"
TANSU_DATA="$HOME/.cache/funnel/tansu"
KAFKA_PORT=9092

kafka_up() {
    (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null
}

if [ ! -x "$TANSU" ]; then
    echo "setup-services: installing tansu $TANSU_VERSION (a Kafka-protocol broker) into $TANSU_ROOT"
    CARGO_TARGET_DIR="$HOME/.cache/funnel/tansu-target" CARGO_INCREMENTAL=0 \
        cargo install --root "$TANSU_ROOT" tansu --locked --version "$TANSU_VERSION" \
        --features dynostore,libsql
fi
# Under CI the broker is always started afresh: one left running by earlier work on
# this machine may have stalled (tansu 0.6 stops answering some requests after heavy
# use, and only a new broker on an empty store recovers).
if [ -n "${CI:-}" ] && kafka_up; then
    echo "setup-services: CI: stopping the running tansu to start it on an empty store"
    pkill -f "tansu broker --listener-url tcp://127.0.0.1:$KAFKA_PORT" || true
    for _ in $(seq 1 30); do
        if ! kafka_up; then
            break
        fi
        sleep 1
    done
fi
if ! kafka_up; then
    echo "setup-services: starting tansu on 127.0.0.1:$KAFKA_PORT (data in $TANSU_DATA)"
    mkdir -p "$TANSU_DATA"
    # Every start is on an empty store: the tests make topics of their own, and a store
    # left by a broker that stalled kept the next one stalling too.
    rm -f "$TANSU_DATA"/tansu.db "$TANSU_DATA"/tansu.db-*
    # tansu reads the path of a sqlite:// URL relative to its working directory.
    (cd "$TANSU_DATA" && exec setsid "$TANSU" broker \
        --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --advertised-listener-url "tcp://localhost:$KAFKA_PORT" \
        --storage-engine "sqlite://tansu.db") >>"$TANSU_DATA/tansu.log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        if kafka_up; then
            break
        fi
        sleep 1
    done
    if ! kafka_up; then
        echo "setup-services: tansu does not accept connections on 127.0.0.1:$KAFKA_PORT; see $TANSU_DATA/tansu.log" >&2
        exit 1
    fi
fi
echo "setup-services: Kafka (tansu) ready on 127.0.0.1:$KAFKA_PORT"
# The kafka TLS tests put socat (with OpenSSL) in front of a private tansu of their
# own, with certificates they make (tansu's own TLS listener asks for no client
# certificate, which the mutual TLS test needs).
if ! command -v socat >/dev/null 2>&1; then
    echo "setup-services: installing socat"
    apt_install socat
fi

# S3 (moto's server mode from PyPI in a virtualenv under ~/.cache/funnel) on
# 127.0.0.1:4566, and one that checks credentials on 127.0.0.1:4567
# (scripts/s3-server.sh).
"$(dirname "$0")/s3-server.sh" ensure

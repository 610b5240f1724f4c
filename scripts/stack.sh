#!/usr/bin/env bash
# The local stack for Weir: a real Apache Kafka broker, a real PostgreSQL server and a
# real Schema Registry (Apicurio Registry, Confluent-compatible API), all on loopback,
# all running as plain processes (no Docker).
#
#   scripts/stack.sh up              install what is missing, start all three, wait until they serve
#   scripts/stack.sh down            stop all three (data is kept)
#   scripts/stack.sh status          one line per server; exit 0 if all run, 3 otherwise
#   scripts/stack.sh env             shell exports for Weir:  eval "$(scripts/stack.sh env)"
#   scripts/stack.sh clean           down, then delete the data (keeps jars and the built registry)
#   scripts/stack.sh registry-stop   stop only the schema registry (for fault tests)
#   scripts/stack.sh registry-start  start only the schema registry again
#
# Every command is idempotent: `up` on a running stack and `down` on a stopped one
# succeed without doing anything.
#
# The schema registry is Apicurio Registry 2.4.2.Final, built once from Maven Central
# (deploy/registry/pom.xml); its Confluent-compatible API is at
# http://127.0.0.1:18081/apis/ccompat/v7 (WEIR_SCHEMA_REGISTRY__URL in `env`). Its storage
# is an H2 database file under the stack dir, so schemas, their ids and the compatibility
# settings survive registry-stop/registry-start (and down/up); `clean` deletes them.
# Apicurio's default compatibility level is NONE.
#
# Settings (environment variables):
#   WEIR_STACK_DIR              where everything runtime lives   (default: <repo>/.stack)
#   WEIR_KAFKA_VERSION          org.apache.kafka:kafka_2.13      (default: 4.4.0)
#   WEIR_KAFKA_PORT             broker listener, 127.0.0.1       (default: 19092)
#   WEIR_KAFKA_CONTROLLER_PORT  KRaft controller, 127.0.0.1      (default: 19093)
#   WEIR_PG_PORT                PostgreSQL, 127.0.0.1            (default: 15432)
#   WEIR_STACK_TLS_DIR          a folder holding ca.pem, server.pem (certificate chain) and
#                               server-key.pem: turns on TLS for PostgreSQL (SCRAM over TLS)
#                               and adds a SASL_SSL listener to Kafka      (default: off)
#   WEIR_KAFKA_SASL_PORT        that SASL_SSL listener, 127.0.0.1  (default: 19094)
#   WEIR_KAFKA_SASL_PASSWORD    password of Kafka user `weir` (SCRAM-SHA-512 and PLAIN)
#                                                                  (default: weir-sasl)
#   WEIR_REGISTRY_PORT          schema registry (HTTP), 127.0.0.1  (default: 18081)
#   WEIR_STACK_REGISTRY         0: a stack without the schema registry (a second, private
#                               stack for a fault test, say)                (default: 1)
# The ports are not the usual 9092/5432 so that a developer's own servers keep working.
#
# Layout under the stack dir:
#   kafka/libs/  jars (from deploy/kafka/pom.xml)    pg/data/          the cluster
#   kafka/data/  the broker's log.dirs               pg/postgres.log   server log
#   kafka/server.properties (rendered)               pg/socket/        unix socket
#   kafka/kafka.log (+ .1: previous run), kafka/kafka.pid, kafka/maven.log (last jar download)
#   registry/app/   the built registry (from deploy/registry/)   registry/data/  its H2 database
#   registry/registry.log (+ .1), registry/registry.pid, registry/maven.log (last build)
set -euo pipefail

REPO_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# Absolute even if given relative: the servers do not run from the caller's cwd.
STACK_DIR=$(realpath -m -- "${WEIR_STACK_DIR:-$REPO_DIR/.stack}")

# 4.4.0 is the newest Kafka 4.x release on Maven Central; Kafka 4 is KRaft-only
# (no ZooKeeper) and runs on Java 17.
KAFKA_VERSION=${WEIR_KAFKA_VERSION:-4.4.0}
KAFKA_PORT=${WEIR_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${WEIR_KAFKA_CONTROLLER_PORT:-19093}
PG_PORT=${WEIR_PG_PORT:-15432}
TLS_DIR=${WEIR_STACK_TLS_DIR:+$(realpath -m -- "$WEIR_STACK_TLS_DIR")}
KAFKA_SASL_PORT=${WEIR_KAFKA_SASL_PORT:-19094}
KAFKA_SASL_USER=weir
KAFKA_SASL_PASSWORD=${WEIR_KAFKA_SASL_PASSWORD:-weir-sasl}
REGISTRY_PORT=${WEIR_REGISTRY_PORT:-18081}
WITH_REGISTRY=${WEIR_STACK_REGISTRY:-1}

KAFKA_POM=$REPO_DIR/deploy/kafka/pom.xml
KAFKA_LOG4J=$REPO_DIR/deploy/kafka/log4j2.yaml
KAFKA_TEMPLATE=$REPO_DIR/deploy/kafka/server.properties.in
PG_TEMPLATE=$REPO_DIR/deploy/postgres/postgresql.conf.in
REGISTRY_SRC=$REPO_DIR/deploy/registry

KAFKA_DIR=$STACK_DIR/kafka
KAFKA_LIBS=$KAFKA_DIR/libs
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_CONFIG=$KAFKA_DIR/server.properties
KAFKA_LOG=$KAFKA_DIR/kafka.log
KAFKA_PIDFILE=$KAFKA_DIR/kafka.pid
# Written next to the jars once they are complete: which Kafka they are, and which
# pom they came from (a changed pom must fetch again).
KAFKA_MARKER=$KAFKA_LIBS/.weir-kafka-version

# The role, password and database Weir uses. A throwaway local server: the password
# is not a secret, it only makes TCP connections go through real authentication.
PG_USER=weir
PG_PASSWORD=weir
PG_DB=weir
# pg_resolve_dir sets PG_DIR (usually $STACK_DIR/pg, see there).
PG_DIR=
PG_SYSTEM_USER=postgres   # Debian's account, used when this script runs as root

# Fixed by deploy/registry/pom.xml (its substitutions are specific to this release).
REGISTRY_VERSION=2.4.2.Final
REGISTRY_DIR=$STACK_DIR/registry
REGISTRY_APP=$REGISTRY_DIR/app
REGISTRY_JAR=$REGISTRY_APP/weir-schema-registry-runner.jar
REGISTRY_DATA=$REGISTRY_DIR/data
REGISTRY_LOG=$REGISTRY_DIR/registry.log
REGISTRY_PIDFILE=$REGISTRY_DIR/registry.pid
# Written next to the built application once it is complete: which release, and the hash
# of deploy/registry/ (a changed pom or producer source must build again).
REGISTRY_MARKER=$REGISTRY_APP/.weir-registry-build
REGISTRY_API=/apis/ccompat/v7

KAFKA_START_TIMEOUT=90
KAFKA_STOP_TIMEOUT=30
PG_START_TIMEOUT=60
REGISTRY_START_TIMEOUT=90
REGISTRY_STOP_TIMEOUT=30

log() { echo "[stack] $*"; }
die() {
    echo "[stack] error: $*" >&2
    exit 1
}
is_root() { [ "$(id -u)" -eq 0 ]; }

# Does something accept TCP connections on 127.0.0.1:$1? (bash's /dev/tcp: no extra tools)
port_open() {
    timeout 2 bash -c ": >/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

check_settings() {
    local name value
    for name in WEIR_KAFKA_PORT WEIR_KAFKA_CONTROLLER_PORT WEIR_PG_PORT WEIR_REGISTRY_PORT; do
        value=${!name:-}
        [ -z "$value" ] || [[ $value =~ ^[0-9]+$ ]] || die "$name must be a port number, got '$value'"
    done
}

# The HTTP status code of GET http://127.0.0.1:$1$2, empty if nothing answers. Plain
# HTTP/1.0 over bash's /dev/tcp, like port_open: no curl needed.
http_status() {
    timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$2" >&3
        read -r _ code _ <&3 && echo "$code"' _ "$1" "$2" 2>/dev/null || true
}

# Copies a template to $2, replacing each @KEY@ with VALUE for the KEY=VALUE pairs
# that follow. Pure bash, so paths with any characters survive (sed would not).
render_template() {
    local template=$1 target=$2 content pair
    shift 2
    content=$(<"$template")
    for pair in "$@"; do
        content=${content//"@${pair%%=*}@"/"${pair#*=}"}
    done
    printf '%s\n' "$content" >"$target"
}

# Installs Debian packages, but only as root; otherwise says what is missing.
apt_install() {
    is_root || die "missing $* and not root: install them (apt-get install -y $*) and retry"
    log "installing $* with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# ---------------------------------------------------------------- Kafka ----------

ensure_java_and_maven() {
    local missing=()
    command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null || missing+=(maven)
    [ "${#missing[@]}" -eq 0 ] || apt_install "${missing[@]}"
}

kafka_marker_value() {
    echo "$KAFKA_VERSION $(sha256sum "$KAFKA_POM" | cut -c1-16)"
}

# Fetches the broker's jars with Maven, unless the jars for this version and pom are
# already there. Downloads into a scratch dir first so that an interrupted download
# never leaves a half classpath that looks complete.
kafka_fetch_jars() {
    local wanted scratch
    wanted=$(kafka_marker_value)
    if [ -f "$KAFKA_MARKER" ] && [ "$(<"$KAFKA_MARKER")" = "$wanted" ]; then
        log "kafka: jars for $KAFKA_VERSION already in $KAFKA_LIBS"
        return
    fi
    log "kafka: downloading jars for $KAFKA_VERSION with maven (deploy/kafka/pom.xml)"
    scratch=$KAFKA_DIR/libs.partial
    rm -rf -- "$scratch"
    # Maven's output goes to a file: it is only interesting when it fails.
    if ! mvn -B -f "$KAFKA_POM" dependency:copy-dependencies \
        -Dkafka.version="$KAFKA_VERSION" -DoutputDirectory="$scratch" \
        >"$KAFKA_DIR/maven.log" 2>&1; then
        # The first error is the useful one (Maven 3.8 prefixes it with colour codes).
        sed 's/\x1b\[[0-9;]*m//g' "$KAFKA_DIR/maven.log" | grep -m 1 -E '^\[ERROR\] \S' >&2 || true
        die "maven could not fetch Kafka $KAFKA_VERSION (full output: $KAFKA_DIR/maven.log)"
    fi
    echo "$wanted" >"$scratch/.weir-kafka-version"
    # Jars of another version must not stay on the classpath next to these.
    rm -rf -- "$KAFKA_LIBS"
    mv -- "$scratch" "$KAFKA_LIBS"
    log "kafka: $(find "$KAFKA_LIBS" -name '*.jar' | wc -l) jars in $KAFKA_LIBS"
}

# Runs a Kafka class (tool) on the downloaded classpath, logging only warnings.
kafka_java() {
    java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
        -Dweir.kafka.log.level=WARN "$@"
}

# Rendered on every start so that changed ports take effect on the next `up`.
kafka_render_config() {
    log "kafka: writing $KAFKA_CONFIG (from deploy/kafka/server.properties.in)"
    render_template "$KAFKA_TEMPLATE" "$KAFKA_CONFIG" \
        "KAFKA_PORT=$KAFKA_PORT" \
        "CONTROLLER_PORT=$KAFKA_CONTROLLER_PORT" \
        "KAFKA_DATA_DIR=$KAFKA_DATA"
    if [ -n "$TLS_DIR" ]; then kafka_render_sasl_ssl; fi
}

tls_check_dir() {
    local file
    for file in ca.pem server.pem server-key.pem; do
        [ -r "$TLS_DIR/$file" ] || die "WEIR_STACK_TLS_DIR: $TLS_DIR/$file is missing"
    done
}

# A second listener, SASL_SSL, beside the plaintext one (which the broker itself and
# this script's tools keep using). Clients authenticate as user `weir` with SCRAM-SHA-512
# (credentials stored in the cluster metadata, see kafka_ensure_scram_user) or PLAIN
# (checked against this file's JAAS line). The broker's key and certificate chain go into
# one PEM file, which Kafka reads as a PEM keystore.
kafka_render_sasl_ssl() {
    tls_check_dir
    local bundle="$KAFKA_DIR/tls/server-bundle.pem"
    mkdir -p -- "$KAFKA_DIR/tls"
    # Kafka's PEM keystore reads only unencrypted PKCS#8 keys ("BEGIN PRIVATE KEY").
    (umask 077 && {
        openssl pkcs8 -topk8 -nocrypt -in "$TLS_DIR/server-key.pem"
        cat -- "$TLS_DIR/server.pem"
    } >"$bundle")
    log "kafka: adding a SASL_SSL listener on 127.0.0.1:$KAFKA_SASL_PORT (SCRAM-SHA-512, PLAIN)"
    sed -i \
        -e "s|^listeners=.*|&,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT|" \
        -e "s|^advertised.listeners=.*|&,SASL_SSL://127.0.0.1:$KAFKA_SASL_PORT|" \
        -e "s|^listener.security.protocol.map=.*|&,SASL_SSL:SASL_SSL|" \
        "$KAFKA_CONFIG"
    cat >>"$KAFKA_CONFIG" <<PROPS

# SASL_SSL listener (WEIR_STACK_TLS_DIR is set).
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_PASSWORD";
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$bundle
PROPS
}

# SCRAM credentials live in the cluster metadata; set (or reset) them through the
# plaintext listener once the broker serves requests.
kafka_ensure_scram_user() {
    log "kafka: setting SCRAM-SHA-512 credentials for user $KAFKA_SASL_USER"
    kafka_java org.apache.kafka.tools.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
        --alter --entity-type users --entity-name "$KAFKA_SASL_USER" \
        --add-config "SCRAM-SHA-512=[iterations=4096,password=$KAFKA_SASL_PASSWORD]" >/dev/null
}

# KRaft storage must be formatted once with a cluster id before the first start;
# meta.properties is the proof that it was. The quorum is static
# (controller.quorum.voters), so format needs no --standalone/--initial-controllers.
kafka_format_storage() {
    if [ -f "$KAFKA_DATA/meta.properties" ]; then
        log "kafka: storage already formatted ($KAFKA_DATA)"
        return
    fi
    local cluster_id
    cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid)
    log "kafka: formatting storage in $KAFKA_DATA (cluster id $cluster_id)"
    kafka_java kafka.tools.StorageTool format --config "$KAFKA_CONFIG" \
        --cluster-id "$cluster_id" >/dev/null
}

# Prints the broker's pid if our broker process is alive. Also checks the command
# line, so that a stale pid file whose pid was reused is not taken for Kafka.
kafka_pid() {
    local pid
    [ -f "$KAFKA_PIDFILE" ] || return 1
    pid=$(<"$KAFKA_PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(ps -p "$pid" -o args= 2>/dev/null) == *kafka.Kafka* ]] || return 1
    echo "$pid"
}

kafka_start() {
    local port
    for port in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" ${TLS_DIR:+"$KAFKA_SASL_PORT"}; do
        ! port_open "$port" || die "kafka: port $port is already in use by another process"
    done
    log "kafka: starting broker on 127.0.0.1:$KAFKA_PORT (log: $KAFKA_LOG)"
    # One run per log file (the previous run is kept as kafka.log.1), so the tail
    # shown on a failed start is about this start.
    if [ -f "$KAFKA_LOG" ]; then mv -f -- "$KAFKA_LOG" "$KAFKA_LOG.1"; fi
    # setsid + nohup and no inherited stdin/stdout: the broker gets its own session, so it
    # outlives this script and the shell that ran it (a closed terminal, a finished CI step
    # that kills its process group), and it does not keep the caller's pipes (make, a test
    # runner) open, nor our lock (fd 9). setsid execs java, so $! is the broker's pid.
    setsid nohup java -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONFIG" \
        </dev/null >>"$KAFKA_LOG" 2>&1 9>&- &
    echo $! >"$KAFKA_PIDFILE"
}

kafka_fail() {
    echo "[stack] kafka: $1; last lines of $KAFKA_LOG:" >&2
    tail -n 40 "$KAFKA_LOG" >&2 || true
    exit 1
}

# An open port only means the socket is bound; listing topics through the admin
# API proves the broker has loaded its metadata and answers real requests.
kafka_wait_ready() {
    local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    log "kafka: waiting for the broker to serve requests (up to ${KAFKA_START_TIMEOUT}s)"
    while [ "$SECONDS" -lt "$deadline" ]; do
        kafka_pid >/dev/null || kafka_fail "the broker exited during startup"
        if port_open "$KAFKA_PORT" &&
            timeout 30 java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
                -Dweir.kafka.log.level=WARN org.apache.kafka.tools.TopicCommand \
                --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
                --list >/dev/null 2>&1; then
            log "kafka: ready on 127.0.0.1:$KAFKA_PORT (version $KAFKA_VERSION)"
            return
        fi
        sleep 1
    done
    kafka_fail "no answer after ${KAFKA_START_TIMEOUT}s"
}

kafka_up() {
    local pid
    if pid=$(kafka_pid); then
        if port_open "$KAFKA_PORT"; then
            log "kafka: already running (pid $pid, 127.0.0.1:$KAFKA_PORT)"
        else
            # Still starting (or another `up` started it): a second broker on the
            # same data dir would only fail on its lock.
            log "kafka: broker process $pid exists but does not answer yet"
            kafka_wait_ready
        fi
        return
    fi
    mkdir -p -- "$KAFKA_DIR" "$KAFKA_DATA"
    ensure_java_and_maven
    kafka_fetch_jars
    kafka_render_config
    kafka_format_storage
    kafka_start
    kafka_wait_ready
    if [ -n "$TLS_DIR" ]; then kafka_ensure_scram_user; fi
}

kafka_down() {
    local pid waited=0
    if ! pid=$(kafka_pid); then
        log "kafka: not running"
        rm -f -- "$KAFKA_PIDFILE"
        return
    fi
    # SIGTERM is Kafka's clean shutdown: it flushes and closes its logs, so the
    # next start needs no log recovery.
    log "kafka: stopping broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt "$KAFKA_STOP_TIMEOUT" ]; do
        sleep 1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "kafka: still running after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    rm -f -- "$KAFKA_PIDFILE"
    log "kafka: stopped"
}

kafka_status() {
    local pid
    if pid=$(kafka_pid) && port_open "$KAFKA_PORT"; then
        local version=unknown
        [ -f "$KAFKA_MARKER" ] && version=$(cut -d' ' -f1 "$KAFKA_MARKER")
        printf '%-8s %-8s pid=%s 127.0.0.1:%s (version %s)\n' \
            kafka running "$pid" "$KAFKA_PORT" "$version"
        return 0
    fi
    printf '%-8s %s\n' kafka stopped
    return 1
}

# ------------------------------------------------------------- PostgreSQL --------
#
# We run our own cluster with initdb and pg_ctl on our own data dir, using the
# binaries of Debian's package. Debian's cluster tools (pg_ctlcluster, the system
# service) are not used: they manage clusters under /etc and /var, not ours.

# The newest installed PostgreSQL's bin dir, e.g. /usr/lib/postgresql/15/bin.
pg_find_bin() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
        sort -V | tail -n 1)
    [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && echo "$dir"
}

pg_install() {
    is_root || die "PostgreSQL is not installed and not root: run apt-get install -y postgresql and retry"
    # Only the binaries are wanted. Without this, Debian's package would create and
    # start its own 'main' cluster on 5432, a server nobody asked for.
    log "postgres: installing with apt-get (without Debian's default 'main' cluster)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-common >/dev/null
    sed -i 's/^#\?\s*create_main_cluster\s*=.*/create_main_cluster = false/' \
        /etc/postgresql-common/createcluster.conf
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

pg_ensure_installed() {
    pg_find_bin >/dev/null && return
    pg_install
    pg_find_bin >/dev/null || die "PostgreSQL binaries not found under /usr/lib/postgresql after install"
}

# PostgreSQL refuses to run as root, so as root every server command runs as
# Debian's postgres account. From / because the caller's cwd may be closed to it.
pg_as_owner() {
    if is_root; then
        (cd / && runuser -u "$PG_SYSTEM_USER" -- "$@")
    else
        "$@"
    fi
}

# Where the pg dir is. Normally $STACK_DIR/pg; if `up` had to move it (see
# pg_prepare_dir), $STACK_DIR/pg is a symlink to the real place.
pg_resolve_dir() {
    PG_DIR=$STACK_DIR/pg
    if [ -L "$PG_DIR" ]; then
        PG_DIR=$(realpath -m -- "$PG_DIR")
    fi
}

# The fallback pg dir when the postgres account cannot reach the stack dir: one per
# user and stack dir, so that two checkouts never share a cluster.
pg_fallback_dir() {
    local hash
    hash=$(printf '%s' "$STACK_DIR" | sha256sum | cut -c1-12)
    echo "${TMPDIR:-/tmp}/weir-stack-$(id -u)-$hash/pg"
}

# As root, the postgres account must be able to walk down to the data dir. A repo
# under a private home directory is not reachable; then the cluster lives in a
# fallback dir and $STACK_DIR/pg points there.
pg_prepare_dir() {
    mkdir -p -- "$STACK_DIR"
    pg_resolve_dir
    if is_root && [ ! -L "$STACK_DIR/pg" ] &&
        ! runuser -u "$PG_SYSTEM_USER" -- test -x "$STACK_DIR"; then
        PG_DIR=$(pg_fallback_dir)
        log "postgres: user $PG_SYSTEM_USER cannot reach $STACK_DIR; using $PG_DIR (linked as $STACK_DIR/pg)"
        mkdir -p -- "$PG_DIR"
        chmod 755 -- "$(dirname -- "$PG_DIR")"
        rm -rf -- "$STACK_DIR/pg"
        ln -s -- "$PG_DIR" "$STACK_DIR/pg"
    fi
    mkdir -p -- "$PG_DIR/socket"
    # Not recursive: what is below (data, log) is created by the postgres account.
    if is_root; then
        chown "$PG_SYSTEM_USER:" -- "$PG_DIR" "$PG_DIR/socket"
    fi
    # The unix socket path has a hard limit of 107 bytes in the kernel.
    local socket="$PG_DIR/socket/.s.PGSQL.$PG_PORT"
    [ "${#socket}" -le 107 ] ||
        die "postgres: socket path $socket is too long for a unix socket; set WEIR_STACK_DIR to a shorter path"
}

pg_data() { echo "$PG_DIR/data"; }

pg_initdb() {
    local bin=$1 data
    data=$(pg_data)
    if [ -f "$data/PG_VERSION" ]; then
        log "postgres: cluster already initialised ($data)"
        return
    fi
    # weir is the bootstrap superuser, so the role exists from the start. Local
    # (unix socket) connections are trusted, which is how this script itself gets
    # in; TCP, which Weir uses, requires the password (scram-sha-256). initdb's
    # host lines only cover 127.0.0.1/32 and ::1/128.
    log "postgres: initialising cluster in $data (initdb)"
    pg_as_owner "$bin/initdb" -D "$data" --username="$PG_USER" \
        --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C --data-checksums >/dev/null
    echo "include_if_exists = 'weir.conf'   # written by scripts/stack.sh" >>"$data/postgresql.conf"
}

# Our settings live in data/weir.conf, rendered on every start (so a changed port
# takes effect) and included last by postgresql.conf.
pg_render_config() {
    local data socket_dir
    data=$(pg_data)
    # Single quotes are doubled for postgresql.conf's '...' strings.
    socket_dir=${PG_DIR//\'/\'\'}/socket
    log "postgres: writing $data/weir.conf (from deploy/postgres/postgresql.conf.in)"
    render_template "$PG_TEMPLATE" "$data/weir.conf" \
        "PG_PORT=$PG_PORT" "PG_SOCKET_DIR=$socket_dir"
    if [ -n "$TLS_DIR" ]; then pg_render_tls "$data"; fi
    if is_root; then chown "$PG_SYSTEM_USER:" -- "$data/weir.conf"; fi
}

# TLS on the same port: PostgreSQL negotiates it per connection, so clients choose
# with sslmode. The server refuses a key file others can read, hence the copy.
pg_render_tls() {
    local data=$1 tls="$PG_DIR/tls"
    tls_check_dir
    log "postgres: enabling TLS (certificate from $TLS_DIR)"
    mkdir -p -- "$tls"
    install -m 0644 -- "$TLS_DIR/server.pem" "$tls/server.pem"
    install -m 0600 -- "$TLS_DIR/server-key.pem" "$tls/server-key.pem"
    if is_root; then chown -R "$PG_SYSTEM_USER:" -- "$tls"; fi
    cat >>"$data/weir.conf" <<CONF

# TLS (WEIR_STACK_TLS_DIR is set)
ssl = on
ssl_cert_file = '${tls//\'/\'\'}/server.pem'
ssl_key_file = '${tls//\'/\'\'}/server-key.pem'
CONF
}

pg_running() {
    local bin=$1
    [ -f "$(pg_data)/PG_VERSION" ] &&
        pg_as_owner "$bin/pg_ctl" -D "$(pg_data)" status >/dev/null 2>&1
}

pg_pid() { head -n 1 -- "$(pg_data)/postmaster.pid" 2>/dev/null; }

pg_start() {
    local bin=$1
    ! port_open "$PG_PORT" || die "postgres: port $PG_PORT is already in use by another process"
    log "postgres: starting on 127.0.0.1:$PG_PORT (log: $PG_DIR/postgres.log)"
    # 9>&-: the server must not inherit (and hold forever) this script's lock.
    pg_as_owner "$bin/pg_ctl" -D "$(pg_data)" -l "$PG_DIR/postgres.log" \
        -w -t "$PG_START_TIMEOUT" start >/dev/null 9>&- ||
        pg_fail "pg_ctl start failed"
}

pg_fail() {
    echo "[stack] postgres: $1; last lines of $PG_DIR/postgres.log:" >&2
    tail -n 40 "$PG_DIR/postgres.log" >&2 || true
    exit 1
}

# pg_ctl -w already waited for the socket; this checks what Weir uses: TCP.
pg_wait_ready() {
    local bin=$1 deadline=$((SECONDS + PG_START_TIMEOUT))
    until "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; do
        [ "$SECONDS" -lt "$deadline" ] || pg_fail "pg_isready got no answer after ${PG_START_TIMEOUT}s"
        sleep 0.5
    done
}

# Idempotent: the password is (re)set and the database created if missing. Runs
# over the trusted unix socket; the SQL comes on stdin so the password is not in
# any process list.
pg_ensure_role_and_db() {
    local bin=$1
    log "postgres: ensuring role $PG_USER (superuser) and database $PG_DB"
    pg_as_owner "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DIR/socket" -p "$PG_PORT" \
        -U "$PG_USER" -d postgres >/dev/null <<SQL
ALTER ROLE "$PG_USER" WITH SUPERUSER LOGIN PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE "$PG_DB" OWNER "$PG_USER"'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB')\gexec
SQL
}

pg_up() {
    local bin
    pg_ensure_installed
    bin=$(pg_find_bin)
    pg_prepare_dir
    if pg_running "$bin"; then
        log "postgres: already running (pid $(pg_pid), 127.0.0.1:$PG_PORT)"
        return
    fi
    pg_initdb "$bin"
    pg_render_config
    pg_start "$bin"
    pg_wait_ready "$bin"
    pg_ensure_role_and_db "$bin"
    log "postgres: ready at $(pg_dsn_redacted) ($("$bin/postgres" --version))"
}

pg_down() {
    local bin
    pg_resolve_dir
    if ! bin=$(pg_find_bin) || ! pg_running "$bin"; then
        log "postgres: not running"
        return
    fi
    # fast = roll back open transactions and shut down cleanly (a checkpoint is
    # written), without waiting for clients to disconnect.
    log "postgres: stopping (pid $(pg_pid), pg_ctl stop -m fast)"
    pg_as_owner "$bin/pg_ctl" -D "$(pg_data)" stop -m fast -w -t 60 >/dev/null
    log "postgres: stopped"
}

pg_dsn() { echo "postgresql://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB"; }
pg_dsn_redacted() { echo "postgresql://$PG_USER:***@127.0.0.1:$PG_PORT/$PG_DB"; }

pg_status() {
    local bin
    pg_resolve_dir
    if bin=$(pg_find_bin) && pg_running "$bin" &&
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
        printf '%-8s %-8s pid=%s %s\n' postgres running "$(pg_pid)" "$(pg_dsn_redacted)"
        return 0
    fi
    printf '%-8s %s\n' postgres stopped
    return 1
}

# ---------------------------------------------------------- Schema Registry ------
#
# Apicurio Registry publishes its code on Maven Central but not a runnable application:
# deploy/registry/pom.xml runs the Quarkus build over it (see the pom's header for the
# few substitutions Maven Central needs). The result is a runner jar plus lib/.

registry_marker_value() {
    local hash
    # Every file of the build project counts, except a `target/` left by a manual mvn run.
    hash=$(cd -- "$REGISTRY_SRC" &&
        find . -path ./target -prune -o -type f -print0 | LC_ALL=C sort -z |
        xargs -0 sha256sum | sha256sum | cut -c1-16)
    echo "$REGISTRY_VERSION $hash"
}

# Builds the registry with Maven, unless the build for this project is already there.
# Builds in a scratch dir first so that an interrupted build never looks complete.
registry_build() {
    local wanted scratch
    wanted=$(registry_marker_value)
    if [ -f "$REGISTRY_MARKER" ] && [ "$(<"$REGISTRY_MARKER")" = "$wanted" ]; then
        log "registry: Apicurio Registry $REGISTRY_VERSION already built in $REGISTRY_APP"
        return
    fi
    log "registry: building Apicurio Registry $REGISTRY_VERSION with maven (deploy/registry/pom.xml; about a minute, more on first download)"
    scratch=$REGISTRY_DIR/build.partial
    rm -rf -- "$scratch"
    if ! mvn -B -f "$REGISTRY_SRC/pom.xml" package -DskipTests \
        -Dweir.build.dir="$scratch" >"$REGISTRY_DIR/maven.log" 2>&1; then
        sed 's/\x1b\[[0-9;]*m//g' "$REGISTRY_DIR/maven.log" | grep -m 1 -E '^\[ERROR\] \S' >&2 || true
        die "maven could not build the registry (full output: $REGISTRY_DIR/maven.log)"
    fi
    [ -f "$scratch/weir-schema-registry-runner.jar" ] && [ -d "$scratch/lib" ] ||
        die "registry: maven succeeded but $scratch has no runner jar and lib/ (see $REGISTRY_DIR/maven.log)"
    # Only what runs is kept: the runner jar finds its lib/ next to itself.
    mkdir -p -- "$scratch/app"
    mv -- "$scratch/weir-schema-registry-runner.jar" "$scratch/lib" "$scratch/app/"
    echo "$wanted" >"$scratch/app/.weir-registry-build"
    rm -rf -- "$REGISTRY_APP"
    mv -- "$scratch/app" "$REGISTRY_APP"
    rm -rf -- "$scratch"
    log "registry: built ($(find "$REGISTRY_APP/lib" -name '*.jar' | wc -l) jars in $REGISTRY_APP)"
}

# Prints the registry's pid if our registry process is alive (checking the command line,
# so that a reused pid of a stale pid file is not taken for it).
registry_pid() {
    local pid
    [ -f "$REGISTRY_PIDFILE" ] || return 1
    pid=$(<"$REGISTRY_PIDFILE")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(ps -p "$pid" -o args= 2>/dev/null) == *weir-schema-registry-runner.jar* ]] || return 1
    echo "$pid"
}

registry_start() {
    ! port_open "$REGISTRY_PORT" ||
        die "registry: port $REGISTRY_PORT is already in use by another process"
    # H2 reads settings after ';' in its URL, so the path must not contain one.
    [[ $REGISTRY_DATA != *\;* ]] ||
        die "registry: the stack dir path contains ';', which H2 cannot take in a file URL; set WEIR_STACK_DIR"
    mkdir -p -- "$REGISTRY_DATA"
    log "registry: starting Apicurio Registry on 127.0.0.1:$REGISTRY_PORT (log: $REGISTRY_LOG)"
    if [ -f "$REGISTRY_LOG" ]; then mv -f -- "$REGISTRY_LOG" "$REGISTRY_LOG.1"; fi
    # Detached like the broker (see kafka_start). Apicurio's storage is SQL on H2; its
    # default is an in-memory database, pointed here at a file so that schemas and their
    # ids survive a restart. A small heap: Kafka, PostgreSQL and tests share the machine.
    setsid nohup java -Xms64m -Xmx384m -XX:+UseSerialGC -Djava.awt.headless=true \
        -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
        -Dquarkus.datasource.jdbc.url="jdbc:h2:file:$REGISTRY_DATA/registry" \
        -jar "$REGISTRY_JAR" \
        </dev/null >>"$REGISTRY_LOG" 2>&1 9>&- &
    echo $! >"$REGISTRY_PIDFILE"
}

registry_fail() {
    echo "[stack] registry: $1; last lines of $REGISTRY_LOG:" >&2
    tail -n 40 "$REGISTRY_LOG" >&2 || true
    exit 1
}

# Ready means the Confluent-compatible API answers a real request from storage.
registry_wait_ready() {
    local deadline=$((SECONDS + REGISTRY_START_TIMEOUT))
    log "registry: waiting for the API to serve requests (up to ${REGISTRY_START_TIMEOUT}s)"
    while [ "$SECONDS" -lt "$deadline" ]; do
        registry_pid >/dev/null || registry_fail "the registry exited during startup"
        if [ "$(http_status "$REGISTRY_PORT" "$REGISTRY_API/subjects")" = 200 ]; then
            log "registry: ready at $(registry_url) (Apicurio Registry $REGISTRY_VERSION)"
            return
        fi
        sleep 0.5
    done
    registry_fail "no answer after ${REGISTRY_START_TIMEOUT}s"
}

registry_url() { echo "http://127.0.0.1:$REGISTRY_PORT$REGISTRY_API"; }

registry_up() {
    local pid
    if pid=$(registry_pid); then
        if [ "$(http_status "$REGISTRY_PORT" "$REGISTRY_API/subjects")" = 200 ]; then
            log "registry: already running (pid $pid, 127.0.0.1:$REGISTRY_PORT)"
        else
            log "registry: process $pid exists but does not answer yet"
            registry_wait_ready
        fi
        return
    fi
    mkdir -p -- "$REGISTRY_DIR"
    ensure_java_and_maven
    registry_build
    registry_start
    registry_wait_ready
}

registry_down() {
    local pid deadline=$((SECONDS + REGISTRY_STOP_TIMEOUT))
    if ! pid=$(registry_pid); then
        log "registry: not running"
        rm -f -- "$REGISTRY_PIDFILE"
        return
    fi
    # SIGTERM: Quarkus shuts down cleanly and H2 closes its database file.
    log "registry: stopping (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "registry: still running after ${REGISTRY_STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    rm -f -- "$REGISTRY_PIDFILE"
    log "registry: stopped"
}

registry_status() {
    local pid
    if pid=$(registry_pid) &&
        [ "$(http_status "$REGISTRY_PORT" "$REGISTRY_API/subjects")" = 200 ]; then
        printf '%-8s %-8s pid=%s %s (Apicurio Registry %s)\n' \
            registry running "$pid" "$(registry_url)" "$REGISTRY_VERSION"
        return 0
    fi
    printf '%-8s %s\n' registry stopped
    return 1
}

# ---------------------------------------------------------------- commands -------

cmd_up() {
    kafka_up
    pg_up
    if [ "$WITH_REGISTRY" = 0 ]; then
        log "up: kafka 127.0.0.1:$KAFKA_PORT, postgres $(pg_dsn_redacted) (no registry: WEIR_STACK_REGISTRY=0)"
        return
    fi
    registry_up
    log "up: kafka 127.0.0.1:$KAFKA_PORT, postgres $(pg_dsn_redacted), registry $(registry_url)"
    log "for Weir: eval \"\$(scripts/stack.sh env)\""
}

cmd_down() {
    [ "$WITH_REGISTRY" = 0 ] || registry_down
    kafka_down
    pg_down
}

cmd_status() {
    local rc=0
    kafka_status || rc=3
    pg_status || rc=3
    [ "$WITH_REGISTRY" = 0 ] || registry_status || rc=3
    return "$rc"
}

cmd_env() {
    echo "export WEIR_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT"
    echo "export WEIR_POSTGRES__DSN=$(pg_dsn)"
    echo "export WEIR_SCHEMA_REGISTRY__URL=$(registry_url)"
}

# Deletes data and logs, never the jars (they take the longest to get back).
cmd_clean() {
    cmd_down
    pg_resolve_dir
    log "clean: deleting Kafka data ($KAFKA_DATA), PostgreSQL data ($PG_DIR) and registry data ($REGISTRY_DATA)"
    rm -rf -- "$REGISTRY_DATA" "$REGISTRY_LOG" "$REGISTRY_LOG.1" "$REGISTRY_PIDFILE" \
        "$REGISTRY_DIR/maven.log" "$REGISTRY_DIR/build.partial"
    rm -rf -- "$KAFKA_DATA" "$KAFKA_CONFIG" "$KAFKA_LOG" "$KAFKA_LOG.1" "$KAFKA_PIDFILE" \
        "$KAFKA_DIR/maven.log" "$KAFKA_DIR/libs.partial"
    rm -rf -- "$PG_DIR"
    if [ -L "$STACK_DIR/pg" ]; then
        # pg_prepare_dir's fallback: drop the link and the then empty parent too.
        rm -f -- "$STACK_DIR/pg"
        rmdir -- "$(dirname -- "$PG_DIR")" 2>/dev/null || true
    fi
}

# One stack command at a time per stack dir: two `up`s racing (parallel make
# targets, test runners) would otherwise start two brokers or run initdb twice.
take_lock() {
    mkdir -p -- "$STACK_DIR"
    exec 9>"$STACK_DIR/.lock"
    flock 9
}

usage() {
    sed -n '2,15s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

main() {
    check_settings
    case "${1:-}" in
    up)
        take_lock
        cmd_up
        ;;
    down)
        take_lock
        cmd_down
        ;;
    status) cmd_status ;;
    env) cmd_env ;;
    clean)
        take_lock
        cmd_clean
        ;;
    registry-start)
        take_lock
        registry_up
        ;;
    registry-stop)
        take_lock
        registry_down
        ;;
    -h | --help | help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"

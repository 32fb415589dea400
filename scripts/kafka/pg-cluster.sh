#!/usr/bin/env bash
# Run three tansu Kafka-protocol brokers over one throwaway PostgreSQL on
# 127.0.0.1, for tests.  The brokers are stateless: every topic, record, group
# and offset lives in PostgreSQL, so any broker can serve any request.
#
#   pg-cluster.sh start DIR      initdb (first time only) and start PostgreSQL,
#                                load tansu-postgres.sql (same directory) into
#                                a fresh database, start brokers 1..3, wait
#                                until each answers a Kafka Metadata request,
#                                then print exactly one line on stdout:
#                                127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
#   pg-cluster.sh stop DIR       stop the brokers and PostgreSQL, wait for exit
#   pg-cluster.sh stop-broker DIR N
#                                SIGTERM broker N (1..3) and wait for it to exit
#                                (tansu gives open connections up to 5 s)
#   pg-cluster.sh kill-broker DIR N
#                                SIGKILL broker N (a crash) and wait for exit
#   pg-cluster.sh start-broker DIR N
#                                start broker N again on its port and wait
#                                until it answers Metadata
#
# What clients see (tansu 0.6.0): every broker runs with the same hard-coded
# node id (111) and its Metadata lists only itself, as leader of every
# partition, and it names itself as every group's coordinator.  A client that
# bootstraps with all three addresses works, and survives the loss of a
# broker by re-bootstrapping, but it never sees three brokers in Metadata.
#
# Every port is a free one picked at start, so instances in different
# directories can run side by side.  DIR/ports: "PG B1 B2 B3"; DIR/pg-url: the
# storage URL the brokers use (psql takes it too); pids: DIR/*.pid; logs:
# DIR/logs.  Everything except the bootstrap line goes to stderr.  Restarting
# on an existing DIR keeps the data (new ports).
#
# PostgreSQL refuses to run as root.  When run as root, initdb and postgres run
# as SLUICE_PG_USER (default: postgres if that user exists, else nobody) via
# setpriv.  The data directory is DIR/pg when that user can reach DIR; when it
# cannot (e.g. DIR under /root), DIR/pg is a link to a private directory under
# /tmp, which `stop` deletes (so in that case data does not survive a stop).
#
# Env: SLUICE_TANSU (tansu binary; else PATH, else ~/.cargo/bin),
# SLUICE_PG_BIN (directory with initdb, postgres, psql; else the newest
# /usr/lib/postgresql/*/bin), SLUICE_PG_USER, SLUICE_KAFKA_TIMEOUT (s per wait,
# default 60), SLUICE_TANSU_CLUSTER (cluster id, default sluice), RUST_LOG
# (passed to tansu).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
DDL="$here/tansu-postgres.sql"
READY_TIMEOUT="${SLUICE_KAFKA_TIMEOUT:-60}"
CLUSTER_ID="${SLUICE_TANSU_CLUSTER:-sluice}"
PG_ROLE=tansu # superuser created by initdb; the brokers connect as it
PG_DB=tansu

log() { echo "pg-cluster.sh: $*" >&2; }
die() { log "$*"; exit 1; }

usage() { die "usage: $0 start|stop DIR | start-broker|stop-broker|kill-broker DIR 1|2|3"; }

[ $# -ge 2 ] || usage
cmd=$1
case "$cmd" in
  start | stop) [ $# -eq 2 ] || usage ;;
  start-broker | stop-broker | kill-broker)
    [ $# -eq 3 ] && [[ "$3" =~ ^[123]$ ]] || usage ;;
  *) usage ;;
esac
if [ "$cmd" = start ]; then mkdir -p "$2"; fi
if [ ! -d "$2" ]; then
  [ "$cmd" = stop ] && exit 0 # stop on a missing DIR: nothing to do
  die "no such directory: $2"
fi
dir=$(cd "$2" && pwd)

millis() { date +%s%3N; }
t0=$(millis)
elapsed() { echo "$(($(millis) - t0)) ms"; }

tansu_binary() {
  if [ -n "${SLUICE_TANSU:-}" ]; then echo "$SLUICE_TANSU"; return; fi
  if command -v tansu >/dev/null; then command -v tansu; return; fi
  [ -x "$HOME/.cargo/bin/tansu" ] ||
    die "tansu not found (scripts/test-deps.sh installs it, with the postgres feature)"
  echo "$HOME/.cargo/bin/tansu"
}

pg_bin() {
  local d
  if [ -n "${SLUICE_PG_BIN:-}" ]; then echo "$SLUICE_PG_BIN"; return; fi
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$d" ] && command -v pg_config >/dev/null; then d=$(pg_config --bindir); fi
  [ -n "$d" ] && [ -x "$d/postgres" ] ||
    die "PostgreSQL server binaries not found (apt-get install postgresql, or set SLUICE_PG_BIN)"
  echo "$d"
}

# As root, PostgreSQL's programs run as an unprivileged user.
pg_user=
if [ "$(id -u)" -eq 0 ]; then
  pg_user="${SLUICE_PG_USER:-}"
  if [ -z "$pg_user" ]; then
    if id postgres >/dev/null 2>&1; then pg_user=postgres; else pg_user=nobody; fi
  fi
  id "$pg_user" >/dev/null 2>&1 || die "no such user: $pg_user (SLUICE_PG_USER)"
  [ "$(id -u "$pg_user")" -ne 0 ] || die "SLUICE_PG_USER must not be root"
fi
# Prefix for a command run as that user; setpriv execs, so a background
# "${as_pg[@]}" cmd & leaves the pid of cmd itself in $!.
as_pg=()
if [ -n "$pg_user" ]; then
  as_pg=(setpriv --reuid="$pg_user" --regid="$(id -g "$pg_user")" --init-groups --)
fi

# True if pid file $1 names a live process whose working directory is $2
# (tansu runs in DIR, postgres in its data directory): guards against acting
# on a recycled pid.
alive() {
  local pid cwd
  [ -f "$1" ] || return 1
  pid=$(cat "$1")
  [ -n "$pid" ] || return 1
  cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 1
  [ "$cwd" = "$(readlink -f "$2")" ]
}
broker_alive() { alive "$dir/broker-$1.pid" "$dir"; }
pg_alive() { [ -e "$dir/pg" ] && alive "$dir/postgres.pid" "$dir/pg"; }

# True while pid $1 runs.  A zombie counts as gone: its sockets are closed,
# and daemons left by an earlier run of this script are reaped by init, which
# may take a while.
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat:0:1}" != Z ]
}

# Send signal $2 to the processes in pid files $3... that are alive (working
# directory $1), wait up to 10 s for them to exit, then SIGKILL.
terminate() {
  local cwd=$1 sig=$2 pidfile pid i left pids=() names=()
  shift 2
  for pidfile in "$@"; do
    if alive "$pidfile" "$cwd"; then
      pids+=("$(cat "$pidfile")")
      names+=("$(basename "$pidfile" .pid)")
    fi
  done
  if [ ${#pids[@]} -gt 0 ]; then
    kill "-$sig" "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      left=0
      for pid in "${pids[@]}"; do
        if running "$pid"; then left=1; fi
      done
      [ $left = 1 ] || break
      sleep 0.1
    done
    for i in "${!pids[@]}"; do
      if running "${pids[$i]}"; then
        log "pid ${pids[$i]} (${names[$i]}) ignored SIG$sig for 10s, sending SIGKILL"
        kill -9 "${pids[$i]}" 2>/dev/null || true
        while running "${pids[$i]}"; do sleep 0.1; done
      fi
    done
  fi
  rm -f "$@"
}

tails() {
  local f
  for f in "$dir"/logs/*.log; do
    [ -f "$f" ] || continue
    echo "===== $f (last 30 lines) =====" >&2
    tail -n 30 "$f" >&2
  done
}

load_ports() {
  [ -f "$dir/ports" ] || die "no $dir/ports: run $0 start $dir first"
  read -r pg_port port1 port2 port3 <"$dir/ports"
}
broker_port() { local v="port$1"; echo "${!v}"; }

# Each port must answer a Kafka Metadata (v0) request naming a broker that
# advertises that same port.  Exit 0 when all do.
metadata_ok() {
  python3 - "$@" <<'PY'
import socket, struct, sys

def metadata(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.settimeout(5)
        client = b"pg-cluster.sh"
        body = struct.pack(">hhih", 3, 0, 1, len(client)) + client + struct.pack(">i", 0)
        s.sendall(struct.pack(">i", len(body)) + body)
        def read(n):
            b = b""
            while len(b) < n:
                chunk = s.recv(n - len(b))
                if not chunk:
                    raise EOFError("connection closed")
                b += chunk
            return b
        data = read(struct.unpack(">i", read(4))[0])
    _, count = struct.unpack(">ii", data[:8])
    off, brokers = 8, []
    for _ in range(count):
        node, hl = struct.unpack(">ih", data[off:off + 6]); off += 6
        host = data[off:off + hl].decode(); off += hl
        brokers.append((node, host, struct.unpack(">i", data[off:off + 4])[0])); off += 4
    return brokers

ok = True
for port in map(int, sys.argv[1:]):
    try:
        ok = ok and any(p == port for _, _, p in metadata(port))
    except Exception:
        ok = False
sys.exit(0 if ok else 1)
PY
}

pg_url() { echo "postgres://$PG_ROLE@127.0.0.1:$pg_port/$PG_DB"; }

spawn_broker() { # N: start broker N on its port in the background
  local n=$1 port pid
  port=$(broker_port "$n")
  echo "==== $(date '+%F %T') starting broker $n on 127.0.0.1:$port" >>"$dir/logs/broker-$n.log"
  # cwd DIR marks the process as ours (see alive); no fd of the caller is kept.
  (cd "$dir" && exec "$TANSU" broker \
    --cluster-id "$CLUSTER_ID" \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine "$(pg_url)") </dev/null >>"$dir/logs/broker-$n.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/broker-$n.pid"
  log "broker $n: pid $pid, 127.0.0.1:$port"
}

wait_brokers() { # N...: wait until brokers N... answer Metadata
  local n ports=() deadline=$((SECONDS + READY_TIMEOUT))
  for n in "$@"; do ports+=("$(broker_port "$n")"); done
  until metadata_ok "${ports[@]}"; do
    for n in "$@"; do
      if ! broker_alive "$n"; then
        tails
        die "broker $n exited during startup (logs in $dir/logs)"
      fi
    done
    if [ "$SECONDS" -ge "$deadline" ]; then
      tails
      die "brokers $* did not answer Metadata within ${READY_TIMEOUT}s (logs in $dir/logs)"
    fi
    sleep 0.1
  done
}

psql_() { # run psql against database $1 with the remaining arguments
  local db=$1
  shift
  "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U "$PG_ROLE" -d "$db" "$@"
}

# The data directory must be reachable by the user PostgreSQL runs as.
prepare_pgdata() {
  local target
  if [ -L "$dir/pg" ] && [ ! -d "$dir/pg" ]; then rm -f "$dir/pg" "$dir/pg.external"; fi
  [ -e "$dir/pg" ] && return 0
  if [ -z "$pg_user" ] || "${as_pg[@]}" test -x "$dir" 2>/dev/null; then
    mkdir -m 700 "$dir/pg"
  else
    target=$(mktemp -d "${TMPDIR:-/tmp}/sluice-pg.XXXXXX")
    ln -s "$target" "$dir/pg"
    echo "$target" >"$dir/pg.external"
    log "$pg_user cannot reach $dir: PostgreSQL data in $target (deleted by stop)"
  fi
  if [ -n "$pg_user" ]; then chown "$pg_user:$(id -g "$pg_user")" "$(readlink -f "$dir/pg")"; fi
  chmod 700 "$(readlink -f "$dir/pg")"
}

start_pg() {
  local pid deadline
  prepare_pgdata
  if [ ! -f "$dir/pg/PG_VERSION" ]; then
    log "initdb in $dir/pg"
    "${as_pg[@]}" "$PG_BIN/initdb" -D "$(readlink -f "$dir/pg")" -U "$PG_ROLE" --auth=trust \
      -E UTF8 --no-locale --no-sync </dev/null >"$dir/logs/initdb.log" 2>&1 ||
      { tails; die "initdb failed"; }
    log "initdb done ($(elapsed))"
  fi
  # Durability is pointless for a throwaway store: no fsync.  No Unix socket
  # (its path could exceed the length limit); TCP on 127.0.0.1 only.
  "${as_pg[@]}" "$PG_BIN/postgres" -D "$(readlink -f "$dir/pg")" -p "$pg_port" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
    -c max_connections=200 -c shared_buffers=64MB \
    </dev/null >>"$dir/logs/postgres.log" 2>&1 &
  pid=$!
  echo "$pid" >"$dir/postgres.pid"
  log "postgres: pid $pid, 127.0.0.1:$pg_port"
  deadline=$((SECONDS + READY_TIMEOUT))
  until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$pg_port" -U "$PG_ROLE" -d postgres; do
    if ! kill -0 "$pid" 2>/dev/null; then tails; stop; die "postgres exited during startup"; fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tails; stop; die "postgres not ready after ${READY_TIMEOUT}s"
    fi
    sleep 0.1
  done
  log "postgres ready ($(elapsed))"
  if [ -z "$(psql_ postgres -tAc "select 1 from pg_database where datname = '$PG_DB'")" ]; then
    psql_ postgres -c "create database $PG_DB" &&
      psql_ "$PG_DB" -f "$DDL" >>"$dir/logs/schema.log" 2>&1 || {
      psql_ postgres -c "drop database if exists $PG_DB" || true
      tails
      stop
      die "loading $DDL failed (see $dir/logs/schema.log)"
    }
    log "schema loaded ($(elapsed))"
  fi
}

stop() {
  local n ext
  terminate "$dir" TERM "$dir"/broker-{1,2,3}.pid
  # SIGINT: PostgreSQL's fast shutdown.
  if [ -e "$dir/pg" ]; then terminate "$dir/pg" INT "$dir/postgres.pid"; fi
  rm -f "$dir/postgres.pid"
  if [ -f "$dir/pg.external" ]; then
    ext=$(cat "$dir/pg.external")
    case "$ext" in */sluice-pg.*) rm -rf "$ext" ;; esac
    rm -f "$dir/pg" "$dir/pg.external"
  fi
}

start() {
  local ports n
  [ -f "$DDL" ] || die "missing $DDL"
  command -v python3 >/dev/null || die "python3 not found"
  TANSU=$(tansu_binary)
  PG_BIN=$(pg_bin)
  if pg_alive || broker_alive 1 || broker_alive 2 || broker_alive 3; then
    die "a cluster is already running in $dir ($0 stop $dir)"
  fi
  # Four distinct free ports: hold all sockets open until all are chosen.
  ports=$(python3 -c 'import socket
ss=[socket.socket() for _ in range(4)]
for s in ss: s.bind(("127.0.0.1",0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
  echo "$ports" >"$dir/ports"
  mkdir -p "$dir/logs"
  load_ports
  start_pg
  pg_url >"$dir/pg-url"
  for n in 1 2 3; do spawn_broker "$n"; done
  wait_brokers 1 2 3
  log "ready in $dir ($(elapsed))"
  echo "127.0.0.1:$port1,127.0.0.1:$port2,127.0.0.1:$port3"
}

start_broker() {
  local n=$1
  TANSU=$(tansu_binary)
  load_ports
  pg_alive || die "PostgreSQL is not running in $dir ($0 start $dir)"
  broker_alive "$n" && die "broker $n is already running"
  spawn_broker "$n"
  wait_brokers "$n"
  log "broker $n ready ($(elapsed))"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  stop-broker) terminate "$dir" TERM "$dir/broker-$3.pid" ;;
  kill-broker) terminate "$dir" KILL "$dir/broker-$3.pid" ;;
  start-broker) start_broker "$3" ;;
esac

#!/usr/bin/env bash
# Run a throwaway high-availability HDFS on 127.0.0.1 for tests: two
# NameNodes (nn1, nn2) sharing their edit log through three JournalNodes
# (quorum journal manager), one DataNode, manual failover only (no ZooKeeper,
# no ZKFC).  Hadoop 2.7.3 jars from install-hadoop.sh, as for hdfs.sh, plus
# commons-httpclient-3.1.jar (also in the pyspark sdist), without which the
# fsimage and edits transfers over HTTP fail (see start below).
#
#   hdfs-ha.sh start DIR     write configs into DIR, start the JournalNodes,
#                            format nn1 and bootstrap nn2 from it (first time
#                            only), start both NameNodes and the DataNode,
#                            make nn1 active, wait until the DataNode is live
#                            and safe mode is off, then print exactly one
#                            line on stdout:  NAMESERVICE NN1-RPC NN2-RPC
#                            e.g. "sluice-ns 127.0.0.1:41234 127.0.0.1:41240"
#   hdfs-ha.sh stop DIR      stop all six processes and wait for them to exit
#   hdfs-ha.sh failover DIR  graceful failover: the active NameNode becomes
#                            standby, the standby becomes active
#   hdfs-ha.sh kill-active DIR
#                            SIGKILL the active NameNode, then make the other
#                            one active (fenced with shell(/bin/true))
#   hdfs-ha.sh restart-nn DIR N
#                            stop NameNode N (1 or 2) if it runs and start it
#                            again on the same ports; it comes back standby,
#                            unless then no NameNode is active, in which case
#                            it is made active
#   hdfs-ha.sh status DIR    print "nn1 STATE nn2 STATE" on stdout
#
# failover, kill-active and restart-nn print the NameNode that is active
# afterwards on stderr ("hdfs-ha.sh: active: nn2 (127.0.0.1:P)") and return
# once it is active, out of safe mode and has a live DataNode.
#
# Every port is a free one picked at start (13 of them, in DIR/ports), so
# instances in different directories can run side by side.  Logs: DIR/logs;
# pids: DIR/*.pid.  Everything except the one stdout line goes to stderr.
# Restarting on an existing DIR keeps the data (new ports).
#
# Client configuration: DIR/conf/{core,hdfs}-site.xml defines the nameservice
# (fs.defaultFS = hdfs://NAMESERVICE, dfs.ha.namenodes.NAMESERVICE, the
# rpc-address of each NameNode, ConfiguredFailoverProxyProvider).  Point
# HADOOP_CONF_DIR at it for hdfs-native, or put it on the Java classpath:
#   java -cp "DIR/conf:$SLUICE_HADOOP_HOME/lib/*" org.apache.hadoop.fs.FsShell \
#     -ls hdfs://sluice-ns/
#   java -cp "DIR/conf:$SLUICE_HADOOP_HOME/lib/*" \
#     org.apache.hadoop.hdfs.tools.DFSHAAdmin -getServiceState nn1
# Env: SLUICE_HADOOP_HOME (jars), SLUICE_HDFS_TIMEOUT (s per wait, default
# 90), SLUICE_HDFS_NAMESERVICE (default sluice-ns), JAVA.
set -euo pipefail

HADOOP_HOME="${SLUICE_HADOOP_HOME:-$HOME/.cache/sluice/hadoop-2.7.3}"
JAVA="${JAVA:-java}"
READY_TIMEOUT="${SLUICE_HDFS_TIMEOUT:-90}"
NS="${SLUICE_HDFS_NAMESERVICE:-sluice-ns}"
# Modest heaps; serial GC and C1-only JIT start faster and use less memory.
JAVA_OPTS=(-Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  -Djava.net.preferIPv4Stack=true)
# JournalNodes and one-shot tools need less.
SMALL_OPTS=(-Xms16m -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  -Djava.net.preferIPv4Stack=true)
NN=org.apache.hadoop.hdfs.server.namenode.NameNode
JN=org.apache.hadoop.hdfs.qjournal.server.JournalNode
DN=org.apache.hadoop.hdfs.server.datanode.DataNode
HAADMIN=org.apache.hadoop.hdfs.tools.DFSHAAdmin

log() { echo "hdfs-ha.sh: $*" >&2; }
die() { log "$*"; exit 1; }

usage() { die "usage: $0 start|stop|failover|kill-active|status DIR | restart-nn DIR 1|2"; }

[ $# -ge 2 ] || usage
cmd=$1
case "$cmd" in
  restart-nn) [ $# -eq 3 ] && [[ "$3" == [12] ]] || usage ;;
  *) [ $# -eq 2 ] || usage ;;
esac
if [ "$cmd" = start ]; then mkdir -p "$2"; fi
if [ ! -d "$2" ]; then
  [ "$cmd" = stop ] && exit 0 # stop on a missing DIR: nothing to do
  die "no such directory: $2"
fi
dir=$(cd "$2" && pwd)
DAEMONS="jn1 jn2 jn3 nn1 nn2 dn"

# True if pid file $1 names a live process started for this DIR (guards
# against acting on a recycled pid).
alive() {
  local cmdline
  [ -f "$1" ] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$(cat "$1")/cmdline") || return 1
  [[ "$cmdline" == *" -Dhadoop.log.dir=$dir/logs "* ]]
}

# Stops the named daemons (SIGTERM, SIGKILL after 10 s) and waits for them.
stop_daemons() {
  local name pids=() pid i running
  for name in "$@"; do
    if alive "$dir/$name.pid"; then pids+=("$(cat "$dir/$name.pid")"); fi
  done
  if [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    for i in $(seq 100); do
      running=0
      for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then running=1; fi
      done
      [ $running = 1 ] || break
      sleep 0.1
    done
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM for 10s, sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
      fi
    done
  fi
  for name in "$@"; do rm -f "$dir/$name.pid"; done
}

stop() {
  # JournalNodes last: a NameNode that loses its journal quorum while
  # running aborts with a FATAL message.
  stop_daemons dn nn2 nn1
  stop_daemons jn3 jn2 jn1
}

tails() {
  local f
  for f in "$dir"/logs/*.log; do
    [ -f "$f" ] || continue
    echo "===== $f (last 30 lines) =====" >&2
    tail -n 30 "$f" >&2
  done
}

prop() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }

load_ports() {
  [ -f "$dir/ports" ] || die "no $dir/ports: was the cluster started in $dir?"
  read -r jn1rpc jn1http jn2rpc jn2http jn3rpc jn3http \
    nn1rpc nn1http nn2rpc nn2http xfer ipc dnhttp <"$dir/ports"
}

# The shared settings: everything a client, the DataNode and DFSHAAdmin need.
common_props() {
  prop dfs.nameservices "$NS"
  prop dfs.ha.namenodes.$NS nn1,nn2
  prop dfs.namenode.rpc-address.$NS.nn1 "127.0.0.1:$nn1rpc"
  prop dfs.namenode.rpc-address.$NS.nn2 "127.0.0.1:$nn2rpc"
  prop dfs.namenode.http-address.$NS.nn1 "127.0.0.1:$nn1http"
  prop dfs.namenode.http-address.$NS.nn2 "127.0.0.1:$nn2http"
  prop dfs.namenode.shared.edits.dir \
    "qjournal://127.0.0.1:$jn1rpc;127.0.0.1:$jn2rpc;127.0.0.1:$jn3rpc/$NS"
  prop dfs.client.failover.proxy.provider.$NS \
    org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider
  prop dfs.ha.automatic-failover.enabled false
  prop dfs.ha.fencing.methods 'shell(/bin/true)'
  # The standby reads the journal every second (default 60 s), so it knows
  # new blocks when the DataNode reports them and a failover is quick.
  prop dfs.ha.tail-edits.period 1
  prop dfs.namenode.secondary.http-address "127.0.0.1:0"
  prop dfs.datanode.data.dir "file://$dir/data"
  prop dfs.datanode.address "127.0.0.1:$xfer"
  prop dfs.datanode.ipc.address "127.0.0.1:$ipc"
  prop dfs.datanode.http.address "127.0.0.1:$dnhttp"
  prop dfs.replication 1
  prop dfs.webhdfs.enabled false
  prop dfs.permissions.enabled false
  prop dfs.namenode.safemode.extension 0
  prop dfs.namenode.datanode.registration.ip-hostname-check false
  prop dfs.namenode.fs-limits.min-block-size 0
  prop dfs.heartbeat.interval 1
  prop dfs.namenode.handler.count 5
  prop dfs.datanode.handler.count 5
  prop dfs.client.block.write.replace-datanode-on-failure.enable false
  # Fail fast on a dead NameNode (haadmin, Java clients): 1 connect retry.
  prop ipc.client.connect.max.retries 1
  prop ipc.client.connect.retry.interval 200
  prop dfs.client.failover.sleep.base.millis 100
  prop dfs.client.failover.sleep.max.millis 2000
}

# Writes DIR/<conf>/{core,hdfs}-site.xml and log4j.properties: the common
# settings plus the "name value" pairs given.
write_conf() {
  local conf=$dir/$1 k v
  shift
  mkdir -p "$conf"
  {
    echo '<?xml version="1.0"?><configuration>'
    prop fs.defaultFS "hdfs://$NS"
    prop hadoop.tmp.dir "$dir/tmp"
    echo '</configuration>'
  } >"$conf/core-site.xml"
  {
    echo '<?xml version="1.0"?><configuration>'
    common_props
    while [ $# -gt 0 ]; do
      k=$1 v=$2
      shift 2
      prop "$k" "$v"
    done
    echo '</configuration>'
  } >"$conf/hdfs-site.xml"
  cat >"$conf/log4j.properties" <<'L4J'
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{HH:mm:ss,SSS} %p %c{2}: %m%n
L4J
}

write_confs() {
  write_conf conf # clients, DataNode, DFSHAAdmin
  local n
  for n in 1 2 3; do
    local r=jn${n}rpc h=jn${n}http
    write_conf "jn$n/conf" \
      dfs.journalnode.rpc-address "127.0.0.1:${!r}" \
      dfs.journalnode.http-address "127.0.0.1:${!h}" \
      dfs.journalnode.edits.dir "$dir/jn$n/edits"
  done
  for n in 1 2; do
    write_conf "nn$n/conf" \
      dfs.ha.namenode.id "nn$n" \
      dfs.namenode.name.dir "file://$dir/nn$n/name"
  done
}

# Starts daemon $1 (pid file, log name) with conf dir $2 first on the
# classpath, heap options $3 (name of an array) and main class $4.
# Hadoop's http servers look for webapps/<name> on the classpath; the pyspark
# jars don't ship them, so empty folders (DIR/webroot) stand in (no web UI;
# JMX and the image/edits transfer servlets work).
spawn() {
  local name=$1 conf=$2 opts=$3 class=$4
  local -n o=$opts
  # stdin/stdout/stderr all redirected so the daemons never hold the caller's pipes.
  "$JAVA" "${o[@]}" -Dhadoop.log.dir="$dir/logs" \
    -cp "$dir/$conf:$dir/webroot:$HADOOP_HOME/lib/*" "$class" \
    </dev/null >>"$dir/logs/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

# Runs a one-shot Java tool with conf dir $1; output appended to log $2.
tool() {
  local conf=$1 logname=$2
  shift 2
  echo "---- $(date +%T) $*" >>"$dir/logs/$logname.log"
  "$JAVA" "${SMALL_OPTS[@]}" -Dhadoop.log.dir="$dir/logs" \
    -cp "$dir/$conf:$dir/webroot:$HADOOP_HOME/lib/*" "$@" \
    </dev/null >>"$dir/logs/$logname.log" 2>&1
}

haadmin() { tool conf haadmin "$HAADMIN" "$@"; }

listening() { # host:port accepts connections
  python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(); s.settimeout(1)
h, p = sys.argv[1].rsplit(":", 1)
s.connect((h, int(p)))
PY
}

# HA state of NameNode N from its JMX (active, standby, or "down").
nn_state() {
  local h=nn${1}http
  python3 - "http://127.0.0.1:${!h}/jmx?qry=Hadoop:service=NameNode,name=NameNodeStatus" <<'PY' 2>/dev/null || echo down
import json, sys, urllib.request
http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy
print(json.load(http.open(sys.argv[1], timeout=2))["beans"][0]["State"])
PY
}

# Ready = NameNode N is active, safe mode is off, a live DataNode with free
# space, and no block lacks a replica.
nn_ready() {
  local h=nn${1}http
  python3 - "http://127.0.0.1:${!h}/jmx?qry=Hadoop:service=NameNode,name=" <<'PY' 2>/dev/null
import json, sys, urllib.request
http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy
def bean(name):
    return json.load(http.open(sys.argv[1] + name, timeout=2))["beans"][0]
if bean("NameNodeStatus")["State"] != "active":
    sys.exit(1)
s = bean("FSNamesystemState")
ok = s["FSState"] == "Operational" and s["NumLiveDataNodes"] >= 1 and s["CapacityRemaining"] > 0
info = bean("NameNodeInfo")
sys.exit(0 if ok and info["NumberOfMissingBlocks"] == 0 and "Safe mode is ON" not in info["Safemode"] else 1)
PY
}

# Shows the logs and fails; a failed start also stops what it started.
fail() {
  tails
  if [ "$cmd" = start ]; then stop; fi
  die "$@"
}

# Waits until command "$2 ..." succeeds; $1 describes it. Fails when a
# daemon named in $WATCH dies or on timeout.
wait_for() {
  local what=$1 deadline=$((SECONDS + READY_TIMEOUT)) name
  shift
  until "$@"; do
    for name in $WATCH; do
      alive "$dir/$name.pid" || fail "$name exited while waiting for $what (logs in $dir/logs)"
    done
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${READY_TIMEOUT}s waiting for $what (logs in $dir/logs)"
    sleep 0.2
  done
}

active_nn() { # prints 1 or 2, or nothing
  local n
  for n in 1 2; do
    if [ "$(nn_state $n)" = active ]; then echo $n; return; fi
  done
}

report_active() {
  local n=$1 r=nn${1}rpc
  log "active: nn$n (127.0.0.1:${!r}), other: nn$((3 - n)) $(nn_state $((3 - n)))"
}

start_nn() { # N: start NameNode N and wait until its RPC port answers
  local n=$1 r=nn${1}rpc
  spawn "nn$n" "nn$n/conf" JAVA_OPTS $NN
  log "started nn$n pid $(cat "$dir/nn$n.pid")"
  WATCH="nn$n" wait_for "nn$n RPC on 127.0.0.1:${!r}" listening "127.0.0.1:${!r}"
  WATCH="nn$n" wait_for "nn$n JMX" eval '[ "$(nn_state '"$n"')" != down ]'
}

start() {
  [ -f "$HADOOP_HOME/.installed" ] ||
    die "Hadoop jars not found in $HADOOP_HOME; run $(dirname "$0")/install-hadoop.sh"
  command -v "$JAVA" >/dev/null || die "java not found (apt-get install openjdk-17-jre-headless)"
  command -v python3 >/dev/null || die "python3 not found"
  # HA moves the fsimage (bootstrapStandby) and the edits (JournalNode to
  # standby) over HTTP; those servlets go through Hadoop's ServletUtil, which
  # cannot load without commons-httpclient 3 (NoClassDefFoundError:
  # org/apache/commons/httpclient/URIException, HTTP 410).  A single-node
  # HDFS never uses them, so older installs of install-hadoop.sh lack it.
  compgen -G "$HADOOP_HOME/lib/commons-httpclient-*.jar" >/dev/null ||
    die "$HADOOP_HOME/lib lacks commons-httpclient-3.1.jar, which HA needs: list it in JARS of $(dirname "$0")/install-hadoop.sh, remove $HADOOP_HOME and run install-hadoop.sh again"
  local name
  for name in $DAEMONS; do
    if alive "$dir/$name.pid"; then
      die "an HDFS instance is already running in $dir (hdfs-ha.sh stop $dir)"
    fi
  done

  # 13 distinct free ports: hold all sockets open until all are chosen.
  python3 -c 'import socket
ss=[socket.socket() for _ in range(13)]
for s in ss: s.bind(("127.0.0.1",0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' >"$dir/ports"
  load_ports

  mkdir -p "$dir"/{logs,data} "$dir"/webroot/webapps/{hdfs,datanode,journal,secondary}
  write_confs
  local t0=$SECONDS

  local n
  for n in 1 2 3; do
    spawn "jn$n" "jn$n/conf" SMALL_OPTS $JN
  done
  log "started JournalNodes pids $(cat "$dir"/jn{1,2,3}.pid | tr '\n' ' ')"
  for n in 1 2 3; do
    local r=jn${n}rpc
    WATCH="jn1 jn2 jn3" wait_for "jn$n on 127.0.0.1:${!r}" listening "127.0.0.1:${!r}"
  done

  if [ ! -f "$dir/nn1/name/current/VERSION" ]; then
    log "formatting nn1 (and the JournalNodes)"
    tool nn1/conf format $NN -format -clusterId "$NS" -force -nonInteractive ||
      fail "format failed (logs in $dir/logs/format.log)"
  fi
  start_nn 1
  # The DataNode registers with both NameNodes; it retries nn2 until it is up.
  spawn dn conf JAVA_OPTS $DN
  log "started DataNode pid $(cat "$dir/dn.pid")"
  if [ ! -f "$dir/nn2/name/current/VERSION" ]; then
    log "bootstrapping nn2 from nn1"
    tool nn2/conf bootstrap $NN -bootstrapStandby -force -nonInteractive ||
      fail "bootstrapStandby failed (logs in $dir/logs/bootstrap.log)"
  fi
  start_nn 2
  haadmin -transitionToActive nn1 ||
    fail "haadmin -transitionToActive nn1 failed (logs in $dir/logs/haadmin.log)"
  WATCH="jn1 jn2 jn3 nn1 nn2 dn" wait_for "nn1 active with a live DataNode" nn_ready 1
  log "ready in $dir after $((SECONDS - t0))s"
  echo "$NS 127.0.0.1:$nn1rpc 127.0.0.1:$nn2rpc"
}

failover() {
  load_ports
  local from to
  from=$(active_nn)
  [ -n "$from" ] || die "no active NameNode (nn1 $(nn_state 1), nn2 $(nn_state 2))"
  to=$((3 - from))
  [ "$(nn_state $to)" = standby ] || die "nn$to is $(nn_state $to), not standby"
  haadmin -failover "nn$from" "nn$to" ||
    { tail -n 30 "$dir/logs/haadmin.log" >&2; die "haadmin -failover nn$from nn$to failed"; }
  WATCH="nn$to" wait_for "nn$to active with a live DataNode" nn_ready $to
  report_active $to
}

kill_active() {
  load_ports
  local from to pid
  from=$(active_nn)
  [ -n "$from" ] || die "no active NameNode (nn1 $(nn_state 1), nn2 $(nn_state 2))"
  to=$((3 - from))
  alive "$dir/nn$to.pid" || die "nn$to is not running; nothing to fail over to"
  pid=$(cat "$dir/nn$from.pid")
  kill -9 "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  rm -f "$dir/nn$from.pid"
  log "killed nn$from (pid $pid)"
  # nn$from cannot be asked to step down, so this fences it with
  # shell(/bin/true) (it is dead) before making nn$to active.
  haadmin -failover "nn$from" "nn$to" ||
    { tail -n 30 "$dir/logs/haadmin.log" >&2; die "haadmin -failover nn$from nn$to failed"; }
  WATCH="nn$to" wait_for "nn$to active with a live DataNode" nn_ready $to
  report_active $to
}

restart_nn() {
  load_ports
  local n=$1 a
  stop_daemons "nn$n"
  log "stopped nn$n"
  write_confs # in case DIR was moved; same ports
  start_nn "$n"
  a=$(active_nn)
  if [ -z "$a" ]; then
    log "no active NameNode: making nn$n active"
    haadmin -transitionToActive "nn$n" ||
      { tail -n 30 "$dir/logs/haadmin.log" >&2; die "haadmin -transitionToActive nn$n failed"; }
    a=$n
  fi
  WATCH="nn$a" wait_for "nn$a active with a live DataNode" nn_ready "$a"
  report_active "$a"
}

status() {
  load_ports
  echo "nn1 $(nn_state 1) nn2 $(nn_state 2)"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  failover) failover ;;
  kill-active) kill_active ;;
  restart-nn) restart_nn "$3" ;;
  status) status ;;
  *) usage ;;
esac

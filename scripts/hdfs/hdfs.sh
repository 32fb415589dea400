#!/usr/bin/env bash
# Run a throwaway single-node HDFS (Hadoop 2.7.3 NameNode + DataNode) on
# 127.0.0.1 for tests.  Jars come from install-hadoop.sh (same directory).
#
#   hdfs.sh start DIR   write configs into DIR, format (first time only), start
#                       NameNode + DataNode in the background, wait until the
#                       DataNode is live and safe mode is off, then print
#                       exactly one line on stdout: hdfs://127.0.0.1:RPCPORT
#   hdfs.sh stop DIR    kill both processes (pid files in DIR) and wait for exit
#
# Every port is a free one picked at start, so instances in different
# directories can run side by side.  Logs: DIR/logs; pids: DIR/*.pid; ports
# (rpc nn-http dn-xfer dn-ipc dn-http): DIR/ports.  Everything except the URL
# goes to stderr.  Restarting on an existing DIR keeps the data (new ports).
# Env: SLUICE_HADOOP_HOME (jars), SLUICE_HDFS_TIMEOUT (s, default 60), JAVA.
# Java CLI against it: java -cp "DIR/conf:$SLUICE_HADOOP_HOME/lib/*" \
#   org.apache.hadoop.fs.FsShell -fs URL -ls /   (FsShell insists on a
#   core-site.xml on the classpath, hence DIR/conf).
set -euo pipefail

HADOOP_HOME="${SLUICE_HADOOP_HOME:-$HOME/.cache/sluice/hadoop-2.7.3}"
JAVA="${JAVA:-java}"
READY_TIMEOUT="${SLUICE_HDFS_TIMEOUT:-60}"
# Modest heaps; serial GC and C1-only JIT start faster and use less memory.
JAVA_OPTS=(-Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  -Djava.net.preferIPv4Stack=true)

log() { echo "hdfs.sh: $*" >&2; }
die() { log "$*"; exit 1; }

usage() { die "usage: $0 start|stop DIR"; }

[ $# -eq 2 ] || usage
cmd=$1
if [ "$cmd" = start ]; then mkdir -p "$2"; fi
[ -d "$2" ] || exit 0 # stop on a missing DIR: nothing to do
dir=$(cd "$2" && pwd)

# True if pid file $1 names a live process started for this DIR (guards
# against acting on a recycled pid).
alive() {
  local cmdline
  [ -f "$1" ] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$(cat "$1")/cmdline") || return 1
  [[ "$cmdline" == *" -Dhadoop.log.dir=$dir/logs "* ]]
}

stop() {
  local pidfile pids=() pid i running
  for pidfile in "$dir/datanode.pid" "$dir/namenode.pid"; do
    if alive "$pidfile"; then pids+=("$(cat "$pidfile")"); fi
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
  rm -f "$dir/datanode.pid" "$dir/namenode.pid"
}

tails() {
  local f
  for f in "$dir"/logs/*.log; do
    [ -f "$f" ] || continue
    echo "===== $f (last 40 lines) =====" >&2
    tail -n 40 "$f" >&2
  done
}

prop() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }

start() {
  [ -f "$HADOOP_HOME/.installed" ] ||
    die "Hadoop jars not found in $HADOOP_HOME; run $(dirname "$0")/install-hadoop.sh"
  command -v "$JAVA" >/dev/null || die "java not found (apt-get install openjdk-17-jre-headless)"
  command -v python3 >/dev/null || die "python3 not found"
  if alive "$dir/namenode.pid" || alive "$dir/datanode.pid"; then
    die "an HDFS instance is already running in $dir (hdfs.sh stop $dir)"
  fi

  # Five distinct free ports: hold all sockets open until all are chosen.
  local ports rpc nnhttp xfer ipc dnhttp
  ports=$(python3 -c 'import socket
ss=[socket.socket() for _ in range(5)]
for s in ss: s.bind(("127.0.0.1",0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
  read -r rpc nnhttp xfer ipc dnhttp <<<"$ports"

  mkdir -p "$dir"/{conf,logs,name,data} "$dir"/webroot/webapps/{hdfs,datanode,secondary}
  # Hadoop's http servers look for webapps/<name> on the classpath; the pyspark
  # jars don't ship them, so empty folders stand in (no web UI, JMX still works).
  {
    echo '<?xml version="1.0"?><configuration>'
    prop fs.defaultFS "hdfs://127.0.0.1:$rpc"
    prop hadoop.tmp.dir "$dir/tmp"
    echo '</configuration>'
  } >"$dir/conf/core-site.xml"
  {
    echo '<?xml version="1.0"?><configuration>'
    prop dfs.namenode.name.dir "file://$dir/name"
    prop dfs.datanode.data.dir "file://$dir/data"
    prop dfs.namenode.rpc-address "127.0.0.1:$rpc"
    prop dfs.namenode.http-address "127.0.0.1:$nnhttp"
    prop dfs.namenode.secondary.http-address "127.0.0.1:0"
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
    echo '</configuration>'
  } >"$dir/conf/hdfs-site.xml"
  cat >"$dir/conf/log4j.properties" <<'L4J'
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{HH:mm:ss,SSS} %p %c{2}: %m%n
L4J
  echo "$rpc $nnhttp $xfer $ipc $dnhttp" >"$dir/ports"

  local cp="$dir/conf:$dir/webroot:$HADOOP_HOME/lib/*"
  local run=("$JAVA" "${JAVA_OPTS[@]}" -Dhadoop.log.dir="$dir/logs" -cp "$cp")

  if [ ! -f "$dir/name/current/VERSION" ]; then
    log "formatting NameNode in $dir/name"
    "${run[@]}" org.apache.hadoop.hdfs.server.namenode.NameNode -format -nonInteractive \
      </dev/null >"$dir/logs/format.log" 2>&1 || { tails; die "format failed"; }
  fi

  # stdin/stdout/stderr all redirected so the daemons never hold the caller's pipes.
  "${run[@]}" org.apache.hadoop.hdfs.server.namenode.NameNode \
    </dev/null >"$dir/logs/namenode.log" 2>&1 &
  local nn=$!
  echo $nn >"$dir/namenode.pid"
  "${run[@]}" org.apache.hadoop.hdfs.server.datanode.DataNode \
    </dev/null >"$dir/logs/datanode.log" 2>&1 &
  local dn=$!
  echo $dn >"$dir/datanode.pid"
  log "started NameNode pid $nn, DataNode pid $dn"

  # Ready = safe mode off, a live DataNode with free space, and (on a restart
  # with old data) its block report processed, i.e. no block lacks a replica.
  local jmx="http://127.0.0.1:$nnhttp/jmx?qry=Hadoop:service=NameNode,name="
  local deadline=$((SECONDS + READY_TIMEOUT))
  until python3 - "$jmx" <<'PY' 2>/dev/null
import json, sys, urllib.request
http = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy
def bean(name):
    return json.load(http.open(sys.argv[1] + name, timeout=2))["beans"][0]
s = bean("FSNamesystemState")
ok = s["FSState"] == "Operational" and s["NumLiveDataNodes"] >= 1 and s["CapacityRemaining"] > 0
sys.exit(0 if ok and bean("NameNodeInfo")["NumberOfMissingBlocks"] == 0 else 1)
PY
  do
    if ! kill -0 $nn 2>/dev/null || ! kill -0 $dn 2>/dev/null; then
      tails; stop; die "a daemon exited during startup (logs in $dir/logs)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tails; stop; die "HDFS not ready after ${READY_TIMEOUT}s (logs in $dir/logs)"
    fi
    sleep 0.2
  done
  log "ready in $dir"
  echo "hdfs://127.0.0.1:$rpc"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac

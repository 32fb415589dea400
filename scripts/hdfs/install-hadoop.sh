#!/usr/bin/env bash
# Install the Apache Hadoop 2.7.3 jars needed to run a single-node HDFS
# (NameNode + DataNode, see hdfs.sh) into a cache directory:
#   ${SLUICE_HADOOP_HOME:-$HOME/.cache/sluice/hadoop-2.7.3}/lib/*.jar
#
# Why this odd source: no Apache/Maven download is reachable from our build
# machines, but PyPI is, and the pyspark 2.4.8 *source* package bundles the
# stock Hadoop 2.7.3 jars in deps/jars/.  We download it with pip (in a
# throwaway venv with setuptools+wheel, because pip runs the sdist's setup.py
# for metadata and with build isolation that download fails), check its
# sha256, and unpack only the ~24 MB of jars HDFS needs (found by trial: they
# start both daemons and serve mkdir/put/append/cat/mv/rm/fsck; javax.ws.rs is
# needed by the NameNode's audit logger.  Java 17 needs no extra flags).
#
# Idempotent: does nothing if the marker file is already there.
# Needs: python3 with venv (Debian: python3-venv), tar, and java to run HDFS.
set -euo pipefail

DEST="${SLUICE_HADOOP_HOME:-$HOME/.cache/sluice/hadoop-2.7.3}"
PYSPARK_VERSION=2.4.8
PYSPARK=pyspark-$PYSPARK_VERSION
SHA256=3a19b71b8dc8dd91ebc943604a05e1ab01bce052456d42937035632d852d78dc
JARS="
  hadoop-hdfs-2.7.3.jar hadoop-common-2.7.3.jar hadoop-auth-2.7.3.jar
  guava-14.0.1.jar protobuf-java-2.5.0.jar htrace-core-3.1.0-incubating.jar
  commons-cli-1.2.jar commons-codec-1.10.jar commons-collections-3.2.2.jar
  commons-configuration-1.6.jar commons-io-2.4.jar commons-lang-2.6.jar
  commons-logging-1.1.3.jar log4j-1.2.17.jar slf4j-api-1.7.16.jar
  slf4j-log4j12-1.7.16.jar jackson-core-asl-1.9.13.jar
  jackson-mapper-asl-1.9.13.jar jetty-6.1.26.jar jetty-util-6.1.26.jar
  javax.servlet-api-3.1.0.jar javax.ws.rs-api-2.0.1.jar netty-all-4.1.47.Final.jar
  commons-httpclient-3.1.jar
"

log() { echo "install-hadoop.sh: $*" >&2; }

if [ -f "$DEST/.installed" ]; then
  complete=1
  for j in $JARS; do [ -f "$DEST/lib/$j" ] || complete=; done
  if [ -n "$complete" ]; then
    log "already installed in $DEST"
    exit 0
  fi
  # An install from before a jar was added (the NameNode HA scripts need
  # commons-httpclient): start over rather than patch it.
  log "$DEST lacks jars added since it was installed: reinstalling"
  rm -rf "$DEST"
fi

missing=""
command -v python3 >/dev/null || missing="$missing python3"
python3 -c 'import venv, ensurepip' 2>/dev/null || missing="$missing python3-venv"
command -v tar >/dev/null || missing="$missing tar"
command -v java >/dev/null || log "warning: java not found; hdfs.sh needs it (apt-get install openjdk-17-jre-headless)"
if [ -n "$missing" ]; then
  log "missing:$missing (Debian: apt-get install$missing)"
  exit 1
fi

tmp=$(mktemp -d)
stage="$DEST.partial.$$"
trap 'rm -rf "$tmp" "$stage"' EXIT

log "downloading $PYSPARK sdist from PyPI (~220 MB)"
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q setuptools wheel
"$tmp/venv/bin/pip" download -q --no-deps --no-build-isolation -d "$tmp" "pyspark==$PYSPARK_VERSION"
echo "$SHA256  $tmp/$PYSPARK.tar.gz" | sha256sum -c --quiet - >&2

log "extracting jars"
mkdir -p "$tmp/x"
members=()
for j in $JARS; do members+=("$PYSPARK/deps/jars/$j"); done
tar -xzf "$tmp/$PYSPARK.tar.gz" -C "$tmp/x" "${members[@]}"

# Assemble next to DEST and rename into place, so a concurrent or interrupted
# run never leaves a half-filled DEST behind.
mkdir -p "$stage/lib"
mv "$tmp/x/$PYSPARK/deps/jars/"*.jar "$stage/lib/"
echo "$PYSPARK deps/jars" >"$stage/.installed"
if ! mv -T "$stage" "$DEST" 2>/dev/null && [ ! -f "$DEST/.installed" ]; then
  log "could not create $DEST (remove it if it is a leftover)"
  exit 1
fi
log "installed $(ls "$DEST/lib" | wc -l) jars into $DEST"

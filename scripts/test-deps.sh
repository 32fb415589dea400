#!/usr/bin/env bash
# Everything the test suite needs beyond a Rust toolchain, installed once:
# `make test` runs this first, and so does CI (.ci/run is this plus
# `make test`). Idempotent, and quick when everything is present: each step
# checks before it installs.
#
# What and why:
# - the wasm32-wasip2 target: transforms are WebAssembly components;
# - tansu (crates.io), a Kafka-protocol broker: the Kafka tests run against
#   it (no Apache Kafka distribution can be installed here); built with
#   SQLite storage (the embedded default) and PostgreSQL storage (several
#   stateless brokers over one store), about ten minutes the first time;
# - kafka-python, fastavro (+ codecs): independent Kafka and Avro readers;
# - Java and Hadoop 2.7.3's jars (from PyPI's pyspark 2.4.8): a real HDFS;
# - osmem-server: an OpenSearch-API emulator (no OpenSearch can be installed);
# - Prometheus and Chromium (Debian), playwright-core (npm): observability
#   and browser tests; PostgreSQL (Debian): the store shared by brokers;
# - componentize-py (PyPI) and componentize-js (npm): the toolchains of
#   Python and JavaScript transforms (scripts/guest-toolchains.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1mtest-deps:\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}

test -d ../shared/fixtures || { echo "missing ../shared/fixtures (the shared test fixtures beside the repository)" >&2; exit 1; }

export PATH="$HOME/.cargo/bin:$PATH"
rustup target list --installed | grep -qx wasm32-wasip2 || { say "adding the wasm32-wasip2 target"; rustup target add wasm32-wasip2; }

# Debian packages: Java (HDFS), venv (the Hadoop download), OpenSSL headers
# (the OpenSearch client), Prometheus, Chromium, PostgreSQL, Node.js.
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev pkg-config)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
{ command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; } || missing+=(postgresql)
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then say "installing ${missing[*]}"; apt_install "${missing[@]}"; fi

# tansu with the storage engines the tests use.
tansu_features() {
  python3 - <<'PY' 2>/dev/null
import json, os
installs = json.load(open(os.path.expanduser("~/.cargo/.crates2.json")))["installs"]
print(" ".join(next((v["features"] for k, v in installs.items() if k.startswith("tansu 0.6.0")), [])))
PY
}
if ! command -v tansu >/dev/null || ! tansu_features | grep -qw postgres; then
  say "building tansu 0.6.0 (a Kafka-protocol broker; about ten minutes, once)"
  cargo install tansu --version 0.6.0 --locked --features dynostore,libsql,postgres
fi

python3 -c 'import kafka' 2>/dev/null || { say "installing kafka-python"; pip_install 'kafka-python==3.0.12'; }
python3 -c 'import fastavro, cramjam, backports.zstd' 2>/dev/null || {
  say "installing fastavro"
  pip_install 'fastavro==1.13.1' 'backports.zstd==1.8.0; python_version < "3.14"' 'cramjam==2.14.0'
}
python3 -c 'import osmem_server' 2>/dev/null || { say "installing osmem-server"; pip_install 'osmem-server==0.1.6'; }
./scripts/hdfs/install-hadoop.sh

# The dashboard's build and browser tests (chart library, playwright-core).
if [ ! -d web-ui/node_modules ] || [ web-ui/package-lock.json -nt web-ui/node_modules ]; then
  say "installing the dashboard's npm packages"
  (cd web-ui && npm ci --no-audit --no-fund --loglevel=error)
fi
# Python and JavaScript transforms: componentize-py and componentize-js.
./scripts/guest-toolchains.sh
say "ready"

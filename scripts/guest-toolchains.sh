#!/usr/bin/env bash
# The toolchains that build Python and JavaScript transforms into
# components, installed once (quick when present):
# - componentize-py 0.25.1 (PyPI): Python, with CPython compiled to wasm;
# - componentize-js 0.23.0 (npm, into guest-sdk/js/node_modules):
#   JavaScript, on the StarlingMonkey engine.
# `make guests` and `make test` run this; a project made by `sluice new`
# has its own setup.sh instead.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1mguest-toolchains:\033[0m %s\n' "$*"; }
pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}

if ! componentize-py --version 2>/dev/null | grep -q '0\.25\.1'; then
  say "installing componentize-py 0.25.1"
  pip_install 'componentize-py==0.25.1'
  # pyenv makes a command's shim only when told to (`python3 -m pip` does
  # not); elsewhere the scripts folder is already on PATH, or made so here.
  if command -v pyenv >/dev/null; then pyenv rehash; fi
  hash -r
fi
# `sluice build` also looks in python3's scripts folders when the command
# is not on PATH.
python3 - <<'PY' || { echo "componentize-py was installed but is not where python3 puts commands" >&2; exit 1; }
import os, shutil, site, sysconfig
places = [sysconfig.get_path("scripts"), os.path.join(site.USER_BASE, "bin")]
assert shutil.which("componentize-py") or any(os.access(os.path.join(p, "componentize-py"), os.X_OK) for p in places)
PY
if [ ! -x guest-sdk/js/node_modules/.bin/componentize-js ] ||
   [ guest-sdk/js/package-lock.json -nt guest-sdk/js/node_modules ]; then
  say "installing componentize-js (npm)"
  (cd guest-sdk/js && npm ci --no-audit --no-fund --loglevel=error)
fi

#!/usr/bin/env sh
# Installs what `sluice build` needs for a Python transform: componentize-py,
# in a virtual environment of this project (.venv).
set -eu
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check componentize-py==0.25.1
echo "ready: sluice build"

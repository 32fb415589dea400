#!/usr/bin/env sh
# Installs what `sluice build` needs for a JavaScript transform:
# componentize-js, into this project's node_modules.
set -eu
cd "$(dirname "$0")"
npm install --no-audit --no-fund --loglevel=error
echo "ready: sluice build"

#!/usr/bin/env sh
# Installs what `sluice build` needs for a Rust transform: the
# wasm32-wasip2 target.
set -eu
rustup target add wasm32-wasip2
echo "ready: sluice build"

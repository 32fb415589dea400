#!/usr/bin/env bash
# The Kafka half of `make demo`: start the engine with its embedded broker,
# POST the fixture access log to REST ingest, wait until every line is a
# document in data/weblogs-kafka.ndjson, then stop the engine with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

sluice=./target/release/sluice
port=${SLUICE_DEMO_PORT:-8080}
log=../shared/fixtures/logs/apache_combined_sample.log
out=data/weblogs-kafka.ndjson
export SLUICE_API_TOKEN=${SLUICE_API_TOKEN:-demo-token-change-me}
export SLUICE_LOG=${SLUICE_LOG:-warn,sluice::kafka=info}

before=$( [ -f "$out" ] && wc -l < "$out" || echo 0 )
"$sluice" run pipelines/weblogs-kafka.toml --listen "127.0.0.1:$port" --data-dir data &
engine=$!
trap 'kill "$engine" 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.2
done

echo "POST /ingest/weblogs ($(wc -l < "$log") lines of $log):"
curl -sS --fail-with-body -H "Authorization: Bearer $SLUICE_API_TOKEN" -H 'Content-Type: text/plain' \
  --data-binary "@$log" "http://127.0.0.1:$port/ingest/weblogs" | head -c 160
echo " …"

expected=$(( before + $(grep -c . "$log") ))
for _ in $(seq 1 150); do
  [ -f "$out" ] && [ "$(wc -l < "$out")" -ge "$expected" ] && break
  sleep 0.2
done
kill -TERM "$engine"
wait "$engine"
trap - EXIT
echo "Documents from Kafka: $out ($(wc -l < "$out") lines)"

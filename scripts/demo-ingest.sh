#!/usr/bin/env bash
# The Kafka half of `make demo`: start the engine with its embedded broker
# and lake, POST the fixture access log and the fixture images (plus one
# broken image) to REST ingest, wait until every line is a document and
# every image is in an Avro file of the lake, stop the engine with SIGTERM,
# then read the lake back with `sluice avro`. The same lines also go through
# log-parse → enrich into a search index: a real OpenSearch when
# SLUICE_OPENSEARCH_URL is set, otherwise osmem-server, an in-memory
# OpenSearch-API emulator (not OpenSearch), started here on a free port.
set -euo pipefail
cd "$(dirname "$0")/.."

sluice=${SLUICE_BIN:-./target/release/sluice}
port=${SLUICE_DEMO_PORT:-8080}
log=../shared/fixtures/logs/apache_combined_sample.log
images=(../shared/fixtures/images/*)
out=data/weblogs-kafka.ndjson
lake=data/lake/topics/images
export SLUICE_API_TOKEN=${SLUICE_API_TOKEN:-demo-token-change-me}
export SLUICE_LOG=${SLUICE_LOG:-warn,sluice::kafka=info}
auth=(-H "Authorization: Bearer $SLUICE_API_TOKEN")

images_in_lake() { "$sluice" avro cat "$lake" 2>/dev/null | grep -c . || true; }

# The search side of weblogs-to-search.toml.
search_url=${SLUICE_OPENSEARCH_URL:-}
search_label="OpenSearch at $search_url"
emulator=
if [ -z "$search_url" ]; then
  python3 -c 'import osmem_server' 2>/dev/null ||
    python3 -m pip install --quiet 'osmem-server==0.1.6' 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages 'osmem-server==0.1.6' 2>/dev/null || true
  if binary=$(python3 -c 'import osmem_server; print(osmem_server.resolve_binary())' 2>/dev/null); then
    ready=$(mktemp)
    "$binary" -addr 127.0.0.1:0 -no-ja -no-stdin-watch > "$ready" 2>/dev/null &
    emulator=$!
    for _ in $(seq 1 50); do grep -q '"url"' "$ready" && break; sleep 0.1; done
    search_url=$(grep -o '"url":"[^"]*"' "$ready" | cut -d'"' -f4)
    rm -f "$ready"
    search_label="osmem-server at $search_url (an OpenSearch-API emulator, in memory; not OpenSearch)"
  fi
fi
pipelines=(pipelines/weblogs-kafka.toml pipelines/images-to-lake.toml)
if [ -n "$search_url" ]; then
  # The shipped pipeline, pointed at this cluster (relative paths inside
  # resolve from pipelines/, so the copy stays there).
  search_pipeline=pipelines/.demo-weblogs-to-search.toml
  sed "s|^hosts = .*|hosts = [\"$search_url\"]|" pipelines/weblogs-to-search.toml > "$search_pipeline"
  pipelines+=("$search_pipeline")
  echo "Search: $search_label"
else
  echo "Search: skipped (no SLUICE_OPENSEARCH_URL, and osmem-server could not be installed)"
fi
search_count() { curl -sf "$search_url/weblogs-*/_count" | grep -o '"count":[0-9]*' | cut -d: -f2 || echo 0; }

before=$( [ -f "$out" ] && wc -l < "$out" || echo 0 )
mkdir -p data
engine_log=data/engine.log
"$sluice" run "${pipelines[@]}" --listen "127.0.0.1:$port" --data-dir data 2> >(tee "$engine_log" >&2) &
engine=$!
trap 'kill "$engine" ${emulator:+"$emulator"} 2>/dev/null || true' EXIT

# The engine answers /health with 503 while it starts (broker, modules,
# pipelines) and 200 once ready. A cold start on a busy machine can take a
# while; an engine that exits, or never gets ready, is shown with its log.
ready_within=${SLUICE_DEMO_READY_SECONDS:-300}
started=$SECONDS
until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do
  if ! kill -0 "$engine" 2>/dev/null; then
    wait "$engine" && status=0 || status=$?
    echo "The engine exited (status $status) before it was ready. Its log ($engine_log):" >&2
    tail -n 40 "$engine_log" | sed 's/^/  /' >&2
    exit 1
  fi
  if (( SECONDS - started > ready_within )); then
    echo "The engine was not ready after $ready_within s. /health says:" >&2
    curl -s "http://127.0.0.1:$port/health" >&2 || true
    echo; echo "Its log ($engine_log):" >&2
    tail -n 40 "$engine_log" | sed 's/^/  /' >&2
    exit 1
  fi
  sleep 0.2
done

echo "POST /ingest/weblogs ($(wc -l < "$log") lines of $log):"
curl -sS --fail-with-body "${auth[@]}" -H 'Content-Type: text/plain' \
  --data-binary "@$log" "http://127.0.0.1:$port/ingest/weblogs" | cut -c1-160
echo " …"

# A PNG cut short, to show what happens to a broken image.
broken=$(mktemp --suffix=.png)
head -c 2000 ../shared/fixtures/images/chelsea.png > "$broken"
form=()
for image in "${images[@]}"; do form+=(-F "file=@$image"); done
form+=(-F "file=@$broken;filename=broken.png;type=image/png")
echo "POST /ingest/images (${#images[@]} fixture images and broken.png, multipart):"
curl -sS --fail-with-body "${auth[@]}" "${form[@]}" "http://127.0.0.1:$port/ingest/images" | cut -c1-160
echo " …"
rm -f "$broken"

expected=$(( before + $(grep -c . "$log") ))
documents() { [ -f "$out" ] && wc -l < "$out" || echo 0; }
delivered() {
  [ "$(documents)" -ge "$expected" ] && [ "$(images_in_lake)" -ge "${#images[@]}" ] &&
    { [ -z "$search_url" ] || [ "$(search_count)" -ge "$(grep -c . "$log")" ]; }
}
started=$SECONDS
until delivered; do
  if (( SECONDS - started > 120 )); then
    echo "Not everything arrived within 120 s: $(documents)/$expected documents, $(images_in_lake)/${#images[@]} images in the lake${search_url:+, $(search_count) indexed}." >&2
    echo "The engine's log ($engine_log):" >&2
    tail -n 40 "$engine_log" | sed 's/^/  /' >&2
    exit 1
  fi
  sleep 0.2
done
kill -TERM "$engine"
wait "$engine"
echo "Documents from Kafka: $out ($(wc -l < "$out") lines)"
if [ -n "$search_url" ]; then
  echo
  echo "Indexed, parsed and enriched, in $search_label:"
  echo "  weblogs-* holds $(search_count) documents (ids from topic-partition-offset: a replay overwrites)"
  bots=$(curl -sf "$search_url/weblogs-*/_count?q=user_agent.bot:true" | grep -o '"count":[0-9]*' | cut -d: -f2)
  echo "  of which $bots from bots (enrich's user_agent.bot)"
  echo "  one of them, from $search_url/weblogs-*/_search?q=client.geo.country_iso_code:US&size=1:"
  curl -sf "$search_url/weblogs-*/_search?q=client.geo.country_iso_code:US&size=1" |
    python3 -c 'import json,sys; h=json.load(sys.stdin)["hits"]["hits"]; print(json.dumps(h[0]["_source"])[:400] if h else "(none)")' |
    sed 's/^/    /'
  [ -n "$emulator" ] && echo "  (the emulator stops with this script; set SLUICE_OPENSEARCH_URL to use a real cluster)"
fi
[ -n "$emulator" ] && kill "$emulator" 2>/dev/null || true
rm -f pipelines/.demo-weblogs-to-search.toml
trap - EXIT
echo
echo "Images in the lake (Avro, zstd):"
find "$lake" -name '*.avro' | sort | sed 's/^/  /'
echo "Records, as \`sluice avro cat $lake\` prints them (bytes shown as length + SHA-256):"
"$sluice" avro cat "$lake" | cut -c1-240 | sed 's/^/  /'
echo "Images back out, byte-exact (\`sluice avro extract $lake --out data/extracted\`):"
"$sluice" avro extract "$lake" --out data/extracted >/dev/null
for image in "${images[@]}"; do
  name=$(basename "$image")
  cmp -s "$image" "data/extracted/$name" && echo "  data/extracted/$name: identical to the original"
done
echo "Broken image, dead-lettered with its reason:"
grep -o '"kind":"[^"]*","message":"[^"]*"' data/images-to-lake.dead-letter.ndjson | sed 's/^/  /' || true

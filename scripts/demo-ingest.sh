#!/usr/bin/env bash
# The Kafka half of `make demo`: start the engine with its embedded broker
# and lake, POST the fixture access log and the fixture images (plus one
# broken image) to REST ingest, wait until every line is a document and
# every image is in an Avro file of the lake, stop the engine with SIGTERM,
# then read the lake back with `sluice avro`.
set -euo pipefail
cd "$(dirname "$0")/.."

sluice=./target/release/sluice
port=${SLUICE_DEMO_PORT:-8080}
log=../shared/fixtures/logs/apache_combined_sample.log
images=(../shared/fixtures/images/*)
out=data/weblogs-kafka.ndjson
lake=data/lake/topics/images
export SLUICE_API_TOKEN=${SLUICE_API_TOKEN:-demo-token-change-me}
export SLUICE_LOG=${SLUICE_LOG:-warn,sluice::kafka=info}
auth=(-H "Authorization: Bearer $SLUICE_API_TOKEN")

images_in_lake() { "$sluice" avro cat "$lake" 2>/dev/null | grep -c . || true; }

before=$( [ -f "$out" ] && wc -l < "$out" || echo 0 )
"$sluice" run pipelines/weblogs-kafka.toml pipelines/images-to-lake.toml \
  --listen "127.0.0.1:$port" --data-dir data &
engine=$!
trap 'kill "$engine" 2>/dev/null || true' EXIT

for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
  sleep 0.2
done

echo "POST /ingest/weblogs ($(wc -l < "$log") lines of $log):"
curl -sS --fail-with-body "${auth[@]}" -H 'Content-Type: text/plain' \
  --data-binary "@$log" "http://127.0.0.1:$port/ingest/weblogs" | head -c 160
echo " …"

# A PNG cut short, to show what happens to a broken image.
broken=$(mktemp --suffix=.png)
head -c 2000 ../shared/fixtures/images/chelsea.png > "$broken"
form=()
for image in "${images[@]}"; do form+=(-F "file=@$image"); done
form+=(-F "file=@$broken;filename=broken.png;type=image/png")
echo "POST /ingest/images (${#images[@]} fixture images and broken.png, multipart):"
curl -sS --fail-with-body "${auth[@]}" "${form[@]}" "http://127.0.0.1:$port/ingest/images" | head -c 160
echo " …"
rm -f "$broken"

expected=$(( before + $(grep -c . "$log") ))
for _ in $(seq 1 150); do
  [ -f "$out" ] && [ "$(wc -l < "$out")" -ge "$expected" ] && [ "$(images_in_lake)" -ge "${#images[@]}" ] && break
  sleep 0.2
done
kill -TERM "$engine"
wait "$engine"
trap - EXIT
echo "Documents from Kafka: $out ($(wc -l < "$out") lines)"
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

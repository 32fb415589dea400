# The two commands a newcomer needs: `make demo` and `make test`.

CARGO ?= cargo
# Guest components are built into their own target directory, the same one
# the test suite's build script uses, so both share one build.
WASM_TARGET_DIR := target/wasm
MODULES := $(WASM_TARGET_DIR)/wasm32-wasip2/release
# The engine, wherever cargo puts it (CARGO_TARGET_DIR is honoured).
SLUICE := $(or $(CARGO_TARGET_DIR),target)/release/sluice

.PHONY: demo serve test test-deps transforms guests build ui bench bench-quick clean-data

## Build the example transforms into $(MODULES)/*.wasm
transforms:
	rustup target add wasm32-wasip2
	cd pipelines/transforms && $(CARGO) build --release --target wasm32-wasip2 --target-dir ../../$(WASM_TARGET_DIR)

## The Python and JavaScript example transforms (redact, route; after the
## Rust ones, which the shipped pipeline runs before them), with
## their toolchains (componentize-py, componentize-js)
guests: transforms build
	./scripts/guest-toolchains.sh
	for project in pipelines/transforms/redact pipelines/transforms/route; do \
	  PATH="$(CURDIR)/guest-sdk/js/node_modules/.bin:$$PATH" $(SLUICE) build --dir $$project || exit 1; \
	done

build:
	$(CARGO) build --release -p sluice

## The web dashboard: web-ui/dist, served by the engine (chart library from npm, no CDN)
ui:
	cd web-ui && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; } && npm run build

## The engine with its API and dashboard on http://127.0.0.1:8080/, running the demo pipelines
serve: transforms build ui
	$(SLUICE) serve --listen 127.0.0.1:8080 pipelines/weblogs-file.toml pipelines/apilogs-file.toml

## Run the demo pipelines on the shared fixtures; output goes to data/
demo: transforms build clean-data
	$(SLUICE) run --listen 127.0.0.1:0 pipelines/weblogs-file.toml pipelines/apilogs-file.toml
	@echo
	SLUICE_BIN=$(SLUICE) ./scripts/demo-ingest.sh
	@echo
	@echo "Parsed documents:  data/weblogs.ndjson, data/apilogs.ndjson, data/weblogs-kafka.ndjson"
	@echo "Images:            data/lake/topics/images/ (Avro), data/extracted/ (back out)"
	@echo "Dead letters:      data/*.dead-letter.ndjson (absent when every line parsed)"
	@echo "First document:"
	@head -n 1 data/weblogs.ndjson
	@echo
	@echo "To watch pipelines live: make serve, then open http://127.0.0.1:8080/ (the API token is printed at start)"

clean-data:
	rm -f data/weblogs*.ndjson data/apilogs*.ndjson
	rm -rf data/kafka data/lake data/extracted data/images-to-lake.dead-letter.ndjson data/weblogs-to-search.dead-letter.ndjson

## What the tests need beyond Rust (brokers, HDFS, browsers…); quick when present
test-deps:
	./scripts/test-deps.sh

## Every test: unit, golden, end-to-end (builds the guest components first)
test: test-deps ui
	$(CARGO) test --workspace
	cd pipelines/transforms && $(CARGO) test --target-dir ../../$(WASM_TARGET_DIR)
	python3 -m unittest discover -s guest-sdk/python/tests

## Benchmarks: wasm vs native, sandbox on vs off, instantiation; Kafka
## pipeline vs consume/produce baselines; REST ingest vs kcat; restart
## time and memory of the engine on its embedded defaults; a cluster of
## engines (throughput with 1-3 engines, state convergence, failover);
## transforms in Rust, Python and JavaScript side by side
bench:
	$(CARGO) bench -p sluice-tests --bench quick
	$(CARGO) bench -p sluice-tests --bench transform
	$(CARGO) bench -p sluice-tests --bench kafka
	$(CARGO) bench -p sluice-tests --bench lake
	$(CARGO) bench -p sluice-tests --bench search
	$(CARGO) bench -p sluice-tests --bench engine
	$(CARGO) bench -p sluice-tests --bench cluster
	$(CARGO) bench -p sluice-tests --bench guests

## The WASM stage's key numbers in under 3 minutes, side by side in one run
## (wasm vs native, sandbox on vs off, instantiate, file → log-parse → file
## with 1 and 2 workers); writes target/bench/summary.json
bench-quick:
	$(CARGO) bench -p sluice-tests --bench quick

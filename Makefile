# Two commands: `make run` and `make test`. Both install what is missing first.
CARGO ?= cargo

.PHONY: run test deps build check lint bench clean

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --release -p agent

# The embedded defaults: test camera + microphone, store in ./data, HTTP on
# http://127.0.0.1:8080. Pass CONFIG=agent.toml to use a file.
run: build
	./target/release/edge-agent run $(if $(CONFIG),-c $(CONFIG),)

test:
	@scripts/install-deps.sh --test
	$(CARGO) build -p agent
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Issue 6's figures come from the release binary: upload of a stored hour
# beside curl, frame-to-wire latency, then the gateway's ingest on one core
# (about 6 minutes).
bench:
	@scripts/install-deps.sh --bench
	$(CARGO) bench -p fragmenter
	$(CARGO) build --release -p agent
	./target/release/edge-agent -q bench upload
	./target/release/edge-agent -q bench latency
	./target/release/edge-agent -q bench ingest

clean:
	$(CARGO) clean

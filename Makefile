# Two commands: `make run` and `make test`. Both install what is missing first.
CARGO ?= cargo
DURATION ?= 30s

.PHONY: run test deps build check lint bench clean

deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build --release -p agent

# Until `edge-agent run` lands (store + web UI), this captures the test camera
# and microphone into ./data as Matroska.
run: build
	@mkdir -p data
	./target/release/edge-agent capture --source test --duration $(DURATION) -o data/test-capture.mkv

test: deps
	$(CARGO) build -p agent
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: deps
	$(CARGO) bench -p fragmenter

clean:
	$(CARGO) clean

# Two commands: `make run` and `make test`. Both install what is missing first.
CARGO ?= cargo

.PHONY: run test deps build check lint bench clean fuzz

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

# Coverage-guided fuzzing of the PutMedia ingest (agent/fuzz, README "Fuzzing"):
# FUZZ_SECONDS per target, seeds written by the targets themselves, findings
# in agent/fuzz/artifacts/. Needs the nightly toolchain; cargo-fuzz is
# installed when missing.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= ingest_putmedia mkv_reader
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	cd agent && for t in $(FUZZ_TARGETS); do \
		EDGE_AGENT_FUZZ_SEEDS=$(CURDIR)/agent/fuzz/corpus/$$t \
			$(CARGO) +nightly fuzz run --sanitizer none $$t -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

clean:
	$(CARGO) clean

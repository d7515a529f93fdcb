# pg_persona: the two commands of the README, and their parts.
#   make demo   install what is missing, build, install the extension, start the local cluster,
#               load the demo data and run every SQL function on it
#   make test   the whole test suite: lint (rustfmt, clippy), core unit tests, #[pg_test] tests,
#               SQL regression tests, the HTML report in a browser, concurrency and crash tests
SHELL := /bin/bash
# The PostgreSQL to build, install and test against; the scripts read the same two variables
# (scripts/pg.sh). Another version: make test PG_MAJOR=16
PG_MAJOR ?= 15
PG_CONFIG ?= /usr/lib/postgresql/$(PG_MAJOR)/bin/pg_config
export PG_MAJOR PG_CONFIG
export CARGO_PGRX_DISABLE_GC_SECTIONS_WORKAROUND := 1

.PHONY: setup build install start demo test lint test-core test-pg test-regress test-report test-stress bench sentiment finetune-sst2 clean

setup:
	bash scripts/setup.sh

build: setup
	cargo build --release --workspace --no-default-features --features "pg_persona/pg$(PG_MAJOR)"

# Stops the cluster while the shared library is replaced, then starts it again.
install: setup
	bash scripts/install.sh

start:
	bash scripts/cluster.sh start

demo: install
	bash scripts/demo.sh

test: setup lint test-core test-pg test-regress test-report test-stress

# rustfmt and clippy on both crates, every target, warnings as errors.
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --no-default-features --features "pg$(PG_MAJOR) pg_test" -- -D warnings

# The text-runtime tests use the ONNX Runtime and MiniLM that setup.sh installed for $(PG_CONFIG).
test-core:
	PERSONA_ORT_LIB=$${PERSONA_ORT_LIB:-$$($(PG_CONFIG) --pkglibdir)/pg_persona/libonnxruntime.so} \
	PERSONA_MINILM_DIR=$${PERSONA_MINILM_DIR:-$$($(PG_CONFIG) --sharedir)/extension/pg_persona/models/minilm} \
	cargo test -p persona-core --release

# cargo pgrx test copies its debug build over the system's shared library: stop the system
# cluster first so no running backend has the file mapped (test-regress reinstalls the release build).
test-pg:
	bash scripts/cluster.sh stop
	cargo pgrx test pg$(PG_MAJOR) --no-default-features --features "pg$(PG_MAJOR)" \
	  --runas postgres --pgdata /var/lib/postgresql/pgrx-test/data

# Regression tests run against the real install in the system cluster.
test-regress: install
	bash scripts/regress.sh

# campaign_report rendered by headless Chromium: no console message, a screenshot that is not
# blank, the page's text as pinned in tests/report/, built within 200 ms.
test-report: install
	bash scripts/report_check.sh

# pgbench readers against retraining, kill -9 of a backend and of the postmaster (restarts the
# system cluster; in `make test` it runs after test-regress).
test-stress: install
	bash scripts/stress.sh

bench:
	bash benches/run.sh

# Retrains the default sentiment head (models/sentiment_head.json) on SST-2's training phrases
# with bert_train_classifier (~10 minutes on 2 cores); reinstall afterwards to ship it.
sentiment: install
	bash scripts/train_sentiment.sh

# bert_finetune on SST-2 (README, "Fine-tuning the encoder"): about 40 minutes on 2 cores.
finetune-sst2: install
	bash scripts/finetune_sst2.sh

clean:
	cargo clean

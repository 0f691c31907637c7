# ArcLock: `make run` and `make test` do all set-up on a fresh Debian 12 machine.
STATE ?= $(CURDIR)/var
CARGO ?= cargo
export ARCLOCK_STATE_DIR := $(STATE)
export SOFTHSM2_CONF ?= $(STATE)/softhsm2.conf

.PHONY: setup build run test bench check clean

## Install pinned system packages, ONNX Runtime and the face models (idempotent).
setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build --workspace

## Provision the dev SoftHSM2 token, keys and TLS cert under $(STATE), then serve.
run: build
	@target/debug/arclockd --config config/arclockd.toml provision
	@mkdir -p -m 0750 $(STATE)/run
	@echo "arclockd: starting on the embedded store; check it with:"
	@echo "    curl -k https://127.0.0.1:8443/health"
	@echo "  operator console (another terminal): target/debug/arclock-console --socket var/run/arclockd.sock"
	@exec target/debug/arclockd --config config/arclockd.toml

## The whole test suite, against real SoftHSM2, ONNX Runtime, models and TLS.
test: setup
	scripts/with-mongo.sh $(CARGO) test --workspace --no-fail-fast

## Every benchmark, release build; one markdown table in bench/results/latest.md.
bench: setup
	$(CARGO) build --release -p arclock-bench -p arclockd
	target/release/arclock-bench --out bench/results

## Formatting and lints, as CI would want them.
check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(STATE)

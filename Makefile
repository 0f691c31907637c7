# ArcLock: `make run` and `make test` do all set-up on a fresh Debian 12 machine.
STATE ?= $(CURDIR)/var
CARGO ?= cargo
export ARCLOCK_STATE_DIR := $(STATE)
export SOFTHSM2_CONF ?= $(STATE)/softhsm2.conf
# Development machines here run as root; arclockd refuses root unless told.
ifeq ($(shell id -u),0)
export ARCLOCK_ALLOW_ROOT := 1
endif

.PHONY: setup build run test bench fuzz fuzz-seeds check clean install install-files

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
	@echo "  browser client (enrol and sign in with your camera): https://127.0.0.1:8443/app/"
	@echo "  operator console (another terminal): target/debug/arclock-console --socket var/run/arclockd.sock"
	@exec target/debug/arclockd --config config/arclockd.toml

## The whole test suite, against real SoftHSM2, ONNX Runtime, models and TLS.
test: setup
	scripts/with-mongo.sh $(CARGO) test --workspace --no-fail-fast

## Every benchmark, release build; one markdown table in bench/results/latest.md
## (the enumeration-parity row also on MongoDB, through nx-27017). Fails if a
## p99/p50 latency ratio at 1 client exceeds 3 (after writing the table).
bench: setup
	$(CARGO) build --release -p arclock-bench -p arclockd
	scripts/with-mongo.sh target/release/arclock-bench --out bench/results

## Every fuzz target (fuzz/) for FUZZ_SECONDS (default 60) each, growing and
## minimising fuzz/corpus; a table in fuzz/results/latest.md. Fails on a crash.
fuzz:
	scripts/fuzz.sh

## Rewrites the synthetic seed inputs (fuzz/corpus/*/seed-*).
fuzz-seeds:
	$(CARGO) run --manifest-path fuzz/Cargo.toml --target-dir target/fuzz-seeds --bin seeds

## Formatting and lints, as CI would want them.
check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	rm -rf $(STATE)

## Install the appliance (release build): binaries, ONNX Runtime, models,
## systemd unit + sysusers/tmpfiles, /etc/arclock config, docs. DESTDIR-aware.
PREFIX ?= /usr
SYSCONFDIR ?= /etc
BIN_SRC ?= target/release
BINDIR = $(PREFIX)/bin
LIBDIR = $(PREFIX)/lib/arclock
DATADIR = $(PREFIX)/share/arclock
DOCDIR = $(PREFIX)/share/doc/arclock
UNITDIR = $(PREFIX)/lib/systemd/system
SUBST = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@DATADIR@|$(DATADIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g'

install: setup
	$(CARGO) build --release -p arclockd -p arclock-console
	$(MAKE) install-files BIN_SRC=target/release

## The copying half of `install`, from already built binaries in $(BIN_SRC).
install-files:
	install -D -m 0755 $(BIN_SRC)/arclockd $(DESTDIR)$(BINDIR)/arclockd
	install -D -m 0755 $(BIN_SRC)/arclock-console $(DESTDIR)$(BINDIR)/arclock-console
	install -D -m 0644 $(STATE)/opt/onnxruntime-1.32.0/libonnxruntime.so.1.32.0 $(DESTDIR)$(LIBDIR)/libonnxruntime.so.1.32.0
	install -D -m 0644 models/manifest.toml $(DESTDIR)$(DATADIR)/models/manifest.toml
	for f in $(STATE)/models/*.onnx; do install -D -m 0644 "$$f" "$(DESTDIR)$(DATADIR)/models/$$(basename "$$f")"; done
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/arclock
	$(SUBST) systemd/arclockd.service > $(DESTDIR)$(UNITDIR)/arclockd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/arclockd.service
	install -D -m 0644 systemd/arclock.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/arclock.conf
	install -D -m 0644 systemd/arclock.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/arclock.conf
	$(SUBST) systemd/arclockd.toml > $(DESTDIR)$(SYSCONFDIR)/arclock/arclockd.toml
	chmod 0640 $(DESTDIR)$(SYSCONFDIR)/arclock/arclockd.toml
	install -D -m 0640 systemd/softhsm2.conf $(DESTDIR)$(SYSCONFDIR)/arclock/softhsm2.conf
	install -D -m 0644 systemd/arclockd-camera.conf $(DESTDIR)$(DOCDIR)/examples/arclockd-camera.conf
	install -D -m 0644 config/arclockd.toml $(DESTDIR)$(DOCDIR)/examples/arclockd.dev.toml
	for d in README.md daemon/README.md tui/README.md systemd/README.md models/README.md; do install -D -m 0644 "$$d" "$(DESTDIR)$(DOCDIR)/$$d"; done

# ArcLock: `make run` and `make test` do all set-up on a fresh Debian 12 machine.
STATE ?= $(CURDIR)/var
CARGO ?= cargo
export ARCLOCK_STATE_DIR := $(STATE)
export SOFTHSM2_CONF ?= $(STATE)/softhsm2.conf
# The test photos, as `setup.sh --test` installs them (scripts/fetch.py).
export ARCLOCK_FACES_DIR ?= $(STATE)/faces
# Development machines here run as root; arclockd refuses root unless told.
ifeq ($(shell id -u),0)
export ARCLOCK_ALLOW_ROOT := 1
endif

.PHONY: setup setup-test build deb boot-test run test bench hsm-matrix fuzz fuzz-seeds check clean install install-files

## Install pinned system packages, ONNX Runtime and the face models (idempotent).
setup:
	@scripts/setup.sh

## As setup, plus what only the tests use (nx-27017, schemathesis, Chromium, tmux,
## swtpm and tpm2-pkcs11).
setup-test:
	@scripts/setup.sh --test

## The two binaries `make run` starts (not the benchmark's or the fuzzer's crates).
build: setup
	$(CARGO) build -p arclockd -p arclock-console

## The dev config with its state paths under $(STATE): config/arclockd.toml
## names ./var, so another STATE gets its own copy, rewritten at every run.
DEV_CONFIG = $(STATE)/arclockd.toml

## Provision the dev SoftHSM2 token, keys and TLS cert under $(STATE), then serve.
run: build
	@mkdir -p -m 0700 $(STATE)
	@sed -e 's|"var/|"$(STATE)/|' -e 's|"models/manifest.toml"|"$(CURDIR)/models/manifest.toml"|' config/arclockd.toml > $(DEV_CONFIG)
	@target/debug/arclockd --config $(DEV_CONFIG) provision
	@mkdir -p -m 0750 $(STATE)/run
	@echo "arclockd: starting on the embedded store ($(STATE)); check it with:"
	@echo "    curl -k https://127.0.0.1:8443/health"
	@echo "  browser client (enrol and sign in with your camera): https://127.0.0.1:8443/app/"
	@echo "  operator console (another terminal): target/debug/arclock-console$(if $(filter $(CURDIR)/var,$(STATE)),, --socket $(STATE)/run/arclockd.sock)"
	@exec target/debug/arclockd --config $(DEV_CONFIG)

## The whole test suite, against real SoftHSM2, a software TPM 2.0 (swtpm +
## tpm2-pkcs11), ONNX Runtime, models, TLS and the MongoDB stand-in.
test: setup-test
	scripts/with-mongo.sh scripts/with-tpm.sh $(CARGO) test --workspace --no-fail-fast

## Every benchmark, release build; one markdown table in bench/results/latest.md
## (the enumeration-parity row also on MongoDB, through nx-27017). Fails if a
## p99/p50 latency ratio at 1 client exceeds 3 (after writing the table).
bench: setup-test
	$(CARGO) build --release -p arclock-bench -p arclockd
	scripts/with-mongo.sh target/release/arclock-bench --out bench/results

## Four PKCS#11 tokens (SoftHSM2, kryoptic, opencryptoki, a TPM through
## swtpm + tpm2-pkcs11) set up afresh and probed job by job; the table goes to
## hsm/results/matrix.md and hsm/README.md. Needs root.
hsm-matrix:
	scripts/hsm-matrix.sh

## Every fuzz target (fuzz/) for FUZZ_SECONDS (default 60) each, growing and
## minimising fuzz/corpus; a table in fuzz/results/latest.md. Fails on a crash.
fuzz:
	scripts/fuzz.sh

## Rewrites the synthetic seed inputs (fuzz/corpus/*/seed-*).
fuzz-seeds:
	$(CARGO) run --manifest-path fuzz/Cargo.toml --target-dir target/fuzz-seeds --bin seeds

## The Debian package (release build): target/deb/arclock_<version>-1_amd64.deb,
## checked by lintian (no error allowed).
deb: setup
	scripts/deb.sh

## The package installed and booted under a real systemd (systemd-nspawn,
## Debian 12 root filesystem cached under $(STATE)/nspawn); root only.
boot-test: deb
	scripts/boot-test.sh

## Formatting, clippy -D warnings and cargo deny (licences, duplicate
## versions, sources, advisories when their database is reachable).
check:
	scripts/check.sh

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
	for u in arclock-retire-keys.service arclock-retire-keys.timer; do $(SUBST) systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u; done
	install -D -m 0644 systemd/arclock.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/arclock.conf
	install -D -m 0644 systemd/arclock.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/arclock.conf
	$(SUBST) systemd/arclockd.toml > $(DESTDIR)$(SYSCONFDIR)/arclock/arclockd.toml
	chmod 0640 $(DESTDIR)$(SYSCONFDIR)/arclock/arclockd.toml
	install -D -m 0640 systemd/softhsm2.conf $(DESTDIR)$(SYSCONFDIR)/arclock/softhsm2.conf
	install -D -m 0644 systemd/arclockd-camera.conf $(DESTDIR)$(DOCDIR)/examples/arclockd-camera.conf
	install -D -m 0644 config/arclockd.toml $(DESTDIR)$(DOCDIR)/examples/arclockd.dev.toml
	for d in README.md daemon/README.md tui/README.md systemd/README.md models/README.md; do install -D -m 0644 "$$d" "$(DESTDIR)$(DOCDIR)/$$d"; done

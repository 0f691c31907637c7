#!/usr/bin/env bash
# What CI holds every change to before the tests: formatting, clippy with
# warnings as errors, and cargo deny (deny.toml: licences, duplicate versions
# with their reasons, sources, and RustSec advisories).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO="${CARGO:-cargo}"
DENY_VERSION="0.20.2"

"$CARGO" fmt --all -- --check
"$CARGO" clippy --workspace --all-targets -- -D warnings

# cargo-deny, pinned; built once per machine from crates.io (--locked: the
# versions and checksums of its own Cargo.lock).
deny="${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deny"
if [ "$("$deny" --version 2>/dev/null)" != "cargo-deny $DENY_VERSION" ]; then
  echo "check: installing cargo-deny $DENY_VERSION from crates.io"
  "$CARGO" install --quiet --locked --version "$DENY_VERSION" cargo-deny
fi
"$deny" check bans licenses sources

# Advisories need RustSec's database, a git repository on github.com. Where it
# cannot be fetched (these machines reach only the package registries) the
# check is skipped, loudly; anywhere else a known advisory fails the build.
if out="$("$deny" check advisories 2>&1)"; then
  echo "check: advisories ok"
elif grep -q "failed to fetch advisory database" <<<"$out"; then
  echo "check: SKIPPED advisories: the RustSec database (github.com/rustsec/advisory-db) is unreachable from this machine"
else
  echo "$out" >&2
  exit 1
fi

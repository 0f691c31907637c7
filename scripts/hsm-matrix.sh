#!/usr/bin/env bash
# make hsm-matrix: four PKCS#11 tokens set up from Debian packages and
# crates.io, each probed by `arclock-bench --probe` (bench/src/matrix.rs) for
# every job ArcLock gives a token and its fallbacks; the table goes to
# hsm/results/matrix.md and between the markers in hsm/README.md.
#
#   SoftHSM2        softhsm2 (Debian)
#   kryoptic        crates.io, built against the system libcrypto
#   opencryptoki    its soft token (slot 3 of the Debian config, pkcsslotd)
#   TPM 2.0         swtpm + tpm2-abrmd on a private D-Bus + tpm2-pkcs11
#
# Needs root (apt, pkcsslotd). Every token is made afresh under
# $STATE/hsm-matrix; opencryptoki's soft token is system-wide, so it is
# initialised only if it is new or was made by this script before.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=${ARCLOCK_STATE_DIR:-$PWD/var}
M=$STATE/hsm-matrix
SECS=${HSM_MATRIX_SECONDS:-1}
LABEL=arclock-matrix

say() { echo "hsm-matrix: $*"; }

pkgs=(softhsm2 opensc swtpm swtpm-tools tpm2-abrmd libtss2-tcti-tabrmd0
  libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-tools opencryptoki dbus
  libssl-dev libsqlite3-dev libclang-dev pkg-config)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo build -q --release -p arclock-bench
cargo test -q -p arclockd --test tokens --no-run 2>/dev/null
cargo test -q -p arclock-hsm --test contract --no-run 2>/dev/null
BENCH=$PWD/target/release/arclock-bench
say "building kryoptic (crates.io, pinned by scripts/kryoptic/Cargo.lock)"
cargo build -q --release --locked --manifest-path scripts/kryoptic/Cargo.toml \
  --target-dir "$STATE/cache/kryoptic-target"
KRYOPTIC=$(ls "$STATE"/cache/kryoptic-target/release/deps/libkryoptic_pkcs11*.so | head -1)

rm -rf "$M"
mkdir -p "$M"
chmod 700 "$M"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# A PIN file (0600) holding $2, named $1.
pin() { (umask 077 && printf '%s' "$2" >"$1"); }

# daemon NAME MODULE [VAR ...]: arclockd's own life on the token
# (daemon/tests/tokens.rs: provision, register, sign in, refresh, retire),
# one more row of NAME's TSV. VARs are passed on to the daemon.
daemon() {
  local name=$1 module=$2 why
  shift 2
  say "arclockd on $name"
  if ARCLOCK_TEST_PKCS11_MODULE=$module ARCLOCK_TEST_PKCS11_PASS=$(
    IFS=,
    echo "$*"
  ) ARCLOCK_STATE_DIR=$STATE cargo test -q -p arclockd --test tokens -- --nocapture \
    >"$M/$name-daemon.log" 2>&1; then
    printf 'arclockd: provision, register, sign in, refresh, retire\tyes\t\n' >>"$M/$name.tsv"
  else
    why=$(grep -A1 "panicked at" "$M/$name-daemon.log" | sed -n 2p | cut -c1-140 | tr '\t' ' ')
    printf 'arclockd: provision, register, sign in, refresh, retire\tno: %s\t\n' "$why" >>"$M/$name.tsv"
  fi
}

# contract NAME MODULE PIN-FILE [VAR=value ...]: the key-custody contract
# (hsm/tests/contract.rs) on the token the probe used, one more row.
contract() {
  local name=$1 module=$2 pinf=$3 why
  shift 3
  say "contract suite on $name"
  if env "$@" ARCLOCK_TEST_PKCS11_MODULE="$module" ARCLOCK_TEST_PKCS11_LABEL="$LABEL" \
    ARCLOCK_TEST_PKCS11_PIN="$pinf" ARCLOCK_TEST_PKCS11_NAME="$name" \
    cargo test -q -p arclock-hsm --test contract -- --nocapture the_named_token \
    >"$M/$name-contract.log" 2>&1; then
    printf 'contract suite (hsm/tests/contract.rs)\tyes\t\n' >>"$M/$name.tsv"
  else
    why=$(grep -a -A1 "panicked at" "$M/$name-contract.log" | sed -n 2p | cut -c1-140 | tr '\t|' '  ')
    printf 'contract suite (hsm/tests/contract.rs)\tno: %s\t\n' "$why" >>"$M/$name.tsv"
  fi
}

# probe NAME MODULE PIN-FILE [VAR=value ...]: one TSV per token.
probe() {
  local name=$1 module=$2 pinf=$3
  shift 3
  say "probing $name"
  env "$@" "$BENCH" --probe "$module" --probe-label "$LABEL" --probe-pin "$pinf" \
    --seconds "$SECS" >"$M/$name.tsv" 2>"$M/$name.err" || {
    printf 'setup\tno: %s\t\n' "$(head -c 200 "$M/$name.err" | tr '\n\t' '  ')" >"$M/$name.tsv"
  }
}

# 1. SoftHSM2, with a private configuration.
mkdir -p "$M/softhsm/tokens"
cat >"$M/softhsm/softhsm2.conf" <<EOF
directories.tokendir = $M/softhsm/tokens
objectstore.backend = file
log.level = ERROR
EOF
pin "$M/softhsm/user.pin" 11112222
SOFTHSM2_CONF=$M/softhsm/softhsm2.conf softhsm2-util --init-token --free --label "$LABEL" \
  --so-pin 99998888 --pin 11112222 >/dev/null
probe softhsm2 /usr/lib/softhsm/libsofthsm2.so "$M/softhsm/user.pin" \
  SOFTHSM2_CONF="$M/softhsm/softhsm2.conf"
contract softhsm2 /usr/lib/softhsm/libsofthsm2.so "$M/softhsm/user.pin" \
  SOFTHSM2_CONF="$M/softhsm/softhsm2.conf"
daemon softhsm2 /usr/lib/softhsm/libsofthsm2.so

# 2. kryoptic: a TOML configuration naming one SQLite slot.
mkdir -p "$M/kryoptic"
cat >"$M/kryoptic/token.conf" <<EOF
[[slots]]
slot = 1
dbtype = "sqlite"
dbargs = "$M/kryoptic/token.sql"
EOF
pin "$M/kryoptic/user.pin" 11112222
export KRYOPTIC_CONF=$M/kryoptic/token.conf
pkcs11-tool --module "$KRYOPTIC" --init-token --label "$LABEL" --so-pin 99998888 >/dev/null
pkcs11-tool --module "$KRYOPTIC" --token-label "$LABEL" --init-pin --login --login-type so \
  --so-pin 99998888 --pin 11112222 >/dev/null
probe kryoptic "$KRYOPTIC" "$M/kryoptic/user.pin" KRYOPTIC_CONF="$KRYOPTIC_CONF"
contract kryoptic "$KRYOPTIC" "$M/kryoptic/user.pin" KRYOPTIC_CONF="$KRYOPTIC_CONF"
# The daemon provisions a token of its own, in a new slot of another file.
cat >"$M/kryoptic/daemon.conf" <<EOF
[[slots]]
slot = 1
dbtype = "sqlite"
dbargs = "$M/kryoptic/daemon.sql"
EOF
KRYOPTIC_CONF=$M/kryoptic/daemon.conf daemon kryoptic "$KRYOPTIC" KRYOPTIC_CONF
unset KRYOPTIC_CONF

# 3. opencryptoki's soft token: PINs of 4-8 characters, the SO PIN starts as
# 87654321, and a PIN set by the SO must be changed before it is used.
OCK=/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so
pgrep -x pkcsslotd >/dev/null || pkcsslotd
pin "$M/ock.pin" 22223333
ock_label=$(pkcsconf -t -c 3 2>/dev/null | sed -n 's/^\tLabel: *//p' | sed 's/ *$//')
ock_flags=$(pkcsconf -t -c 3 2>/dev/null | sed -n 's/^\tFlags: //p')
if [[ $ock_flags != *TOKEN_INITIALIZED* || $ock_label == "$LABEL" ]]; then
  so=87654321
  [[ -f $STATE/cache/ock.so-pin ]] && so=$(cat "$STATE/cache/ock.so-pin")
  pkcs11-tool --module "$OCK" --slot 3 --init-token --label "$LABEL" --so-pin "$so" >/dev/null
  pkcs11-tool --module "$OCK" --slot 3 --init-pin --login --login-type so --so-pin "$so" \
    --pin 11112222 >/dev/null
  pkcs11-tool --module "$OCK" --slot 3 --change-pin --pin 11112222 --new-pin 22223333 >/dev/null
  pin "$STATE/cache/ock.so-pin" "$so"
  probe opencryptoki "$OCK" "$M/ock.pin"
  contract opencryptoki "$OCK" "$M/ock.pin" ARCLOCK_TEST_PKCS11_SLOT=3
  # Its PINs are 4-8 characters, so the daemon gets the token made above.
  ARCLOCK_TEST_PKCS11_PIN=$M/ock.pin ARCLOCK_TEST_PKCS11_SLOT=3 \
    ARCLOCK_TEST_PKCS11_LABEL=$LABEL daemon opencryptoki "$OCK"
else
  say "opencryptoki slot 3 holds a token of someone else ($ock_label): not touched"
  printf 'setup\tno: slot 3 holds another token\t\n' >"$M/opencryptoki.tsv"
fi

# 4. A TPM 2.0 (scripts/tpm.sh): swtpm, tpm2-abrmd on a private session bus,
# tpm2-pkcs11's store made by tpm2_ptool.
# shellcheck source=scripts/tpm.sh
. scripts/tpm.sh
tpm_start "$M/tpm" "$LABEL" 11112222 99998888
probe tpm2 "$TPM_MODULE" "$M/tpm/user.pin"
contract tpm2 "$TPM_MODULE" "$M/tpm/user.pin"
daemon tpm2 "$TPM_MODULE" "${TPM_VARS[@]}" TPM2_PKCS11_LOG_LEVEL

python3 scripts/hsm-matrix-table.py "$M" softhsm2 kryoptic opencryptoki tpm2 \
  --versions "SoftHSM2 $(dpkg-query -W -f='${Version}' softhsm2)" \
  "kryoptic 1.5.4 (OpenSSL $(openssl version | cut -d' ' -f2))" \
  "opencryptoki $(dpkg-query -W -f='${Version}' opencryptoki) soft token" \
  "tpm2-pkcs11 $(dpkg-query -W -f='${Version}' libtpm2-pkcs11-1) + swtpm $(dpkg-query -W -f='${Version}' swtpm)" \
  --seconds "$SECS" --out hsm/results/matrix.md --readme hsm/README.md

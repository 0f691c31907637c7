#!/usr/bin/env bash
# Installs what ArcLock needs to build, run and test, idempotently: Debian
# packages (pinned), ONNX Runtime from a pinned PyPI wheel (sha256-checked), and
# the face models named in models/manifest.toml (sha256-checked; mirror first,
# upstream URL second); with --test also the test photos (scripts/faces.sha256).
# Nothing is fetched from anywhere else.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${ARCLOCK_STATE_DIR:-$ROOT/var}"

# `setup.sh` installs what `make run` needs; `setup.sh --test` adds what only
# the tests and benchmarks use.
TEST=0
[ "${1:-}" = "--test" ] && TEST=1

# --- Debian packages ---------------------------------------------------------
# softhsm2: the PKCS#11 token for dev and tests. libclang-dev: the v4l crate
# (kiosk camera) generates its V4L2 bindings with bindgen. libturbojpeg0-dev:
# libjpeg-turbo's TurboJPEG API, the JPEG decoder (SIMD, and DCT-domain
# scaling that makes 12 MP phone photos cheap). The rest the build needs (gcc,
# make, python3) is part of the base image; checked, not assumed.
DEB_PACKAGES=("softhsm2=2.6.1-*" "libclang-dev=1:14.0-*" "python3" "gcc" "make" "pkg-config" "libturbojpeg0-dev=1:2.1.*")
# Tests only. tmux and curl: the console's end-to-end test drives the real
# binary in tmux, and curl plays a non-operator uid against the admin socket.
# systemd: systemd-analyze scores the unit. chromium and chromium-driver: the
# browser client's end-to-end test (daemon/tests/browser.rs) drives a real
# headless Chromium with a fake camera; they are not pinned because Debian's
# security updates replace Chromium's major version every few weeks (an old
# pin stops being installable), and the test needs only W3C WebDriver and the
# long-stable fake-capture switches.
((TEST)) && DEB_PACKAGES+=("python3-venv" "tmux" "curl" "systemd" "chromium" "chromium-driver")
# Tests only: a software TPM 2.0 as a second PKCS#11 token (scripts/with-tpm.sh):
# swtpm, tpm2-abrmd and its TCTI on a private D-Bus, tpm2-pkcs11 and its
# tpm2_ptool, tpm2-tools (tpm2_getrandom says when the TPM is up).
((TEST)) && DEB_PACKAGES+=("swtpm=0.7.1-*" "swtpm-tools=0.7.1-*" "tpm2-abrmd=3.0.0-*"
  "libtss2-tcti-tabrmd0=3.0.0-*" "libtpm2-pkcs11-1=1.9.0-*" "libtpm2-pkcs11-tools=1.9.0-*"
  "tpm2-tools=5.4-*" "dbus")
missing=()
for spec in "${DEB_PACKAGES[@]}"; do
  name="${spec%%=*}"
  dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "install ok installed" || missing+=("$spec")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- ONNX Runtime from the PyPI wheel ----------------------------------------
ORT_VERSION="1.32.0"
ORT_WHEEL="onnxruntime-${ORT_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
ORT_WHEEL_SHA256="5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d"
ORT_LIB_SHA256="6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f"
ORT_DIR="$STATE/opt/onnxruntime-$ORT_VERSION"
ORT_LIB="$ORT_DIR/libonnxruntime.so.$ORT_VERSION"

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

if ! sha_ok "$ORT_LIB" "$ORT_LIB_SHA256"; then
  mkdir -p "$STATE/cache" "$ORT_DIR"
  wheel="$STATE/cache/$ORT_WHEEL"
  if ! sha_ok "$wheel" "$ORT_WHEEL_SHA256"; then
    echo "setup: downloading onnxruntime==$ORT_VERSION wheel from PyPI"
    rm -f "$wheel"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
      -d "$STATE/cache" "onnxruntime==$ORT_VERSION"
  fi
  sha_ok "$wheel" "$ORT_WHEEL_SHA256" || { echo "setup: $wheel fails its sha256 check" >&2; exit 1; }
  python3 - "$wheel" "$ORT_LIB" <<'PY'
import sys, zipfile, os
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    data = z.read("onnxruntime/capi/" + os.path.basename(out))
tmp = out + ".tmp"
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, out)
PY
  sha_ok "$ORT_LIB" "$ORT_LIB_SHA256" || { echo "setup: $ORT_LIB fails its sha256 check" >&2; rm -f "$ORT_LIB"; exit 1; }
  echo "setup: ONNX Runtime $ORT_VERSION at $ORT_LIB"
fi

# --- Test-only Python tools, each in a venv of hash-pinned wheels ----------------
# Re-created when the requirements file changes.
pinned_venv() { # name, executable, requirements file
  local dir="$STATE/opt/$1" req="$3"
  local stamp="$dir/.requirements.sha256" want
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ ! -x "$dir/bin/$2" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing $1 (pinned, hash-checked) into $dir"
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet --disable-pip-version-check --require-hashes \
      --no-deps --only-binary=:all: -r "$req"
    echo "$want" > "$stamp"
  fi
}
if ((TEST)); then
  # nx-27017: a MongoDB wire-protocol server, for the store contract on MongoDB.
  pinned_venv nx-27017 nx-27017 "$ROOT/scripts/nx-27017.requirements.txt"
  # schemathesis: attacks the live daemon from its own OpenAPI document.
  pinned_venv schemathesis schemathesis "$ROOT/scripts/schemathesis.requirements.txt"
fi

# --- Face models, and the test photos ----------------------------------------------
# From the mirror (ARCLOCK_MIRROR: a directory or URL holding models/ and
# faces/; default ../shared; "none" for none), else from each upstream, every
# file checked (scripts/fetch.py). Fails naming what is missing and where it
# was looked for.
python3 "$ROOT/scripts/fetch.py" models "$ROOT/models/manifest.toml" "$STATE/models"
if ((TEST)); then
  python3 "$ROOT/scripts/fetch.py" faces "$ROOT/scripts/faces.sha256" "$STATE/faces"
fi

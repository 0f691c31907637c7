#!/usr/bin/env bash
# Runs a command with a throwaway software TPM 2.0 as a PKCS#11 token
# (swtpm + tpm2-abrmd + tpm2-pkcs11, scripts/tpm.sh) and the
# ARCLOCK_TEST_PKCS11_* variables naming it, so the key-custody contract
# (hsm/tests/contract.rs) and the daemon's life on a token
# (daemon/tests/tokens.rs) run on a TPM as well as on SoftHSM2. The TPM and
# its store are removed afterwards, whatever the command's outcome.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/tpm.sh
. "$ROOT/scripts/tpm.sh"
for tool in swtpm tpm2-abrmd tpm2_ptool dbus-daemon; do
  command -v "$tool" >/dev/null || { echo "with-tpm: $tool missing; run make setup-test" >&2; exit 1; }
done
[ -e "$TPM_MODULE" ] || { echo "with-tpm: $TPM_MODULE missing; run make setup-test" >&2; exit 1; }

dir="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
tpm_start "$dir" arclock-tpm 11112222 99998888

export ARCLOCK_TEST_PKCS11_MODULE=$TPM_MODULE
export ARCLOCK_TEST_PKCS11_LABEL=arclock-tpm
export ARCLOCK_TEST_PKCS11_PIN=$dir/user.pin
export ARCLOCK_TEST_PKCS11_PASS
ARCLOCK_TEST_PKCS11_PASS=$(IFS=,; echo "${TPM_VARS[*]}")
export ARCLOCK_TEST_PKCS11_NAME="TPM 2.0 (swtpm + tpm2-pkcs11)"
# A test that finds no token named fails instead of skipping.
export ARCLOCK_TEST_PKCS11_REQUIRED=1
echo "with-tpm: TPM 2.0 token arclock-tpm (store $TPM2_PKCS11_STORE)"
"$@"

# Sourced by scripts/with-tpm.sh and scripts/hsm-matrix.sh: a software TPM 2.0
# as a PKCS#11 token, from Debian packages.
#
#   tpm_start DIR LABEL USER-PIN SO-PIN
#
# starts swtpm (state in DIR/state), a private D-Bus session bus and
# tpm2-abrmd on it (the direct swtpm TCTI runs out of object contexts), makes
# a tpm2-pkcs11 store in DIR/store with one token LABEL, writes the user PIN
# to DIR/user.pin (0600), and exports what the module reads
# (TPM2_PKCS11_TCTI, TPM2_PKCS11_STORE, DBUS_SESSION_BUS_ADDRESS). The pids
# it started are appended to the caller's `pids` array: kill them at exit.
TPM_MODULE=/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so
# What a test passes on to a daemon on this token.
TPM_VARS=(TPM2_PKCS11_TCTI TPM2_PKCS11_STORE DBUS_SESSION_BUS_ADDRESS)

tpm_start() {
  local dir=$1 label=$2 user=$3 so=$4 port bus bus_pid
  mkdir -p "$dir/state" "$dir/store"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # The control channel listens on the next port: find a pair that is free.
  while ! python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' $((port + 1)) 2>/dev/null; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  done
  swtpm socket --tpmstate dir="$dir/state" --tpm2 --server type=tcp,port="$port" \
    --ctrl type=tcp,port=$((port + 1)) --flags not-need-init,startup-clear >"$dir/swtpm.log" 2>&1 &
  pids+=($!)
  read -r bus bus_pid < <(dbus-daemon --session --fork --print-address=1 --print-pid=1 | paste -s -d' ')
  pids+=("$bus_pid")
  export DBUS_SESSION_BUS_ADDRESS=$bus
  for _ in $(seq 50); do
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$port" 2>/dev/null && break
    sleep 0.1
  done
  tpm2-abrmd --session --allow-root --tcti="swtpm:host=127.0.0.1,port=$port" >"$dir/abrmd.log" 2>&1 &
  pids+=($!)
  export TPM2TOOLS_TCTI=tabrmd:bus_type=session TPM2_PKCS11_TCTI=tabrmd:bus_type=session
  export TPM2_PKCS11_STORE=$dir/store
  local up=0
  for _ in $(seq 100); do
    tpm2_getrandom 4 >/dev/null 2>&1 && { up=1; break; }
    sleep 0.1
  done
  ((up)) || { echo "tpm: the TPM did not answer:" >&2; cat "$dir/swtpm.log" "$dir/abrmd.log" >&2; return 1; }
  tpm2_ptool init --path "$dir/store" >/dev/null
  tpm2_ptool addtoken --pid=1 --label="$label" --sopin="$so" --userpin="$user" \
    --path "$dir/store" >/dev/null
  (umask 077 && printf '%s' "$user" >"$dir/user.pin")
}

#!/usr/bin/env bash
# The appliance under a real systemd: installs target/deb/arclock_*.deb in a
# Debian 12 container booted by `systemd-nspawn --boot`, provisions it the way
# the package tells an operator to (arclock-first-start), and checks from
# outside the unit what the unit promises. Needs root and the Debian mirror apt
# uses (for the first debootstrap; the root filesystem is cached under the
# state dir). Run by `make boot-test` (CI runs it after `make test`).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${ARCLOCK_STATE_DIR:-$ROOT/var}"
DEB="$(ls -t "$ROOT"/target/deb/arclock_*.deb 2>/dev/null | head -1 || true)"
[ -n "$DEB" ] || { echo "boot-test: no package in target/deb (make deb)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "boot-test: needs root (systemd-nspawn)" >&2; exit 1; }
need=()
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v openssl >/dev/null || need+=(openssl)
((${#need[@]})) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
MIRROR="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
BASE="$STATE/nspawn/bookworm"
CT="$STATE/nspawn/run"
PORT=8443

# --- the container ---------------------------------------------------------------
# The packages the .deb depends on are in the cached base, so apt installs the
# .deb itself without fetching (and proves its Depends are satisfiable).
INCLUDE="systemd,systemd-sysv,dbus,libnss-systemd,softhsm2,libturbojpeg0,libstdc++6,ca-certificates"
if [ "$(cat "$BASE.stamp" 2>/dev/null)" != "$INCLUDE" ]; then
  echo "boot-test: debootstrap bookworm from $MIRROR into $BASE (cached)"
  rm -rf "$BASE" "$BASE.stamp"
  mkdir -p "$(dirname "$BASE")"
  debootstrap --variant=minbase --include="$INCLUDE" bookworm "$BASE" "$MIRROR" > "$BASE.log" 2>&1 ||
    { tail -20 "$BASE.log" >&2; exit 1; }
  echo "$INCLUDE" > "$BASE.stamp"
fi
rm -rf "$CT"
cp -a --reflink=auto "$BASE" "$CT"
cp "$DEB" "$CT/root/arclock.deb"
# A newer package of the same build, for the upgrade check.
UPGRADE="$CT/root/arclock-upgrade.deb"
repack="$(mktemp -d)"
dpkg-deb -R "$DEB" "$repack/p"
sed -i 's/^Version: \(.*\)-\([0-9]*\)$/Version: \1-\2+upgrade1/' "$repack/p/DEBIAN/control"
dpkg-deb --root-owner-group -Zxz -b "$repack/p" "$UPGRADE" >/dev/null
rm -rf "$repack"

LOG="$STATE/nspawn/boot.log"
# Locked memory. The unit asks for LimitMEMLOCK=512M, which PID 1 grants on a
# real machine. Where the host's own hard limit is lower and cannot be raised
# (this sandbox: 8 MiB, no CAP_SYS_RESOURCE even for root, so neither nspawn's
# --rlimit nor the container's systemd can lift it), the container gets
# CAP_IPC_LOCK and the unit a drop-in granting it alone, which mlock honours
# past the limit. Everything else is the unit as shipped; the report says so.
CAPS=()
hard="$(ulimit -Hl)"
if [ "$hard" != unlimited ] && [ "$hard" -lt 524288 ]; then
  CAPS=(--capability=CAP_IPC_LOCK)
  mkdir -p "$CT/etc/systemd/system/arclockd.service.d"
  cat > "$CT/etc/systemd/system/arclockd.service.d/memlock.conf" <<'DROPIN'
# boot-test: the host's hard RLIMIT_MEMLOCK is below the unit's 512M and cannot
# be raised here; CAP_IPC_LOCK locks past it instead.
[Service]
AmbientCapabilities=CAP_IPC_LOCK
CapabilityBoundingSet=CAP_IPC_LOCK
DROPIN
  echo "boot-test: host hard RLIMIT_MEMLOCK is ${hard} KiB: the unit gets CAP_IPC_LOCK by a drop-in (only change)"
fi
systemd-nspawn -D "$CT" --boot --register=no --keep-unit -M arclock-boot "${CAPS[@]}" > "$LOG" 2>&1 &
NSPAWN=$!
cleanup() {
  kill "$NSPAWN" 2>/dev/null || true
  wait "$NSPAWN" 2>/dev/null || true
}
trap cleanup EXIT

# The container's PID 1, as the host sees it.
INIT=""
for _ in $(seq 100); do
  for p in $(pgrep -P "$NSPAWN" 2>/dev/null); do
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = systemd ] && INIT="$p"
  done
  [ -n "$INIT" ] && break
  sleep 0.2
done
[ -n "$INIT" ] || { tail -20 "$LOG" >&2; echo "boot-test: the container did not boot" >&2; exit 1; }
ct() { nsenter -t "$INIT" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
for _ in $(seq 150); do
  state="$(ct systemctl is-system-running 2>/dev/null || true)"
  case "$state" in running|degraded) break ;; esac
  sleep 0.2
done
echo "boot-test: container booted ($state), systemd $(ct systemctl --version | head -1 | cut -d' ' -f2)"

FAILED=0
pass() { printf '  ok    %s\n' "$1"; }
fail() { printf '  FAIL  %s\n' "$1"; FAILED=$((FAILED + 1)); }
check() { # description, command...
  local what="$1"; shift
  if "$@" >/dev/null 2>&1; then pass "$what"; else fail "$what"; fi
}
show() { ct systemctl show -P "$1" arclockd.service; }
wait_for() { # seconds, command...: true once the command succeeds
  local until=$((SECONDS + $1)); shift
  while ((SECONDS < until)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  return 1
}
health() { curl -sf --cacert "$CT/etc/arclock/tls/cert.pem" "https://localhost:$PORT/health"; }
# The daemon's pid as the host sees it (systemctl answers in the container's).
host_pid() {
  local main ns p
  main="$(show MainPID)"
  ns="$(readlink /proc/"$INIT"/ns/pid)"
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p"/ns/pid 2>/dev/null)" = "$ns" ] || continue
    [ "$(awk '/^NSpid:/ {print $3}' "$p"/status 2>/dev/null)" = "$main" ] && { echo "${p#/proc/}"; return; }
  done
  return 1
}
export INIT CT PORT
export -f ct show health host_pid

# --- install, provision, start ---------------------------------------------------
echo "== install"
check "apt installs the package (Depends satisfied)" \
  ct env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /root/arclock.deb
check "the service user and the operators' group exist" ct getent group arclock-admin
check "/etc/arclock is root:arclock 0750" test "$(ct stat -c '%U:%G %a' /etc/arclock)" = "root:arclock 750"
check "arclockd --check-config accepts the shipped config (as root)" \
  ct arclockd --config /etc/arclock/arclockd.toml --check-config
check "arclock-first-start makes token, PIN credential, certificate" ct arclock-first-start
check "the PIN credential is root's alone (0600)" test "$(stat -c '%U %a' "$CT/etc/arclock/hsm.pin")" = "root 600"
check "the PIN is in no config file" bash -c "! grep -rqF -- \"\$(cat '$CT/etc/arclock/hsm.pin')\" '$CT/etc/arclock/arclockd.toml' '$CT/etc/arclock/softhsm2.conf'"
check "man pages and completions are installed" \
  test -s "$CT/usr/share/man/man8/arclockd.8.gz" -a -s "$CT/usr/share/bash-completion/completions/arclock-console"

echo "== start"
check "systemctl start returns (Type=notify: after READY=1)" ct systemctl start arclockd
check "the unit is active and of Type=notify" bash -c "[ '$(show ActiveState)/$(show Type)' = active/notify ]"
check "/health answers over TLS, checked against the installed certificate" wait_for 20 health
check "the HSM is up through the PIN from LoadCredential=" bash -c "health | grep -q '\"hsm\":{\"status\":\"ok\"'"
PID="$(show MainPID)"
check "the credential reaches the daemon as a file, not the environment" \
  bash -c "ct cat /proc/$PID/environ | tr '\\0' '\\n' | grep -q '^CREDENTIALS_DIRECTORY=' && ! ct cat /proc/$PID/environ | grep -qF -- \"\$(cat '$CT/etc/arclock/hsm.pin')\""
check "logs reach the journal" wait_for 10 bash -c "ct journalctl -u arclockd -o cat | grep -q 'listening on'"

echo "== hardening, with ONNX Runtime loaded"
check "ONNX Runtime is mapped into the daemon" bash -c "ct cat /proc/$PID/maps | grep -q libonnxruntime"
WANT_CAPS=0000000000000000
((${#CAPS[@]})) && WANT_CAPS=0000000000004000
check "runs as arclock with no capability (but the drop-in's CAP_IPC_LOCK, if any)" \
  bash -c "ct grep -Eq '^CapEff:\\s+$WANT_CAPS$' /proc/$PID/status && [ \"\$(ct stat -c %U /proc/$PID)\" = arclock ]"
check "LimitMEMLOCK=512M as the unit says" bash -c "[ \"\$(show LimitMEMLOCK)\" = 536870912 ]"
check "seccomp filter in force (Seccomp: 2), no_new_privs" \
  bash -c "ct grep -Eq '^Seccomp:\\s+2' /proc/$PID/status && ct grep -Eq '^NoNewPrivs:\\s+1' /proc/$PID/status"
check "no mapping is writable and executable (MemoryDenyWriteExecute, PR_SET_MDWE)" \
  bash -c "ct cat /proc/$PID/maps > /tmp/arclock-maps.$$ && [ -s /tmp/arclock-maps.$$ ] && ! awk '{print \$2}' /tmp/arclock-maps.$$ | grep -q 'wx'"
rm -f /tmp/arclock-maps.$$
check "the unit's syscall allow-list is what it says (mlock in, reboot and mount out, EPERM)" \
  bash -c "f=\$(show SystemCallFilter); [ \"\$(show SystemCallErrorNumber)\" = 1 ] && grep -qw mlock <<<\"\$f\" && ! grep -qwE 'reboot|mount' <<<\"\$f\""
check "ONNX Runtime sees the CPU (/proc/cpuinfo readable: no cpuinfo error)" \
  bash -c "! ct journalctl -u arclockd -o cat | grep -q 'Error in cpuinfo'"
in_unit() { nsenter -t "$(host_pid)" -m -- "$@" 2>&1; }
export -f in_unit
check "/usr is read-only inside the unit" bash -c "in_unit touch /usr/lib/arclock/probe | grep -q 'Read-only file system'"
check "/etc is read-only inside the unit, the state dir writable" \
  bash -c "in_unit touch /etc/arclock/probe | grep -q 'Read-only file system' && in_unit test -w /var/lib/arclock"
check "no core dumps (LimitCORE=0)" ct grep -Eq '^Max core file size\s+0\s+0' /proc/"$PID"/limits

echo "== operators"
ct useradd -G arclock-admin alice || true
ct useradd mallory || true
check "a member of arclock-admin uses the console (SO_PEERCRED sees its uid)" \
  ct runuser -u alice -- arclock-console instances
check "a user outside the group is refused (socket permissions or 403)" \
  bash -c "ct runuser -u mallory -- arclock-console instances 2>&1 | grep -Eq 'Permission denied|may not use the admin socket'"

echo "== KEK retirement (the shipped, opt-in timer)"
check "the retirement timer ships disabled (opt-in)" \
  bash -c "[ \"\$(ct systemctl is-enabled arclock-retire-keys.timer 2>/dev/null)\" = disabled ]"
check "the retirement service runs as the daemon's user and succeeds" \
  ct systemctl start arclock-retire-keys.service
check "it destroyed the first KEK in the token (journal)" \
  bash -c "ct journalctl -u arclock-retire-keys -o cat | grep -q 'holds every key.*destroyed \\[1\\]'"

echo "== reload, watchdog, drain"
old_fp="$(openssl x509 -noout -fingerprint -sha256 -in "$CT/etc/arclock/tls/cert.pem")"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost" -keyout "$CT/etc/arclock/tls/key.pem.new" \
  -out "$CT/etc/arclock/tls/cert.pem.new" >/dev/null 2>&1
ct chgrp arclock /etc/arclock/tls/key.pem.new
chmod 0640 "$CT/etc/arclock/tls/key.pem.new"
mv "$CT/etc/arclock/tls/key.pem.new" "$CT/etc/arclock/tls/key.pem"
mv "$CT/etc/arclock/tls/cert.pem.new" "$CT/etc/arclock/tls/cert.pem"
check "systemctl reload succeeds" ct systemctl reload arclockd
new_fp="$(echo | openssl s_client -connect "localhost:$PORT" -servername localhost 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null || true)"
check "after reload the daemon serves the new certificate" bash -c "[ -n '$new_fp' ] && [ '$new_fp' != '$old_fp' ] && health"
check "reload kept the same process" bash -c "[ '$PID' != 0 ] && [ -n '$PID' ] && [ \"\$(show MainPID)\" = '$PID' ]"

restarts="$(show NRestarts)"
kill -STOP "$(host_pid)" || fail "no daemon to stop"
check "a stopped (SIGSTOP) daemon is restarted by the watchdog (WatchdogSec=30s)" \
  wait_for 75 bash -c "[ \"\$(show NRestarts)\" -gt $restarts ] && [ \"\$(show ActiveState)\" = active ]"
check "the restarted daemon answers" wait_for 30 health
check "the watchdog was the reason (journal)" bash -c "ct journalctl -u arclockd -o cat | grep -qi 'watchdog timeout'"

# A request in flight: headers and half a body now, the rest after the stop.
python3 - "$PORT" "$CT/etc/arclock/tls/cert.pem" > "$STATE/nspawn/drain.out" 2>&1 <<'PY' &
import socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("localhost", port)), server_hostname="localhost")
body = b'{"email":"drain@example.com","faceImage":"' + b"A" * 4000 + b'"}'
s.sendall(b"POST /api/auth/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\n\r\n" % len(body) + body[:100])
time.sleep(3)
s.sendall(body[100:])
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
    if b"\r\n\r\n" in data:
        break
print(data.split(b"\r\n", 1)[0].decode())
PY
DRAIN=$!
sleep 1
stop_started=$SECONDS
ct systemctl stop arclockd &
STOP=$!
wait "$DRAIN" || true
wait "$STOP" || true
stop_took=$((SECONDS - stop_started))
check "systemctl stop lets a request in flight finish (an HTTP answer, not a reset)" \
  grep -q '^HTTP/1.1 [0-9][0-9][0-9]' "$STATE/nspawn/drain.out"
check "the stop waited for it (${stop_took} s; the body's second half came 2 s in)" test "$stop_took" -ge 2
check "the daemon stopped cleanly" bash -c "[ \"\$(show Result)\" = success ] && [ \"\$(show ActiveState)\" = inactive ]"

echo "== a bad configuration"
ct cp /etc/arclock/arclockd.toml /root/arclockd.toml.good
ct sed -i 's/^listen = .*/listen = "not an address"/' /etc/arclock/arclockd.toml
ct systemctl start arclockd >/dev/null 2>&1 || true
sleep 5
check "exits 78 (EX_CONFIG) and is not restarted (RestartPreventExitStatus)" \
  bash -c "[ \"\$(show ExecMainStatus)\" = 78 ] && [ \"\$(show NRestarts)\" = 0 ] && [ \"\$(show ActiveState)\" = failed ]"
ct cp /root/arclockd.toml.good /etc/arclock/arclockd.toml
ct systemctl reset-failed arclockd >/dev/null 2>&1 || true

echo "== upgrade, purge"
ct sed -i 's/^level = .*/level = "debug,ort=warn"/' /etc/arclock/arclockd.toml
ct systemctl start arclockd
check "an upgrade installs over the running service" \
  ct env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold /root/arclock-upgrade.deb
check "the upgrade kept the edited /etc/arclock config" grep -q '^level = "debug,ort=warn"' "$CT/etc/arclock/arclockd.toml"
check "the upgrade kept the state (store, token)" test -s "$CT/var/lib/arclock/arclock.db" -a -d "$CT/var/lib/arclock/softhsm/tokens"
check "the service runs again after the upgrade" wait_for 30 health
check "apt purge removes the package" ct env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q arclock
check "purge removed /etc/arclock, the state and the unit" \
  bash -c "[ ! -e '$CT/etc/arclock' ] && [ ! -e '$CT/var/lib/arclock' ] && [ ! -e '$CT/usr/lib/systemd/system/arclockd.service' ]"

echo
if ((FAILED)); then
  echo "boot-test: $FAILED check(s) failed; the container's journal for arclockd:"
  ct journalctl -u arclockd -o short-monotonic --no-pager | tail -40 || true
  exit 1
fi
echo "boot-test: every check passed"

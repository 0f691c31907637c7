#!/usr/bin/env bash
# Runs a command with a throwaway nx-27017 (MongoDB wire protocol on SQLite)
# listening on a free loopback port, and ARCLOCK_TEST_MONGODB_URI pointing at it,
# so the store contract runs against the MongoDB backend too. The server and its
# data are removed afterwards, whatever the command's outcome.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${ARCLOCK_STATE_DIR:-$ROOT/var}"
NX="$STATE/opt/nx-27017/bin/nx-27017"
[ -x "$NX" ] || { echo "with-mongo: $NX missing; run make setup" >&2; exit 1; }

data="$(mktemp -d)"
mkdir -p "$data/db"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$NX" --host 127.0.0.1 -p "$port" --data-dir "$data/db" \
  --log-file "$data/nx.log" --pid-file "$data/nx.pid" >"$data/out" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data"; }
trap cleanup EXIT

for _ in $(seq 1 100); do
  if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$port" 2>/dev/null; then
    break
  fi
  kill -0 "$pid" 2>/dev/null || { echo "with-mongo: nx-27017 exited:" >&2; cat "$data/out" >&2; exit 1; }
  sleep 0.1
done

export ARCLOCK_TEST_MONGODB_URI="mongodb://127.0.0.1:$port/?directConnection=true"
export ARCLOCK_TEST_MONGODB_REQUIRED=1
# Where the server keeps its files, for the privacy scan of what was written.
export ARCLOCK_TEST_MONGODB_DATA="$data"
echo "with-mongo: nx-27017 on 127.0.0.1:$port"
"$@"

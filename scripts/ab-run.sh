#!/usr/bin/env bash
# Interleaved A/B runs of the benchmark: scripts/ab-run.sh OUT LABEL=DIR ...
#
# Each DIR holds a release `arclock-bench` and the `arclockd` it starts (the
# bench runs the `arclockd` beside itself; that file may be a wrapper script
# that sets an environment variable or LD_PRELOAD and execs the real binary).
# The runs go one after another, in the order given, into OUT/NN-LABEL; print
# the table with `scripts/ab-table.py LABEL=OUT/NN-LABEL ...`. SECTIONS (default
# "hsm api") and TAIL (seconds per latency row, default 8) shorten a run.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,10p "$0"; exit 2; }
out=$1; shift
mkdir -p "$out"
n=$(find "$out" -mindepth 1 -maxdepth 1 -type d | wc -l)
for side in "$@"; do
  label=${side%%=*} dir=${side#*=}
  n=$((n + 1))
  run=$out/$(printf %02d "$n")-$label
  mkdir -p "$run"
  started=$(date +%s)
  # shellcheck disable=SC2086 # SECTIONS is a list of words
  ARCLOCK_FACES_DIR=${ARCLOCK_FACES_DIR:-$PWD/../shared/faces} scripts/with-mongo.sh \
    "$dir/arclock-bench" ${SECTIONS:-hsm api} --tail-seconds "${TAIL:-8}" --out "$run" \
    > "$run/log" 2>&1 && rc=0 || rc=$?
  echo "$run rc=$rc $(( $(date +%s) - started )) s"
done

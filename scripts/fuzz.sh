#!/usr/bin/env bash
# `make fuzz`: every cargo-fuzz target in fuzz/ for FUZZ_SECONDS (default 60)
# each, starting from and adding to the corpus in fuzz/corpus/<target>, then
# minimised to a set cover of the edges. Writes fuzz/results/latest.md (runs, exec/s, coverage,
# corpus, crashes) and fails if any target crashed; the crashing input is in
# fuzz/artifacts/<target>/.
#
# cargo-fuzz is installed pinned (0.13.2, --locked: crates.io checksums) under
# the state dir. libFuzzer's instrumentation flags (-Zsanitizer) are
# nightly-only; this machine's toolchain is stable, so the fuzz build, and only
# it, runs with RUSTC_BOOTSTRAP=1.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${ARCLOCK_STATE_DIR:-$ROOT/var}"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
TARGETS=(${FUZZ_TARGETS:-photo jpeg request jwt blobs})
CARGO_FUZZ_VERSION="0.13.2"
TOOL_DIR="$STATE/opt/cargo-fuzz-$CARGO_FUZZ_VERSION"

if ! "$TOOL_DIR/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$TOOL_DIR"
fi
export PATH="$TOOL_DIR/bin:$PATH" RUSTC_BOOTSTRAP=1
cd "$ROOT"
FUZZ=(cargo fuzz)
OPTS=(-a --target-dir target/fuzz)
BIN="target/fuzz/$(rustc -vV | sed -n 's/^host: //p')/release"

"${FUZZ[@]}" build "${OPTS[@]}"

declare -A MAX_LEN=([photo]=16384 [jpeg]=65536 [request]=8192 [jwt]=4096 [blobs]=4096)
mkdir -p fuzz/results
out="fuzz/results/latest.md"
{
  echo "# Fuzzing (cargo fuzz $CARGO_FUZZ_VERSION, libFuzzer + ASan, debug assertions on)"
  echo
  echo "- date (UTC): $(date -u '+%Y-%m-%d %H:%M')"
  echo "- machine: $(nproc) cores, $(uname -sr)"
  echo "- rustc: $(rustc --version)"
  echo "- arclock: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  echo "| target | seconds | runs | exec/s | coverage (edges) | corpus files (after cmin) | crashes |"
  echo "|---|---|---|---|---|---|---|"
} > "$out"

failed=()
for t in "${TARGETS[@]}"; do
  log="target/fuzz/$t.log"
  mkdir -p "target/fuzz" "fuzz/corpus/$t" "fuzz/artifacts/$t"
  before=$(ls "fuzz/artifacts/$t" | wc -l)
  echo "fuzz: $t for ${SECONDS_EACH}s"
  status=0
  "${FUZZ[@]}" run "${OPTS[@]}" "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$SECONDS_EACH" -max_len="${MAX_LEN[$t]:-4096}" \
    -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 > "$log" 2>&1 || status=$?
  # Minimise to a set cover of the edges (not of hit counts): a corpus small
  # enough to keep in git. The synthetic seeds stay whatever they add.
  kept="target/fuzz/$t.cmin"
  rm -rf "$kept" && mkdir -p "$kept"
  if "$BIN/$t" -set_cover_merge=1 -use_counters=0 "$kept" "fuzz/corpus/$t" > "target/fuzz/$t.cmin.log" 2>&1; then
    cp fuzz/corpus/"$t"/seed-* "$kept"/ 2>/dev/null || true
    rm -rf "fuzz/corpus/$t" && mv "$kept" "fuzz/corpus/$t"
  fi
  runs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" | tail -1 || true)
  rate=$(grep -oP 'stat::average_exec_per_sec:\s*\K[0-9]+' "$log" | tail -1 || true)
  cov=$(grep -oP 'cov: \K[0-9]+' "$log" | tail -1 || true)
  files=$(ls "fuzz/corpus/$t" | wc -l)
  crashes=$(( $(ls "fuzz/artifacts/$t" | wc -l) - before ))
  if ((status != 0)) || ((crashes > 0)); then
    failed+=("$t")
    grep -m1 -A3 "panicked at\|ERROR: AddressSanitizer\|ERROR: libFuzzer" "$log" || true
  fi
  echo "| $t | $SECONDS_EACH | ${runs:-?} | ${rate:-?} | ${cov:-?} | $files | $crashes |" >> "$out"
done

cat "$out"
if ((${#failed[@]})); then
  echo "fuzz: crashes in ${failed[*]}: inputs in fuzz/artifacts/, logs in target/fuzz/" >&2
  exit 1
fi

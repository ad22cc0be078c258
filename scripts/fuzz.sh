#!/usr/bin/env bash
# Coverage-guided fuzzing of turnpike with cargo-fuzz (libFuzzer): builds the
# targets of fuzz/ and runs each one for SECONDS, exiting non-zero if any
# target crashes (panic, failed check, timeout or out-of-memory).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   SECONDS per target (default 900);
#                                           targets default to all of them
#
# Environment:
#   FUZZ_PARALLEL  targets run at once (default: the number of CPUs)
#   FUZZ_CPU=1     SECONDS is CPU time, not wall time: a target is run again
#                  (on its grown corpus) until its CPU time adds up, for busy
#                  or niced machines
#   FUZZ_DEV=1     build with the dev profile: about 60% of the release
#                  build's CPU time (CI's short run), slower to execute
#   FUZZ_WORK      grown corpora (default fuzz/work)
#   FUZZ_LOGS      libFuzzer logs (default FUZZ_WORK/logs)
#   FUZZ_ARGS      more libFuzzer flags (a target's own are fuzz/flags/<target>,
#                  its dictionary fuzz/dict/<target>.dict)
#
# Stable Rust: cargo-fuzz's only nightly-only flag is its default sanitizer
# (`-Zsanitizer=address`). With `--sanitizer none` everything else it passes
# (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*, --cfg fuzzing,
# -Cdebug-assertions) is a stable flag, so the stable toolchain builds the
# targets as is: no nightly, no RUSTC_BOOTSTRAP. ASan would add little here:
# the fuzzed core has no `unsafe`, and safe Rust already panics on bad
# indexing and (with the debug assertions cargo-fuzz turns on) on overflow.
#
# Seeds are fuzz/corpus/<target>/ (committed, regenerate with
# fuzz/make_seeds.py); what the fuzzer adds goes to FUZZ_WORK/corpus/<target>.
# A crash leaves its input in fuzz/artifacts/<target>/ and its log in
# FUZZ_LOGS; replay it with
#   cargo fuzz run --sanitizer none TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

SECS=${1:-900}
shift || true
ensure_cargo
# libFuzzer is C++, built by libfuzzer-sys.
apt_install g++
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
  mapfile -t TARGETS < <(cargo fuzz list)
fi
WORK=${FUZZ_WORK:-fuzz/work}
LOGS=${FUZZ_LOGS:-$WORK/logs}
PARALLEL=${FUZZ_PARALLEL:-$(nproc)}
mkdir -p "$LOGS"

TARGET_DIR=${CARGO_TARGET_DIR:-fuzz/target}
PROFILE=release BUILD=()
if [ "${FUZZ_DEV:-0}" = 1 ]; then PROFILE=debug BUILD=(--dev); fi
echo "== cargo fuzz build --sanitizer none ${BUILD[*]}"
cargo fuzz build --sanitizer none "${BUILD[@]}"

# run_target T: fuzzes T for SECS (wall, or CPU with FUZZ_CPU=1); prints one
# summary line; returns non-zero on a crash.
run_target() {
  local t=$1 log="$LOGS/$1.log" bin="$TARGET_DIR/x86_64-unknown-linux-gnu/$PROFILE/$1"
  local used=0 runs=0 round=0 left rc=0 dict=() flags=() n
  [ -f "fuzz/dict/$t.dict" ] && dict=("-dict=fuzz/dict/$t.dict")
  [ -f "fuzz/flags/$t" ] && read -r -a flags <"fuzz/flags/$t"
  mkdir -p "$WORK/corpus/$t" "fuzz/artifacts/$t"
  : >"$log"
  while :; do
    left=$((SECS - used))
    [ "$round" -gt 0 ] && { [ "${FUZZ_CPU:-0}" = 1 ] || break; }
    # Stop once what is left is too little to be worth a restart.
    [ "$round" -gt 0 ] && [ "$left" -lt $((SECS / 50 + 10)) ] && break
    round=$((round + 1))
    rc=0
    /usr/bin/time -f "cpu %U %S" -o "$log.time" \
      "$bin" "$WORK/corpus/$t" "fuzz/corpus/$t" "${dict[@]}" "${flags[@]}" \
      -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$left" \
      -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 ${FUZZ_ARGS:-} \
      >"$log.round" 2>&1 || rc=$?
    cat "$log.round" "$log.time" >>"$log"
    used=$((used + $(awk '/^cpu/ {printf "%d", $2 + $3 + 0.5}' "$log.time")))
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log.round" | tail -1)
    runs=$((runs + ${n:-0}))
    [ "$rc" -ne 0 ] && break
  done
  if [ "$rc" -ne 0 ]; then
    echo "FAIL $t: exit $rc after $runs runs; input in fuzz/artifacts/$t/, log $log"
    grep -m5 -E "panicked|ERROR: libFuzzer|Test unit written" "$log" | sed 's/^/  /' || true
    return 1
  fi
  echo "ok   $t: $runs runs in ${used} CPU-s, $round round(s), $(ls "$WORK/corpus/$t" | wc -l) new corpus files"
}

echo "== fuzzing ${#TARGETS[@]} targets, ${SECS} s each, $PARALLEL at a time"
failed=0
pids=()
names=()
for t in "${TARGETS[@]}"; do
  run_target "$t" >"$LOGS/$t.summary" &
  pids+=($!)
  names+=("$t")
  if [ ${#pids[@]} -ge "$PARALLEL" ]; then
    wait "${pids[0]}" || failed=1
    cat "$LOGS/${names[0]}.summary"
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
  fi
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed=1
  cat "$LOGS/${names[$i]}.summary"
done
if [ "$failed" -ne 0 ]; then
  echo "fuzz: crashes found (see above)"
  exit 1
fi
echo "fuzz: no crash"

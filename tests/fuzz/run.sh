#!/bin/sh
# tests/fuzz/run.sh [SECONDS]: builds the fuzz targets into build/fuzz (when
# their sources changed) and runs them side by side for SECONDS in all
# (default 60): each target gets the whole wall-clock time, so the run
# takes SECONDS however many targets there are. Each runs on a copy of
# its committed seeds in build/fuzz/corpus-run/<target>, which keeps what
# earlier runs found; the repository is never written to.
#
# Prints the executions each target reached; exits 1 if any target found
# a crash, leak, timeout or out-of-memory (the input is saved under
# build/fuzz/artifacts/<target>/ and the end of its log is shown).
#
# Environment: CLANG (default clang), FUZZ_CFLAGS (extra compiler flags),
# FUZZ_TARGETS (default: all three), LUA_PC (default lua5.4).
set -eu

seconds=${1:-60}
case $seconds in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac
[ "$seconds" -ge 1 ] || seconds=1

cd "$(dirname "$0")/../.."
out=build/fuzz
clang=${CLANG:-clang}
targets=${FUZZ_TARGETS:-fuzz_decode fuzz_roundtrip fuzz_frames}
lua_pc=${LUA_PC:-lua5.4}
cflags="-std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
-fno-sanitize-recover=undefined $(pkg-config --cflags "$lua_pc") -Iruntime \
${FUZZ_CFLAGS:-}"
libs="$(pkg-config --libs "$lua_pc") -lm"

sources() {
  case $1 in
    fuzz_frames) echo "tests/fuzz/$1.c runtime/frame.c runtime/proc.c runtime/alloc.c runtime/buffer.c" ;;
    *) echo "tests/fuzz/$1.c runtime/jsontext.c runtime/encode.c runtime/decode.c runtime/alloc.c runtime/buffer.c" ;;
  esac
}

# Per target: the dictionary and the largest input worth trying.
options() {
  case $1 in
    fuzz_decode) echo "-dict=tests/fuzz/json.dict -max_len=8192" ;;
    fuzz_frames) echo "-dict=tests/fuzz/frames.dict -max_len=4096" ;;
    *) echo "-max_len=4096" ;;  # a binary program: no tokens to suggest
  esac
}

# Rebuilds a target when a source or header is newer, or the flags changed.
build() {
  bin=$out/$1
  srcs=$(sources "$1")
  if [ -x "$bin" ] && [ "$(cat "$bin.flags" 2>/dev/null)" = "$cflags" ] &&
     [ -z "$(find $srcs tests/fuzz/*.h runtime/*.h -newer "$bin" 2>/dev/null)" ]; then
    return 0
  fi
  echo "building $bin"
  # shellcheck disable=SC2086 # word splitting of the flag lists is wanted
  $clang $cflags $srcs $libs -o "$bin"
  echo "$cflags" > "$bin.flags"
}

mkdir -p "$out"
for t in $targets; do build "$t"; done

pids=""
trap 'kill $pids 2>/dev/null || true' INT TERM
for t in $targets; do
  mkdir -p "$out/corpus-run/$t" "$out/artifacts/$t" "$out/logs"
  cp -R "tests/fuzz/corpus/$t/." "$out/corpus-run/$t/"
  # shellcheck disable=SC2046 # options are several words
  "$out/$t" "$out/corpus-run/$t" $(options "$t") \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$out/artifacts/$t/" \
    > "$out/logs/$t.log" 2>&1 &
  pids="$pids $!"
done

failed=0
set -- $pids
for t in $targets; do
  status=0
  wait "$1" || status=$?
  shift
  log=$out/logs/$t.log
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  echo "$t: ${runs:-0} executions in ${seconds}s, corpus $(ls "$out/corpus-run/$t" | wc -l) inputs"
  if [ "$status" -ne 0 ]; then
    failed=1
    echo "$t FAILED (exit status $status); log: $log; end of log:"
    grep -v '^#[0-9]' "$log" | tail -n 40
    sed -n 's/.*Test unit written to /reproducer: /p' "$log"
  fi
done
exit $failed

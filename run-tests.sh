#!/usr/bin/env bash
# Runs every test: installs what the tests need, builds with -Werror, runs
# `make check`, then runs it again in an ASan+UBSan build.  Ends with the
# line "N passed, N failed, N skipped".  With CI=true a skip is a failure.
set -eu
cd "$(dirname "$0")"
top=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

./scripts/install-deps.sh
./autogen.sh >/dev/null 2>&1 || ./autogen.sh

passed=0 failed=0 skipped=0
run_suite () {
  local dir=$1; shift
  rm -rf "$dir"
  mkdir -p "$dir"
  (cd "$dir" && "$top/configure" --enable-werror "$@" >/dev/null &&
     make -j"$jobs" >/dev/null) || { echo "build in $dir failed"; failed=$((failed + 1)); return; }
  (cd "$dir" && make -j"$jobs" check) || true
  local log=$dir/test-suite.log
  if [ ! -f "$log" ]; then failed=$((failed + 1)); return; fi
  local p f e s x
  p=$(sed -n 's/^# PASS: *//p' "$log"); f=$(sed -n 's/^# FAIL: *//p' "$log")
  e=$(sed -n 's/^# ERROR: *//p' "$log"); s=$(sed -n 's/^# SKIP: *//p' "$log")
  x=$(sed -n 's/^# XPASS: *//p' "$log")
  passed=$((passed + p)); failed=$((failed + f + e + x)); skipped=$((skipped + s))
  grep -E '^(FAIL|ERROR|SKIP|XPASS):' "$dir"/tests/*.log 2>/dev/null | head -50 || true
}

run_suite build
run_suite build-asan --enable-sanitizers

if [ "${CI:-}" = true ] && [ "$skipped" -gt 0 ]; then
  echo "CI: $skipped skipped tests count as failures (a tool is missing)"
  failed=$((failed + skipped))
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs every test: installs what the tests need, builds with -Werror, runs
# `make check`, then again in an ASan+UBSan build, the concurrency tests in
# a TSan build, and the end-to-end tests with the daemon under valgrind.
# Ends with the line "N passed, N failed, N skipped".  With CI=true a skip
# is a failure.
set -eu
cd "$(dirname "$0")"
top=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

./scripts/install-deps.sh
# The builds below are out of tree: undo an in-place ./configure (or one
# by an older quickstart.sh), which would make their configure refuse.
./scripts/distclean-source-tree.sh
./autogen.sh >/dev/null 2>&1 || ./autogen.sh

passed=0 failed=0 skipped=0
# run_suite DIR [CONFIGURE-ARGS...]; $tests (if set) picks the tests,
# $wrapper runs the daemon under a checker (tests/lib/lib.sh), $tsan sets
# TSAN_OPTIONS.
run_suite () {
  local dir=$1; shift
  rm -rf "$dir"
  mkdir -p "$dir"
  (cd "$dir" && "$top/configure" --enable-werror "$@" >/dev/null &&
     make -j"$jobs" >/dev/null) || { echo "build in $dir failed"; failed=$((failed + 1)); return; }
  (cd "$dir" && LUKS_NBD_WRAPPER="${wrapper:-}" TSAN_OPTIONS="${tsan:-}" \
     make -j"$jobs" check ${tests:+TESTS="$tests"}) || true
  local log=$dir/test-suite.log
  if [ ! -f "$log" ]; then failed=$((failed + 1)); return; fi
  local p f e s x
  p=$(sed -n 's/^# PASS: *//p' "$log"); f=$(sed -n 's/^# FAIL: *//p' "$log")
  e=$(sed -n 's/^# ERROR: *//p' "$log"); s=$(sed -n 's/^# SKIP: *//p' "$log")
  x=$(sed -n 's/^# XPASS: *//p' "$log")
  passed=$((passed + p)); failed=$((failed + f + e + x)); skipped=$((skipped + s))
  grep -E '^(FAIL|ERROR|SKIP|XPASS):' "$dir"/tests/*/*.log 2>/dev/null | head -50 || true
}

run_suite build
run_suite build-asan --enable-sanitizers
# Threads meet in these: overlapping writes, many clients, split requests,
# shared keys (and their re-check against the header), the control
# socket's KDF in the pool, TLS, libnbd pools and their reconnects, the
# connection gate's wake-ups, qcow2 discard against in-flight I/O.
tests="tests/server/test-protocol-edges.sh tests/interop/test-write-roundtrip.sh
  tests/server/test-shared-header.sh tests/server/test-control-socket.sh
  tests/server/test-sigterm-and-tcp.sh tests/server/test-tls.sh
  tests/server/test-nbd-payload.sh tests/interop/test-qcow2-payload.sh
  tests/server/test-protocol-features.sh
  tests/server/test-client-budgets.sh tests/server/test-sigterm-idle-clients.sh
  tests/server/test-nbd-payload-reconnect.sh tests/server/test-shared-key-never-stale.sh
  tests/server/test-qcow2-discard.sh tests/server/test-zeroes-bounded-work.sh
  tests/server/test-total-memory-bound.sh tests/server/test-control-slow-unlock.sh
  tests/server/test-export-resize.sh tests/server/test-export-inactive.sh
  tests/server/test-keyslots-live.sh tests/server/test-read-page-cache.sh
  tests/unit/test-luks-rmw.sh tests/server/test-request-refusals-logged.sh
  tests/server/test-tls-parallel.sh tests/server/test-read-ahead.sh
  tests/server/test-tls-errno-race.sh tests/server/test-tls-key-update.sh" \
tsan="halt_on_error=1:exitcode=66:second_deadlock_stack=1" \
  run_suite build-tsan --enable-sanitizers=thread
# valgrind memcheck on the daemon (tests/lib/lib.sh runs it under
# $LUKS_NBD_WRAPPER): any error or definite leak fails the run.
tests="tests/interop/test-write-roundtrip.sh tests/interop/test-qcow2-payload.sh
  tests/server/test-extents.sh tests/server/test-tls.sh
  tests/server/test-durability-fua-flush.sh tests/server/test-nbd-payload-reconnect.sh
  tests/server/test-sigterm-idle-clients.sh" \
wrapper="valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite" \
  run_suite build-valgrind

if [ "${CI:-}" = true ] && [ "$skipped" -gt 0 ]; then
  echo "CI: $skipped skipped tests count as failures (a tool is missing)"
  failed=$((failed + skipped))
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]

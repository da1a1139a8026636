#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves scripts/install-deps.sh installs everything the tests use, so a
# fresh Debian 12 machine runs every test instead of skipping some (CI
# counts a skip as a failure): every `need` tool, every program the shell
# tests and the Python clients run, every module they import comes from a
# package in its PKGS list (or one those depend on, or one every Debian
# system has).  tests/lib/deps_check.py does the reading and the dpkg look-ups.
. "$(dirname "$0")/../lib/lib.sh"
need python3 dpkg-query
here=$(cd "$(dirname "$0")/../lib" && pwd)
cd "$top_srcdir"

python3 "$here/deps_check.py" scripts/install-deps.sh \
  tests/*/*.sh tests/*/*.py quickstart.sh run-tests.sh > "$TMP/verdicts"
check "deps_check.py read the tests" test -s "$TMP/verdicts"
while read -r verdict what; do
  if [ "$verdict" = PASS ]; then ok "$what"; else not_ok "$what"; fi
done < "$TMP/verdicts"

# The reader must at least see every tool a test declares with `need`.
for t in $(sed -nE 's/^need ([A-Za-z])/\1/p' tests/*/*.sh | tr ' ' '\n' | sort -u); do
  check "need $t is among the checked programs" \
    grep -qE "^(PASS|FAIL) program $t \(" "$TMP/verdicts"
done
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves `make dist` can ship what a build and the tests need: every C
# source and header, every test script and helper (tests/*/*.sh, *.py,
# tests/lib/guest/) and every script under scripts/ and bench/ is named
# in Makefile.am (in a program's _SOURCES, TESTS or its directory's
# EXTRA_DIST block).  A file no list names is missing from the tarball.
. "$(dirname "$0")/../lib/lib.sh"
cd "$top_srcdir"

# Makefile.am's words, one per line, with the continuation backslashes gone.
tr ' \t\\' '\n\n\n' < Makefile.am | grep . | sort -u > "$TMP/named"

unnamed () {
  local f
  for f in {common,crypto,formats,server,nbdkit,fuzz,bench}/*.[ch] \
      tests/*/*.[ch] tests/*/*.sh tests/*/*.py tests/lib/guest/* \
      scripts/*.sh bench/run bench/crypto bench/restart-gap; do
    [ -e "$f" ] || continue
    grep -qxF -- "$f" "$TMP/named" || echo "# $f is in no list of Makefile.am"
  done | grep .
}
check "every source, test and script is named in Makefile.am" not unnamed
# TESTS entries that are not files or built programs would fail late.
missing_tests () {
  sed -n '/^TESTS = /,/^\t\$(NULL)/p' Makefile.am | tr -d ' \t\\' |
    grep -E '^tests/' | while read -r t; do
      case $t in
        *.sh) [ -e "$t" ] || echo "# $t is in TESTS but not in the tree" ;;
        *) grep -qxF "$t" "$TMP/named" && [ -e "$t.c" ] ||
             echo "# $t is in TESTS but has no $t.c" ;;
      esac
    done | grep .
}
check "every test in TESTS exists (a script, or a program's .c)" not missing_tests
done_testing

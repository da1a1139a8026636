#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the C sources follow .clang-format (one style across the tree) and
# every source file says its licence.  The formatter is pinned: another
# major version of clang-format formats some constructs differently, so a
# file "clean" under one would fail under another.  CI installs Debian
# bookworm's clang-format, version 14.
. "$(dirname "$0")/../lib/lib.sh"
need clang-format
cd "$top_srcdir"
pinned_major=14
major=$(clang-format --version | sed -nE 's/.*version ([0-9]+)\..*/\1/p')
check "clang-format is version $pinned_major (found ${major:-none})" test "${major:-0}" = "$pinned_major"
for f in common/*.[ch] crypto/*.[ch] formats/*.[ch] server/*.[ch] nbdkit/*.[ch] tests/*/*.[ch] fuzz/*.[ch] bench/*.c; do
  check "$f is clang-formatted" clang-format --dry-run -Werror "$f"
done
missing_spdx () {
  local f
  for f in {common,crypto,formats,server,nbdkit,fuzz}/*.[ch] tests/*/*.[ch] bench/*.c \
      tests/*/*.sh tests/*/*.py tests/lib/guest/*.py tests/lib/guest/*.sh scripts/*.sh .ci/run \
      *.sh Makefile.am configure.ac bench/run bench/restart-gap; do
    [ -e "$f" ] || continue
    head -3 "$f" | grep -q 'SPDX-License-Identifier: ' || echo "# $f has no SPDX line"
  done | grep .
}
check "every source file carries an SPDX-License-Identifier line" not missing_spdx
check "LICENSE holds the licence the SPDX lines name" grep -q 'GNU LESSER GENERAL PUBLIC LICENSE' LICENSE
done_testing

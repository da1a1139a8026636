#!/usr/bin/env bash
# Proves the C sources follow .clang-format (one style across the tree).
. "$(dirname "$0")/lib.sh"
need clang-format
cd "$top_srcdir"
for f in common/*.[ch] crypto/*.[ch] formats/*.[ch] server/*.[ch] nbdkit/*.[ch] tests/*.[ch] bench/*.c; do
  check "$f is clang-formatted" clang-format --dry-run -Werror "$f"
done
done_testing

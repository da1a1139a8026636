#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Every build is out of tree (quickstart.sh: build-quickstart/, run-tests.sh:
# build/, build-asan/, build-tsan/, build-valgrind/).  configure refuses to
# build out of tree once the source tree itself was configured ("source
# directory already configured"), as quickstart.sh did before it got its own
# build directory, or as a plain `./configure && make` does.  This undoes
# that with `make distclean` (which also removes the in-tree objects, which
# make would otherwise find through VPATH and link into an out-of-tree
# build).  Does nothing when the source tree is not configured.
set -eu
cd "$(dirname "$0")/.."
[ -f config.status ] || exit 0
echo "== the source tree $(pwd) was configured in place; running 'make distclean' there, as builds are out of tree"
if [ -f Makefile ] && make distclean >/dev/null 2>&1 && [ ! -f config.status ]; then
  exit 0
fi
echo "error: 'make distclean' failed in $(pwd); remove config.status and the build products there by hand" >&2
exit 1

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the README's two commands work in either order, in a copy of the
# source tree: quickstart.sh builds out of tree (build-quickstart/), so
# run-tests.sh's out-of-tree builds (build/, ...) can still configure after
# it ("source directory already configured" otherwise), and a source tree
# configured in place (an older quickstart.sh, or ./configure) is cleaned
# by scripts/distclean-source-tree.sh, which run-tests.sh runs first.
. "$(dirname "$0")/../lib/lib.sh"
need nbdinfo make setsid
src=$TMP/src
mkdir "$src"
for f in "$top_srcdir"/* "$top_srcdir"/.[!.]*; do
  case ${f##*/} in
    build | build-aux) ;;
    build-* | demo | .git | autom4te.cache) continue ;;
  esac
  cp -a "$f" "$src/"
done
# The copy may come from a tree configured in place: start from a clean one.
(cd "$src" && { [ ! -f config.status ] || make distclean > /dev/null; })

# quickstart SECONDS: runs ./quickstart.sh in the copy, as the README does
# (it serves until killed), until nbdinfo sees the demo export; then stops
# it.  Fails if it does not serve within SECONDS.
quickstart () {
  local pid i rc=1 uri="nbd+unix:///demo?socket=$src/demo/luks-nbd.sock"
  setsid bash -c 'cd "$1" && exec ./quickstart.sh' - "$src" > "$TMP/quickstart.log" 2>&1 &
  pid=$!
  for ((i = 0; i < $1 * 10; i++)); do
    if nbdinfo "$uri" > "$TMP/nbdinfo.out" 2>&1; then rc=0; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -- -"$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ "$rc" -eq 0 ] || { echo "# quickstart.sh did not serve:"; sed 's/^/#   /' "$TMP/quickstart.log" | tail -20; }
  return "$rc"
}
# out_of_tree_build DIR: what run-tests.sh does for each suite: configure
# and build out of tree in DIR.
out_of_tree_build () {
  (cd "$src" && rm -rf "$1" && mkdir "$1" && cd "$1" &&
     ../configure --enable-werror > "$TMP/configure.log" 2>&1 &&
     make -j2 > "$TMP/make.log" 2>&1) ||
    { echo "# out-of-tree build in $1 failed:"; tail -n 3 "$TMP/configure.log" "$TMP/make.log" 2>/dev/null | sed 's/^/#   /'; return 1; }
}

check "quickstart.sh serves the demo export in a fresh tree" quickstart 300
check "nbdinfo shows the demo export's description" grep -q "luks-nbd demo volume" "$TMP/nbdinfo.out"
check "quickstart.sh left the source tree unconfigured" test ! -f "$src/config.status"
check "after quickstart.sh, run-tests.sh's configure and build in build/ work" out_of_tree_build build
check "after run-tests.sh's builds, quickstart.sh serves again" quickstart 300

# An in-place configuration and build (an older quickstart.sh did this):
(cd "$src" && ./configure > /dev/null 2>&1 && make -j2 > /dev/null 2>&1)
check "the copy was configured and built in place" test -f "$src/config.status"
check "run-tests.sh's first step, scripts/distclean-source-tree.sh, runs" \
  eval '"$src/scripts/distclean-source-tree.sh" > "$TMP/distclean.log" 2>&1'
check "it removed the in-place configuration" test ! -f "$src/config.status"
check "and the in-place objects (VPATH would link them into build dirs)" \
  test ! -e "$src/server/luks-nbd"
check "then run-tests.sh's configure and build in build-asan/ work" out_of_tree_build build-asan
(cd "$src" && ./configure > /dev/null 2>&1)
check "quickstart.sh serves after an in-place configuration" quickstart 300
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves scripts/install-deps.sh's decisions, run against stub dpkg-query,
# apt-get and id (the real dpkg compares versions): a machine with
# bookworm's QEMU 7.2 gets bookworm-backports (the deb822 file) and QEMU
# from it, with -t bookworm-backports --no-install-recommends; QEMU 10 is
# left alone; a complete machine runs no apt-get at all; other packages
# still come from bookworm; an existing backports source is kept.
. "$(dirname "$0")/../lib/lib.sh"
need dpkg sed
script=$top_srcdir/scripts/install-deps.sh
mkdir -p "$TMP/bin"
# dpkg-query -W -f=FMT PKG: "install ok installed VERSION" from $TMP/have.
cat > "$TMP/bin/dpkg-query" <<'EOF'
#!/bin/sh
for last; do :; done
v=$(sed -n "s/^$last //p" "$STUB_DIR/have")
[ -n "$v" ] || exit 1
printf 'install ok installed %s' "$v"
EOF
cat > "$TMP/bin/apt-get" <<'EOF'
#!/bin/sh
echo "$*" >> "$STUB_DIR/apt.log"
EOF
cat > "$TMP/bin/id" <<'EOF'
#!/bin/sh
echo "$STUB_UID"
EOF
chmod +x "$TMP/bin/"*
pkgs=$(sed -n '/^PKGS="/,/"$/p' "$script" | tr -d '"' | sed 's/^PKGS=//')
qemu10="1:10.0.2+ds-2+deb13u1~bpo12+1" qemu72="1:7.2+dfsg-7+deb12u18+b3"

# run_with NAME UID PKG=VERSION...: every package of PKGS installed (at
# version 1.0) except those given (VERSION "-": not installed); runs the
# script, leaves its exit status in $TMP/NAME.rc and apt-get's calls in
# $TMP/NAME/apt.log.
run_with () {
  local name=$1 uid=$2 p kv; shift 2
  mkdir -p "$TMP/$name/sources"
  : > "$TMP/$name/have"; : > "$TMP/$name/apt.log"
  for p in $pkgs; do
    for kv; do [ "${kv%%=*}" = "$p" ] && continue 2; done
    echo "$p 1.0" >> "$TMP/$name/have"
  done
  for kv; do
    [ "${kv#*=}" = - ] || echo "${kv%%=*} ${kv#*=}" >> "$TMP/$name/have"
  done
  STUB_DIR=$TMP/$name STUB_UID=$uid INSTALL_DEPS_SOURCES_DIR=$TMP/$name/sources \
    INSTALL_DEPS_SOURCES_LIST=$TMP/$name/sources.list \
    PATH="$TMP/bin:$PATH" sh "$script" > "$TMP/$name.out" 2>&1
  echo $? > "$TMP/$name.rc"
}
rc () { test "$(cat "$TMP/$1.rc")" = "$2"; }

check "PKGS lists qemu-utils and qemu-system-x86" \
  grep -qw qemu-system-x86 <<< "$pkgs"
run_with done 0 qemu-utils=$qemu10 qemu-system-x86=$qemu10
check "complete machine with QEMU 10: exit 0" rc done 0
check "complete machine: no apt-get call" not test -s "$TMP/done/apt.log"
check "complete machine: no backports source written" \
  not test -e "$TMP/done/sources/bookworm-backports.sources"

run_with old 0 qemu-utils=$qemu72 qemu-system-x86=-
check "QEMU 7.2 machine: exit 0" rc old 0
printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" \
  "Suites: bookworm-backports" "Components: main" \
  "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" > "$TMP/want.sources"
check "QEMU 7.2 machine: bookworm-backports.sources written (deb822)" \
  cmp -s "$TMP/old/sources/bookworm-backports.sources" "$TMP/want.sources"
check "QEMU 7.2 machine: apt-get update, then QEMU from backports only" \
  diff -u <(printf '%s\n' "update -q" \
    "install -y -q -t bookworm-backports --no-install-recommends qemu-utils qemu-system-x86") \
  "$TMP/old/apt.log"

run_with nine 0 qemu-utils=1:9.2.1+ds-1~bpo12+1 qemu-system-x86=$qemu10
check "QEMU 9.2 qemu-utils is upgraded too" \
  grep -qx "install -y -q -t bookworm-backports --no-install-recommends qemu-utils" "$TMP/nine/apt.log"

run_with fio 0 fio=- qemu-utils=$qemu10 qemu-system-x86=$qemu10
check "missing fio with QEMU 10: fio from bookworm, nothing from backports" \
  diff -u <(printf '%s\n' "update -q" "install -y -q --no-install-recommends fio") \
  "$TMP/fio/apt.log"
check "missing fio with QEMU 10: no backports source written" \
  not test -e "$TMP/fio/sources/bookworm-backports.sources"

mkdir -p "$TMP/kept/sources"
echo "Suites: bookworm-backports # mine" > "$TMP/kept/sources/mine.sources"
run_with kept 0 qemu-utils=$qemu72
check "an existing backports source is kept, none added" \
  test "$(ls "$TMP/kept/sources")" = mine.sources
check "an existing backports source: QEMU still from backports" \
  grep -q -- "-t bookworm-backports" "$TMP/kept/apt.log"

run_with user 1000 qemu-utils=$qemu72
check "not root with QEMU 7.2: exit 1" rc user 1
check "not root: the message names QEMU >= 10 from bookworm-backports" \
  grep -q "QEMU >= 10 from bookworm-backports: qemu-utils" "$TMP/user.out"
check "not root: no apt-get call" not test -s "$TMP/user/apt.log"
done_testing

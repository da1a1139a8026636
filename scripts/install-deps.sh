#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs the Debian packages luks-nbd builds with and its tests drive
# (run as root).  Does nothing when all are present.
# tests/tree/test-deps-complete.sh checks that every program and Python module
# the tests use comes from a package here (or one these depend on, or one
# of Priority: required): a package that is merely present on the
# developer's machine makes tests skip on a fresh one.
#
# QEMU comes from bookworm-backports (10.x): detached LUKS headers need
# QEMU >= 9.0, and the tests and bench/run use them.  A machine with
# bookworm's QEMU 7.2 is upgraded: the version is checked, not only the
# presence.  tests/tree/test-install-deps.sh runs this script against stubs.
set -eu
PKGS="build-essential autoconf automake pkg-config
      linux-image-amd64 busybox-static
      libuv1-dev libgcrypt20-dev libjson-c-dev libnbd-dev zlib1g-dev libzstd-dev libgnutls28-dev
      libnbd-bin python3 python3-libnbd nbdkit nbdkit-plugin-dev nbd-client cryptsetup-bin qemu-utils qemu-system-x86 fio
      openssl xxd clang-format valgrind iproute2 systemd util-linux-extra file groff-base
      debootstrap systemd-container"
# Those of PKGS installed from backports, and the least version accepted.
BACKPORTS_PKGS="qemu-utils qemu-system-x86"
BACKPORTS_MIN="1:10"
SOURCES_LIST=${INSTALL_DEPS_SOURCES_LIST:-/etc/apt/sources.list}
SOURCES_DIR=${INSTALL_DEPS_SOURCES_DIR:-/etc/apt/sources.list.d}
BACKPORTS_LIST=$SOURCES_DIR/bookworm-backports.sources

# installed_version PKG: its version if installed, else nothing.
installed_version () {
  dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null |
    sed -n 's/^install ok installed //p'
}

missing="" backports=""
for p in $PKGS; do
  v=$(installed_version "$p")
  case " $BACKPORTS_PKGS " in
    *" $p "*)
      if [ -z "$v" ] || dpkg --compare-versions "$v" lt "$BACKPORTS_MIN"; then
        backports="$backports $p"
      fi ;;
    *) [ -n "$v" ] || missing="$missing $p" ;;
  esac
done
[ -z "$missing$backports" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages:$missing${backports:+ (QEMU >= 10 from bookworm-backports:$backports)} (run as root)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ -n "$backports" ] &&
   ! grep -qsE '^[^#]*bookworm-backports' "$SOURCES_LIST" \
       "$SOURCES_DIR"/*.list "$SOURCES_DIR"/*.sources; then
  cat > "$BACKPORTS_LIST" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
fi
apt-get update -q
[ -z "$missing" ] || apt-get install -y -q --no-install-recommends $missing
[ -z "$backports" ] ||
  apt-get install -y -q -t bookworm-backports --no-install-recommends $backports

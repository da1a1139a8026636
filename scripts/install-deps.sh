#!/bin/sh
# Installs the Debian packages luks-nbd builds with and its tests drive
# (run as root).  Does nothing when all are present.
# tests/test-deps-complete.sh checks that every program and Python module
# the tests use comes from a package here (or one these depend on, or one
# of Priority: required): a package that is merely present on the
# developer's machine makes tests skip on a fresh one.
set -eu
PKGS="build-essential autoconf automake pkg-config
      linux-image-amd64 busybox-static
      libuv1-dev libgcrypt20-dev libjson-c-dev libnbd-dev zlib1g-dev libzstd-dev libgnutls28-dev
      libnbd-bin python3 python3-libnbd nbdkit nbd-client cryptsetup-bin qemu-utils fio
      qemu-system-x86
      openssl xxd clang-format valgrind iproute2 systemd util-linux-extra file groff-base
      debootstrap systemd-container"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages:$missing (run as root)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends $missing

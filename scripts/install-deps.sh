#!/bin/sh
# Installs the Debian packages luks-nbd builds with and its tests drive
# (run as root).  Does nothing when all are present.
set -eu
PKGS="build-essential autoconf automake pkg-config
      libuv1-dev libgcrypt20-dev libjson-c-dev libnbd-dev zlib1g-dev libzstd-dev libgnutls28-dev
      libnbd-bin python3-libnbd nbdkit cryptsetup-bin qemu-utils fio
      openssl xxd clang-format valgrind"
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

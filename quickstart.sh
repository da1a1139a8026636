#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs the build dependencies, builds luks-nbd, makes a demo volume
# with cryptsetup (LUKS2, detached header) if there is none, and serves it
# on a unix socket until Ctrl-C.  Run as root on Debian 12.
# It builds out of tree, in build-quickstart/, which run-tests.sh leaves
# alone: either script may run first.  Arguments go to luks-nbd, e.g.
#   ./quickstart.sh --run 'nbdinfo "$uri"'
# serves only while that command runs.
set -eu
cd "$(dirname "$0")"
./scripts/install-deps.sh
[ -x configure ] || ./autogen.sh
./scripts/distclean-source-tree.sh
build=$(pwd)/build-quickstart
mkdir -p "$build"
[ -f "$build/Makefile" ] || (cd "$build" && ../configure)
make -C "$build" -j"$(nproc)"

demo=$(pwd)/demo
sock=$demo/luks-nbd.sock
mkdir -p "$demo"
if [ ! -f "$demo/disk.hdr" ]; then
  echo "== making a 64 MiB demo volume: $demo/disk.img (payload) + $demo/disk.hdr (header)"
  # Zeros where a partition table would be, then random data: a disk
  # that starts with structure, as check-plaintext= expects of a used one.
  { head -c 1M /dev/zero; head -c 63M /dev/urandom; } > "$demo/disk.img"
  (umask 077; printf 'demo passphrase' > "$demo/key")
  cryptsetup reencrypt --encrypt --type luks2 --header "$demo/disk.hdr" \
    --key-file "$demo/key" --force-offline-reencrypt --batch-mode \
    --pbkdf argon2id --pbkdf-memory 65536 --pbkdf-force-iterations 4 \
    --cipher aes-xts-plain64 --key-size 512 --sector-size 4096 "$demo/disk.img"
fi
cat <<EOM
== serving export 'demo' on $sock (Ctrl-C stops)
   nbdinfo 'nbd+unix:///demo?socket=$sock'
   nbdcopy 'nbd+unix:///demo?socket=$sock' plain.img
   qemu-system-x86_64 ... -blockdev driver=nbd,node-name=disk0,server.type=unix,server.path=$sock,export=demo -device virtio-blk,drive=disk0
   nbd-client -unix $sock -N demo /dev/nbd0        (needs the nbd kernel module)
   nbdfuse $demo/mnt 'nbd+unix:///demo?socket=$sock'  (then $demo/mnt/nbd is the plaintext disk)
EOM
exec "$build/server/luks-nbd" --socket "$sock" -v \
  --export "name=demo,payload=$demo/disk.img,header=$demo/disk.hdr,key-file=$demo/key,description=luks-nbd demo volume" \
  "$@"

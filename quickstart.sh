#!/usr/bin/env bash
# Installs the build dependencies, builds luks-nbd, makes a demo volume
# with cryptsetup (LUKS2, detached header) if there is none, and shows
# what crypto/ finds in it.  Run as root on Debian 12.
set -eu
cd "$(dirname "$0")"
./scripts/install-deps.sh
[ -x configure ] || ./autogen.sh
[ -f Makefile ] || ./configure
make -j"$(nproc)"
make tests/luks-crypt-tool >/dev/null

demo=demo
mkdir -p "$demo"
if [ ! -f "$demo/disk.hdr" ]; then
  echo "== making a 64 MiB demo volume: $demo/disk.img (payload) + $demo/disk.hdr"
  head -c 64M /dev/urandom > "$demo/plain.img"
  cp "$demo/plain.img" "$demo/disk.img"
  (umask 077; printf 'demo passphrase' > "$demo/key")
  cryptsetup reencrypt --encrypt --type luks2 --header "$demo/disk.hdr" \
    --key-file "$demo/key" --force-offline-reencrypt --batch-mode \
    --pbkdf argon2id --pbkdf-memory 65536 --pbkdf-force-iterations 4 \
    --cipher aes-xts-plain64 --key-size 512 --sector-size 4096 "$demo/disk.img"
fi
echo "== header $demo/disk.hdr"
tests/luks-crypt-tool info "$demo/disk.hdr"
echo "== unlocking and decrypting $demo/disk.img"
if tests/luks-crypt-tool decrypt "$demo/disk.hdr" "$demo/disk.img" "$demo/key" |
     cmp -s - "$demo/plain.img"; then
  echo "OK: the payload decrypts to the original plaintext"
else
  echo "FAILED: decrypted payload differs from the plaintext" >&2
  exit 1
fi

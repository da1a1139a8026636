#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that a file whose size is not a multiple of the encryption
# sector copies onto a 4096-byte-sector volume with nbdcopy and reads
# back byte for byte: the server advertises minimum block size 1 (it
# serves partial sectors by read-modify-write) and the sector size as the
# preferred size, as nbdkit's file plugin does for 4K disks.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy nbdinfo python3

make_luks2_volume v 4M --sector-size 4096
make_luks2_volume s 4M --sector-size 512
# 1 MiB + 1234 bytes: neither 4096- nor 512-aligned.
make_plaintext "$TMP/iso" $((1048576 + 1234))
luks_nbd --socket "$TMP/sock" --export "$(spec v)" --export "$(spec s)" \
  --run "nbdinfo --json 'nbd+unix:///v?socket=$TMP/sock' > $TMP/v.json &&
         nbdinfo --json 'nbd+unix:///s?socket=$TMP/sock' > $TMP/s.json &&
         nbdcopy $TMP/iso 'nbd+unix:///v?socket=$TMP/sock' &&
         nbdcopy $TMP/iso 'nbd+unix:///s?socket=$TMP/sock' &&
         nbdcopy 'nbd+unix:///v?socket=$TMP/sock' $TMP/v.back &&
         nbdcopy 'nbd+unix:///s?socket=$TMP/sock' $TMP/s.back" 2> "$TMP/err"
rc=$?
check "nbdcopy of a $((1048576 + 1234))-byte file onto 4096- and 512-byte-sector volumes succeeds" \
  test $rc -eq 0
grep -v '^luks-nbd' "$TMP/err" | sed 's/^/# /'

field () { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['exports'][0].get(sys.argv[2]))" "$@"; }
check "4096-byte sectors: minimum block size 1" test "$(field "$TMP/v.json" block_size_minimum)" = 1
check "4096-byte sectors: preferred block size 4096" test "$(field "$TMP/v.json" block_size_preferred)" = 4096
check "512-byte sectors: minimum block size 1" test "$(field "$TMP/s.json" block_size_minimum)" = 1
check "512-byte sectors: preferred block size 4096" test "$(field "$TMP/s.json" block_size_preferred)" = 4096

size=$(stat -c %s "$TMP/iso")
check "4096-byte sectors: the file reads back byte for byte" cmp -s -n "$size" "$TMP/v.back" "$TMP/iso"
check "512-byte sectors: the file reads back byte for byte" cmp -s -n "$size" "$TMP/s.back" "$TMP/iso"
# The partial last sector kept the volume's old bytes after the file.
check "4096-byte sectors: the rest of the partial sector is the old plaintext" \
  cmp -s -i "$size" -n $((4096 - size % 4096)) "$TMP/v.back" "$TMP/v.plain"
check "4096-byte sectors: the rest of the volume is the old plaintext" \
  cmp -s -i "$size" "$TMP/v.back" "$TMP/v.plain"

# cryptsetup agrees on what is on disk.
cp "$TMP/v.hdr" "$TMP/v.hdr-copy"
cryptsetup reencrypt --decrypt --header "$TMP/v.hdr-copy" --key-file "$TMP/v.key" \
  --force-offline-reencrypt --batch-mode "$TMP/v.payload" >/dev/null
check "cryptsetup decrypts the payload to the file followed by the old plaintext" \
  cmp -s -n "$size" "$TMP/v.payload" "$TMP/iso"
check "cryptsetup: the bytes after the file are untouched" \
  cmp -s -i "$size" "$TMP/v.payload" "$TMP/v.plain"
done_testing

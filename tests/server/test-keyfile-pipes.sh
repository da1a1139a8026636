#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves key-file= and passphrase-file= read to the end of what they are
# given, not to a size that a pipe, a FIFO or /dev/stdin does not have
# (they read as empty before): cryptsetup volumes (LUKS2, LUKS1, a 3 MiB
# key file) unlock from each, and the data reads back through nbdcopy.
# Endless or oversized sources are
# refused with a clear error, at cryptsetup's limits (8 MiB key files,
# 512-character passphrases), instead of being cut.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy nbdinfo mkfifo
make_luks2_volume v 1M --sector-size 4096
cryptsetup luksFormat --type luks1 --header "$TMP/l1.hdr" --key-file "$TMP/v.key" \
  --pbkdf-force-iterations 1000 --batch-mode "$TMP/v.payload" > /dev/null
base="name=v,payload=$TMP/v.payload,header=$TMP/v.hdr"
copy="nbdcopy \"\$uri\" $TMP/out"

# reads SPEC DESCRIPTION: the daemon serves the plaintext with SPEC.
reads () {
  rm -f "$TMP/out"
  luks_nbd --socket "$TMP/sock" --export "$1" --run "$copy" 2> "$TMP/err"
  check "$2" cmp -s "$TMP/out" "$TMP/v.plain"
}
luks_nbd --socket "$TMP/sock" --export "$base,key-file=/dev/stdin" --run "$copy" < "$TMP/v.key" 2> "$TMP/err"
check "key-file=/dev/stdin from a regular file" cmp -s "$TMP/out" "$TMP/v.plain"
rm -f "$TMP/out"
printf '%s' "$(cat "$TMP/v.key")" | luks_nbd --socket "$TMP/sock" --export "$base,key-file=/dev/stdin" --run "$copy" 2> "$TMP/err"
check "key-file=/dev/stdin from a pipe (printf pass |)" cmp -s "$TMP/out" "$TMP/v.plain"
rm -f "$TMP/out"
printf '%s\n' "$(cat "$TMP/v.key")" | luks_nbd --socket "$TMP/sock" --export "$base,passphrase-file=/dev/stdin" --run "$copy" 2> "$TMP/err"
check "passphrase-file=/dev/stdin from a pipe (echo pass |): the newline is stripped" cmp -s "$TMP/out" "$TMP/v.plain"

mkfifo "$TMP/fifo"
timeout 120 cat "$TMP/v.key" > "$TMP/fifo" &
reads "$base,key-file=$TMP/fifo" "key-file= a FIFO"
wait
timeout 120 sh -c "cat $TMP/v.key; echo" > "$TMP/fifo" &
reads "$base,passphrase-file=$TMP/fifo" "passphrase-file= a FIFO"
wait
# The key in a FIFO from two writers, one after the other: every
# piece is read, to the end.
timeout 120 sh -c "head -c 3 $TMP/v.key; tail -c +4 $TMP/v.key" > "$TMP/fifo" &
reads "$base,key-file=$TMP/fifo" "key-file= a FIFO written in two pieces"
wait
# LUKS1 (its own header over the same payload) from a pipe too.  That
# header is another volume's (the payload decrypts to noise through it):
# only the unlock is tested, so check-plaintext=off.
rm -f "$TMP/out"
cat "$TMP/v.key" | luks_nbd --socket "$TMP/sock" --export "name=v,payload=$TMP/v.payload,header=$TMP/l1.hdr,key-file=/dev/stdin,check-plaintext=off" \
  --run "nbdinfo --size \"\$uri\" > $TMP/size" 2> "$TMP/err"
check "a LUKS1 header unlocks from key-file=/dev/stdin" test "$(cat "$TMP/size" 2>/dev/null)" = 1048576

# A 3 MiB key file (cryptsetup takes up to 8 MiB), through a pipe.
head -c 3145728 /dev/urandom > "$TMP/big.key"
cryptsetup luksAddKey --header "$TMP/v.hdr" --key-file "$TMP/v.key" --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 --batch-mode "$TMP/v.payload" "$TMP/big.key"
rm -f "$TMP/out"
cat "$TMP/big.key" | luks_nbd --socket "$TMP/sock" --export "$base,key-file=/dev/stdin" --run "$copy" 2> "$TMP/err"
check "a 3 MiB key file that cryptsetup added unlocks from a pipe" cmp -s "$TMP/out" "$TMP/v.plain"
check_fails_with "an endless key file (/dev/zero) is refused at 8 MiB" \
  "/dev/zero: key file longer than 8388608 bytes" \
  luks_nbd --socket "$TMP/sock" --export "$base,key-file=/dev/zero" --run true
head -c 513 /dev/zero | tr '\0' x > "$TMP/long"
check_fails_with "a 513-character passphrase file is refused" \
  "passphrase longer than 512 characters" \
  luks_nbd --socket "$TMP/sock" --export "$base,passphrase-file=$TMP/long" --run true
check_fails_with "and so is one from a pipe" "passphrase file longer than 513 bytes" \
  sh -c "head -c 600 /dev/zero | tr '\\0' x | timeout 600 $top_builddir/server/luks-nbd --socket $TMP/sock --export '$base,passphrase-file=/dev/stdin' --run true"
check_fails_with "a directory is no key file" "a directory, not a key file" \
  luks_nbd --socket "$TMP/sock" --export "$base,key-file=$TMP" --run true
done_testing

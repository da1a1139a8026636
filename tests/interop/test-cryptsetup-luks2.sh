#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that volumes cryptsetup encrypts with a detached LUKS2 header
# (pbkdf2, argon2i, argon2id; 512..4096-byte sectors; xts and cbc-essiv)
# decrypt through crypto/ to exactly the plaintext, and that encrypting the
# plaintext through crypto/ reproduces cryptsetup's payload bytes.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup cmp

make_plaintext "$TMP/plain" 3M
printf 'correct horse' > "$TMP/key"
fast_pbkdf2="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
fast_argon="--pbkdf-force-iterations 4 --pbkdf-memory 32768 --pbkdf-parallel 1"

row () {
  local name=$1; shift
  local h=$TMP/$name.hdr p=$TMP/$name.payload
  cp "$TMP/plain" "$p"
  if ! cryptsetup_encrypt "$h" "$p" "$TMP/key" "$@" >/dev/null; then
    not_ok "$name: cryptsetup made the volume"; return
  fi
  check "$name: payload is not the plaintext" not cmp -s "$p" "$TMP/plain"
  "$CRYPT_TOOL" decrypt "$h" "$p" "$TMP/key" > "$TMP/out"
  check "$name: decrypts to the plaintext" cmp -s "$TMP/out" "$TMP/plain"
  "$CRYPT_TOOL" encrypt "$h" "$TMP/plain" "$TMP/key" > "$TMP/out"
  check "$name: encrypting reproduces cryptsetup's payload" cmp -s "$TMP/out" "$p"
}

row pbkdf2-aes-xts-256-512 $fast_pbkdf2 --cipher aes-xts-plain64 --key-size 256
row pbkdf2-aes-xts-512-4096 $fast_pbkdf2 --cipher aes-xts-plain64 --key-size 512 --sector-size 4096
row argon2i-aes-xts-512 --pbkdf argon2i $fast_argon --cipher aes-xts-plain64
row argon2id-aes-xts-4096 --pbkdf argon2id $fast_argon --cipher aes-xts-plain64 --sector-size 4096
row pbkdf2-aes-cbc-essiv-sha256 $fast_pbkdf2 --cipher aes-cbc-essiv:sha256 --key-size 256
row pbkdf2-sha512-2048-sectors $fast_pbkdf2 --hash sha512 --cipher aes-xts-plain64 --sector-size 2048
row pbkdf2-aes-xts-1024-sectors $fast_pbkdf2 --cipher aes-xts-plain64 --sector-size 1024

# Keyslots: a second passphrase, a named slot, a wrong passphrase.
h=$TMP/pbkdf2-aes-xts-256-512.hdr p=$TMP/pbkdf2-aes-xts-256-512.payload
printf 'second one' > "$TMP/key2"
cryptsetup luksAddKey --header "$h" --key-file "$TMP/key" $fast_pbkdf2 --batch-mode "$p" "$TMP/key2"
"$CRYPT_TOOL" decrypt "$h" "$p" "$TMP/key2" > "$TMP/out"
check "a second keyslot added by luksAddKey opens the volume" cmp -s "$TMP/out" "$TMP/plain"
"$CRYPT_TOOL" decrypt "$h" "$p" "$TMP/key2" 1 > "$TMP/out"
check "key-slot 1 named explicitly opens it" cmp -s "$TMP/out" "$TMP/plain"
check_fails_with "key-slot 0 refuses the second passphrase" \
  "key slot 0 does not accept this passphrase" "$CRYPT_TOOL" decrypt "$h" "$p" "$TMP/key2" 0
check_fails_with "an inactive key slot is named as such" \
  "key slot 5 is not active" "$CRYPT_TOOL" decrypt "$h" "$p" "$TMP/key2" 5
printf 'wrong' > "$TMP/bad"
check_fails_with "a wrong passphrase gets one clear error" \
  "no key slot in $h accepts this passphrase" "$CRYPT_TOOL" decrypt "$h" "$p" "$TMP/bad"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves LUKS1 detached headers from cryptsetup: a LUKS2 volume encrypted
# by cryptsetup and converted with `cryptsetup convert --type luks1`
# decrypts to the plaintext (sha1 and sha256 headers), and a header from
# `luksFormat --type luks1 --header` unlocks with its passphrase only.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup cmp

make_plaintext "$TMP/plain" 2M
printf 'luks one' > "$TMP/key"
for spec in "aes-xts-plain64 512 sha256" "aes-cbc-essiv:sha256 256 sha1" \
            "aes-xts-plain64 256 sha512"; do
  set -- $spec
  name="luks1-$1-$2-$3"
  h=$TMP/$name.hdr p=$TMP/$name.payload
  cp "$TMP/plain" "$p"
  cryptsetup_encrypt "$h" "$p" "$TMP/key" --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
    --cipher "$1" --key-size "$2" --hash "$3" >/dev/null &&
    cryptsetup convert --type luks1 --header "$h" --batch-mode "$p"
  check "$name: converted header says LUKS1" \
    grep -qx version=1 <("$CRYPT_TOOL" info "$h")
  "$CRYPT_TOOL" decrypt "$h" "$p" "$TMP/key" > "$TMP/out"
  check "$name: decrypts to the plaintext" cmp -s "$TMP/out" "$TMP/plain"
  "$CRYPT_TOOL" encrypt "$h" "$TMP/plain" "$TMP/key" > "$TMP/out"
  check "$name: encrypting reproduces the payload" cmp -s "$TMP/out" "$p"
done

cryptsetup luksFormat --type luks1 --header "$TMP/fmt.hdr" --key-file "$TMP/key" \
  --pbkdf-force-iterations 1000 --hash sha1 --batch-mode "$TMP/plain"
"$CRYPT_TOOL" decrypt "$TMP/fmt.hdr" "$TMP/plain" "$TMP/key" > "$TMP/out"
check "luksFormat --type luks1 header: correct passphrase unlocks" test -s "$TMP/out"
printf 'nope' > "$TMP/bad"
check_fails_with "luksFormat --type luks1 header: wrong passphrase refused" \
  "accepts this passphrase" "$CRYPT_TOOL" decrypt "$TMP/fmt.hdr" "$TMP/plain" "$TMP/bad"
check "luksFormat --type luks1 --header: payload offset 0" \
  grep -qx payload_offset=0 <("$CRYPT_TOOL" info "$TMP/fmt.hdr")
done_testing

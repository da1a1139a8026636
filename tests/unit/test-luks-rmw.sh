#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs the luks read-modify-write unit test (tests/unit/test-luks-rmw.c)
# over a detached-header LUKS2 volume with 4096-byte sectors that
# cryptsetup makes here, then has cryptsetup decrypt the ciphertext the
# test left: it must be exactly the test's model of the plaintext.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup cmp
make_luks2_volume v $((256 * 1024)) --sector-size 4096

"$top_builddir/tests/unit/test-luks-rmw" "$TMP/v.hdr" "$TMP/v.payload" \
  "$TMP/v.key" "$TMP/v.plain" "$TMP/out.payload" "$TMP/out.plain" > "$TMP/tap"
rc=$?
# Its TAP lines, renumbered into ours.
while IFS= read -r line; do
  case $line in
    "ok "*) ok "${line#ok * - }" ;;
    "not ok "*) not_ok "${line#not ok * - }" ;;
    "#"*) echo "$line" ;;
  esac
done < "$TMP/tap"
check "test-luks-rmw exited 0" test "$rc" -eq 0
cp "$TMP/v.hdr" "$TMP/hdr-copy"
cryptsetup reencrypt --decrypt --header "$TMP/hdr-copy" --key-file "$TMP/v.key" \
  --force-offline-reencrypt --batch-mode "$TMP/out.payload" > /dev/null
check "cryptsetup decrypts what the writes left to exactly the model" \
  cmp "$TMP/out.payload" "$TMP/out.plain"
done_testing

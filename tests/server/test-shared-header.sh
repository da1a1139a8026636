#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves shared headers: several exports naming the same header file are
# unlocked with one KDF run when they hold the same passphrase (the log
# says so and every export serves its plaintext); a different valid
# passphrase runs its own KDF; a wrong one is still refused.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy

make_luks2_volume v 2M --sector-size 4096
cp "$TMP/v.payload" "$TMP/clone.payload"          # a clone: same key, same header
printf 'second passphrase' > "$TMP/v.key2"
cryptsetup luksAddKey --header "$TMP/v.hdr" --key-file "$TMP/v.key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --batch-mode "$TMP/v.payload" "$TMP/v.key2"
exp () { echo "name=$1,payload=$TMP/$2,header=$TMP/v.hdr,key-file=$TMP/$3,readonly=on"; }
luks_nbd --socket "$TMP/sock" -v --export "$(exp a v.payload v.key)" \
  --export "$(exp b clone.payload v.key)" --export "$(exp c clone.payload v.key2),locking=off" \
  --run "for e in a b c; do nbdcopy \"nbd+unix:///\$e?socket=\$unixsocket\" $TMP/\$e.out || exit 1; done" \
  2> "$TMP/log"
check "three exports on one header served" test $? -eq 0
check "export b shares a's unlocked key (no second KDF)" grep -q "export 'b': header .* sharing its key" "$TMP/log"
check "export a ran the KDF itself" not grep -q "export 'a': header .* sharing" "$TMP/log"
check "export c, another passphrase, ran its own KDF" not grep -q "export 'c': header .* sharing" "$TMP/log"
for e in a b c; do
  check "export $e serves the plaintext" cmp -s "$TMP/$e.out" "$TMP/v.plain"
done
# The kept key is found again by a fingerprint of the passphrase, held in
# ordinary memory: it must be keyed (HMAC under a secret in secure
# memory), not a plain hash that an offline search could invert from a
# memory image.  Nor is the passphrase kept once unlocked.  memscan.py
# reads the live daemon's memory ($PPID of the --run command).
sha=$(sha256sum < "$TMP/v.key" | cut -d' ' -f1)
pass=$(xxd -p "$TMP/v.key" | tr -d '\n')
luks_nbd --socket "$TMP/sock" --export "$(exp a v.payload v.key)" \
  --export "$(exp b clone.payload v.key)" \
  --run "python3 $top_srcdir/tests/lib/memscan.py \$PPID $sha $pass > $TMP/scan" 2> "$TMP/log2"
check "memory scan of the daemon ran" test "$(wc -l < "$TMP/scan")" -eq 2
check "no plain SHA-256 of the passphrase in the daemon's memory" \
  test "$(sed -n 1p "$TMP/scan" | cut -d' ' -f2)" = 0
check "the passphrase itself was wiped after the unlock" \
  test "$(sed -n 2p "$TMP/scan" | cut -d' ' -f2)" = 0
printf 'wrong' > "$TMP/wrong"
check_fails_with "a wrong passphrase on a shared header is still refused" "accepts this passphrase" \
  luks_nbd --socket "$TMP/sock" --export "$(exp a v.payload v.key)" --export "$(exp b clone.payload wrong)" --run true
done_testing

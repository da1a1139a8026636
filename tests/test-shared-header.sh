#!/usr/bin/env bash
# Proves shared headers: several exports naming the same header file are
# unlocked with one KDF run when they hold the same passphrase (the log
# says so and every export serves its plaintext); a different valid
# passphrase runs its own KDF; a wrong one is still refused.
. "$(dirname "$0")/lib.sh"
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
printf 'wrong' > "$TMP/wrong"
check_fails_with "a wrong passphrase on a shared header is still refused" "accepts this passphrase" \
  luks_nbd --socket "$TMP/sock" --export "$(exp a v.payload v.key)" --export "$(exp b clone.payload wrong)" --run true
done_testing

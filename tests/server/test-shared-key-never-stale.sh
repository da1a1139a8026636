#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that a key kept for sharing is never reused once its header no
# longer vouches for it.  A running daemon unlocked header H for export a;
# then, on the same header file (same inode):
#  - `cryptsetup reencrypt` gives the volume a new key: export-add on H
#    serves the new plaintext (never the old key's garbage);
#  - luksAddKey + luksRemoveKey revokes a passphrase: export-add with the
#    revoked passphrase is refused, naming the header;
#  - a kept key is wiped with the last export using it (the log says so);
#  - running exports are told whether the edited header still vouches for
#    their own key.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy

make_luks2_volume v 2M --sector-size 4096
make_luks2_volume w 2M
LN=$top_builddir/server/luks-nbd
ro=readonly=on,locking=off
printf 'the new passphrase' > "$TMP/new.key"
cat > "$TMP/session.sh" <<EOS
set -u
ctl () { "$LN" ctl --control "$TMP/ctl" "\$@"; }
# Waits (bounded) for a line in the daemon's log.
wait_log () { for _ in \$(seq 200); do grep -q "\$1" "$TMP/log" && return 0; sleep 0.05; done; return 1; }

# 1. Re-encrypt v in place (new volume key, same header inode); a second
#    export on the same header and passphrase must use the new key.
ls -i "$TMP/v.hdr" > "$TMP/ino.before"
cryptsetup reencrypt --header "$TMP/v.hdr" --key-file "$TMP/v.key" \
  --force-offline-reencrypt --batch-mode --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 "$TMP/v.payload" > /dev/null 2>&1 || echo reencrypt-failed
ls -i "$TMP/v.hdr" > "$TMP/ino.after"
ctl export-add "name=b,payload=$TMP/v.payload,header=$TMP/v.hdr,$ro" \
  --passphrase-stdin < "$TMP/v.key" > "$TMP/b.add" 2>&1
nbdcopy "nbd+unix:///b?socket=$TMP/sock" "$TMP/b.out" 2> "$TMP/b.copy.err"
cryptsetup open --test-passphrase --header "$TMP/v.hdr" --key-file "$TMP/v.key" "$TMP/v.payload" \
  || echo test-passphrase-failed

# 2. Revoke v's passphrase (add a new one, remove the old); export-add
#    with the revoked one must fail.
cryptsetup luksAddKey --header "$TMP/v.hdr" --key-file "$TMP/v.key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --batch-mode \
  "$TMP/v.payload" "$TMP/new.key" || echo addkey-failed
cryptsetup luksRemoveKey --header "$TMP/v.hdr" --batch-mode \
  "$TMP/v.payload" "$TMP/v.key" || echo removekey-failed
ctl export-add "name=c,payload=$TMP/v.payload,header=$TMP/v.hdr,$ro" \
  --passphrase-stdin < "$TMP/v.key" > "$TMP/c.add" 2> "$TMP/c.err"
echo \$? > "$TMP/c.rc"
ctl export-add "name=d,payload=$TMP/v.payload,header=$TMP/v.hdr,$ro" \
  --passphrase-stdin < "$TMP/new.key" > "$TMP/d.add" 2>&1
nbdcopy "nbd+unix:///d?socket=$TMP/sock" "$TMP/d.out"
wait_log "header $TMP/v.hdr was modified" || echo no-watch-line
# The header watch re-reads the header once it settles and checks each
# running export's own key against it.
wait_log "export 'a': header $TMP/v.hdr no longer vouches" || echo no-recheck-a
wait_log "export 'b': header $TMP/v.hdr, re-read after the change, still vouches" \
  || echo no-recheck-b

# 3. Export w's key is shared by e; the kept key goes with the last of
#    them.  (export-remove closes an export without clients before the
#    reply is read.)
ctl export-add "$(spec_as e w "$ro")" > "$TMP/e.add" 2>&1
ctl export-remove w > /dev/null
grep -c "kept key for header $TMP/w.hdr wiped" "$TMP/log" > "$TMP/w.wiped1"
ctl export-remove e > /dev/null
wait_log "kept key for header $TMP/w.hdr wiped" || echo no-wipe-line
ctl export-remove a > /dev/null
ctl export-remove b > /dev/null
ctl export-remove d > /dev/null
exit 0
EOS
luks_nbd --socket "$TMP/sock" --control "$TMP/ctl" -v \
  --export "$(spec_as a v "$ro")" --export "$(spec w "$ro")" \
  --run "bash $TMP/session.sh > $TMP/session.out 2>&1" 2> "$TMP/log"
check "the daemon and the session ran" test $? -eq 0
check "cryptsetup re-encrypted the header in place (same inode)" \
  cmp -s "$TMP/ino.before" "$TMP/ino.after"
check "cryptsetup's steps all succeeded" not grep -q failed "$TMP/session.out"
check "export-add after the re-encryption answered ok" grep -q '"ok":true' "$TMP/b.add"
check "it serves the plaintext under the NEW key (not the old key's)" \
  cmp -s "$TMP/b.out" "$TMP/v.plain"
check "export b did not take the old key from the cache" \
  not grep -q "export 'b': header .* sharing its key" "$TMP/log"
check "export-add with the revoked passphrase fails" test "$(cat "$TMP/c.rc")" = 1
# (JSON escapes the slashes of the path)
check "and the error names the header" grep -q 'no key slot in .*v\.hdr accepts this passphrase' "$TMP/c.err"
check "the new passphrase opens it" cmp -s "$TMP/d.out" "$TMP/v.plain"
check "the header watch says the kept key for v.hdr was dropped" \
  grep -q "header $TMP/v.hdr was modified.*kept key" "$TMP/log"
check "running export a is told its key no longer matches the re-encrypted header" \
  grep -q "export 'a': header $TMP/v.hdr no longer vouches for the key this export serves with (.*digest no longer matches" "$TMP/log"
check "export b (unlocked after the re-encryption) is told the edited header still vouches for its key" \
  grep -q "export 'b': header $TMP/v.hdr, re-read after the change, still vouches" "$TMP/log"
check "export e shared w's key" grep -q "export 'e': header .* sharing its key" "$TMP/log"
check "w's kept key stays while export e still uses it" test "$(cat "$TMP/w.wiped1")" = 0
check "and is wiped with e, the last export using it" \
  grep -q "kept key for header $TMP/w.hdr wiped" "$TMP/log"
check "v.hdr's three kept keys (a's, the re-encrypted one, d's) are wiped with their exports" \
  test "$(grep -c "kept key for header $TMP/v.hdr wiped" "$TMP/log")" = 3
sed 's/^/# /' "$TMP/session.out"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# A detached header edited, replaced or removed while serving: the daemon
# serves on with the header it validated at start (same plaintext, writes
# still work) and logs each kind of change once.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy

make_luks2_volume v 4M
# Each nbdcopy is a full round trip through the daemon's loop, which has
# seen the inotify event of a change made before the copy started.
luks_nbd --socket "$TMP/sock" --export "$(spec v)" --run "
  nbdcopy \"\$uri\" $TMP/before &&
  dd if=/dev/zero of=$TMP/v.hdr bs=65536 count=1 conv=notrunc status=none &&
  nbdcopy \"\$uri\" $TMP/edited &&
  mv $TMP/v.hdr $TMP/v.hdr.moved &&
  nbdcopy $TMP/v.plain \"\$uri\" &&
  nbdcopy \"\$uri\" $TMP/removed" 2> "$TMP/log"
check "the daemon served the whole sequence" test $? -eq 0
check "plaintext before the change" cmp -s "$TMP/before" "$TMP/v.plain"
check "same plaintext after the header was overwritten" cmp -s "$TMP/edited" "$TMP/v.plain"
check "writes and reads go on after the header was moved away" cmp -s "$TMP/removed" "$TMP/v.plain"
check "the edit is logged, naming the export and file" \
  grep -qF "export 'v': header $TMP/v.hdr was modified; serving on" "$TMP/log"
check "the removal is logged" grep -qF "export 'v': header $TMP/v.hdr was renamed or removed" "$TMP/log"
check "each kind of change is logged once" test "$(grep -c "header $TMP/v.hdr was" "$TMP/log")" -eq 2
check "both header copies are really gone (cryptsetup refuses the file)" \
  not cryptsetup luksDump --header "$TMP/v.hdr.moved" "$TMP/v.payload"
done_testing

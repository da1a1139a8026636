#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves a slow export-add (a LUKS2 keyslot whose PBKDF2 takes seconds,
# within the accepted caps) runs beside NBD I/O instead of taking the
# worker pool from it: with two such unlocks running, another client's
# 4 KiB read is answered within 3 s; and SIGTERM during them ends the
# daemon within 3 s instead of after the key derivations.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

make_luks2_volume a 1M
# 40M PBKDF2-SHA256 iterations: about 6 s of one core here; the cap
# (2^27) is far above.
# luksFormat writes nothing into the payload: a fresh (zero) one, as
# check-plaintext= expects of a never-written volume.
truncate -s 1M "$TMP/s.payload"
printf 'slow pass' > "$TMP/s.key"
truncate -s 4M "$TMP/s.hdr"
cryptsetup luksFormat --type luks2 --batch-mode --header "$TMP/s.hdr" \
  --key-file "$TMP/s.key" --pbkdf pbkdf2 --pbkdf-force-iterations 40000000 \
  --cipher aes-xts-plain64 --key-size 256 "$TMP/s.payload" >/dev/null
check "cryptsetup made the slow header" test $? -eq 0

timeout 600 python3 "$top_srcdir/tests/lib/control_slow_unlock.py" \
  "$top_builddir/server/luks-nbd" "$TMP" > "$TMP/slow.out"
check "the slow-unlock script ran" test $? -eq 0
tap_report "$TMP/slow.out" 10 "the slow-unlock script"
done_testing

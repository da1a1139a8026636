#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the in-flight byte counts cannot wrap: WRITE_ZEROES and TRIM
# count their range against the budgets (their work is their length),
# and with extended headers one request may cover a whole export of
# nearly 8 EiB; three of those on three connections sum past 2^64.  Each
# is charged at most the connection's budget, and the counters assert
# they never wrap (an uncapped charge aborts the daemon here).  The
# payload is an nbdkit sh plugin of 2^63 - 4096 bytes that stores its
# first MiB and holds any write or trim past it until the client lets
# them go, then fails them: so the three trims are in flight together,
# another connection is served meanwhile, every request gets its reply,
# and the zeroes' first MiB reads back as zeros.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdkit python3 truncate
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

size=$(((1 << 63) - 4096))
printf 'wrap' > "$TMP/w.key"
truncate -s 1M "$TMP/dummy"
cryptsetup luksFormat --type luks2 --header "$TMP/w.hdr" --key-file "$TMP/w.key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 4096 --batch-mode "$TMP/dummy"
mkdir "$TMP/gate"
truncate -s 1M "$TMP/gate/store"
export GATE_DIR=$TMP/gate GATE_SIZE=$size GATE_REGION=1048576
# Whatever the daemon does, the gate opens once it is gone: nbdkit waits
# for the requests it holds before it exits.
timeout 600 nbdkit -U - sh "$top_srcdir/tests/lib/nbdkit-gated-payload.sh" 2> "$TMP/nbdkit.log" \
  --run "timeout 600 $top_builddir/server/luks-nbd -v --threads 4 --socket $TMP/sock \
           --export 'name=w,payload='\"\$uri\"',header=$TMP/w.hdr,key-file=$TMP/w.key,discard=on' \
           --run 'exec python3 $top_srcdir/tests/lib/nbd_whole_export_zeroes.py $TMP/sock w $TMP/gate $size > $TMP/w.out' \
           2> $TMP/w.log; rc=\$?; touch $TMP/gate/release; exit \$rc"
check "the daemon served every client and exited 0" test $? -eq 0
check "it did not abort (no assertion failed)" not grep -q "Assertion" "$TMP/w.log"
tap_report "$TMP/w.out" 5 "the whole-export client"
done_testing

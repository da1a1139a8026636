#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves WRITE_ZEROES (and TRIM) count their range against the
# connection's in-flight budget: a request of that kind carries no data,
# yet one of 256 MiB encrypts and writes 256 MiB.  A client that sends 16
# of them at once has them taken one budget's worth at a time, so another
# client's read is answered before its second zero, instead of after
# 4 GiB of queued work.  The payload is nbdkit's null plugin (writes are
# dropped), so only the daemon's own work is measured; the zeroes that
# did run must have succeeded.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3 nbdkit

printf 'zero' > "$TMP/z.key"
truncate -s 1M "$TMP/dummy"
cryptsetup luksFormat --type luks2 --header "$TMP/z.hdr" --key-file "$TMP/z.key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 4096 --batch-mode "$TMP/dummy"
timeout 600 nbdkit -U - null 8G \
  --run "timeout 600 $top_builddir/server/luks-nbd --socket $TMP/sock \
           --export 'name=z,payload='\"\$uri\"',header=$TMP/z.hdr,key-file=$TMP/z.key' \
           --run 'python3 $top_srcdir/tests/lib/nbd_work_bounds.py zeroes $TMP/sock z > $TMP/z.out'"
check "the daemon served both clients and exited 0" test $? -eq 0
tap_report "$TMP/z.out" 3 "the zeroes client"
done_testing

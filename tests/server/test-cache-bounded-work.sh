#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves NBD_CMD_CACHE does bounded work: it warms the ciphertext (and the
# qcow2 tables) under at most the first 32 MiB of a request, decrypting
# nothing, and answers success.  Three 4 GiB CACHE requests, and then 128
# of them in flight at once, cost the daemon little CPU, and a second
# client is served meanwhile (a raw sparse payload and a qcow2 one).  On
# an NBD payload the remote (nbdkit, its log filter recording) gets one
# 32 MiB NBD_CMD_CACHE and nothing is read.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3 nbdkit
. "$top_srcdir/tests/lib/work-bounds.sh"

printf 'big' > "$TMP/big.key"
truncate -s 1M "$TMP/dummy"
cryptsetup luksFormat --type luks2 --header "$TMP/big.hdr" --key-file "$TMP/big.key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 512 --batch-mode "$TMP/dummy"
truncate -s 8G "$TMP/big.payload"
python3 "$top_srcdir/tests/lib/nbd_work_bounds.py" make-qcow2 "$TMP/q.qcow2" contiguous
limit=$(cpu_limit_ticks)
luks_nbd --socket "$TMP/sock" --export "$(spec big readonly=on)" \
  --export "name=q,payload=$TMP/q.qcow2,header=$TMP/big.hdr,key-file=$TMP/big.key,readonly=on" \
  --run "python3 $top_srcdir/tests/lib/nbd_work_bounds.py cache $TMP/sock big $limit \$PPID > $TMP/big.out &&
         python3 $top_srcdir/tests/lib/nbd_work_bounds.py cache $TMP/sock q $limit \$PPID > $TMP/q.out"
check "the daemon served both clients and exited 0" test $? -eq 0
tap_report "$TMP/big.out" 5 "raw payload"
tap_report "$TMP/q.out" 5 "qcow2 payload"

# NBD payload: the CACHE is forwarded, bounded, and nothing is read.
timeout 300 nbdkit -U - --filter=log file "$TMP/big.payload" logfile="$TMP/nbdkit.log" \
  --run "timeout 300 $top_builddir/server/luks-nbd --socket $TMP/sock2 \
           --export 'name=r,payload='\"\$uri\"',header=$TMP/big.hdr,key-file=$TMP/big.key,readonly=on,check-plaintext=off' \
           --run 'python3 -c \"import nbd; h = nbd.NBD(); h.set_export_name(\\\"r\\\"); h.connect_unix(\\\"$TMP/sock2\\\"); h.cache(0xfffff000, 4096)\"'"
check "NBD payload: a 4 GiB CACHE succeeds" test $? -eq 0
check "NBD payload: the remote got one CACHE of 32 MiB at the same offset" \
  test "$(grep -c 'Cache .*offset=0x1000 count=0x2000000 ' "$TMP/nbdkit.log")" -eq 1
# (The one read is the 4-byte format probe when the export opens;
# check-plaintext=off leaves out the plaintext check's sampled reads.)
check "NBD payload: and no read but the format probe" \
  test "$(grep ' Read ' "$TMP/nbdkit.log" | grep -vc 'offset=0x0 count=0x4 ')" -eq 0
done_testing

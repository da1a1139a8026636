#!/usr/bin/env bash
# Proves NBD_CMD_CACHE does bounded work: it warms the ciphertext (and the
# qcow2 tables) under at most the first 32 MiB of a request, decrypting
# nothing, and answers success.  Three 4 GiB CACHE requests, and then 128
# of them in flight at once, cost the daemon little CPU, and a second
# client is served meanwhile (a raw sparse payload and a qcow2 one).
. "$(dirname "$0")/lib.sh"
need cryptsetup python3
. "$top_srcdir/tests/work-bounds.sh"

printf 'big' > "$TMP/big.key"
truncate -s 1M "$TMP/dummy"
cryptsetup luksFormat --type luks2 --header "$TMP/big.hdr" --key-file "$TMP/big.key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 512 --batch-mode "$TMP/dummy"
truncate -s 8G "$TMP/big.payload"
python3 "$top_srcdir/tests/nbd_work_bounds.py" make-qcow2 "$TMP/q.qcow2" contiguous
limit=$(cpu_limit_ticks)
luks_nbd --socket "$TMP/sock" --export "$(spec big readonly=on)" \
  --export "name=q,payload=$TMP/q.qcow2,header=$TMP/big.hdr,key-file=$TMP/big.key,readonly=on" \
  --run "python3 $top_srcdir/tests/nbd_work_bounds.py cache $TMP/sock big $limit \$PPID > $TMP/big.out &&
         python3 $top_srcdir/tests/nbd_work_bounds.py cache $TMP/sock q $limit \$PPID > $TMP/q.out"
check "the daemon served both clients and exited 0" test $? -eq 0
tap_report "$TMP/big.out" 5 "raw payload"
tap_report "$TMP/q.out" 5 "qcow2 payload"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# kill -9 during a stream of writes, then restart: every write that was
# acknowledged with FUA or followed by an acknowledged FLUSH is there
# (checked through the restarted daemon and by cryptsetup decrypting the
# payload), and a qcow2 payload passes qemu-img check.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy qemu-img python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

make_luks2_volume v 8M --sector-size 4096
# qcow2 payload: a fresh sparse image, so that the writes in flight when
# the daemon dies are allocating clusters and updating refcounts.
qemu-img create -q -f qcow2 -o cluster_size=65536 "$TMP/v.qcow2" 8M
for kind in raw qcow2; do
  payload=$TMP/v.payload
  [ $kind = qcow2 ] && payload=$TMP/v.qcow2
  # The writes are random data over the start: check-plaintext=off.
  sp="name=v,payload=$payload,header=$TMP/v.hdr,key-file=$TMP/v.key,check-plaintext=off"
  luks_nbd --socket "$TMP/sock" --export "$sp" --run "nbdcopy \"\$uri\" $TMP/initial"
  luks_nbd --socket "$TMP/sock" --export "$sp" \
    --run "exec python3 $top_srcdir/tests/lib/nbd_write_then_die.py $TMP/sock $TMP/v.plain $TMP/expected > $TMP/py.out"
  rc=$?
  check "$kind: the daemon died of SIGKILL mid-stream" test "$rc" -eq 137 -a "$(cat "$TMP/py.out")" = killing
  rm -f "$TMP/sock" # a killed daemon cannot remove its socket
  luks_nbd --socket "$TMP/sock" --export "$sp" --run "nbdcopy \"\$uri\" $TMP/after"
  check "$kind: the restarted daemon serves the volume" test $? -eq 0
  check "$kind: every acknowledged durable write is there (2 MiB, 32 writes)" \
    cmp -s -n 2097152 "$TMP/after" "$TMP/expected"
  check "$kind: the untouched rest of the volume is intact" \
    cmp -s -i 4194304 "$TMP/after" "$TMP/initial"
  if [ $kind = raw ]; then
    cp "$TMP/v.hdr" "$TMP/hdr-copy"
    cp "$TMP/v.payload" "$TMP/dec"
    cryptsetup reencrypt --decrypt --header "$TMP/hdr-copy" --key-file "$TMP/v.key" \
      --force-offline-reencrypt --batch-mode "$TMP/dec"
    check "raw: cryptsetup finds the acknowledged writes in the payload" \
      cmp -s -n 2097152 "$TMP/dec" "$TMP/expected"
  else
    # Clusters are referenced only after their data and refcount are
    # written, so a kill can leak a cluster (exit 3, "no harm to data")
    # but never leave a reference to an unwritten or unreferenced one.
    qemu-img check "$TMP/v.qcow2" > "$TMP/check.out" 2>&1
    rc=$?
    check "qcow2: qemu-img check finds no corruption (exit 0, or 3: leaks only; got $rc)" \
      test $rc -eq 0 -o $rc -eq 3
    qemu-img check -q -r leaks "$TMP/v.qcow2" > /dev/null 2>&1
    check "qcow2: after qemu-img check -r leaks the image is clean" qemu-img check -q "$TMP/v.qcow2"
  fi
done
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves NBD_CMD_BLOCK_STATUS does bounded work, not only a bounded
# reply: the nodes stop their walk when the reply is full (4096 extents)
# or their own bound is spent (qcow2: 64 Ki L2 entries per request, the
# lock held for at most 4096 at a time), and the client asks again for
# the rest.  On qcow2 images with 512-byte clusters whose every L2 table
# is allocated (8 Mi entries under a 4 GiB request), three 4 GiB
# requests, and then 32 in flight at once, cost the daemon little CPU,
# and another client's read, which needs the same map, is served
# meanwhile.  nbdinfo --map (libnbd asking again) still sees the whole
# disk, and qemu-img map through the server agrees with qemu-img map of a
# real image.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3 qemu-img nbdinfo
. "$top_srcdir/tests/lib/work-bounds.sh"

printf 'key' > "$TMP/k"
truncate -s 1M "$TMP/dummy"
cryptsetup luksFormat --type luks2 --header "$TMP/hdr" --key-file "$TMP/k" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 512 --batch-mode "$TMP/dummy"
py=$top_srcdir/tests/lib/nbd_work_bounds.py
python3 "$py" make-qcow2 "$TMP/all.qcow2" contiguous
python3 "$py" make-qcow2 "$TMP/alt.qcow2" alternating
# The payloads' clusters hold patterns written as ciphertext, which
# decrypt to noise: check-plaintext=off serves them.
ex () { echo "name=$1,payload=$TMP/$1.qcow2,header=$TMP/hdr,key-file=$TMP/k,readonly=on,check-plaintext=off"; }
limit=$(cpu_limit_ticks)
luks_nbd --socket "$TMP/sock" --export "$(ex all)" --export "$(ex alt)" \
  --run "python3 $py status $TMP/sock all $limit \$PPID > $TMP/all.out &&
         python3 $py status $TMP/sock alt $limit \$PPID > $TMP/alt.out &&
         nbdinfo --map 'nbd+unix:///all?socket=$TMP/sock' > $TMP/all.map"
check "the daemon served every client and exited 0" test $? -eq 0
tap_report "$TMP/all.out" 5 "every cluster data"
tap_report "$TMP/alt.out" 5 "every other cluster data"
check "alternating clusters: the reply is full (4096 extents)" \
  grep -q "alt: three 4 GiB BLOCK_STATUS replies, each 1..4096 extents (\[4096, 4096, 4096\]" "$TMP/alt.out"
# nbdinfo --map asks again until the end: the whole disk, all data, in
# replies of 32 MiB (64 Ki clusters of 512 bytes).
check "nbdinfo --map walks the whole 4 GiB + 1 MiB in bounded replies" \
  test "$(awk '{ n += $2 } END { printf "%.0f", n }' "$TMP/all.map")" = $(((4 << 30) + 1048576))
check "nbdinfo --map: all of it data" not grep -qv ' data$' "$TMP/all.map"

# A real image of 128 Ki clusters (twice what one request walks):
# qemu-img map through the server (qemu's own NBD client, asking again)
# agrees with qemu-img map of the payload.
qemu-img create -q -f qcow2 -o cluster_size=512 "$TMP/small.qcow2" 64M
for off in 0 4096 1048576 33554432 67108352; do
  qemu-io -f qcow2 -c "write -P 7 $off 512" "$TMP/small.qcow2" >/dev/null
done
luks_nbd --socket "$TMP/sock" --export "$(ex small)" \
  --run "qemu-img map -f raw --output=json 'nbd+unix:///small?socket=$TMP/sock' > $TMP/small.nbd.map"
qemu-img map -f qcow2 --output=json "$TMP/small.qcow2" > "$TMP/small.qemu.map"
data_ranges () { python3 -c 'import json, sys
for e in json.load(open(sys.argv[1])):
    if e["data"]: print(e["start"], e["length"])' "$1"; }
check "qemu-img map of the image: the five clusters written are data" \
  test "$(data_ranges "$TMP/small.qemu.map" | wc -l)" -eq 5
check "qemu-img map through luks-nbd: the same data ranges as qemu-img map of the image" \
  test "$(data_ranges "$TMP/small.nbd.map")" = "$(data_ranges "$TMP/small.qemu.map")"
done_testing

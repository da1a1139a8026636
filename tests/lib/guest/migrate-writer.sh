# SPDX-License-Identifier: LGPL-2.1-or-later
# Guest side of tests/interop/test-live-migration.sh (run by the guest's /init,
# busybox sh; see tests/lib/guest/make-guest.py).  Kernel command line:
#   seed=WORD    in every block, so a block from another run never passes
#   wait=SECONDS how long to wait for the disk and for the host
# A writer in the background writes numbered 4 KiB blocks (block I at
# 4096*I, its 64 lines each "luks-nbd migration block I seed WORD",
# padded to 63 characters), each with conv=fsync (a flush down to
# luks-nbd), and says GUEST-WROTE I after each, until the host types
# "stop" on the console; meanwhile the host migrates the VM.  Then the
# guest drops its page cache, reads every block back and compares it.

disk () {
  for d in /sys/block/vd*; do
    [ -e "$d" ] && [ -b "/dev/${d##*/}" ] && { echo "${d##*/}"; return 0; }
  done
  return 1
}

# block I: block I's expected contents, on stdout.
block () {
  yes "$(printf '%-63s' "luks-nbd migration block $1 seed $seed")" | head -c 4096
}

i=0
until d=$(disk); do
  i=$((i + 1))
  [ "$i" -gt $((${wait:-60} * 10)) ] && { echo "GUEST-NO-DISK"; exit 1; }
  sleep 0.1
done
echo "GUEST-DISK $d $(($(cat "/sys/block/$d/size") * 512))"

writer () {
  n=0
  while [ ! -e /tmp/stop ]; do
    block "$n" > /tmp/blk
    dd if=/tmp/blk of="/dev/$d" bs=4096 seek="$n" count=1 conv=fsync,notrunc \
      2>/dev/null || { echo "GUEST-WRITE-FAILED $n"; echo "$n" > /tmp/count; exit 1; }
    echo "GUEST-WROTE $n"
    n=$((n + 1))
  done
  echo "$n" > /tmp/count
}
writer &
pid=$!

read -r -t "${wait:-60}" reply && [ "$reply" = stop ] ||
  { echo "GUEST-NO-STOP"; touch /tmp/stop; wait "$pid"; exit 1; }
touch /tmp/stop
wait "$pid" || exit 1
count=$(cat /tmp/count)
echo "GUEST-COUNT $count"

echo 3 > /proc/sys/vm/drop_caches
k=0
while [ "$k" -lt "$count" ]; do
  block "$k" > /tmp/want
  dd if="/dev/$d" of=/tmp/got bs=4096 skip="$k" count=1 2>/dev/null
  cmp -s /tmp/want /tmp/got || { echo "GUEST-BAD-BLOCK $k"; exit 1; }
  k=$((k + 1))
done
echo "GUEST-VERIFIED $count"

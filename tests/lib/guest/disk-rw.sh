# SPDX-License-Identifier: LGPL-2.1-or-later
# Guest side of tests/interop/test-qemu10-vm.sh (run by the guest's /init, busybox
# sh; see tests/lib/guest/make-guest.py).  The boot's kernel command line sets:
#   size=BYTES   the disk's expected size     sha=HEX  sha256 of its plaintext
#   woff=BYTES   where to write (4 KiB aligned)  wlen=BYTES  how much
#   seed=WORD    the pattern: `yes WORD | head -c wlen` (the host makes the same)
#   unplug=1     after the I/O, wait for the host to unplug the disk, then
#                for it to type "done" on the console (so the guest powers
#                off only once the host is through with QMP)
#   wait=SECONDS how long to wait for a disk (hot-plug: the host adds it)
# Every line the host waits for starts with GUEST-.

# disk: the first virtio disk, once its node exists.
disk () {
  for d in /sys/block/vd*; do
    [ -e "$d" ] && [ -b "/dev/${d##*/}" ] && { echo "${d##*/}"; return 0; }
  done
  return 1
}

echo "GUEST-WAITING-FOR-DISK"
i=0
until d=$(disk); do
  i=$((i + 1))
  [ "$i" -gt $((${wait:-60} * 10)) ] && { echo "GUEST-NO-DISK"; exit 1; }
  sleep 0.1
done
bytes=$(($(cat "/sys/block/$d/size") * 512))
echo "GUEST-DISK $d $bytes"
[ "$bytes" = "$size" ] || { echo "GUEST-SIZE-MISMATCH $bytes != $size"; exit 1; }

got=$(sha256sum < "/dev/$d" | cut -d' ' -f1)
echo "GUEST-READ-SHA256 $got"
[ "$got" = "$sha" ] || { echo "GUEST-READ-MISMATCH"; exit 1; }
echo "GUEST-READ-OK"

# Write through the page cache, fsync (a flush down to luks-nbd), then
# read the range back from the device, not from the cache.
yes "$seed" | head -c "$wlen" |
  dd of="/dev/$d" bs=4096 seek=$((woff / 4096)) conv=fsync 2>/dev/null ||
  { echo "GUEST-WRITE-FAILED"; exit 1; }
echo 3 > /proc/sys/vm/drop_caches
back=$(dd if="/dev/$d" bs=4096 skip=$((woff / 4096)) count=$((wlen / 4096)) 2>/dev/null |
  sha256sum | cut -d' ' -f1)
echo "GUEST-WROTE $wlen $back"

[ "${unplug:-0}" = 1 ] || exit 0
echo "GUEST-WAITING-FOR-UNPLUG"
i=0
while [ -e "/sys/block/$d" ]; do
  i=$((i + 1))
  [ "$i" -gt $((${wait:-60} * 10)) ] && { echo "GUEST-STILL-PLUGGED"; exit 1; }
  sleep 0.1
done
echo "GUEST-UNPLUGGED $d"
read -r -t "${wait:-60}" reply && [ "$reply" = done ] ||
  { echo "GUEST-NO-DONE"; exit 1; }

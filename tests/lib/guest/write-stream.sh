# SPDX-License-Identifier: LGPL-2.1-or-later
# Guest side of tests/server/test-restart-continuity.sh's VM part (run by the
# guest's /init, busybox sh; see tests/lib/guest/make-guest.py).  Writes
# numbered 4 KiB blocks one by one, each with conv=fsync (a FLUSH down to
# luks-nbd), and says GUEST-ACK N once block N is acknowledged, while the
# host restarts luks-nbd underneath.  Kernel command line:
#   blocks=N   how many      seed=HEX16  in every line of every block
#   woff=BYTES where block 0 goes (4 KiB aligned)
# Block N is `yes "BLOCK <N, 8 digits> <seed>" | head -c 4096`.
disk () {
  for d in /sys/block/vd*; do
    [ -e "$d" ] && [ -b "/dev/${d##*/}" ] && { echo "${d##*/}"; return 0; }
  done
  return 1
}

i=0
until d=$(disk); do
  i=$((i + 1))
  [ "$i" -gt 600 ] && { echo "GUEST-NO-DISK"; exit 1; }
  sleep 0.1
done
echo "GUEST-DISK $d"
i=0
while [ "$i" -lt "$blocks" ]; do
  yes "BLOCK $(printf %08d "$i") $seed" | head -c 4096 |
    dd of="/dev/$d" bs=4096 seek=$((woff / 4096 + i)) conv=fsync 2>/dev/null ||
    { echo "GUEST-WRITE-FAILED $i"; exit 1; }
  echo "GUEST-ACK $i"
  i=$((i + 1))
done
echo "GUEST-WROTE-ALL $blocks"

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the seed's VM flows with qemu-system-x86_64 (QEMU 10): a Linux
# guest attached to a luks-nbd export of a cryptsetup-made detached-header
# volume (1) with -blockdev driver=nbd + -device virtio-blk-pci at start,
# (2) hot-plugged through QMP (blockdev-add, device_add; then device_del,
# blockdev-del and luks-nbd sees the client go).  Each time the guest
# reads exactly the plaintext a real peer put there (cryptsetup
# reencrypt --encrypt; nbdcopy through luks-nbd), writes a pattern, and
# after the VM is gone cryptsetup decrypts the payload to the plaintext
# with that pattern in it.  The guest: tests/lib/guest/ (make-guest.py builds
# it from the host's Debian kernel and busybox-static).  Nothing here
# needs QEMU 10 itself (the version is printed); scripts/install-deps.sh
# installs 10 from bookworm-backports.
. "$(dirname "$0")/../lib/lib.sh"
need qemu-system-x86_64 cryptsetup nbdcopy python3 sha256sum xxd
here=$(cd "$(dirname "$0")/../lib" && pwd)

if ! python3 "$here/guest/make-guest.py" "$TMP/guest" "$here/guest/disk-rw.sh" \
     > "$TMP/release" 2> "$TMP/make-guest.err"; then
  echo "1..0 # SKIP no guest: $(cat "$TMP/make-guest.err")"
  exit 0
fi
built=$SECONDS
accel=$(python3 "$here/qemu_vm.py" accel "$TMP/guest" "$TMP")
echo "# $(qemu-system-x86_64 --version | head -n 1); guest kernel $(cat "$TMP/release")" \
  "built in $built s; $accel (chosen in $((SECONDS - built)) s)"

# sha FILE: its sha256.
sha () { sha256sum < "$1" | cut -d' ' -f1; }
# decrypt VOLUME OUT: cryptsetup's plaintext of the volume's payload
# (decrypted in place, in user space, on copies).
decrypt () {
  cp "$TMP/$1.payload" "$2"
  cp "$TMP/$1.hdr" "$TMP/$1.hdr-copy"
  cryptsetup reencrypt --decrypt --header "$TMP/$1.hdr-copy" --key-file "$TMP/$1.key" \
    --force-offline-reencrypt --batch-mode "$2"
}
# vm FLOW VOLUME PLAIN: runs nbd_vm_attach.py FLOW against VOLUME served by
# luks-nbd -v; the guest expects PLAIN and writes 1 MiB at 4 MiB.
size=$((16 * 1048576)) woff=$((4 * 1048576)) wlen=1048576
vm () {
  local start=$SECONDS seed
  seed=$(head -c 8 /dev/urandom | xxd -p)
  yes "$seed" | head -c "$wlen" > "$TMP/$2.pattern"
  luks_nbd -v --socket "$TMP/sock" --control "$TMP/ctl" --export "$(spec "$2")" \
    --run "python3 '$here/nbd_vm_attach.py' $1 '$TMP/guest' '$TMP' '$TMP/sock' $2 \
           '$TMP/ctl' $accel $size $(sha "$3") $woff $wlen $seed $(sha "$TMP/$2.pattern")" \
    > "$TMP/$1.verdicts" 2> "$TMP/$1.daemon.log"
  echo "# $1: $((SECONDS - start)) s"
  cp "$3" "$TMP/$2.expect"
  dd if="$TMP/$2.pattern" of="$TMP/$2.expect" bs=4096 seek=$((woff / 4096)) \
    conv=notrunc status=none
}
# show_logs FLOW: the VM's console and QMP log and the daemon's, as TAP
# comments (on failure).
show_logs () { sed 's/^/# /' "$TMP/vm-$1.log" "$TMP/$1.daemon.log"; }

# (1) -blockdev/-device at start; cryptsetup encrypted the plaintext.
make_luks2_volume a "$size"
vm blockdev a "$TMP/a.plain"
tap_report "$TMP/blockdev.verdicts" 8 "-blockdev at start"
check "-blockdev at start: QEMU said NBD_CMD_DISC when it quit" \
  grep -q "client disconnects" "$TMP/blockdev.daemon.log"
decrypt a "$TMP/a.out"
check "-blockdev at start: cryptsetup decrypts the guest's pattern, the rest intact" \
  cmp "$TMP/a.out" "$TMP/a.expect"
[ "$tap_failed" -eq 0 ] || show_logs blockdev

# (2) QMP hot-plug, 4096-byte LUKS sectors; nbdcopy wrote the plaintext
# through luks-nbd.
make_luks2_volume b "$size" --sector-size 4096
make_plaintext "$TMP/b.new" "$size"
luks_nbd --socket "$TMP/sock" --export "$(spec b)" --run "nbdcopy '$TMP/b.new' \"\$uri\""
check "nbdcopy wrote the hot-plug flow's plaintext through luks-nbd" test $? -eq 0
failed=$tap_failed
vm hotplug b "$TMP/b.new"
tap_report "$TMP/hotplug.verdicts" 12 "QMP hot-plug"
check "QMP hot-plug: blockdev-del made QEMU say NBD_CMD_DISC" \
  grep -q "client disconnects" "$TMP/hotplug.daemon.log"
decrypt b "$TMP/b.out"
check "QMP hot-plug: cryptsetup decrypts the guest's pattern, the rest intact" \
  cmp "$TMP/b.out" "$TMP/b.expect"
[ "$tap_failed" -eq "$failed" ] || show_logs hotplug
done_testing

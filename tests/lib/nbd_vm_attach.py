#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A QEMU VM attached to a luks-nbd export, the seed's two ways; the guest
(tests/lib/guest/disk-rw.sh) reads the plaintext, checks it and writes a
pattern through.  Prints PASS/FAIL lines (nbdtest.report).

Usage: nbd_vm_attach.py blockdev|hotplug GUEST_DIR TMPDIR SOCKET EXPORT
           CONTROL ACCEL SIZE SHA256 WOFF WLEN SEED PATTERN_SHA256

blockdev: -blockdev driver=nbd,...,export=EXPORT -device virtio-blk-pci at
start.  hotplug: QMP blockdev-add of the nbd node, device_add
virtio-blk-pci once the guest waits for a disk, then device_del (waiting
for DEVICE_DELETED and the guest to lose the disk) and blockdev-del, after
which luks-nbd must count no connection to EXPORT; then the host types
"done" on the guest's console, and the guest powers off.
"""
import json
import os
import socket
import sys
import time

from nbdtest import control_call, report
from qemu_vm import Vm, VmError

# Deadlines: generous (TCG on two busy cores boots the guest in 3-25 s);
# they only matter when something hangs.
BOOT, IO, EXIT = 240, 240, 60

(mode, guest, tmp, sock, export, control, accel, size, sha, woff, wlen,
 seed, pattern_sha) = sys.argv[1:14]


def connections():
    """luks-nbd's count of clients on EXPORT (control socket, query-stats)."""
    return control_call(control, {"cmd": "query-stats"})["stats"][export]["connections"]


def until_connections(n, seconds=60):
    """True once luks-nbd counts n clients on EXPORT (polled, bounded)."""
    deadline = time.monotonic() + seconds
    while connections() != n:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def guest_io(vm, what):
    """The guest's disk, read and write lines, each checked."""
    line = vm.expect("GUEST-DISK", IO)
    report(line is not None and line.split()[2] == size,
           f"{what}: the guest sees a {size}-byte virtio disk ({line})")
    line = vm.expect("GUEST-READ-SHA256", IO)
    report(line is not None and line.split()[1] == sha,
           f"{what}: the guest reads exactly the plaintext ({line})")
    line = vm.expect("GUEST-WROTE", IO)
    report(line is not None and line.split()[1:] == [wlen, pattern_sha],
           f"{what}: the guest wrote {wlen} bytes and read them back "
           f"from the device ({line})")


def finish(vm, what):
    report(vm.expect("GUEST-EXIT", EXIT) == "GUEST-EXIT 0",
           f"{what}: the guest script succeeded")
    report(vm.wait_exit(EXIT) == 0, f"{what}: QEMU exits 0 on the guest's poweroff")
    report(until_connections(0), f"{what}: luks-nbd counts no client afterwards")


def blockdev():
    what = "-blockdev at start"
    node = (f"driver=nbd,node-name=disk0,server.type=unix,"
            f"server.path={sock},export={export}")
    vm = Vm(guest, append, os.path.join(tmp, "vm1.qmp"),
            os.path.join(tmp, "vm-blockdev.log"), accel,
            ["-blockdev", node, "-device", "virtio-blk-pci,drive=disk0"])
    try:
        report(vm.expect("GUEST-BOOTED", BOOT) is not None,
               f"{what}: the guest booted ({accel}, {vm.uptime():.0f} s)")
        report(connections() == 1, f"{what}: QEMU is luks-nbd's one client")
        guest_io(vm, what)
        finish(vm, what)
    finally:
        vm.kill()


def hotplug():
    what = "QMP hot-plug"
    vm = Vm(guest, append + " unplug=1", os.path.join(tmp, "vm2.qmp"),
            os.path.join(tmp, "vm-hotplug.log"), accel)
    try:
        vm.qmp_connect()
        report(vm.expect("GUEST-WAITING-FOR-DISK", BOOT) is not None,
               f"{what}: the guest booted with no disk ({accel}, {vm.uptime():.0f} s)")
        vm.execute("blockdev-add", driver="nbd", **{"node-name": "disk1"},
                   server={"type": "unix", "path": sock}, export=export)
        report(until_connections(1), f"{what}: blockdev-add connects to luks-nbd")
        vm.execute("device_add", driver="virtio-blk-pci", id="vdisk1",
                   drive="disk1")
        guest_io(vm, what)
        report(vm.expect("GUEST-WAITING-FOR-UNPLUG", IO) is not None,
               f"{what}: the guest is done with the disk")
        vm.execute("device_del", id="vdisk1")
        report(vm.event("DEVICE_DELETED", IO, device="vdisk1") is not None,
               f"{what}: device_del: DEVICE_DELETED once the guest let go")
        report(vm.expect("GUEST-UNPLUGGED", IO) is not None,
               f"{what}: the disk is gone from the guest")
        vm.execute("blockdev-del", **{"node-name": "disk1"})
        report(until_connections(0), f"{what}: blockdev-del disconnects from luks-nbd")
        vm.send("done")
        finish(vm, what)
    except VmError as e:
        report(False, f"{what}: {e}")
    finally:
        vm.kill()


append = (f"size={size} sha={sha} woff={woff} wlen={wlen} seed={seed} "
          f"wait={IO}")
{"blockdev": blockdev, "hotplug": hotplug}[mode]()

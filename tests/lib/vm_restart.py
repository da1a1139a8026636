#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A QEMU 10 guest attached with reconnect-delay and open-timeout keeps
writing across a SIGTERM restart and a kill -9 + restart of luks-nbd
(under tests/lib/fdstore_systemd.py, with --fd-store).  The guest
(tests/lib/guest/write-stream.sh) writes numbered 4 KiB blocks with fsync.
argv: GUEST_DIR TMPDIR ACCEL EXPORT_SPEC BLOCKS WOFF SEED DAEMON...
Prints PASS/FAIL lines and INFO lines; writes TMPDIR/acked (the blocks
the guest had acknowledged, one number a line)."""
import os
import signal
import sys
import time

from nbdtest import report as ok
from fdstore_systemd import Manager
from qemu_vm import Vm

guest, tmp, accel, spec, blocks, woff, seed = sys.argv[1:8]
daemon = sys.argv[8:]
blocks = int(blocks)
BOOT, IO = 240, 240
cmd = daemon + ["-v", "--fd-store", "--export", spec]
m = Manager(os.path.join(tmp, "vm.sock"), os.path.join(tmp, "vm.notify"))
logs = [open(os.path.join(tmp, f"vm-daemon{i}.log"), "w") for i in range(3)]
m.start(cmd, stderr=logs[0])
ok(m.wait_ready(120), "luks-nbd is ready under the emulated service manager")

node = (f"driver=nbd,node-name=disk0,server.type=unix,server.path={m.sock_path},"
        f"export=vol,reconnect-delay=60,open-timeout=60")
append = f"blocks={blocks} woff={woff} seed={seed}"
vm = Vm(guest, append, os.path.join(tmp, "vm.qmp"), os.path.join(tmp, "vm-restart.log"),
        accel, ["-blockdev", node, "-device", "virtio-blk-pci,drive=disk0"])
acked = []


def acks_until(n):
    """Reads GUEST-ACK lines until block n is acknowledged."""
    while not acked or acked[-1] < n:
        line = vm.expect("GUEST-", IO)
        if line is None or not line.startswith("GUEST-ACK"):
            return line
        acked.append(int(line.split()[1]))
    return None


try:
    ok(vm.expect("GUEST-BOOTED", BOOT) is not None, f"the guest booted ({accel})")
    ok(vm.expect("GUEST-DISK", IO) is not None, "the guest sees its disk")
    bad = acks_until(blocks // 4)
    ok(bad is None, f"the guest writes and gets acknowledgements ({len(acked)}; {bad})")
    status, t_exit = m.stop(signal.SIGTERM)
    ok(status == 0, "SIGTERM stops luks-nbd with status 0 under the writing guest")
    m.start(cmd, stderr=logs[1])
    ok(m.wait_ready(120), "the restarted luks-nbd is ready")
    print(f"INFO SIGTERM restart: ready {time.monotonic() - t_exit:.3f} s after the old daemon's exit",
          flush=True)
    n0 = acked[-1]
    bad = acks_until(blocks // 2)
    ok(bad is None and acked[-1] > n0,
       f"the guest goes on writing after the restart (to block {acked[-1]}; {bad})")
    m.proc.kill()
    m.proc.wait()
    t_kill = time.monotonic()
    m.drain()
    m.start(cmd, stderr=logs[2])
    ok(m.wait_ready(120), "after kill -9 the next luks-nbd is ready")
    print(f"INFO kill -9 restart: ready {time.monotonic() - t_kill:.3f} s after the kill", flush=True)
    n1 = acked[-1]
    bad = acks_until(blocks - 1)
    ok(bad is None and acked[-1] == blocks - 1 and acked[-1] > n1,
       f"the guest writes every block, through both restarts ({acked[-1] + 1} of {blocks}; {bad})")
    ok(acked == list(range(blocks)), "each block was acknowledged once, in order")
    line = vm.expect("GUEST-EXIT", IO)
    ok(line == "GUEST-EXIT 0", f"the guest saw no I/O error ({line})")
    ok(vm.wait_exit(60) == 0, "QEMU exits 0 on the guest's poweroff")
finally:
    vm.kill()
    with open(os.path.join(tmp, "acked"), "w") as f:
        f.write("".join(f"{i}\n" for i in acked))
for i in (1, 2):
    logs[i].flush()
    text = open(logs[i].name, errors="replace").read()
    ok("key handed over by the previous daemon" in text,
       f"restart {i}: the key came from the fd store")
status, _ = m.stop(signal.SIGTERM)
ok(status == 0, "luks-nbd stops with status 0 at the end")

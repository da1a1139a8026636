#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Live migration of a QEMU guest between two luks-nbd daemons that share
one payload and header, the test playing libvirt (or the operator).  The
guest (tests/lib/guest/migrate-writer.sh) writes numbered blocks with fsync
all along.  Prints PASS/FAIL lines (nbdtest.report); the last line
"COUNT N" says how many blocks the guest wrote, for the shell test to
check the payload with cryptsetup.

Usage: nbd_vm_migrate.py GUEST_DIR TMPDIR ACCEL EXPORT SEED
           SRC_SOCKET SRC_CONTROL DST_SOCKET DST_CONTROL

The sequence (README, "Live migration"):
  destination: luks-nbd export with active=off; qemu -incoming unix:PATH
               with its disk on it (QEMU opens it inactive: no writes)
  source qemu: migrate-set-capabilities pause-before-switchover, events;
               migrate uri=unix:PATH
  on MIGRATION status pre-switchover (the guest is stopped, its writes
  flushed): export-inactivate on the source daemon, export-activate on
  the destination daemon, then migrate-continue state=pre-switchover.
"""
import json
import os
import socket
import sys
import time

from nbdtest import control_call, report
from qemu_vm import Vm, VmError

BOOT, IO, MIGRATE, EXIT = 240, 240, 600, 60

(guest, tmp, accel, export, seed, src_sock, src_ctl, dst_sock,
 dst_ctl) = sys.argv[1:10]


def ctl(path, cmd, **members):
    return control_call(path, dict(cmd=cmd, **members))


def vm(name, sock, extra=()):
    node = (f"driver=nbd,node-name=disk0,server.type=unix,"
            f"server.path={sock},export={export}")
    return Vm(guest, f"seed={seed} wait={MIGRATE}",
              os.path.join(tmp, f"{name}.qmp"),
              os.path.join(tmp, f"vm-{name}.log"), accel,
              ["-blockdev", node,
               "-device", "virtio-blk-pci,drive=disk0,id=vdisk0", *extra])


def last_wrote(v):
    """The highest block number the guest said it wrote so far."""
    v.pump(time.monotonic())  # what has arrived already
    nums = [int(x.split()[1]) for x in v.lines if x.startswith("GUEST-WROTE ")]
    return max(nums) if nums else -1


def until(cond, seconds, v):
    """Polls cond (bounded), reading v's console and QMP meanwhile."""
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            return False
        v.pump(time.monotonic() + 0.05)
    return True


def migrate(src, dst):
    mig = os.path.join(tmp, "migration.sock")
    report(src.expect("GUEST-WROTE 10", BOOT + IO) is not None,
           f"the guest booted on the source ({accel}) and writes")
    for v in (src, dst):
        v.execute("migrate-set-capabilities", capabilities=[
            {"capability": "events", "state": True}])
    src.execute("migrate-set-capabilities", capabilities=[
        {"capability": "pause-before-switchover", "state": True}])
    src.execute("migrate", uri=f"unix:{mig}")
    r = ctl(dst_ctl, "export-activate", name=export)
    report(not r["ok"] and "in use by another process" in r["error"],
           f"while the source is active the destination cannot activate "
           f"(two active writers refused: {r.get('error')})")
    e = src.event("MIGRATION", MIGRATE, status="pre-switchover")
    report(e is not None, "the source pauses before switchover")
    before = last_wrote(src)
    t0 = time.monotonic()
    r = ctl(src_ctl, "export-inactivate", name=export)
    report(r["ok"], f"export-inactivate on the source daemon ({r})")
    r = ctl(dst_ctl, "export-activate", name=export)
    report(r["ok"], f"export-activate on the destination daemon ({r})")
    handoff = time.monotonic() - t0
    src.execute("migrate-continue", state="pre-switchover")
    report(src.event("MIGRATION", MIGRATE, status="completed") is not None,
           "the source says the migration completed")
    report(until(lambda: dst.execute("query-status")["status"] == "running",
                 MIGRATE, dst), "the destination VM runs")
    print(f"# handoff (inactivate + activate) took {handoff * 1000:.0f} ms; "
          f"the guest had written blocks 0..{before} on the source",
          flush=True)
    src.kill()  # as libvirt ends the source once the destination runs
    return before


def main():
    src = vm("src", src_sock)
    dst = vm("dst", dst_sock, ["-incoming",
                               f"unix:{os.path.join(tmp, 'migration.sock')}"])
    try:
        src.qmp_connect()
        dst.qmp_connect()
        before = migrate(src, dst)
        # The console is the destination's now: more writes land there.
        line = dst.expect(f"GUEST-WROTE {before + 20}", IO)
        report(line is not None,
               f"the guest keeps writing on the destination ({line})")
        dst.send("stop")
        line = dst.expect("GUEST-COUNT", IO)
        count = int(line.split()[1]) if line else 0
        report(count > before + 20, f"the guest wrote {count} blocks in all")
        line = dst.expect("GUEST-VERIFIED", IO)
        report(line == f"GUEST-VERIFIED {count}",
               f"the guest reads back every block, from before and after "
               f"the migration ({line})")
        report(not any(x.startswith("GUEST-WRITE-FAILED") or
                       x.startswith("GUEST-BAD") for x in src.lines + dst.lines),
               "no write failed, no block read back wrong")
        report(dst.expect("GUEST-EXIT", EXIT) == "GUEST-EXIT 0",
               "the guest script succeeded")
        report(dst.wait_exit(EXIT) == 0, "the destination QEMU exits 0")
        print(f"COUNT {count}", flush=True)
    except VmError as e:
        report(False, f"migration: {e}")
    finally:
        src.kill()
        dst.kill()


main()

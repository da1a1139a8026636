#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Payload faults injected by tests/lib/fault-inject.so while a trigger file
exists.  argv: SOCKET TRIGGER OP ERRNO_NAME
OP is what fails on the payload (pread, pwrite or fdatasync).
Prints PASS/FAIL lines that the calling script numbers."""
import errno
import os
import sys

import nbd
from nbdtest import errno_of, report

sock, trigger, op, err_name = sys.argv[1:5]
want = getattr(errno, err_name)


def connect():
    h = nbd.NBD()
    h.set_strict_mode(0)  # the server, not libnbd, must judge requests
    h.set_export_name("v")
    h.connect_unix(sock)
    return h


h = connect()
other = connect()
before = h.pread(65536, 0)
block = os.urandom(65536)
report(errno_of(lambda: h.pwrite(block, 0)) == 0, f"{op}: writes work before the fault")
open(trigger, "w").close()
if op == "pwrite":
    report(errno_of(lambda: h.pwrite(os.urandom(65536), 65536)) == want,
           f"pwrite fails with {err_name}: the client gets {err_name}, never success")
    report(errno_of(lambda: h.zero(65536, 131072)) == want,
           f"write-zeroes fails with {err_name} too")
    report(other.pread(65536, 0) == block, "reads on another connection still work")
elif op == "pread":
    report(errno_of(lambda: h.pread(65536, 0)) == errno.EIO, "pread fails: EIO")
    report(errno_of(lambda: h.pwrite(b"x" * 100, 10)) == errno.EIO,
           "an unaligned write (read-modify-write) fails: EIO, nothing written")
else:
    report(errno_of(lambda: h.pwrite(os.urandom(65536), 65536)) == 0,
           "a write without FUA still succeeds (page cache)")
    report(errno_of(h.flush) == want, f"FLUSH fails with {err_name}")
    report(errno_of(lambda: h.pwrite(block, 0, nbd.CMD_FLAG_FUA)) == want,
           "a FUA write fails too")
os.unlink(trigger)
if op == "fdatasync":
    report(errno_of(h.flush) == want,
           "after a failed fdatasync every later FLUSH fails, fault gone or not")
    report(errno_of(other.flush) == want, "... on every connection")
else:
    report(errno_of(lambda: h.pread(65536, 0)) == 0 and h.pread(65536, 0) == block,
           "once the fault is gone the export serves again, data intact")
    report(errno_of(h.flush) == 0, "and FLUSH succeeds")
h.shutdown()
other.shutdown()

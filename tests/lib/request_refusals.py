#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Sends requests that break each rule of the request checkpoint
(server/transmission.c's check_request) on raw connections, and a flood
of refused requests on one more; checks each gets its error and that the
connection still serves.  Prints PASS/FAIL lines (nbdtest.report).

argv: SOCKET FLOOD_COUNT
Exports expected: "rw" (read-write, discard=off) and "ro" (read-only),
each of 8 MiB.
"""
import errno
import struct
import sys

from nbdtest import NBD_REQUEST_MAGIC, go, raw_connect, recv_exact, report

sock_path, flood = sys.argv[1], int(sys.argv[2])
SIZE = 8 * 1024 * 1024
READ, WRITE, TRIM, BLOCK_STATUS = 0, 1, 4, 7
SIMPLE_REPLY_MAGIC = 0x67446698


def connect(name):
    s = raw_connect(sock_path)
    assert go(s, name) == 1, f"NBD_OPT_GO {name}"
    return s


def request(s, cmd, offset, length, flags=0, payload=b"", handle=1):
    """One request on a connection without structured replies; returns
    the error of its simple reply (and drops a read's data)."""
    s.sendall(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, flags, cmd, handle,
                          offset, length) + payload)
    magic, error, h = struct.unpack(">IIQ", recv_exact(s, 16))
    assert magic == SIMPLE_REPLY_MAGIC and h == handle
    if cmd == READ and error == 0:
        recv_exact(s, length)
    return error


s = connect("rw")
for desc, want, args in [
    ("read past the end", errno.EINVAL, (READ, SIZE, 512)),
    ("unknown command 42", errno.EINVAL, (42, 0, 512)),
    ("read with an unknown flag", errno.EINVAL, (READ, 0, 512, 0x8000)),
    ("trim without discard=on", errno.EINVAL, (TRIM, 0, 4096)),
    ("block status without a metadata context", errno.EINVAL,
     (BLOCK_STATUS, 0, 4096)),
    ("read of length 0", errno.EINVAL, (READ, 0, 0)),
    ("read of 64 MiB", errno.EOVERFLOW, (READ, 0, 64 * 1024 * 1024)),
    ("read wrapping 2^64", errno.EINVAL, (READ, 2**64 - 512, 1024)),
    ("write crossing the end", errno.ENOSPC,
     (WRITE, SIZE - 512, 1024, 0, b"x" * 1024)),
]:
    e = request(s, *args)
    report(e == want, f"{desc}: error {e}, want {want}")
report(request(s, READ, 0, 4096) == 0, "the connection still reads")
s.close()

s = connect("ro")
e = request(s, WRITE, 0, 4096, 0, b"y" * 4096)
report(e == errno.EPERM, f"write to a read-only export: error {e}")
report(request(s, READ, 0, 4096) == 0, "... whose data was skipped: it reads")
s.close()

# The flood: each refused request past the end at 1 TiB, one a line.
s = connect("rw")
errors = set(request(s, READ, 2**40, 512, handle=i) for i in range(flood))
report(errors == {errno.EINVAL}, f"{flood} refused requests: all EINVAL")
report(request(s, READ, 0, 4096) == 0, "the flooding connection still reads")
s.close()

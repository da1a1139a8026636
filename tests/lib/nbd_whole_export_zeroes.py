#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Whole-export TRIM and WRITE_ZEROES with extended headers (one request
of the export's size, near 2^63) on three connections at once, so that
their ranges summed pass 2^64.  The payload (nbdkit-gated-payload.sh)
stores its first MiB and holds every write or trim past it until
GATE_DIR/release exists, then fails it: the three trims are held in
flight together for as long as this client checks that another
connection is served, then each request ends with the payload's EIO.
argv: SOCKET EXPORT GATE_DIR EXPORT_SIZE
Prints PASS/FAIL lines that the calling script numbers."""
import os
import select
import sys

import nbd

from nbdtest import error_of, ext_reply, ext_req, extended, raw_connect, report

sock_path, name, gate, size = sys.argv[1], sys.argv[2], sys.argv[3], int(
    sys.argv[4])
CMD_TRIM, CMD_ZEROES = 4, 6
EIO = 5
KIB = 1024
daemon = os.getppid()  # luks-nbd --run: we are its child


def connect():
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sock_path)
    return h


def entered():
    return sum(f.startswith("entered.") for f in os.listdir(gate))


def wait_for(cond, seconds=60):
    """True once cond() holds, polled every 0.1 s; False after `seconds`
    or once the daemon is gone (we were handed to another parent)."""
    for _ in range(seconds * 10):
        if cond():
            return True
        if os.getppid() != daemon:
            return False
        select.select([], [], [], 0.1)
    return False


def final_replies(s, n):
    """(cookie, error) of the next n final reply chunks, or None if the
    connection ends first."""
    s.settimeout(120)
    try:
        return [(c[3], error_of(c)) for c in (ext_reply(s) for _ in range(n))]
    except (EOFError, OSError):
        return None


h = connect()
h.pwrite(b"\x5a" * (64 * KIB), 0)
h.shutdown()

# Each connection sends a whole-export TRIM and, behind it, a
# whole-export WRITE_ZEROES: the TRIM alone fills the connection's budget,
# so the zero is taken once the trim has its reply.
conns = [extended(raw_connect(sock_path), name) for _ in range(3)]
for s in conns:
    s.sendall(ext_req(CMD_TRIM, 0, size, cookie=1) +
              ext_req(CMD_ZEROES, 0, size, cookie=2))
report(wait_for(lambda: entered() >= 3) and entered() == 3,
       f"three whole-export trims of {size} bytes are at the payload at once "
       f"({entered()}): their ranges sum to {3 * size}, past 2^64")

h = connect()
report(h.pread(64 * KIB, 0) == b"\x5a" * (64 * KIB),
       "meanwhile another connection reads what was written before")
h.pwrite(b"\x77" * 4096, 128 * KIB)
report(h.pread(4096, 128 * KIB) == b"\x77" * 4096,
       "and writes, and reads its write back")
h.shutdown()

open(os.path.join(gate, "release"), "w").close()
got = [final_replies(s, 2) for s in conns]
report(all(g is not None and sorted(g) == [(1, EIO), (2, EIO)] for g in got),
       f"released, every trim and zero gets its reply, the payload's EIO "
       f"({got})")

# A zero's first part writes its first MiB of encrypted zeros (inside the
# stored region) before its next write meets the failing gate.
h = connect()
report(h.pread(256 * KIB, 0) == bytes(256 * KIB),
       "the zeroes' first MiB, written before the payload failed them, "
       "reads back as zeros (the pattern and the write are gone)")
h.shutdown()

# SPDX-License-Identifier: LGPL-2.1-or-later
"""FUA and FLUSH through luks-nbd, checked against what reached the payload.

Usage: nbd_durability.py SOCKET EXPORT KIND LOG DATA_OFFSET
LOG records the payload's writes and flushes: nbdkit's log filter for a
remote payload, tests/lib/fault-inject.so (FAULT_RECORD) for a file, in the
same format.  KIND is "raw" (ciphertext at DATA_OFFSET + plaintext
offset) or "qcow2" (a qcow2 image, whose metadata must be durable too; on
a remote its clusters are preallocated zero clusters, since a remote
cannot grow and new clusters are taken past its end).  Requests are sent
one at a time, so every payload command logged between sending one and
its reply was made for it.

A payload write (Write, Zero, Trim) is durable before our reply if it
carried FUA, or if a Flush started after it completed and itself
completed, all before the reply."""
import re
import sys

import nbd
from nbdtest import report

sock, export, kind, log_path, data_offset = sys.argv[1:6]
data_offset = int(data_offset)

START = re.compile(r"connection=(\d+) (Write|Zero|Trim|Flush) id=(\d+)"
                   r"(?: offset=0x([0-9a-f]+) count=0x([0-9a-f]+))?(.*) \.\.\.$")
END = re.compile(r"connection=(\d+) \.\.\.(Write|Zero|Trim|Flush) id=(\d+) "
                 r"return=(-?\d+)")


def log_lines():
    with open(log_path) as f:
        return f.read().splitlines()


def window(fn):
    """Runs fn (one request, to its reply); returns the payload log lines
    written meanwhile."""
    mark = len(log_lines())
    fn()
    return log_lines()[mark:]


def parse(lines):
    """Remote commands in the window: dicts with kind, offset, count, fua,
    start and end (line indexes; end None if not completed with 0)."""
    cmds, open_ = [], {}
    for i, line in enumerate(lines):
        m = START.search(line)
        if m:
            conn, what, cid, off, cnt, rest = m.groups()
            c = {"kind": what, "start": i, "end": None,
                 "offset": int(off, 16) if off else 0,
                 "count": int(cnt, 16) if cnt else 0,
                 "fua": "fua=1" in rest}
            cmds.append(c)
            open_[(conn, cid)] = c
            continue
        m = END.search(line)
        if m:
            conn, what, cid, ret = m.groups()
            c = open_.get((conn, cid))
            if c and ret == "0":
                c["end"] = i
    return cmds


def not_durable(cmds):
    """The payload writes in the window that were not durable before its
    end (completed with FUA, or covered by a completed later flush)."""
    flushes = [c for c in cmds if c["kind"] == "Flush" and c["end"] is not None]
    bad = []
    for c in cmds:
        if c["kind"] == "Flush":
            continue
        if c["end"] is None:
            bad.append(c)
        elif not c["fua"] and not any(f["start"] > c["end"] for f in flushes):
            bad.append(c)
    return bad


def writes(cmds):
    return [c for c in cmds if c["kind"] != "Flush"]


def covers(cmds, offset, count):
    """True if the payload writes cover [offset, offset+count)."""
    pos, end = offset, offset + count
    for c in sorted(writes(cmds), key=lambda c: c["offset"]):
        if c["offset"] <= pos < c["offset"] + c["count"]:
            pos = c["offset"] + c["count"]
    return pos >= end


def describe(bad):
    return "; ".join("%s %d+%d fua=%d" % (c["kind"], c["offset"], c["count"],
                                          c["fua"]) for c in bad[:4])


def check_durable(cmds, what, offset=None, count=None):
    bad = not_durable(cmds)
    report(writes(cmds) and not bad,
           "%s %s: all %d payload writes durable before the reply%s"
           % (kind, what, len(writes(cmds)),
              " (%d not: %s)" % (len(bad), describe(bad)) if bad else ""))
    if offset is not None and kind == "raw":
        report(covers(cmds, data_offset + offset, count),
               "%s %s: the payload writes cover its %d ciphertext bytes"
               % (kind, what, count))


h = nbd.NBD()
# Our server serves unaligned requests (read-modify-write) whatever
# minimum block size it advertises.
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
h.set_export_name(export)
h.connect_unix(sock)
MiB = 1024 * 1024
data = bytes((i * 7 + 3) % 251 for i in range(MiB))

# A FUA write that the stack splits: the server's parts, the nbd node's
# chunks (the remote takes at most 64 KiB), qcow2's clusters.
cmds = parse(window(lambda: h.pwrite(data, MiB, nbd.CMD_FLAG_FUA)))
check_durable(cmds, "FUA write of 1 MiB", MiB, MiB)
report(len(writes(cmds)) > 1,
       "%s FUA write of 1 MiB: it reached the payload as %d writes (split)"
       % (kind, len(writes(cmds))))
if kind == "qcow2":
    report(any(c["count"] <= 8 for c in writes(cmds)),
           "qcow2 FUA write of 1 MiB updated metadata (L2 or refcount "
           "entries) in the same request")

# Write-zeroes with FUA: luks writes encrypted zeros a MiB at a time.
cmds = parse(window(lambda: h.zero(3 * MiB, 2 * MiB, nbd.CMD_FLAG_FUA)))
check_durable(cmds, "FUA write-zeroes of 3 MiB", 2 * MiB, 3 * MiB)

# An unaligned FUA write: read-modify-write of its sectors.
cmds = parse(window(lambda: h.pwrite(b"u" * 1000, 5000, nbd.CMD_FLAG_FUA)))
check_durable(cmds, "unaligned FUA write of 1000 bytes", 4096, 4096)

# Without FUA the reply may come before durability: the checker sees it
# (so it is not blind), and a FLUSH afterwards covers everything.
lines = []
lines += window(lambda: h.pwrite(data, 6 * MiB, 0))
report(not_durable(parse(lines)),
       "%s write without FUA: the checker sees payload writes not yet durable"
       % kind)
lines += window(lambda: h.flush())
check_durable(parse(lines), "write then FLUSH")

report(h.pread(MiB, MiB) == data and h.pread(3 * MiB, 2 * MiB) == bytes(3 * MiB)
       and h.pread(1000, 5000) == b"u" * 1000 and h.pread(MiB, 6 * MiB) == data,
       "%s: everything written reads back" % kind)
h.shutdown()

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Structured replies, metadata contexts and block status, write zeroes,
fast zero, trim, cache, DF, and connection limits against a running
luks-nbd.  Prints PASS/FAIL lines that the calling script numbers.
argv: SOCKET SPARSE_HOLE_START SPARSE_HOLE_LENGTH
Exports: 'v' (payload with a punched hole, discard off), 'd' (discard=on).
"""
import errno
import socket
import sys

import nbd
from nbdtest import errno_of, report

sock, hole_start, hole_len = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


ok = report


def connect(name, meta=True, strict=True):
    h = nbd.NBD()
    if not strict:
        h.set_strict_mode(0)
    if meta:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.set_export_name(name)
    h.connect_unix(sock)
    return h


def close_wait(h):
    """Disconnects and waits until the server has closed the connection."""
    h.shutdown()
    while not (h.aio_is_closed() or h.aio_is_dead()):
        h.poll(-1)


err = errno_of


# Connection limit (daemon runs with --max-connections 3).
held = [connect("v", meta=False) for _ in range(3)]
try:
    extra = connect("v", meta=False)
    refused = False
    close_wait(extra)
except nbd.Error:
    refused = True
ok(refused, "a fourth connection is refused at --max-connections 3")
close_wait(held.pop())
# The server frees the slot when it processes the disconnect, which may
# come after our next connection attempt: each refused attempt is itself
# a round trip through the server's loop, so a bounded retry converges.
again = None
for attempt in range(100):
    try:
        again = connect("v", meta=False)
        break
    except nbd.Error:
        pass
ok(again is not None and again.get_size() > 0, "a slot freed is usable again")
if again:
    close_wait(again)
for x in held:
    close_wait(x)


h = connect("v")
size = h.get_size()
ok(h.get_structured_replies_negotiated(), "structured replies negotiated")
ok(h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION), "base:allocation selected")
ok(h.can_zero() and h.can_fast_zero() and h.can_cache() and h.can_df(),
   "write zeroes, fast zero, cache and DF advertised")
ok(not h.can_trim(), "trim not advertised without discard=on")

extents = []
def collect(metacontext, offset, entries, error):
    if metacontext == nbd.CONTEXT_BASE_ALLOCATION:
        extents.extend(zip(entries[0::2], entries[1::2]))
h.block_status(size, 0, collect)
pos, seen = 0, []
for length, flags in extents:
    seen.append((pos, length, flags))
    pos += length
ok((hole_start, hole_len, 1) in seen,
   f"block status: the payload hole is a hole, not zeros ({seen})")
ok(all(f & 2 == 0 for _, _, f in seen), "block status never claims zeros")
extents.clear()
h.block_status(size, 0, collect, nbd.CMD_FLAG_REQ_ONE)
ok(len(extents) == 1, "REQ_ONE gives one extent")

chunks = []
def chunk(subbuf, offset, status, error):
    chunks.append((offset, len(subbuf), status))
    return 0
data = bytes(h.pread_structured(65536, 0, chunk, nbd.CMD_FLAG_DF))
ok(chunks == [(0, 65536, nbd.READ_DATA)] and len(data) == 65536,
   f"read with DF returns the data in one OFFSET_DATA chunk ({chunks})")
h.set_strict_mode(0)  # unaligned on purpose: the server does read-modify-write
h.zero(12288, 4096 + 100)
ok(bytes(h.pread(12288, 4096 + 100)) == bytes(12288), "write zeroes reads back as zeros (unaligned)")
ok(bytes(h.pread(100, 4096)) == data[4096:4196], "bytes before the zeroed range kept")
h.zero(4096, 0, nbd.CMD_FLAG_FUA)
ok(bytes(h.pread(4096, 0)) == bytes(4096), "write zeroes with FUA")
e = err(lambda: h.zero(4096, 8192, nbd.CMD_FLAG_FAST_ZERO))
ok(e == errno.ENOTSUP, f"fast zero fails at once with ENOTSUP ({e})")
ok(err(lambda: h.cache(1 << 20, 0)) == 0, "cache (prefetch) succeeds")
close_wait(h)

s = connect("v", strict=False)
ok(err(lambda: s.trim(4096, 0)) == errno.EINVAL, "trim without discard=on: EINVAL")
close_wait(s)
s = connect("v", meta=False, strict=False)
ok(err(lambda: s.block_status(4096, 0, collect)) == errno.EINVAL,
   "block status without a selected context: EINVAL")
close_wait(s)

d = connect("d")
ok(d.can_trim(), "discard=on advertises trim")
ok(err(lambda: d.trim(1 << 20, 1 << 20)) == 0, "trim succeeds with discard=on")
extents.clear()
d.block_status(1 << 20, 1 << 20, collect)
ok(extents and extents[0][1] & 1, f"the trimmed range is now a hole ({extents[:2]})")
close_wait(d)

# Handshake timeout (daemon runs with --handshake-timeout 3).
raw = socket.socket(socket.AF_UNIX)
raw.connect(sock)
raw.settimeout(30)
hello = raw.recv(18)
try:
    closed = raw.recv(1) == b""
except OSError:
    closed = True
ok(len(hello) == 18 and closed, "a client that never negotiates is dropped")
raw.close()

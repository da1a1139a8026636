#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writes seed inputs for fuzz/fuzz-nbd-server: client byte streams of
whole NBD sessions (handshake, options, requests with data).
argv: DIRECTORY"""
import os
import struct
import sys

out = sys.argv[1]
IHAVEOPT = 0x49484156454F5054


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def req(typ, offset, length, flags=0, handle=1, data=b""):
    return struct.pack(">IHHQQI", 0x25609513, flags, typ, handle, offset,
                       length) + data


name = b"v"
go = struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, 3)
meta = struct.pack(">I", len(name)) + name + struct.pack(">I", 1) + \
    struct.pack(">I", 15) + b"base:allocation"
sessions = {
    "structured": struct.pack(">I", 3) + opt(8) + opt(10, meta) + opt(7, go) +
    req(0, 0, 4096) + req(1, 4096, 512, data=b"\x55" * 512) +
    req(7, 0, 65536, handle=2) + req(6, 8192, 4096, flags=1) +
    req(4, 16384, 4096) + req(3, 0, 0) + req(5, 0, 4096) +
    req(1, 10, 100, data=b"\xaa" * 100) + req(0, 10, 100, flags=4) +
    req(2, 0, 0),
    "simple": struct.pack(">I", 1) + opt(3) + opt(6, go) + opt(1, name) +
    req(0, 0, 512) + req(1, 0, 4096, flags=1, data=b"x" * 4096) +
    req(0, 1 << 40, 512) + req(9, 0, 512) + req(2, 0, 0),
    "options": struct.pack(">I", 3) + opt(5) + opt(9, meta) + opt(99) +
    opt(6, b"\0\0\0\5v") + opt(2),
}


def ereq(typ, offset, length, flags=0, handle=1, data=b""):
    """An extended request (NBD_OPT_EXTENDED_HEADERS): 64-bit length."""
    return struct.pack(">IHHQQQ", 0x21e41c71, flags, typ, handle, offset,
                       length) + data


# Extended headers: the negotiation rules, requests with 64-bit lengths
# (good, over the payload limit, wrapping), payloads flagged PAYLOAD_LEN
# (0x20), and the two header styles mixed.
ext = struct.pack(">I", 3) + opt(11) + opt(10, meta) + opt(7, go)
sessions.update({
    "extended": ext + ereq(1, 0, 4096, flags=0x20, data=b"\x5a" * 4096) +
    ereq(1, 4096, 512, data=b"\x33" * 512) + ereq(0, 0, 8192) +
    ereq(7, 0, 1 << 33, handle=2) + ereq(7, 0, 1 << 20, flags=8) +
    ereq(6, 0, 1 << 33) + ereq(4, 0, 1 << 33) + ereq(5, 0, 1 << 33) +
    ereq(0, 0, 1 << 33) + ereq(6, (1 << 64) - 4096, 8192) +
    ereq(4, 0, 16, flags=0x20, data=b"\xff" * 16) +
    ereq(7, 0, 12, flags=0x20, data=struct.pack(">QI", 4096, 1)) +
    ereq(3, 0, 0) + ereq(2, 0, 0),
    "extended-then-compact": ext + ereq(0, 0, 512) + req(0, 0, 512) +
    ereq(2, 0, 0),
    "compact-then-extended": struct.pack(">I", 3) + opt(8) + opt(7, go) +
    req(0, 0, 512) + ereq(0, 0, 512) + req(2, 0, 0),
    "extended-huge-payload": ext + ereq(1, 0, 1 << 40, flags=0x20) +
    b"\0" * 64,
    "extended-options": struct.pack(">I", 3) + opt(11, b"x") + opt(11) +
    opt(11) + opt(8) + opt(9, meta) + opt(1, name),
})
for n, data in sessions.items():
    with open(os.path.join(out, n), "wb") as f:
        f.write(data)

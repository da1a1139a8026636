#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A client that asks for 1 MiB reads one at a time and reads no reply:
once it is behind, the server must stop taking requests after a few MiB
(its read-ahead), not read its whole 128 MiB budget ahead into memory.
Then the client reads, and every reply must arrive, right.  The server
taking a request shows in query-stats' request count (counted when its
reply is queued).
argv: SOCKET CONTROL PLAINTEXT [CA_CERT (then STARTTLS first)]
Prints PASS/FAIL lines that the calling script numbers."""
import select
import struct
import sys

from nbdtest import (NBD_REQUEST_MAGIC, control_call, go, raw_connect,
                     recv_exact, report, starttls)

sock_path, control, plain_path = sys.argv[1:4]
ca_cert = sys.argv[4] if len(sys.argv) > 4 else None
what = "TLS" if ca_cert else "plain"
plain = open(plain_path, "rb").read()
MIB = 1 << 20
COUNT = 16


def taken():
    reply = control_call(control, {"cmd": "query-stats"})
    return reply["stats"]["v"]["requests"]


s = raw_connect(sock_path)
if ca_cert:
    s = starttls(s, ca_cert)
assert go(s) == 1

base = taken()
sent = 0
ahead = 0
while sent < COUNT:
    s.sendall(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, 0, sent,
                          sent * MIB, MIB))
    sent += 1
    # Taken within 5 s (0.1 s polls), or held back by the read-ahead.
    for _ in range(50):
        if taken() - base >= sent:
            break
        select.select([], [], [], 0.1)
    else:
        break
    ahead = sent
report(4 <= ahead <= 6,
       f"{what}: a client behind gets {ahead} MiB read ahead of it, "
       f"then the server waits (4 to 6 MiB, not the {COUNT} asked for)")

for i in range(sent, COUNT):
    s.sendall(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, 0, i, i * MIB, MIB))
good = 0
for _ in range(COUNT):
    magic, err, handle = struct.unpack(">IIQ", recv_exact(s, 16))
    data = recv_exact(s, MIB) if err == 0 else b""
    good += (magic == 0x67446698 and err == 0 and
             data == plain[handle * MIB:(handle + 1) * MIB])
report(good == COUNT,
       f"{what}: once it reads, all {COUNT} replies arrive, right ({good})")

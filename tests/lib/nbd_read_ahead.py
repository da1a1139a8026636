#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A client that asks for reads (1 MiB, or READ_KIB) one at a time and
reads no reply: once it is behind, the server must stop taking requests
after a few MiB (its read-ahead), not read its whole 128 MiB budget
ahead into memory.  Then the client reads, and every reply must arrive,
right.  The server taking a request shows in query-stats' request count
(counted when its reply is queued).  Small reads over TLS are the case
where the replies are encrypted at once and only their ciphertext waits.
argv: SOCKET CONTROL PLAINTEXT [CA_CERT (then STARTTLS first) [READ_KIB]]
Prints PASS/FAIL lines that the calling script numbers."""
import select
import struct
import sys

from nbdtest import (NBD_REQUEST_MAGIC, control_call, go, raw_connect,
                     recv_exact, report, starttls)

sock_path, control, plain_path = sys.argv[1:4]
ca_cert = sys.argv[4] if len(sys.argv) > 4 else None
plain = open(plain_path, "rb").read()
MIB = 1 << 20
SIZE = int(sys.argv[5]) * 1024 if len(sys.argv) > 5 else MIB
what = ("TLS" if ca_cert else "plain") + f", {SIZE // 1024} KiB reads"
COUNT = 16 * MIB // SIZE  # 16 MiB asked for


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
                          sent * SIZE, SIZE))
    sent += 1
    # Taken within 5 s (0.1 s polls), or held back by the read-ahead.
    for _ in range(50):
        if taken() - base >= sent:
            break
        select.select([], [], [], 0.1)
    else:
        break
    ahead = sent
ahead_mib = ahead * SIZE / MIB
# 4 MiB of requests (1 MiB reads); with small reads over TLS the 4 MiB
# the gate counts are the ciphertext buffers, fuller than the replies.
low = 4 if SIZE == MIB else 1
report(low <= ahead_mib <= 6,
       f"{what}: a client behind gets {ahead_mib:g} MiB read ahead of it, "
       f"then the server waits ({low} to 6 MiB, not the 16 asked for)")

good = 0


def read_reply():
    global good
    magic, err, handle = struct.unpack(">IIQ", recv_exact(s, 16))
    data = recv_exact(s, SIZE) if err == 0 else b""
    good += (magic == 0x67446698 and err == 0 and
             data == plain[handle * SIZE:(handle + 1) * SIZE])


# A reply read for each request sent: the server reads no more requests
# while this client is behind, so sending them all first could fill the
# socket both ways.
for i in range(sent, COUNT):
    s.sendall(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, 0, i, i * SIZE,
                          SIZE))
    read_reply()
for _ in range(sent):
    read_reply()
report(good == COUNT,
       f"{what}: once it reads, all {COUNT} replies arrive, right ({good})")

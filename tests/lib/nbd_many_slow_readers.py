#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Many clients that each send large reads and read no reply: together
they must not make the server hold more than its daemon-wide in-flight
budget (--max-inflight-total) plus one request per connection, though
each stays within its own 128 MiB.  Another client is served meanwhile,
then every connection reads its replies and all arrive, right.
Run as `luks-nbd --run "exec python3 ..."`: the daemon is our parent.
argv: SOCKET PLAINTEXT LIMIT_MIB
Prints PASS/FAIL lines that the calling script numbers."""
import os
import struct
import sys

import nbd
from nbdtest import (NBD_REQUEST_MAGIC, go, peak_rss_mib, raw_connect,
                     recv_exact, report, wait_settled)

sock_path, plain_path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
pid = os.getppid()
plain = open(plain_path, "rb").read()
MIB = 1 << 20
CONNS, COUNT, LENGTH = 16, 8, 32 * MIB  # 4 GiB of replies asked for

conns = []
offsets = {}
for c in range(CONNS):
    s = raw_connect(sock_path)
    typ = go(s)
    assert typ == 1, f"GO: reply type {typ}"
    s.settimeout(120)  # a deadlock fails the test instead of hanging it
    reqs = []
    for i in range(COUNT):
        handle = c * COUNT + i
        offsets[handle] = (handle * MIB) % (len(plain) - LENGTH + 1)
        reqs.append(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, 0, handle,
                                offsets[handle], LENGTH))
    s.sendall(b"".join(reqs))
    conns.append(s)

# The server has taken all it will once its CPU time stops moving.
settled = wait_settled(pid)
peak = peak_rss_mib(pid)
report(settled, "the server settles while no client reads")
report(0 < peak < limit,
       f"peak RSS {peak} MiB (bound {limit}) with "
       f"{CONNS * COUNT * LENGTH // MIB} MiB of reads asked for "
       f"on {CONNS} connections")

# A new client has nothing in flight: it is served though the total is full.
h = nbd.NBD()
h.connect_unix(sock_path)
report(h.pread(MIB, 3 * MIB) == plain[3 * MIB:4 * MIB],
       "another client is served while the budget is full")
h.shutdown()

good = 0
for s in conns:
    for _ in range(COUNT):
        magic, err, handle = struct.unpack(">IIQ", recv_exact(s, 16))
        data = recv_exact(s, LENGTH) if err == 0 else b""
        off = offsets.get(handle, -1)
        good += (magic == 0x67446698 and err == 0 and
                 data == plain[off:off + LENGTH])
report(good == CONNS * COUNT,
       f"then all {CONNS * COUNT} replies arrive, right ({good})")

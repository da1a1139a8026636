#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A client that sends many large reads at once and reads no reply until
the server has gone idle: the server's memory must stay bounded by its
in-flight limits (128 requests, 128 MiB per connection), not grow with
what the client asked for.  Then every reply must still arrive, right.
Run as `luks-nbd --run "exec python3 ..."`: the daemon is our parent.
argv: SOCKET PLAINTEXT LIMIT_MIB [CA_CERT (then STARTTLS first)
      [COUNT LENGTH_MIB (then each request in its own TLS record)]]
Prints PASS/FAIL lines that the calling script numbers."""
import os
import struct
import sys

from nbdtest import (NBD_REQUEST_MAGIC, go, peak_rss_mib, raw_connect,
                     recv_exact, report, starttls, wait_settled)

sock_path, plain_path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
ca_cert = sys.argv[4] if len(sys.argv) > 4 else None
pid = os.getppid()
plain = open(plain_path, "rb").read()
MIB = 1 << 20
COUNT, LENGTH = 300, 4 * MIB  # 1.2 GiB of replies asked for at once
records = len(sys.argv) > 6
if records:
    COUNT, LENGTH = int(sys.argv[5]), int(sys.argv[6]) * MIB
what = "TLS, a record per request" if records else "TLS" if ca_cert else "plain"

s = raw_connect(sock_path)
if ca_cert:
    s = starttls(s, ca_cert)
typ = go(s)
assert typ == 1, f"GO: reply type {typ}"

offsets = [(i * MIB) % (len(plain) - LENGTH + 1) for i in range(COUNT)]
requests = [struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, 0, i, off, LENGTH)
            for i, off in enumerate(offsets)]
if records:  # each send is one TLS record, which the server decrypts alone
    for r in requests:
        s.sendall(r)
else:
    s.sendall(b"".join(requests))


# The server has taken all it will once its CPU time stops moving
# (bounded: 60 s of 0.1 s samples).
settled = wait_settled(pid)
peak = peak_rss_mib(pid)
report(settled, f"{what}: the server settles while the client reads nothing")
report(0 < peak < limit,
       f"{what}: peak RSS {peak} MiB with {COUNT * LENGTH // MIB} MiB of reads asked for")

good = 0
for _ in range(COUNT):
    magic, err, handle = struct.unpack(">IIQ", recv_exact(s, 16))
    data = recv_exact(s, LENGTH) if err == 0 else b""
    good += (magic == 0x67446698 and err == 0 and
             data == plain[offsets[handle]:offsets[handle] + LENGTH])
report(good == COUNT, f"{what}: then all {COUNT} replies arrive, right ({good})")

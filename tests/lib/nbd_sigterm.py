#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Run under `luks-nbd --run "exec ..."` (so the daemon is our parent): issue reads and writes, SIGTERM the daemon
while they are in flight, and check every request still completes
correctly and no new connection is accepted.  argv: SOCKET PLAINTEXT OUT
(OUT gets what was written, for the caller to verify after exit).
Prints PASS/FAIL lines that the caller turns into TAP."""
import os
import signal
import socket
import sys

import nbd
from nbdtest import report

sock_path, plain_path, out_path = sys.argv[1:4]
plain = open(plain_path, "rb").read()
h = nbd.NBD()
h.set_export_name("v")
h.connect_unix(sock_path)
size = h.get_size()
mib = 1 << 20
# The write goes first; reads (of other blocks) follow it on the wire.
# Once the write is acknowledged the server has parsed every read header
# behind it, and SIGTERM then lands with those reads in flight.
new = os.urandom(2 * mib)
write = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(new)), 0)
reads = []
for i in range(16):
    buf = nbd.Buffer(mib)
    off = 2 * mib + (i * mib) % (size - 3 * mib)
    reads.append((h.aio_pread(buf, off), buf, off))
while not h.aio_command_completed(write):
    h.poll(-1)
os.kill(os.getppid(), signal.SIGTERM)
while h.aio_in_flight() > 0:
    h.poll(-1)
ok = report
good = 0
for cookie, buf, off in reads:
    try:
        h.aio_command_completed(cookie)
        good += bytes(buf.to_bytearray()) == plain[off:off + mib]
    except nbd.Error:
        pass
ok(good == 16, f"16 reads in flight at SIGTERM all completed correctly ({good}/16)")
del h  # the server closed the connection once its requests were done
try:
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    refused = s.recv(1) == b""
except OSError:
    refused = True
ok(refused, "no new connection is served after SIGTERM")
open(out_path, "wb").write(new)

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Writes 32 blocks of 64 KiB that must persist (FUA, or a FLUSH after
them), saves what the volume must then hold, starts 32 more writes
without waiting, and kills the daemon (our parent, via --run 'exec ...')
with SIGKILL while they are in flight.
argv: SOCKET PLAINTEXT EXPECTED_OUT"""
import os
import signal
import sys

import nbd

sock, plain_path, expected_path = sys.argv[1:4]
BLOCK = 65536
with open(plain_path, "rb") as f:
    expected = bytearray(f.read())

h = nbd.NBD()
h.set_export_name("v")
h.connect_unix(sock)
for i in range(32):
    data = os.urandom(BLOCK)
    if i % 2 == 0:
        h.pwrite(data, i * BLOCK, nbd.CMD_FLAG_FUA)
    else:
        h.pwrite(data, i * BLOCK)
        h.flush()
    expected[i * BLOCK:(i + 1) * BLOCK] = data
with open(expected_path, "wb") as f:
    f.write(expected[:32 * BLOCK])
for i in range(32, 64):
    h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(os.urandom(BLOCK))), i * BLOCK)
print("killing", flush=True)
os.kill(os.getppid(), signal.SIGKILL)

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Run under `luks-nbd --run "exec ..."` (the daemon is our parent).  A
write's header and half its data are sent; SIGTERM; once the daemon has
stopped taking connections (so the first signal was handled), a second
SIGTERM; then the rest of the data.  The write must still be applied and
acknowledged: a repeated SIGTERM must not kill a stopping daemon.
argv: SOCKET OUT (OUT gets the data written, for the caller to verify).
Prints PASS/FAIL lines that the caller turns into TAP."""
import os
import select
import signal
import socket
import struct
import sys

from nbdtest import NBD_REQUEST_MAGIC, go, raw_connect, recv_exact, report

sock_path, out_path = sys.argv[1:3]
daemon = os.getppid()

s = raw_connect(sock_path)
typ = go(s)
assert typ == 1, f"GO: reply type {typ}"

data = os.urandom(65536)
s.sendall(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, 1, 5, 0, len(data))
          + data[:32768])
os.kill(daemon, signal.SIGTERM)


def refused():
    c = socket.socket(socket.AF_UNIX)
    try:
        c.connect(sock_path)
        c.settimeout(5)
        return c.recv(1) == b""
    except OSError:
        return True
    finally:
        c.close()


# Bounded wait for the first signal's effect: the listener goes away.
handled = False
for _ in range(500):
    if refused():
        handled = True
        break
    select.select([], [], [], 0.01)
report(handled, "the first SIGTERM stopped new connections")
os.kill(daemon, signal.SIGTERM)
try:
    s.sendall(data[32768:])
    magic, err, handle = struct.unpack(">IIQ", recv_exact(s, 16))
    report(err == 0 and handle == 5,
           f"a second SIGTERM: the write in flight is still acknowledged (error {err})")
except (OSError, EOFError) as e:
    report(False, f"a second SIGTERM: the write in flight is still acknowledged ({e})")
open(out_path, "wb").write(data)

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A client that sends a write's header and half its data, then nothing
more, and keeps the connection open; the daemon (DAEMON_PID) then gets
SIGTERM.  The write counts as in flight until its data is in, so a
daemon that waited for it would never exit: it must drop this client
after a --handshake-timeout period without progress (TIMEOUT_S).
argv: SOCKET DAEMON_PID TIMEOUT_S [CA_CERT (then STARTTLS first)]
Prints PASS/FAIL lines that the calling script numbers."""
import fcntl
import os
import select
import signal
import ssl
import struct
import sys
import termios
import time

from nbdtest import NBD_REQUEST_MAGIC, go, raw_connect, recv_exact, report, starttls

sock_path, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
ca_cert = sys.argv[4] if len(sys.argv) > 4 else None
what = "TLS" if ca_cert else "plain"
raw = raw_connect(sock_path)
s = starttls(raw, ca_cert) if ca_cert else raw
assert go(s) == 1

# A read answered: the connection serves.
s.sendall(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, 0, 1, 0, 4096))
ok = struct.unpack(">IIQ", recv_exact(s, 16))[1] == 0 and len(recv_exact(s, 4096)) == 4096
LEN = 1 << 20
s.sendall(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, 1, 2, 0, LEN) +
          b"x" * (LEN // 2))


def unread():
    """Bytes we sent that the server has not read yet."""
    # s, not raw: wrapping the socket in TLS detaches raw from its fd.
    b = fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b"\0" * 4)
    return struct.unpack("i", b)[0]


# Taken: the server read every byte (and so parsed the write's header).
for _ in range(1000):
    if unread() == 0:
        break
    select.select([], [], [], 0.01)
report(ok and unread() == 0,
       f"{what}: the server read the write's header and half its data")

start = time.monotonic()
os.kill(pid, signal.SIGTERM)
limit = 3 * timeout + 10
s.settimeout(limit)
try:
    closed = s.recv(1) == b""
except (ConnectionResetError, ssl.SSLError):
    closed = True
except (TimeoutError, OSError):
    closed = False
took = time.monotonic() - start
report(closed and took < limit,
       f"{what}: after SIGTERM the server drops the client that owes a "
       f"write's data ({took:.1f} s, a {timeout:g} s period; limit {limit:g})")

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Starts the daemon, leaves one client in the state CASE names, sends
SIGTERM and checks that the daemon exits 0 within BOUND seconds (it
closes every connection: none may hold shutdown).
argv: CASE SOCKET CA_CERT BOUND -- DAEMON ARGV...
CASE: handshake (greeted, sends nothing), transmission (after GO, idle),
starttls (STARTTLS acknowledged, no TLS handshake sent), tls-transmission
(GO over TLS, idle), nonreader (64 reads of 1 MiB sent, no reply read),
slowreader (4 reads of 1 MiB sent just before SIGTERM, their replies
read slowly, at 640 KiB/s: every one must arrive whole before the
daemon exits, however long its requests take to finish).
Prints PASS/FAIL lines that the calling script numbers."""
import atexit
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time

from nbdtest import (NBD_REQUEST_MAGIC, go, option, option_reply, raw_connect,
                     report, starttls, wait_settled)

case, sock_path, ca_cert, bound = sys.argv[1:5]
bound = float(bound)
cmd = sys.argv[sys.argv.index("--") + 1:]
OPT_STARTTLS, REP_ACK = 5, 1
MIB = 1 << 20

# Connect once the daemon says READY=1 (sd_notify): every export is then
# open, so a client's NBD_OPT_GO is answered at once.  Connecting when
# the socket appears raced the export's unlock, which under valgrind on
# a loaded machine outlasts a short --handshake-timeout (the daemon then
# rightly drops the client).
notify_dir = tempfile.mkdtemp()
notify_path = os.path.join(notify_dir, "notify")
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(notify_path)
daemon = subprocess.Popen(cmd, env=dict(os.environ, NOTIFY_SOCKET=notify_path))
# A failed assertion must not leave the daemon serving after this script.
atexit.register(lambda: daemon.poll() is None and daemon.kill())
ready = False
end = time.monotonic() + 120
while not ready and daemon.poll() is None and time.monotonic() < end:
    if select.select([notify], [], [], 0.5)[0]:
        ready = "READY=1" in notify.recv(4096).decode()
assert ready, f"the daemon never said READY=1 (exit {daemon.poll()})"
s = raw_connect(sock_path)

if case == "transmission":
    assert go(s) == REP_ACK
elif case == "starttls":
    option(s, OPT_STARTTLS)
    assert option_reply(s)[0] == REP_ACK
elif case == "tls-transmission":
    s = starttls(s, ca_cert)
    assert go(s) == REP_ACK
elif case == "nonreader":
    assert go(s) == REP_ACK
    s.sendall(b"".join(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, 0, i,
                                   0, MIB) for i in range(64)))
    # Served all it can once its CPU time stops moving (bounded: 60 s).
    wait_settled(daemon.pid)

elif case == "slowreader":
    assert go(s) == REP_ACK
    s.sendall(b"".join(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, 0, 0, i,
                                   i * MIB, MIB) for i in range(4)))

start = time.monotonic()
daemon.terminate()
if case == "slowreader":
    # 64 KiB every 0.1 s (a select timeout paces it; nothing waits on
    # the daemon's timing), until 4 whole replies or EOF, at most 60 s.
    data = b""
    while len(data) < 4 * (16 + MIB) and time.monotonic() - start < 60:
        select.select([], [], [], 0.1)
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    errors = [struct.unpack(">IIQ", data[i:i + 16])[1]
              for i in range(0, len(data) - 15, 16 + MIB)]
    report(len(data) == 4 * (16 + MIB) and errors == [0] * 4,
           f"slowreader client: all 4 replies arrive whole after SIGTERM "
           f"({len(data)} bytes, errors {errors})")
try:
    rc = daemon.wait(timeout=bound)
except subprocess.TimeoutExpired:
    rc = None
    daemon.kill()
    daemon.wait()
took = time.monotonic() - start
report(rc == 0, f"{case} client: the daemon exits 0 within {bound:g} s of "
       f"SIGTERM (exit {rc}, {took:.1f} s)")
s.close()
notify.close()
os.unlink(notify_path)
os.rmdir(notify_dir)

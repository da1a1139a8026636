#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Socket activation and readiness, as systemd does them.
argv: SOCKET NOTIFY_SOCKET CREDENTIALS_DIR PLAINTEXT -- COMMAND...
Starts COMMAND under systemd-socket-activate with NOTIFY_SOCKET set,
connects a client to the passed socket at once, and checks that READY=1
arrives before the server sends its first byte, that the export serves
the plaintext, and that SIGTERM brings STOPPING=1 and exit status 0.
Prints PASS/FAIL lines that the calling script numbers."""
import os
import select
import signal
import socket
import struct
import subprocess
import sys

import nbd
from nbdtest import recv_exact, report

sock_path, notify_path, creds, plain_path = sys.argv[1:5]
cmd = sys.argv[sys.argv.index("--") + 1:]


ok = report


notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(notify_path)
# WatchdogSec=0.2: the daemon must ping every 100 ms.
env = dict(os.environ, NOTIFY_SOCKET=notify_path, CREDENTIALS_DIRECTORY=creds,
           WATCHDOG_USEC="200000")
proc = subprocess.Popen(["systemd-socket-activate", "-l", sock_path,
                         "-E", "NOTIFY_SOCKET", "-E", "CREDENTIALS_DIRECTORY",
                         "-E", "WATCHDOG_USEC"]
                        + cmd, env=env)

# systemd-socket-activate makes the listening socket, then execs us; the
# notify socket tells us nothing until READY, so wait for the socket file
# with select on the notify socket as the clock.
client = None
for _ in range(3000):
    try:
        client = socket.socket(socket.AF_UNIX)
        client.connect(sock_path)
        break
    except OSError:
        client.close()
        client = None
        select.select([notify], [], [], 0.005)
ok(client is not None, "a client connects to the socket systemd passes")

# The daemon listens at once and greets; the export is served once it
# is unlocked, and READY=1 says every export is: a client that asked
# for the export (NBD_OPT_GO) before that gets its reply after READY=1.
hello = recv_exact(client, 18)
ok(hello[:16] == b"NBDMAGICIHAVEOPT", "the early client is greeted at once")
client.sendall(struct.pack(">L", 1))  # NBD_FLAG_C_FIXED_NEWSTYLE
client.sendall(struct.pack(">QLL", 0x49484156454F5054, 7, 6) + struct.pack(">LH", 0, 0))
messages = []
first = None
while first is None:
    readable, _, _ = select.select([notify, client], [], [], 60)
    if not readable:
        break
    if notify in readable:
        msg = notify.recv(4096).decode()
        messages.append(msg)
        if "READY=1" in msg:
            first = "ready"
    elif client in readable:
        first = "data"
ok(first == "ready", f"READY=1 comes before the export's first reply ({first}, {messages})")
ok(any("STATUS=" in m for m in messages), "STATUS= is sent with READY=1")
reply = client.recv(20)
ok(len(reply) == 20 and struct.unpack(">QLLL", reply)[2] == 3,
   "the early client's NBD_OPT_GO is then answered (NBD_REP_INFO)")
client.close()

# Watchdog pings: wait (bounded) for two WATCHDOG=1 messages.
pings = sum("WATCHDOG=1" in m for m in messages)
while pings < 2:
    readable, _, _ = select.select([notify], [], [], 10)
    if not readable:
        break
    pings += "WATCHDOG=1" in notify.recv(4096).decode()
ok(pings >= 2, f"WATCHDOG=1 pings arrive with WATCHDOG_USEC set ({pings})")

h = nbd.NBD()
h.connect_unix(sock_path)
data = bytes(h.pread(h.get_size(), 0))
ok(data == open(plain_path, "rb").read(), "the activated export serves the plaintext (key from a credential)")
h.shutdown()

proc.send_signal(signal.SIGTERM)
rc = proc.wait(timeout=60)
stopping = False
notify.setblocking(False)
try:
    while True:
        stopping |= "STOPPING=1" in notify.recv(4096).decode()
except BlockingIOError:
    pass
ok(stopping, "SIGTERM sends STOPPING=1")
ok(rc == 0, f"exit status 0 after SIGTERM ({rc})")

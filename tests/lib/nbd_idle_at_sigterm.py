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
import select
import ssl
import struct
import subprocess
import sys
import time

from nbdtest import (NBD_REQUEST_MAGIC, go, option, option_reply, raw_connect,
                     report, wait_settled)

case, sock_path, ca_cert, bound = sys.argv[1:5]
bound = float(bound)
cmd = sys.argv[sys.argv.index("--") + 1:]
OPT_STARTTLS, REP_ACK = 5, 1
MIB = 1 << 20

daemon = subprocess.Popen(cmd)
s = None
for _ in range(600):  # the socket appears once the daemon serves (60 s)
    try:
        s = raw_connect(sock_path)
        break
    except (FileNotFoundError, ConnectionRefusedError):
        select.select([], [], [], 0.1)
assert s is not None, "the daemon never listened"


def starttls(sock):
    option(sock, OPT_STARTTLS)
    assert option_reply(sock)[0] == REP_ACK
    ctx = ssl.create_default_context(cafile=ca_cert)
    ctx.check_hostname = False
    return ctx.wrap_socket(sock)


if case == "transmission":
    assert go(s) == REP_ACK
elif case == "starttls":
    option(s, OPT_STARTTLS)
    assert option_reply(s)[0] == REP_ACK
elif case == "tls-transmission":
    s = starttls(s)
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

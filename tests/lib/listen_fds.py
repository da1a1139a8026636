#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Socket activation, emulated as systemd does it, without waiting for a
first client (systemd-socket-activate does wait).
argv: ADDRESS -- COMMAND...
ADDRESS is a unix socket path, @NAME for an abstract unix socket,
HOST:PORT for TCP (PORT 0: any free port), or "connected" for one end of
a connected socket pair (what a unit with Accept=yes passes).  Makes the listening socket,
passes it as fd 3 with LISTEN_FDS=1 and LISTEN_PID set to the command's
pid, runs the command and exits with its status."""
import os
import socket
import sys

address = sys.argv[1]
cmd = sys.argv[sys.argv.index("--") + 1:]
if address == "connected":
    s, peer = socket.socketpair()
elif address.startswith("/"):
    s = socket.socket(socket.AF_UNIX)
    s.bind(address)
elif address.startswith("@"):
    s = socket.socket(socket.AF_UNIX)
    s.bind("\0" + address[1:])
else:
    host, port = address.rsplit(":", 1)
    host = host.strip("[]")
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.bind((host, int(port)))
if address != "connected":
    s.listen(16)
pid = os.fork()
if pid == 0:
    if s.fileno() != 3:
        os.dup2(s.fileno(), 3)
    os.set_inheritable(3, True)  # also when s already was fd 3
    os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
    os.execvp(cmd[0], cmd)
s.close()
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status) & 0xff)

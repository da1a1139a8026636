#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Control socket checks that need a client held open while export-remove
runs.  argv: CONTROL NBD_SOCKET.  Prints PASS/FAIL lines."""
import json
import socket
import sys

import nbd
from nbdtest import control_call, report

control, sock = sys.argv[1:3]


ok = report


def call(req):
    return control_call(control, req)


h = nbd.NBD()
h.set_export_name("b")
h.connect_unix(sock)
r = call({"cmd": "export-remove", "name": "b"})
ok(not r["ok"] and "1 connected client" in r["error"],
   f"export-remove is refused while a client is connected ({r})")
r = call({"cmd": "export-remove", "name": "b", "force": True})
ok(r["ok"] and r["drained"] == 1, f"force drains the client ({r})")
try:
    h.pread(4096, 0)
    drained = False
except nbd.Error:
    drained = True
ok(drained, "the drained client's connection is closed")
r = call({"cmd": "export-list"})
ok(r["ok"] and [e["name"] for e in r["exports"]] == ["a"], f"b is gone from the list ({r})")
r = call({"cmd": "bogus"})
ok(not r["ok"] and "unknown cmd" in r["error"], "an unknown command is a clear error")
s = socket.socket(socket.AF_UNIX)
s.connect(control)
s.sendall(b"not json\n")
r = json.loads(s.recv(65536))
ok(not r["ok"], "a line that is not JSON is a clear error")
s.close()

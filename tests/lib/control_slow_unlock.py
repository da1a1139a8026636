#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A slow export-add (a PBKDF2 keyslot taking seconds) must not hold up
NBD I/O or shutdown.  argv: DAEMON TMP.  $TMP/a.* is a volume to serve,
$TMP/s.hdr a slow header for $TMP/s.payload, $TMP/s.key its passphrase.
Prints PASS/FAIL lines."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import nbd
from nbdtest import report as ok

daemon, tmp = sys.argv[1:3]
ctl, sock = f"{tmp}/ctl", f"{tmp}/sock"


def start():
    for p in (ctl, sock):
        if os.path.exists(p):
            os.unlink(p)
    spec = (f"name=a,payload={tmp}/a.payload,header={tmp}/a.hdr,"
            f"key-file={tmp}/a.key")
    d = subprocess.Popen([daemon, "--threads", "2", "--socket", sock,
                          "--control", ctl, "--export", spec],
                         stderr=open(f"{tmp}/daemon.log", "a"))
    deadline = time.monotonic() + 60
    while not (os.path.exists(ctl) and os.path.exists(sock)):
        if d.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the daemon did not start ({d.poll()})")
        time.sleep(0.05)
    return d


def send_add(name):
    """Sends an export-add of a copy of the slow volume; returns its socket."""
    for ext in ("hdr", "payload"):
        if not os.path.exists(f"{tmp}/{name}.{ext}"):
            shutil.copy(f"{tmp}/s.{ext}", f"{tmp}/{name}.{ext}")
    s = socket.socket(socket.AF_UNIX)
    s.connect(ctl)
    req = {"cmd": "export-add", "name": name, "payload": f"{tmp}/{name}.payload",
           "header": f"{tmp}/{name}.hdr", "key-file": f"{tmp}/s.key",
           "locking": "off"}
    s.sendall((json.dumps(req) + "\n").encode())
    return s


def reply(s, timeout):
    s.settimeout(timeout)
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        return None
    return json.loads(data) if data else None


def both_running():
    """Polls until a third export-add is refused as two unlocks run."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        # No payload: refused at once, before any unlock, when not busy.
        p = socket.socket(socket.AF_UNIX)
        p.connect(ctl)
        p.sendall(b'{"cmd":"export-add","name":"probe"}\n')
        r = reply(p, 10)
        if r and not r["ok"] and "unlocks are running already" in r["error"]:
            return True
        time.sleep(0.05)
    return False


def timed_read(bound):
    """Seconds a 4 KiB read of export a took, or None past bound."""
    h = nbd.NBD()
    h.set_export_name("a")
    h.connect_unix(sock)
    t0 = time.monotonic()
    buf = nbd.Buffer(4096)
    cookie = h.aio_pread(buf, 0)
    while not h.aio_command_completed(cookie):
        if time.monotonic() - t0 > bound:
            return None
        h.poll(100)
    took = time.monotonic() - t0
    with open(f"{tmp}/a.plain", "rb") as f:
        ok(buf.to_bytearray() == f.read(4096), "the read returned the plaintext")
    h.shutdown()
    return took


# 1. NBD I/O while two slow unlocks occupy what used to be the whole pool.
d = start()
adds = [send_add("s1"), send_add("s2")]
ok(both_running(), "two slow export-adds run at once (a third is refused)")
took = timed_read(3)
ok(took is not None, f"a 4 KiB read is answered in {took} s (< 3 s) while "
   "both unlocks run")
ok(all(reply(s, 0.01) is None for s in adds),
   "both unlocks were still running after the read")
t0 = time.monotonic()
rs = [reply(s, 300) for s in adds]
ok(all(r and r["ok"] for r in rs),
   f"both slow export-adds succeed ({rs}, {time.monotonic() - t0:.1f} s)")
d.send_signal(signal.SIGTERM)
ok(d.wait(60) == 0, "the daemon stops cleanly")

# 2. SIGTERM during a slow unlock: the daemon does not wait for it.
d = start()
adds = [send_add("t1"), send_add("t2")]
ok(both_running(), "two slow export-adds run at once, again")
t0 = time.monotonic()
d.send_signal(signal.SIGTERM)
try:
    status = d.wait(60)
except subprocess.TimeoutExpired:
    d.kill()
    status = d.wait()
took = time.monotonic() - t0
ok(took < 3, f"SIGTERM during the unlocks: the daemon exits in {took:.1f} s "
   "(< 3 s)")
ok(status == 0, f"... with status 0 ({status})")
ok(all(reply(s, 5) is None for s in adds),
   "the abandoned export-adds get no success reply")

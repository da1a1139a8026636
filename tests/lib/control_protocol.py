#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The control socket as hostile input, and its secrets and shutdown.
argv: MODE CONTROL SECRET_SPEC LUKS_NBD_BINARY -- DAEMON_ARGS...
MODE "requests": inline passphrases and malformed requests, then SIGTERM;
MODE "idle": SIGTERM while control clients sit idle.
Environment: SCAN_SHIM (the free() scanner, tests/lib/free-scan.so),
SCAN_PASSPHRASE (the passphrase of SECRET_SPEC's volume), SCAN_SECRET
(a part of it that the scanner looks for), SCAN_REPORT and
SCAN_CLIENT_REPORT (where the daemon and `luks-nbd ctl` report a freed
block that still holds the passphrase).
Starts the daemon itself, with the scanner preloaded; prints PASS/FAIL
lines that the calling script numbers."""
import atexit
import json
import os
import select
import signal
import socket
import subprocess
import sys

from nbdtest import report

mode, control, secret_spec, binary = sys.argv[1:5]
args = sys.argv[sys.argv.index("--") + 1:]
shim, secret = os.environ["SCAN_SHIM"], os.environ["SCAN_SECRET"]
passphrase = os.environ.get("SCAN_PASSPHRASE", "")
ok = report


def preloaded(report_file):
    """The environment of a process run with the free() scanner."""
    asan = os.environ.get("ASAN_OPTIONS", "")
    return dict(os.environ, LD_PRELOAD=shim, FREE_SCAN_SECRET=secret,
                FREE_SCAN_REPORT=report_file,
                ASAN_OPTIONS=(asan + ":" if asan else "") + "verify_asan_link_order=0")


def connect():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)
    s.connect(control)
    return s


def call(line):
    """Sends one raw line on a new connection; the reply, or None if the
    daemon closed without one (it died)."""
    try:
        s = connect()
    except OSError:
        return None
    s.sendall(line + b"\n")
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    s.close()
    return json.loads(data) if data.endswith(b"\n") else None


daemon = subprocess.Popen([binary] + args, env=preloaded(os.environ["SCAN_REPORT"]))
# Never leave it behind, whatever fails here.
atexit.register(lambda: daemon.poll() is None and daemon.kill())
# Until the control socket accepts (bounded; select is the clock).
up = False
for _ in range(1200):
    try:
        connect().close()
        up = True
        break
    except OSError:
        if daemon.poll() is not None:
            break
        select.select([], [], [], 0.05)
ok(up, "the daemon's control socket accepts connections")



def stop(what):
    """SIGTERM; the daemon must exit with 0 in a bounded time."""
    daemon.send_signal(signal.SIGTERM)
    try:
        rc = daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
        rc = "still running 30 s after SIGTERM"
    ok(rc == 0, f"SIGTERM {what}: the daemon exits with 0 ({rc})")


if mode == "idle":
    # SIGTERM with idle control clients: one that sent nothing, one that
    # sent half a line.  The daemon must close them and exit.
    idle = connect()
    half = connect()
    half.sendall(b'{"cmd":"export-')
    r = call(b'{"cmd":"export-list"}')  # both are accepted by now
    ok(r is not None and r["ok"], "a third client is served beside the idle ones")
    # 32 clients at most: 30 more idle ones, then one too many.
    more = [connect() for _ in range(30)]
    r = call(b'{"cmd":"export-list"}')
    ok(r is not None and not r["ok"] and "too many control clients" in r["error"],
       f"a 33rd client is refused ({r})")
    more.pop().close()
    r = None
    for _ in range(100):  # until the daemon has seen the close (bounded)
        r = call(b'{"cmd":"export-list"}')
        if r is not None and r["ok"]:
            break
        select.select([], [], [], 0.05)
    ok(r is not None and r["ok"], f"once one leaves, a new client is served ({r})")
    stop("with 32 idle control clients")
    idle.settimeout(5)
    try:
        closed = idle.recv(1) == b""
    except OSError:
        closed = False
    ok(closed, "the idle client's connection was closed")
    for c in more:
        c.close()
    sys.exit(0)

# 1. An inline passphrase (with a quote, so its JSON has an escape).
spec = secret_spec
r = call(json.dumps({"cmd": "export-add", "spec": spec.replace("NAME", "s1"),
                     "passphrase": passphrase}).encode())
ok(r is not None and r["ok"] and r["name"] == "s1",
   f"export-add with an inline passphrase (escaped in JSON) unlocks the volume ({r})")
r = call(b'{"cmd":"export-remove","name":"s1"}')
ok(r is not None and r["ok"], f"and export-remove removes it ({r})")
# The same through luks-nbd ctl --passphrase-stdin, scanned too.
c = subprocess.run([binary, "ctl", "--control", control, "export-add",
                    spec.replace("NAME", "s2"), "--passphrase-stdin"],
                   input=passphrase.encode(), capture_output=True,
                   env=preloaded(os.environ["SCAN_CLIENT_REPORT"]))
ok(c.returncode == 0 and b'"ok":true' in c.stdout,
   f"luks-nbd ctl export-add --passphrase-stdin unlocks it too ({c.returncode}, {c.stdout!r}, {c.stderr!r})")
r = call(b'{"cmd":"export-remove","name":"s2"}')
ok(r is not None and r["ok"], f"and it is removed again ({r})")

# Three export-adds in one write: the first two unlock in the pool, the
# third is refused at once (two unlocks at a time, so KDFs cannot take
# every pool thread from the NBD clients).
s = connect()
s.sendall(b"".join(json.dumps({"cmd": "export-add", "spec": spec.replace("NAME", n),
                               "passphrase": passphrase}).encode() + b"\n"
                   for n in ("b1", "b2", "b3")))
data = b""
while data.count(b"\n") < 3:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
s.close()
replies = [json.loads(x) for x in data.splitlines()]
ok(len(replies) == 3 and sorted(r.get("name", "") for r in replies if r["ok"]) == ["b1", "b2"]
   and any("2 unlocks are running already" in r.get("error", "") for r in replies),
   f"a third export-add while two unlock is refused, the two succeed ({replies})")
for n in ("b1", "b2"):
    call(json.dumps({"cmd": "export-remove", "name": n}).encode())

def rss_kib():
    with open(f"/proc/{daemon.pid}/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))


# A client that sends requests and never reads the replies: the daemon
# stops reading it once 1 MiB of replies wait, so its memory stays put
# (8 MiB of export-list lines would queue some 40 MiB of replies).
before = rss_kib()
greedy = connect()
greedy.settimeout(3)  # no progress for 3 s: the daemon stopped reading
lines = b'{"cmd":"export-list"}\n' * (8 * 1024 * 1024 // 22)
sent = 0
try:
    while sent < len(lines):
        sent += greedy.send(lines[sent:sent + 65536])
except socket.timeout:
    pass
grown = rss_kib() - before
limit = int(os.environ.get("RSS_GROWTH_LIMIT_KIB", "16384"))
ok(sent < len(lines) and grown < limit,
   f"a client that reads no replies is not read further ({sent} of {len(lines)} bytes taken, RSS +{grown} KiB)")
greedy.close()

# 2. Members of the wrong type, and other malformed requests: each gets a
# clear error naming the member and the type, and the daemon lives on.
bad = [
    (b'{"cmd":null}', 'member "cmd" must be a UTF-8 string'),
    (b'{"cmd":"export-remove","name":null}', 'member "name" must be a UTF-8 string'),
    (b'{"cmd":"export-add","spec":null}', 'member "spec" must be a UTF-8 string'),
    (b'{"cmd":"export-add","name":null,"payload":"/x"}', 'member "name" must be a UTF-8 string'),
    (b'{"cmd":"export-add","name":"x","payload":"/x","readonly":true}',
     'member "readonly" must be a UTF-8 string'),
    (b'{"cmd":17}', 'member "cmd" must be a UTF-8 string'),
    (b'{"cmd":["export-list"]}', 'not objects or arrays'),
    (b'{"cmd":"export-remove","name":"a","force":"false"}',
     'member "force" must be a boolean'),
    (b'{"cmd":"export-remove","name":"a\\u0000b"}', 'member "name" contains a NUL byte'),
    (b'{"cmd":"export-remove"}', 'member "name" (a UTF-8 string without NUL bytes) is required'),
    (b'{"cmd":"export-remove","nmae":"a"}', 'unknown member "nmae"'),
    (b'{"cmd":"export-list","cmd":"query-stats"}', 'member "cmd" is given twice'),
    (b'{"cmd":"export-add","spec":"name=x,payload=/x","readonly":"on"}',
     'beside "spec"'),
    (b'{"cmd":"export-add","name=y,readonly":"off"}', 'is not an export key'),
    (b'{"cmd":"export-list"} {"cmd":"export-list"}', 'text after the object'),
    (b'[1]', 'expected one JSON object'),
    (b'{"cmd":"export-list"', "expected ',' or '}'"),
    (b'{"cmd":"\\ud800"}', 'surrogate'),
    (b'{}', 'member "cmd" (a UTF-8 string without NUL bytes) is required'),
    (b'{"cmd":"export-remove","name":"\xff"}', 'member "name" is not valid UTF-8'),
    (b'{"cmd":"export-remove","name":"\xc0\xaf"}', 'member "name" is not valid UTF-8'),
    (b'{"cmd":"export-add","spec":"name=x,payload=/x,key-file=/k","passphrase":"p"}',
     'a passphrase is given, and so is key-file=: give one'),
]
for line, want in bad:
    r = call(line)
    ok(r is not None and not r["ok"] and want in r["error"],
       f"{line.decode(errors='backslashreplace')!r}: a clear error ({r})")


r = call(b'{"cmd":"export-list"}')
ok(r is not None and r["ok"] and [e["name"] for e in r["exports"]] == ["a"],
   f"after every bad line the daemon still serves export 'a' ({r})")
ok(daemon.poll() is None, "and is still running")

stop("after the requests")

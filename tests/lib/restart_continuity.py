#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Restart continuity under an emulated systemd with the fd store.
argv: DIR N DAEMON...  DIR holds e0..e(N-1).{payload,hdr,key,plain} and
y.{payload,hdr,plain} (another volume, same passphrase as e0).
Prints PASS/FAIL lines (and INFO lines with the measured gaps)."""
import os
import re
import signal
import sys
import threading
import time

import nbd
from nbdtest import report as ok
from fdstore_systemd import Manager

d, n = sys.argv[1], int(sys.argv[2])
daemon = sys.argv[3:]
names = [f"e{i}" for i in range(n)]
cmd = daemon + ["-v", "--fd-store"]
for x in names:
    cmd += ["--export", f"name={x},payload={d}/{x}.payload,header={d}/{x}.hdr,key-file={d}/{x}.key"]

m = Manager(f"{d}/nbd.sock", f"{d}/notify")


def on_alarm(signum, frame):
    raise TimeoutError("no reply within 120 s (is the daemon running?)")


signal.signal(signal.SIGALRM, on_alarm)


def read_export(name, count=4096, offset=0):
    """The export's bytes; a daemon that is gone (the socket is the
    manager's, so a client would wait in its backlog) fails the script
    after a bound instead of hanging it."""
    signal.alarm(120)
    try:
        h = nbd.NBD()
        h.set_export_name(name)
        h.connect_unix(m.sock_path)
        data = h.pread(count, offset)
        h.shutdown()
        return data
    finally:
        signal.alarm(0)


def plain(name, count=4096, offset=0):
    with open(f"{d}/{name}.plain", "rb") as f:
        f.seek(offset)
        return f.read(count)


def key_fd_kind(fd):
    link = os.readlink(f"/proc/self/fd/{fd}")
    if link.startswith("/secretmem"):
        return "memfd_secret"
    if link.startswith("/memfd:"):
        import fcntl
        seals = fcntl.fcntl(fd, 1034)  # F_GET_SEALS
        return "sealed memfd" if seals & 0x0F == 0x0F else f"memfd seals {seals:#x}"
    return link


def log_of(path):
    with open(path, errors="replace") as f:
        return f.read()


# --- first start: every key is unlocked (Argon2id) and stored -----------
log1 = open(f"{d}/run1.log", "w")
t = time.monotonic()
m.start(cmd, stderr=log1)
ready = m.wait_ready(900)
ok(ready, "the first daemon says READY=1")
if not ready:
    sys.exit(f"the first daemon did not start (status {m.proc.poll()})")
cold = time.monotonic() - t
print(f"INFO cold start (every KDF): {cold:.2f} s until READY=1 for {n} exports", flush=True)
key_names = sorted(nm for nm, _ in m.store)
ok(len(key_names) == n and all(x.startswith("luks-nbd-key-") for x in key_names),
   f"each export's key is in the fd store under its own name ({len(key_names)} of {n})")
kinds = {key_fd_kind(fd) for _, fd in m.store}
print(f"INFO key fds: {kinds}", flush=True)
ok(kinds <= {"memfd_secret", "sealed memfd"},
   f"every stored key is a memfd_secret or a fully sealed memfd ({kinds})")
ok(all(read_export(x) == plain(x) for x in (names[0], names[-1])),
   "the first daemon serves the plaintext")
status, t_exit = m.stop()
ok(status == 0, f"SIGTERM stops the first daemon with status 0 ({status})")
ok(len(m.store) == n, "the store keeps the keys across the stop")

# --- restart: keys from the store, first export served at once -----------
log2 = open(f"{d}/run2.log", "w")
t_start = time.monotonic()
m.start(cmd, stderr=log2)
first = read_export(names[0])
t_first = time.monotonic()
served = [read_export(x) == plain(x) for x in names]
t_all = time.monotonic()
ok(first == plain(names[0]), "after the restart the first export serves its plaintext")
ok(all(served), "after the restart every export serves its plaintext")
gap_first, gap_all = t_first - t_exit, t_all - t_exit
print(f"INFO restart gap with the fd store: first request {gap_first:.3f} s, "
      f"all {n} {gap_all:.3f} s after the old daemon's exit "
      f"(exec to first: {t_first - t_start:.3f} s)", flush=True)
ok(gap_first < 1.0, f"the first request is served within 1 s of the old daemon's exit ({gap_first:.3f} s)")
ok(m.wait_ready(300), "the restarted daemon says READY=1 once all are served")
log2.flush()
text = log_of(f"{d}/run2.log")
handed = len(re.findall(r"key handed over by the previous daemon", text))
ok(handed == n, f"every key came from the store: {handed} of {n} 'key handed over' lines at -v")
ok("refused" not in text, "no key was refused")
ok(len(m.store) == n, "the store still holds one key per export")

# --- (b) a handed-over key its header does not take ----------------------
status, _ = m.stop()
ok(status == 0, "the restarted daemon stops with status 0")
for suffix in ("hdr", "payload", "plain"):
    os.replace(f"{d}/y.{suffix}", f"{d}/{names[0]}.{suffix}")
log3 = open(f"{d}/run3.log", "w")
m.start(cmd, stderr=log3)
ok(m.wait_ready(300), "with e0's header replaced by another volume's, the daemon still starts")
ok(read_export(names[0]) == plain(names[0]),
   "e0 serves the new volume's plaintext (unlocked with the passphrase)")
log3.flush()
text = log_of(f"{d}/run3.log")
ok(re.search(r"export 'e0': the handed-over key was refused \([^)]*changed", text) is not None,
   "the stale key is refused because the header changed (logged)")
handed = len(re.findall(r"key handed over by the previous daemon", text))
ok(handed == n - 1, f"the other {n - 1} exports still took their keys ({handed})")
e0 = "FDNAME=luks-nbd-key-" + names[0].encode().hex()
removed = any("FDSTOREREMOVE=1" in x and e0 in x for x in m.messages)
stored = any("FDSTORE=1" in x and e0 in x for x in m.messages)
ok(removed and stored and len(m.store) == n,
   "the stale key leaves the store and e0's new key takes its place")
status, _ = m.stop()
ok(status == 0, "and the daemon stops with status 0")

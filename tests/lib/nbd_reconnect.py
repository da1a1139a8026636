# SPDX-License-Identifier: LGPL-2.1-or-later
"""A remote payload that goes away and comes back (test-nbd-payload-
reconnect.sh).  Usage: nbd_reconnect.py SOCKET REMOTE_CTL REMOTE_LOG

REMOTE_CTL is a script: `REMOTE_CTL restart [slow]` stops the remote
nbdkit and starts it again on the same socket (slow: reads take 10 s);
`REMOTE_CTL stop` stops it.  Prints PASS/FAIL lines."""
import errno
import signal
import subprocess
import sys
import time

import nbd
from nbdtest import errno_of, report

sock, ctl, remote_log = sys.argv[1:4]
signal.alarm(120)  # a hang fails the test instead of stalling it


def safe(fn):
    """fn's result, or None if the request failed (so that every check
    still reports on a server that does not reconnect)."""
    try:
        return fn()
    except nbd.Error:
        return None


def remote(*args):
    subprocess.run([ctl, *args], check=True)


h = nbd.NBD()
h.set_export_name("v")
h.connect_unix(sock)
MiB = 1024 * 1024
a = bytes((i * 13 + 1) % 256 for i in range(MiB))
b = bytes((i * 7 + 5) % 256 for i in range(65536))
c = bytes((i * 3 + 2) % 256 for i in range(65536))

h.pwrite(a, 0)
h.flush()
report(safe(lambda: h.pread(MiB, 0)) == a, "before the restart: written and read back")

remote("restart")
report(errno_of(lambda: h.pread(MiB, 0)) == 0,
       "after the remote restarted, the next read succeeds (reconnected)")
report(safe(lambda: h.pread(MiB, 0)) == a,
       "after the restart, reads return the data written before it")
safe(lambda: h.pwrite(b, MiB))
report(errno_of(lambda: h.flush()) == 0 and safe(lambda: h.pread(65536, MiB)) == b,
       "after the restart, writes and flushes work and read back")

# Writes acknowledged but not flushed when the remote went away may be
# lost: every flush after must say so, not succeed (one client's flush
# must not clear the loss another client's writes suffered).
safe(lambda: h.pwrite(c, 2 * MiB))
remote("restart")
report(safe(lambda: h.pread(65536, 0)) == a[:65536], "a read after a second restart works")
report(errno_of(lambda: h.flush()) == errno.EIO,
       "the first flush after the remote went away with unflushed writes "
       "fails with EIO")
h2 = nbd.NBD()
h2.set_export_name(h.get_export_name())
h2.connect_unix(sock)
report(errno_of(lambda: h2.flush()) == errno.EIO and
       errno_of(lambda: h.flush()) == errno.EIO,
       "and so does every later flush, from any client")
h2.shutdown()
report(safe(lambda: h.pread(65536, 2 * MiB)) == c, "the unflushed write reads back")

# A request in flight when the remote dies fails with EIO, without waiting
# for the remote's answer (reads take 10 s there now).
remote("restart", "slow")
done = []
cookie = h.aio_pread(nbd.Buffer(4096), 4096 * 3,
                     completion=lambda err: done.append(err.value) or 1)
for _ in range(1000):  # until the remote logs the read (at most ~10 s)
    h.poll(0)
    with open(remote_log) as f:
        if " Read " in f.read():
            break
    time.sleep(0.01)
remote("stop")
t0 = time.monotonic()
while not done:
    h.poll(-1)
elapsed = time.monotonic() - t0
report(done == [errno.EIO],
       "a read in flight when the remote dies fails with EIO (got %s)" % done)
report(elapsed < 5,
       "...at once, not after the remote's 10 s delay (%.1f s)" % elapsed)

# With the remote gone, a request fails after bounded retries.
t0 = time.monotonic()
report(errno_of(lambda: h.pread(4096, 0)) == errno.EIO,
       "with the remote gone, a read fails with EIO")
elapsed = time.monotonic() - t0
report(elapsed < 5, "...after bounded retries (%.1f s)" % elapsed)

remote("restart")
report(safe(lambda: h.pread(MiB, 0)) == a and safe(lambda: h.pread(65536, MiB)) == b,
       "once the remote is back, the data reads back correct")
h.shutdown()

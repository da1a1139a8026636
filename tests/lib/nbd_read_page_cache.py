#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Reads at QD32 from an export whose payload is partly in the page cache
and partly not, while another thread keeps evicting it: every read, small
(served from the page cache on the daemon's loop thread when it can) or
not, must return the plaintext.  Then writes and reads them back at once.
  nbd_read_page_cache.py SOCKET EXPORT PAYLOAD PLAIN SECTOR"""
import os
import random
import sys
import threading

import nbd

sock, export, payload, plain_path, sector = sys.argv[1:6]
sector = int(sector)
plain = bytearray(open(plain_path, "rb").read())
size = len(plain)
rng = random.Random(14)
checks = 0
failed = 0


def check(ok, what):
    global checks, failed
    checks += 1
    print(("ok - " if ok else "not ok - ") + what)
    if not ok:
        failed += 1


def evict(start, length):
    fd = os.open(payload, os.O_RDONLY)
    os.posix_fadvise(fd, start, length, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def warm(start, length):
    with open(payload, "rb") as f:
        f.seek(start)
        f.read(length)


# Request shapes: whole sectors of 4 and 16 KiB (the loop thread's), 20
# and 64 KiB (workers'), and partial sectors (workers', bounced).
def shapes():
    while True:
        kind = rng.randrange(5)
        if kind == 0:
            n = 4096
        elif kind == 1:
            n = 16384
        elif kind == 2:
            n = 20480
        elif kind == 3:
            n = 65536
        else:
            n = rng.randrange(1, 9000)
        if kind < 4:
            off = rng.randrange(0, (size - n) // sector + 1) * sector
        else:
            off = rng.randrange(0, size - n + 1)
        yield off, n


def run_reads(h, count, label):
    wrong = []
    gen = shapes()
    inflight = []
    done = 0
    while done < count:
        while len(inflight) < 32 and done + len(inflight) < count:
            off, n = next(gen)
            buf = nbd.Buffer(n)
            cookie = h.aio_pread(buf, off)
            inflight.append((cookie, buf, off, n))
        h.poll(-1)
        still = []
        for cookie, buf, off, n in inflight:
            if h.aio_command_completed(cookie):
                done += 1
                if buf.to_bytearray() != plain[off:off + n]:
                    wrong.append((off, n))
            else:
                still.append((cookie, buf, off, n))
        inflight = still
    check(not wrong, f"{label}: {count} reads return the plaintext "
          f"({len(wrong)} wrong, first {wrong[:3]})")


h = nbd.NBD()
h.set_export_name(export)
h.connect_unix(sock)

# All of it out of the page cache: every read misses (workers).
evict(0, 0)
run_reads(h, 600, "payload evicted")
# All of it cached: small whole-sector reads are served on the loop.
warm(0, os.path.getsize(payload))
run_reads(h, 3000, "payload cached")
# Half of every 64 KiB cached, half not, so that reads straddle both.
evict(0, 0)
for start in range(0, os.path.getsize(payload), 65536):
    warm(start, 32768)
run_reads(h, 2000, "payload half cached")
# Evicted under the reads' feet.
stop = threading.Event()


def evictor():
    while not stop.is_set():
        evict(0, 0)
        warm(rng.randrange(0, size), 1 << 20)


t = threading.Thread(target=evictor)
t.start()
try:
    run_reads(h, 4000, "payload evicted while reading")
finally:
    stop.set()
    t.join()

# Writes, then reads of the same ranges at once: what was just written.
for i in range(200):
    off = rng.randrange(0, size // 4096) * 4096
    data = os.urandom(4096)
    h.pwrite(data, off)
    plain[off:off + 4096] = data
run_reads(h, 3000, "after 200 writes")
h.shutdown()
with open(plain_path + ".model", "wb") as f:
    f.write(plain)
print(f"# {checks} checks")
sys.exit(1 if failed else 0)

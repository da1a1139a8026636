#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Random writes, trims and rewrites (some in flight together, on disjoint
ranges) through a running luks-nbd export with discard=on, against a model:
every byte last written must read back; trimmed bytes may read as anything.
Prints PASS/FAIL lines that the calling script numbers.
argv: SOCKET EXPORT SPAN SEED ROUNDS"""
import random
import sys

import nbd
from nbdtest import report

sock, name, span, seed, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
h = nbd.NBD()
h.set_export_name(name)
h.connect_unix(sock)

expect = bytearray(h.pread(span, 0))  # what the disk holds now
known = bytearray(b"\1" * span)       # 0 where a trim made it undefined
failed = []


def pick_ranges(count):
    """Up to count disjoint random ranges (offset, length) in the span."""
    out = []
    for _ in range(count):
        # Whole 512-byte sectors: the export's minimum block size.
        length = rng.choice([512, 4096, 65536, 131072,
                             rng.randrange(1, 600) * 512])
        off = rng.randrange(0, (span - length) // 512) * 512
        if rng.random() < 0.5:
            off -= off % 65536  # cluster-aligned: whole clusters freed
        if all(off + length <= a or a + b <= off for a, b in out):
            out.append((off, length))
    return out


def complete(cookie, what):
    def cb(err):
        if err.value:
            failed.append(f"{what}: errno {err.value}")
        return 1
    return cb


for r in range(rounds):
    batch = []
    for off, length in pick_ranges(8):
        if rng.random() < 0.4:
            h.aio_trim(length, off, completion=complete(r, f"trim {off}+{length}"))
            known[off:off + length] = bytes(length)
        else:
            data = rng.randbytes(length)
            h.aio_pwrite(data, off, completion=complete(r, f"write {off}+{length}"))
            expect[off:off + length] = data
            known[off:off + length] = b"\1" * length
        batch.append((off, length))
    while h.aio_in_flight() > 0:
        h.poll(-1)
    if rng.random() < 0.2:
        h.flush()

report(not failed, f"{rounds} rounds of writes and trims succeeded {failed[:3]}")
got = h.pread(span, 0)
ONES, ZEROS = b"\1" * 512, bytes(512)


def sector_ok(i):
    k = known[i:i + 512]
    if k == ZEROS:
        return True
    if k == ONES:
        return got[i:i + 512] == expect[i:i + 512]
    return all(got[j] == expect[j] for j in range(i, i + 512) if known[j])


bad = [i for i in range(0, span, 512) if not sector_ok(i)]
report(not bad, f"every byte last written reads back (bad sectors: {bad[:5]})")
report(h.pread(span, 0) == got, "a second read returns the same bytes (trimmed ones too)")
h.shutdown()

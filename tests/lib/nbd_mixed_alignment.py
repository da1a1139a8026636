#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""cache=none coherence: on the same 4 KiB pages, requests that the
payload can take with O_DIRECT (whole sectors from the request buffer)
run together with ones that luks-nbd bounces (write zeroes, partial
sectors: read-modify-write, unaligned reads), all in flight at once on
disjoint bytes, round after round over the same ranges, against a model.
argv: SOCKET EXPORT SPAN ROUNDS SEED MODEL_OUT LABEL
Prints PASS/FAIL lines that the calling script numbers; writes the
expected disk contents to MODEL_OUT for a later independent read."""
import random
import sys

import nbd
from nbdtest import errno_of, report

sock, name = sys.argv[1], sys.argv[2]
span, rounds, seed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
model_out, label = sys.argv[6], sys.argv[7]
rng = random.Random(seed)
P = 4096
h = nbd.NBD()
h.set_export_name(name)
# Partial sectors on purpose, whatever minimum block size is advertised.
h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_ALIGN)
h.connect_unix(sock)
expect = bytearray(h.pread(span, 0))
errors, reads, bad_reads = [], [], []


def done(what):
    def cb(err):
        if err.value:
            errors.append(f"{what}: errno {err.value}")
        return 1
    return cb


def write(off, data):
    h.aio_pwrite(data, off, completion=done(f"write {off}+{len(data)}"))
    expect[off:off + len(data)] = data


def zero(off, n):
    h.aio_zero(n, off, completion=done(f"zero {off}+{n}"))
    expect[off:off + n] = bytes(n)


def read(off, n):
    buf = nbd.Buffer(n)
    want = bytes(expect[off:off + n])  # nothing in this round writes it

    def cb(err):
        if err.value:
            errors.append(f"read {off}+{n}: errno {err.value}")
        elif buf.to_bytearray() != want:
            bad_reads.append(off)
        return 1
    h.aio_pread(buf, off, completion=cb)


for r in range(rounds):
    for page in range(0, span, P):
        if r % 2 == 0:  # whole pages: the direct path
            write(page, rng.randbytes(P))
            continue
        # Sector 0: bounced (zeroes, or a partial write), sector 1: read
        # partly (bounced), sectors 2-7: whole-sector writes (direct).
        if rng.random() < 0.5:
            zero(page, 512)
        else:
            off = page + rng.randrange(1, 200)
            write(off, rng.randbytes(rng.randrange(1, 512 - (off - page))))
        read(page + 512 + 100, 300)
        for s in range(2, 8):
            if rng.random() < 0.7:
                write(page + s * 512, rng.randbytes(512))
    while h.aio_in_flight() > 0:
        h.poll(-1)
    got = h.pread(span, 0)
    if got != expect:
        bad = [i for i in range(0, span, 512) if got[i:i + 512] != expect[i:i + 512]]
        errors.append(f"round {r}: {len(bad)} sectors read back wrong, first {bad[:4]}")

report(not errors, f"{label}: {rounds} rounds of mixed direct and bounced I/O on the same pages "
       f"read back as written {errors[:3]}")
report(not bad_reads, f"{label}: partial-sector reads in flight with neighbouring writes "
       f"saw the data ({len(bad_reads)} wrong, first {bad_reads[:3]})")
report(errno_of(h.flush) == 0, f"{label}: a flush after it all succeeds")
h.shutdown()
open(model_out, "wb").write(expect)

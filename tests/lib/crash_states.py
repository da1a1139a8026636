#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Rebuilds every state a file could be left in by a power cut during the
run that tests/lib/write-log.so recorded, and checks each with qemu-img check.
A flush makes every earlier write durable; between two flushes the disk
may have kept any subset of the writes (in any order), so each such
subset is a state.  qemu-img check must find no corruption in any state
(exit 0, or 3: leaked clusters only, which qemu accepts after a crash).
Prints one PASS/FAIL line that the calling script numbers.
argv: ORIGINAL LOG WORKFILE WHAT"""
import itertools
import shutil
import struct
import subprocess
import sys

orig, log, work, what = sys.argv[1:5]
MAX_SUBSET_WRITES = 12  # 2^12 states per epoch at most


def read_log(path):
    """Epochs: lists of ('W', offset, bytes) / ('P', offset, length)."""
    epochs, cur = [], []
    with open(path, "rb") as f:
        while (t := f.read(1)):
            if t == b"F":
                epochs.append(cur)
                cur = []
                continue
            off, ln = struct.unpack("=QQ", f.read(16))
            cur.append(("W", off, f.read(ln)) if t == b"W" else ("P", off, ln))
    epochs.append(cur)
    return epochs


def apply(f, op):
    kind, off, x = op
    f.seek(off)
    f.write(x if kind == "W" else bytes(x))


def check(durable, extra):
    """The original, then every durable op, then `extra` (a subset)."""
    shutil.copyfile(orig, work)
    with open(work, "r+b") as f:
        for op in durable + extra:
            apply(f, op)
    r = subprocess.run(["qemu-img", "check", "-f", "qcow2", work],
                       capture_output=True, text=True)
    return r.returncode in (0, 3), r.stdout + r.stderr


epochs = read_log(log)
states, bad, durable = 0, [], []
for k, epoch in enumerate(epochs):
    if len(epoch) > MAX_SUBSET_WRITES:
        sys.exit(f"epoch {k} has {len(epoch)} writes: too many to enumerate")
    for n in range(len(epoch) + 1):
        for subset in itertools.combinations(range(len(epoch)), n):
            states += 1
            ok, out = check(durable, [epoch[i] for i in subset])
            if not ok:
                bad.append(f"epoch {k}, writes {subset} of {len(epoch)}")
                err = [l for l in out.splitlines() if "ERROR" in l]
                print(f"# {bad[-1]}: {err[:2]}", file=sys.stderr)
    durable += epoch
print(("PASS " if not bad else "FAIL ") +
      f"{what}: qemu-img check finds no corruption in any of the {states} "
      f"crash states ({len(epochs) - 1} flushes) {bad[:3]}", flush=True)

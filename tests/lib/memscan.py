#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""memscan.py PID HEX...: counts where each byte string (given in hex)
occurs in the readable memory of process PID (as root: /proc/PID/mem).
Prints one line per needle: 'HEX COUNT'.  Regions over 1 GiB are
sanitizer shadow memory (terabytes, reserved, never a heap), not read.  Tests use it to prove that a
secret, or a value an offline search could turn back into one, is
nowhere in a running daemon's memory."""
import re
import sys


def regions(pid):
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if (fields[1][0] == "r" and not line.rstrip().endswith("[vvar]")
                    and end - start <= 1 << 30):
                yield start, end


def main():
    pid = int(sys.argv[1])
    needles = [bytes.fromhex(h) for h in sys.argv[2:]]
    counts = [0] * len(needles)
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for start, end in regions(pid):
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:  # guard pages, device mappings
                continue
            for i, n in enumerate(needles):
                counts[i] += len(re.findall(re.escape(n), data))
    for n, c in zip(needles, counts):
        print(n.hex(), c)


main()

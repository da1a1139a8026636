"""Helpers shared by the Python test clients (run with /usr/bin/python3,
which has python3-libnbd)."""
import errno

import nbd


def errno_of(fn):
    """Runs fn; returns 0, or the errno number of the nbd.Error it raised
    (libnbd's Python binding gives the symbolic name)."""
    try:
        fn()
        return 0
    except nbd.Error as e:
        err = e.errno
        return getattr(errno, err) if isinstance(err, str) else err


def report(cond, desc):
    """A PASS/FAIL line that the calling shell script numbers into TAP."""
    print(("PASS " if cond else "FAIL ") + desc, flush=True)

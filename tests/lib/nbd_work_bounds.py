#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Per-request work bounds: NBD_CMD_CACHE and NBD_CMD_BLOCK_STATUS whose
length (up to 4 GiB) does not bound their work the way a read's payload
does.  Measures work, not time: the daemon's CPU time (utime + stime from
/proc; under `luks-nbd --run` the daemon's pid is the shell's $PPID)
for a few maximal requests, and that a second client is served while a
first floods the server with them (a bounded wait, far below what the
flood costs when its work is not bounded).

  nbd_work_bounds.py make-qcow2 PATH contiguous|alternating
      writes a qcow2 image (512-byte clusters, 4 GiB + 1 MiB, every L2
      table allocated, each its own cluster): contiguous maps every
      cluster to data, in order; alternating maps every other cluster.
      Data clusters lie in a hole of the (sparse) file: reads are zeros.
  nbd_work_bounds.py cache SOCKET EXPORT CPU_LIMIT_TICKS DAEMON_PID
  nbd_work_bounds.py status SOCKET EXPORT CPU_LIMIT_TICKS DAEMON_PID
  nbd_work_bounds.py zeroes SOCKET EXPORT
      one client sends 16 WRITE_ZEROES of 256 MiB at once (no payload,
      yet each encrypts and writes 256 MiB); a second client's read must
      be answered before the first client's second zero: the zeroes'
      ranges count against the in-flight budget, so they are taken one
      at a time, not all queued ahead of everyone else's requests.
Prints PASS/FAIL lines that the calling script numbers."""
import select
import struct
import sys

from nbdtest import (NBD_REQUEST_MAGIC, cpu_ticks, go, option, option_reply,
                     raw_connect, recv_exact, report)

CMD_READ, CMD_CACHE, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 0, 5, 6, 7
SIMPLE_MAGIC, STRUCTURED_MAGIC = 0x67446698, 0x668E33EF
REPLY_BLOCK_STATUS = 5
MAX_COUNT = 0xFFFFF000  # the largest 4096-aligned 32-bit length
FLOOD = 128             # the per-connection in-flight limit
WAIT = 30               # seconds a second client may wait for one read
MIB = 1 << 20


def make_qcow2(path, mode):
    cluster = 512
    vsize = (4 << 30) + MIB
    per_table = cluster // 8
    tables = -(-vsize // (cluster * per_table))
    l1_off = 2 * cluster  # after the header and an empty refcount table
    l2_start = l1_off + -(-tables * 8 // cluster) * cluster
    data_start = l2_start + tables * cluster
    copied = 1 << 63
    hdr = struct.pack(">4sIQIIQIIQQIIQ", b"QFI\xfb", 3, 0, 0, 9, vsize, 0,
                      tables, l1_off, cluster, 1, 0, 0)
    hdr += struct.pack(">QQQII", 0, 0, 0, 4, 104) + struct.pack(">II", 0, 0)
    with open(path, "wb") as f:
        f.write(hdr.ljust(2 * cluster, b"\0"))
        f.write(struct.pack(f">{tables}Q", *(
            (l2_start + t * cluster) | copied for t in range(tables))))
        f.seek(l2_start)
        step = 1 if mode == "contiguous" else 2
        for t in range(tables):
            first = t * per_table
            entries = [0] * per_table
            for i in range(0, per_table, step):
                entries[i] = (data_start + (first + i) * cluster) | copied
            f.write(struct.pack(f">{per_table}Q", *entries))
        f.truncate(data_start + vsize)


def request(cmd, handle, offset, count, flags=0):
    return struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, flags, cmd, handle,
                       offset, count)


def connect(sock, export, structured):
    s = raw_connect(sock)
    if structured:
        option(s, 8)  # STRUCTURED_REPLY
        assert option_reply(s)[0] == 1
        name, ctx = export.encode(), b"base:allocation"
        option(s, 10, struct.pack(">I", len(name)) + name +
               struct.pack(">II", 1, len(ctx)) + ctx)  # SET_META_CONTEXT
        while True:
            typ = option_reply(s)[0]
            assert typ in (1, 4), f"SET_META_CONTEXT: reply type {typ:#x}"
            if typ == 1:
                break
    typ = go(s, export)
    assert typ == 1, f"GO: reply type {typ}"
    return s


def simple_reply(s):
    """(handle, error) of a simple reply without data."""
    magic, err, handle = struct.unpack(">IIQ", recv_exact(s, 16))
    assert magic == SIMPLE_MAGIC, hex(magic)
    return handle, err


def status_reply(s):
    """(handle, reply type, [(length, flags)]) of a structured reply."""
    magic, _, typ, handle, ln = struct.unpack(">IHHQI", recv_exact(s, 20))
    assert magic == STRUCTURED_MAGIC, hex(magic)
    data = recv_exact(s, ln)
    if typ != REPLY_BLOCK_STATUS:
        return handle, typ, []
    n = (ln - 4) // 8
    return handle, typ, list(struct.iter_unpack(">II", data[4:4 + 8 * n]))


def served_within(sock, export, seconds):
    """True if a second client's 4 KiB read is answered, right, within
    `seconds` (select: a bounded wait, no sleep)."""
    b = connect(sock, export, False)
    b.sendall(request(CMD_READ, 1, 0, 4096))
    ready = select.select([b], [], [], seconds)[0]
    ok = bool(ready) and simple_reply(b) == (1, 0) and len(recv_exact(b, 4096)) == 4096
    b.close()
    return ok


def cache(sock, export, limit, pid):
    a = connect(sock, export, False)
    before = cpu_ticks(pid)
    a.sendall(b"".join(request(CMD_CACHE, i, 0, MAX_COUNT) for i in range(3)))
    errs = [simple_reply(a)[1] for _ in range(3)]
    used = cpu_ticks(pid) - before
    report(errs == [0, 0, 0], f"{export}: three 4 GiB CACHE requests succeed ({errs})")
    report(used < limit, f"{export}: and cost {used} ticks of daemon CPU (< {limit})")

    before = cpu_ticks(pid)
    a.sendall(b"".join(request(CMD_CACHE, i, 0, MAX_COUNT) for i in range(FLOOD)))
    report(served_within(sock, export, WAIT),
           f"{export}: a second client is served while {FLOOD} 4 GiB CACHE requests are in flight")
    errs = [simple_reply(a)[1] for _ in range(FLOOD)]
    used = cpu_ticks(pid) - before
    report(errs == [0] * FLOOD, f"{export}: all {FLOOD} CACHE requests succeed")
    report(used < limit, f"{export}: the flood cost {used} ticks of daemon CPU (< {limit})")
    a.close()


def status(sock, export, limit, pid):
    a = connect(sock, export, True)
    before = cpu_ticks(pid)
    a.sendall(b"".join(request(CMD_BLOCK_STATUS, i, 0, MAX_COUNT) for i in range(3)))
    replies = [status_reply(a) for _ in range(3)]
    used = cpu_ticks(pid) - before
    good = [typ == REPLY_BLOCK_STATUS and 0 < len(ext) <= 4096 and
            0 < sum(e[0] for e in ext) <= MAX_COUNT for _, typ, ext in replies]
    covered = sum(e[0] for e in replies[0][2]) // MIB
    report(all(good), f"{export}: three 4 GiB BLOCK_STATUS replies, each 1..4096 extents "
           f"({[len(r[2]) for r in replies]}, the first covers {covered} MiB)")
    report(used < limit, f"{export}: and cost {used} ticks of daemon CPU (< {limit})")

    flood = FLOOD // 4  # replies up to 32 KiB each: stay under the output budget
    before = cpu_ticks(pid)
    a.sendall(b"".join(request(CMD_BLOCK_STATUS, i, 0, MAX_COUNT) for i in range(flood)))
    report(served_within(sock, export, WAIT),
           f"{export}: a second client's read (which needs the map) is served while "
           f"{flood} 4 GiB BLOCK_STATUS requests are in flight")
    replies = [status_reply(a) for _ in range(flood)]
    used = cpu_ticks(pid) - before
    report(all(typ == REPLY_BLOCK_STATUS for _, typ, _ in replies),
           f"{export}: all {flood} BLOCK_STATUS requests are answered")
    report(used < limit, f"{export}: the flood cost {used} ticks of daemon CPU (< {limit})")
    a.close()


def zeroes(sock, export):
    n, size = 16, 256 * MIB
    a = connect(sock, export, False)
    a.sendall(b"".join(request(CMD_WRITE_ZEROES, i, i * size, size)
                       for i in range(n)))
    b = connect(sock, export, False)
    b.sendall(request(CMD_READ, 1000, 0, 4096))
    zeroed, read_ok, buf = [], None, b""
    while read_ok is None:
        ready = select.select([a, b], [], [], WAIT * 4)[0]
        if not ready:
            break
        if a in ready:
            buf += a.recv(65536)
            while len(buf) >= 16:
                magic, err, handle = struct.unpack(">IIQ", buf[:16])
                buf = buf[16:]
                zeroed.append((handle, err, magic == SIMPLE_MAGIC))
        if b in ready:
            read_ok = simple_reply(b) == (1000, 0) and len(recv_exact(b, 4096)) == 4096
    report(read_ok is True, "a second client's read is answered while 16 zeroes "
           "of 256 MiB are queued")
    report(len(zeroed) <= 1, f"and before the first client's second zero "
           f"({len(zeroed)} of its replies came first)")
    report(all(err == 0 and good for _, err, good in zeroed),
           f"the zeroes answered so far succeeded ({zeroed})")
    a.close()
    b.close()


if __name__ == "__main__":
    if sys.argv[1] == "make-qcow2":
        make_qcow2(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "zeroes":
        zeroes(sys.argv[2], sys.argv[3])
    else:
        {"cache": cache, "status": status}[sys.argv[1]](
            sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))

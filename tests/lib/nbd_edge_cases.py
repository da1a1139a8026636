#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Protocol edge cases against a running luks-nbd, printing TAP.

argv: SOCKET PLAINTEXT
Exports expected: 'rw' (read-write, 4096-byte sectors, plaintext in
PLAINTEXT), "ro" (read-only, same volume), and one with a 4096-byte name
bytes of "n").  libnbd runs with strict mode off so that the server, not the
client library, must refuse bad requests; a raw socket client sends what
libnbd cannot (unknown commands, oversized options and writes).
"""
import errno
import os
import random
import struct
import sys

import nbd
from nbdtest import (NBD_REQUEST_MAGIC, errno_of, go, option, option_reply,
                     recv_exact, server_closed)
from nbdtest import raw_connect as nbdtest_raw_connect

sock_path, plain_path = sys.argv[1], sys.argv[2]
long_name = "n" * 4096  # the export the test script names so
model = bytearray(open(plain_path, "rb").read())
size = len(model)
n = 0
failed = 0


def ok(cond, desc, detail=""):
    global n, failed
    n += 1
    print(("ok" if cond else "not ok") + f" {n} - {desc}")
    if not cond:
        failed += 1
        if detail:
            print(f"#   {detail}")
    sys.stdout.flush()


def connect(name, strict=False):
    h = nbd.NBD()
    if not strict:
        h.set_strict_mode(0)
    h.set_export_name(name)
    h.connect_unix(sock_path)
    return h


nbd_errno = errno_of


def usable(h, desc):
    off = random.randrange(0, size - 8192) // 512 * 512
    ok(bytes(h.pread(8192, off)) == bytes(model[off:off + 8192]),
       f"connection still usable after {desc}")


# --- libnbd with strict mode off ---------------------------------------
h = connect("rw")
e = nbd_errno(lambda: h.pread(512, size))
ok(e == errno.EINVAL, "read past the end: EINVAL", f"errno {e}")
usable(h, "read past the end")
e = nbd_errno(lambda: h.pwrite(b"x" * 512, size - 256))
ok(e == errno.ENOSPC, "write crossing the end: ENOSPC", f"errno {e}")
usable(h, "write past the end")
e = nbd_errno(lambda: h.pread(4096, 2**64 - 2048))
ok(e == errno.EINVAL, "offset+length wrapping 2^64: EINVAL", f"errno {e}")
usable(h, "wrapping request")
e = nbd_errno(lambda: h.pread(0, 4096))
ok(e == errno.EINVAL, "length 0: EINVAL", f"errno {e}")
usable(h, "length 0")

# Unaligned requests (4096-byte sectors) work: read-modify-write.
for off, ln in [(1, 1), (1000, 3000), (4095, 2), (5000, 20000), (size - 7, 7)]:
    ok(bytes(h.pread(ln, off)) == bytes(model[off:off + ln]),
       f"unaligned read {ln} bytes at {off}")
for off, ln in [(3, 5), (4000, 200), (10000, 9000), (size - 100, 100)]:
    data = os.urandom(ln)
    h.pwrite(data, off)
    model[off:off + ln] = data
    ok(bytes(h.pread(ln + 8192 if off + ln + 8192 <= size else ln, off))
       == bytes(model[off:off + (ln + 8192 if off + ln + 8192 <= size else ln)]),
       f"unaligned write {ln} bytes at {off} reads back, neighbours intact")

# Large requests (split across worker threads), aligned and not.
for off, ln in [(0, 8 << 20), (12345, (4 << 20) + 999)]:
    ok(bytes(h.pread(ln, off)) == bytes(model[off:off + ln]),
       f"large read of {ln} bytes at {off}")
for off, ln in [(4096, 4 << 20), (777, (3 << 20) + 101)]:
    data = os.urandom(ln)
    h.pwrite(data, off)
    model[off:off + ln] = data
    ok(bytes(h.pread(size, 0)) == bytes(model),
       f"large write of {ln} bytes at {off} lands exactly")

# Overlapping unaligned writes in flight at once never lose bytes.
lost = 0
for trial in range(40):
    a_off = random.randrange(0, 3 * 4096)
    b_off = a_off + random.randrange(1, 6000)
    a = os.urandom(6000)
    b = os.urandom(6000)
    c1 = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(a)), a_off)
    c2 = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b)), b_off)
    while h.aio_in_flight() > 0:
        h.poll(-1)
    ok_both = h.aio_command_completed(c1) and h.aio_command_completed(c2)
    if not ok_both:
        lost += 1
    d = b_off - a_off            # 1..5999: the writes always overlap
    got = bytes(h.pread(d + 6000, a_off))
    ov = 6000 - d
    if not (got[:d] == a[:d] and got[6000:] == b[ov:]
            and got[d:6000] in (a[d:], b[:ov])):
        lost += 1
    model[a_off:a_off + d + 6000] = got
ok(lost == 0, "40 pairs of overlapping unaligned writes in flight: no lost bytes",
   f"{lost} pairs lost data")
h.flush()

# Read-only export.
r = connect("ro")
e = nbd_errno(lambda: r.pwrite(b"y" * 4096, 0))
ok(e == errno.EPERM, "write to a read-only export: EPERM", f"errno {e}")
ok(r.is_read_only() == 1, "read-only export advertises NBD_FLAG_READ_ONLY")
usable(r, "a refused write")
r.shutdown()

# A 4096-byte export name works.
ln = connect(long_name, strict=True)
ok(ln.get_size() == size, "4096-byte export name connects")
ln.shutdown()

# A client that disconnects with requests in flight does not disturb another.
victim = connect("rw")
for i in range(64):
    victim.aio_pread(nbd.Buffer(1 << 20), (i * (1 << 20)) % (size - (1 << 20)))
del victim  # closes the socket with the reads still in flight
other = connect("rw")
ok(bytes(other.pread(1 << 20, 0)) == bytes(model[:1 << 20]),
   "another client reads correctly after one dropped with 64 reads in flight")
other.shutdown()

# 50 concurrent clients, each reading its own region.
clients = [connect("rw") for _ in range(50)]
cmds = []
for i, c in enumerate(clients):
    off = (i * 65536) % (size - 65536)
    buf = nbd.Buffer(65536)
    cmds.append((c, c.aio_pread(buf, off), buf, off))
good = 0
for c, cookie, buf, off in cmds:
    while not c.aio_command_completed(cookie):
        c.poll(-1)
    good += bytes(buf.to_bytearray()) == bytes(model[off:off + 65536])
ok(good == 50, "50 concurrent clients all read their plaintext", f"{good}/50")
for c in clients:
    c.shutdown()

# --- raw protocol client (helpers in nbdtest.py) --------------------------


def raw_connect():
    return nbdtest_raw_connect(sock_path)


def raw_go(name):
    s = raw_connect()
    typ = go(s, name)
    assert typ == 1, f"GO: reply type {typ}"
    return s


def request(s, typ, offset, length, flags=0, handle=7, data=b""):
    s.sendall(struct.pack(">IHHQQI", NBD_REQUEST_MAGIC, flags, typ, handle,
                          offset, length) + data)


def simple_reply(s):
    magic, err, handle = struct.unpack(">IIQ", recv_exact(s, 16))
    return err, handle


s = raw_go("rw")
request(s, 42, 0, 4096)
err, _ = simple_reply(s)
ok(err == errno.EINVAL, "unknown command: EINVAL", f"error {err}")
request(s, 0, 0, 4096, flags=0x40)
err, _ = simple_reply(s)
ok(err == errno.EINVAL, "unknown command flag: EINVAL", f"error {err}")
request(s, 1, 0, 33 << 20, data=b"\0" * (33 << 20))
err, _ = simple_reply(s)
ok(err == errno.EOVERFLOW, "33 MiB write: EOVERFLOW, its data consumed", f"error {err}")
request(s, 0, 4096, 4096, handle=99)
err, handle = simple_reply(s)
data = recv_exact(s, 4096) if err == 0 else b""
ok(err == 0 and handle == 99 and data == bytes(model[4096:8192]),
   "stream still in sync after a refused write (read returns the plaintext)")
s.close()

s = raw_go("ro")
request(s, 1, 0, 65536, data=os.urandom(65536))
err, _ = simple_reply(s)
ok(err == errno.EPERM, "raw write to read-only export: EPERM", f"error {err}")
request(s, 0, 0, 512, handle=5)
err, handle = simple_reply(s)
ok(err == 0 and handle == 5 and recv_exact(s, 512) == bytes(model[:512]),
   "read-only stream in sync after its refused write")
s.close()

# DF without structured replies: not negotiated, so refused.
s = raw_go("rw")
request(s, 0, 0, 4096, flags=4, handle=11)
err, _ = simple_reply(s)
ok(err == errno.EINVAL, "DF flag without structured replies: EINVAL", f"error {err}")
# A client gone in the middle of a write's data: never acknowledged,
# nothing written, the next client reads the old plaintext.
request(s, 1, 8192, 65536, handle=12, data=b"\xee" * 30000)
s.close()
h2 = connect("rw")
ok(bytes(h2.pread(65536, 8192)) == bytes(model[8192:8192 + 65536]),
   "a write whose client left mid-data was not applied")
h2.shutdown()

# 1000 clients connected at once (the daemon runs with
# --max-connections 1100), each handshakes and reads its own block.
many = [raw_connect() for _ in range(1000)]
nm = b"rw"
go_option = struct.pack(">I", len(nm)) + nm + struct.pack(">H", 0)
for c in many:
    option(c, 7, go_option)
for i, c in enumerate(many):
    while option_reply(c)[0] != 1:
        pass
    request(c, 0, (i * 4096) % size, 4096, handle=i)
good = 0
for i, c in enumerate(many):
    err, handle = simple_reply(c)
    off = (i * 4096) % size
    good += err == 0 and handle == i and recv_exact(c, 4096) == bytes(model[off:off + 4096])
    c.close()
ok(good == 1000, "1000 clients at once: each reads its plaintext", f"{good}/1000")

s = raw_connect()
option(s, 1000, b"")
typ, _ = option_reply(s)
ok(typ == 0x80000001, "unknown option: NBD_REP_ERR_UNSUP", f"type {typ:#x}")
option(s, 6, struct.pack(">I", 100) + b"rw")
typ, _ = option_reply(s)
ok(typ == 0x80000003, "NBD_OPT_INFO name length beyond the option: ERR_INVALID",
   f"type {typ:#x}")
option(s, 7, struct.pack(">I", 7) + b"nothere" + struct.pack(">H", 0))
typ, _ = option_reply(s)
ok(typ == 0x80000006, "NBD_OPT_GO for an unknown export: ERR_UNKNOWN", f"type {typ:#x}")
s.sendall(struct.pack(">QII", 0x49484156454F5054, 7, 0xFFFFFFFF))
typ, _ = option_reply(s)
ok(typ == 0x80000009, "4 GB option length: ERR_TOO_BIG without reading it",
   f"type {typ:#x}")
ok(server_closed(s), "server closes the connection after a 4 GB option")
s.close()

h = connect("rw")
ok(bytes(h.pread(4096, 0)) == bytes(model[:4096]), "server still serves after all of the above")
h.shutdown()
print(f"1..{n}")
sys.exit(1 if failed else 0)

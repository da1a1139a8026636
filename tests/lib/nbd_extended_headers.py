#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""NBD_OPT_EXTENDED_HEADERS from a raw client (libnbd 1.14 cannot send
them): negotiation, 32-byte requests and replies, 64-bit lengths and
their bounds, the two header styles never mixed, STARTTLS forgetting
them, and the per-connection budgets holding for extended requests.
argv: SOCKET MODE ARGS...
  proto  PLAINTEXT_OF_v     on exports 'v' (small) and 'big' (> 4 GiB)
  zero   OFFSET LENGTH      one WRITE_ZEROES on 'big'
  trim   OFFSET LENGTH      one TRIM on 'big' (discard=on)
  tls    CA_CERT PLAINTEXT_OF_v
  budget PLAINTEXT_OF_v LIMIT_MIB   (the daemon is our parent)
  fair   EXPORT LENGTH      one WRITE_ZEROES of LENGTH while another client
                            reads: the read is answered first
  stop   EXPORT LENGTH      SIGTERM the daemon (our parent) while a
                            WRITE_ZEROES of LENGTH runs: it ends early
Prints PASS/FAIL lines that the calling script numbers."""
import os
import signal
import ssl
import struct
import sys
import time

from nbdtest import (EXT_REPLY, OPT_EXTENDED, REP_ACK, error_of, ext_reply,
                     ext_req, extended, go, option, option_reply,
                     peak_rss_mib, raw_connect, recv_exact, report,
                     server_closed, set_meta, wait_settled)

sock_path, mode, args = sys.argv[1], sys.argv[2], sys.argv[3:]
GIB = 1 << 30
OPT_EXPORT_NAME, OPT_STARTTLS, OPT_STRUCTURED = 1, 5, 8
REP_ERR_INVALID, REP_ERR_EXT_HEADER_REQD = 0x80000003, 0x8000000A
CMD_READ, CMD_WRITE, CMD_FLUSH, CMD_TRIM, CMD_CACHE = 0, 1, 3, 4, 5
CMD_ZEROES, CMD_STATUS = 6, 7
FLAG_FUA, FLAG_REQ_ONE, FLAG_PAYLOAD_LEN = 1, 8, 0x20
COMPACT_MAGIC = 0x25609513
SIMPLE_REPLY = 0x67446698
TYPE_DATA, TYPE_STATUS_EXT = 1, 6
EINVAL, EOVERFLOW, ENOSPC = 22, 75, 28


def compact_req(typ, offset, length, flags=0, cookie=1):
    return struct.pack(">IHHQQI", COMPACT_MAGIC, flags, typ, cookie, offset,
                       length)


def command(s, *a, **k):
    s.sendall(ext_req(*a, **k))
    return ext_reply(s)


def read_back(s, offset, length, cookie=7):
    """An extended READ: its one OFFSET_DATA chunk's data, or None."""
    magic, flags, typ, ck, off, payload = command(s, CMD_READ, offset, length,
                                                  cookie=cookie)
    ok = (magic == EXT_REPLY and flags & 1 and typ == TYPE_DATA and
          ck == cookie and off == offset and len(payload) == 8 + length and
          struct.unpack(">Q", payload[:8])[0] == offset)
    return payload[8:] if ok else None


def status_extents(chunk):
    """(context id, [(length, flags)]) of a BLOCK_STATUS_EXT chunk, or
    None if it is not one or its lengths do not add up."""
    magic, flags, typ, _, _, p = chunk
    if magic != EXT_REPLY or typ != TYPE_STATUS_EXT or len(p) < 24:
        return None
    ctx, n = struct.unpack(">II", p[:8])
    if n == 0 or len(p) != 8 + 16 * n:
        return None
    return ctx, [struct.unpack(">QQ", p[8 + 16 * i:24 + 16 * i])
                 for i in range(n)]


def proto(plain_path):
    with open(plain_path, "rb") as f:
        plain = f.read()

    # Negotiation rules.
    s = raw_connect(sock_path)
    option(s, OPT_EXTENDED, b"x")
    report(option_reply(s)[0] == REP_ERR_INVALID,
           "EXTENDED_HEADERS with data: ERR_INVALID")
    option(s, OPT_EXTENDED)
    report(option_reply(s)[0] == REP_ACK, "EXTENDED_HEADERS acknowledged")
    option(s, OPT_EXTENDED)
    report(option_reply(s)[0] == REP_ERR_INVALID,
           "a second EXTENDED_HEADERS: ERR_INVALID")
    option(s, OPT_STRUCTURED)
    report(option_reply(s)[0] == REP_ERR_EXT_HEADER_REQD,
           "STRUCTURED_REPLY after extended headers: ERR_EXT_HEADER_REQD")
    report(set_meta(s, "v"),
           "SET_META_CONTEXT is allowed: extended headers imply structured")
    report(go(s) == REP_ACK, "GO after extended headers")

    # Every reply is an extended chunk that echoes cookie and offset.
    data = bytes(range(256)) * 16
    c = command(s, CMD_WRITE, 8192, 4096, flags=FLAG_PAYLOAD_LEN, cookie=11,
                data=data)
    report(error_of(c) == 0 and c[3] == 11 and c[4] == 8192,
           "WRITE with PAYLOAD_LEN: an extended NONE chunk, cookie and "
           "offset echoed")
    report(read_back(s, 8192, 4096) == data,
           "READ: one extended OFFSET_DATA chunk with the data written")
    c = command(s, CMD_WRITE, 12288, 512, cookie=12, data=b"\x77" * 512)
    report(error_of(c) == 0 and read_back(s, 12288, 512) == b"\x77" * 512,
           "WRITE without PAYLOAD_LEN (as QEMU 10 sends it) takes its data")
    report(error_of(command(s, CMD_FLUSH, 0, 0)) == 0,
           "FLUSH: an extended NONE chunk")
    report(read_back(s, 0, 4096) == plain[:4096],
           "READ elsewhere returns the volume's plaintext")

    # Bounds: the 32 MiB payload limit stays for READ/WRITE; ranges
    # must not wrap or pass the end.
    report(error_of(command(s, CMD_READ, 0, 4 * GIB + 4096)) == EOVERFLOW,
           "READ of 4 GiB + 4 KiB: EOVERFLOW, not truncated to 32 bits")
    report(error_of(command(s, CMD_READ, 0, (32 << 20) + 1)) == EOVERFLOW,
           "READ of 32 MiB + 1: EOVERFLOW")
    report(error_of(command(s, CMD_ZEROES, (1 << 64) - 4096, 8192)) == EINVAL,
           "WRITE_ZEROES whose offset + length wraps 2^64: EINVAL")
    report(error_of(command(s, CMD_STATUS, 1, (1 << 64) - 1)) == EINVAL,
           "BLOCK_STATUS of length 2^64 - 1: EINVAL")
    report(error_of(command(s, CMD_ZEROES, len(plain) - 4096, 8192)) == ENOSPC,
           "WRITE_ZEROES past the end: ENOSPC")
    c = command(s, CMD_TRIM, 0, 16, flags=FLAG_PAYLOAD_LEN, cookie=21,
                data=b"\xff" * 16)
    report(error_of(c) == EINVAL and read_back(s, 8192, 4096) == data,
           "TRIM with a 16-byte payload: its payload skipped, EINVAL, the "
           "next request parsed")
    c = command(s, CMD_STATUS, 0, 12, flags=FLAG_PAYLOAD_LEN,
                data=struct.pack(">QI", 4096, 1))
    report(error_of(c) == EINVAL, "BLOCK_STATUS with a payload (not "
           "advertised): EINVAL after skipping it")
    s.sendall(compact_req(CMD_READ, 0, 4096))
    report(server_closed(s),
           "a compact request after extended headers: hard disconnect")

    s = extended(raw_connect(sock_path))
    s.sendall(ext_req(CMD_WRITE, 0, 64 << 20, flags=FLAG_PAYLOAD_LEN))
    report(server_closed(s), "WRITE with a 64 MiB payload: hard disconnect "
           "(over the advertised maximum)")
    s = extended(raw_connect(sock_path))
    s.sendall(ext_req(CMD_TRIM, 0, 1 << 62, flags=FLAG_PAYLOAD_LEN))
    report(server_closed(s), "a payload of 2^62 bytes: hard disconnect")

    s = raw_connect(sock_path)
    assert go(s) == REP_ACK
    s.sendall(ext_req(CMD_READ, 0, 4096))
    report(server_closed(s),
           "an extended request without extended headers: hard disconnect")
    s = raw_connect(sock_path)
    option(s, OPT_EXTENDED)
    assert option_reply(s)[0] == REP_ACK
    option(s, OPT_EXPORT_NAME, b"v")
    report(server_closed(s),
           "EXPORT_NAME after extended headers: the session ends")

    # The compact client is served as before.
    s = raw_connect(sock_path)
    assert go(s) == REP_ACK
    s.sendall(compact_req(CMD_READ, 0, 4096, cookie=5))
    magic, err, ck = struct.unpack(">IIQ", recv_exact(s, 16))
    report(magic == SIMPLE_REPLY and err == 0 and ck == 5 and
           recv_exact(s, 4096) == plain[:4096],
           "a compact client still gets simple replies")

    # Over 4 GiB in one request: block status, cache (a sparse volume).
    b = extended(raw_connect(sock_path), "big")
    c = command(b, CMD_STATUS, 0, 6 * GIB, cookie=31)
    st = status_extents(c)
    report(st is not None and st[0] == 1 and c[4] == 0 and
           max(ln for ln, _ in st[1]) > 4 * GIB,
           "BLOCK_STATUS over 6 GiB: BLOCK_STATUS_EXT with an extent over "
           "4 GiB")
    report(st is not None and sum(ln for ln, _ in st[1]) <= 6 * GIB and
           all(f < 4 for _, f in st[1]),
           "its extents stay within the request, base:allocation flags only")
    c = command(b, CMD_STATUS, GIB, 5 * GIB, flags=FLAG_REQ_ONE)
    st = status_extents(c)
    report(st is not None and len(st[1]) == 1 and st[1][0][0] <= 5 * GIB,
           "BLOCK_STATUS with REQ_ONE: exactly one extent within the range")
    report(error_of(command(b, CMD_CACHE, 0, 6 * GIB)) == 0,
           "CACHE over 6 GiB: success")


def one(typ, offset, length):
    b = extended(raw_connect(sock_path), "big")
    c = command(b, typ, offset, length, flags=FLAG_FUA)
    report(error_of(c) == 0 and c[4] == offset,
           f"{'WRITE_ZEROES' if typ == CMD_ZEROES else 'TRIM'} of "
           f"{length} bytes in one request: success")


def tls(ca_cert, plain_path):
    with open(plain_path, "rb") as f:
        plain = f.read(65536)
    ctx = ssl.create_default_context(cafile=ca_cert)
    ctx.check_hostname = False  # a unix socket has no host name

    s = raw_connect(sock_path)
    option(s, OPT_STARTTLS)
    assert option_reply(s)[0] == REP_ACK
    t = extended(ctx.wrap_socket(s))
    report(read_back(t, 0, 65536) == plain,
           "over TLS: extended READ returns the plaintext")
    c = command(t, CMD_WRITE, 4096, 4096, flags=FLAG_PAYLOAD_LEN,
                data=b"\x42" * 4096)
    report(error_of(c) == 0 and read_back(t, 4096, 4096) == b"\x42" * 4096,
           "over TLS: extended WRITE, then READ it back")
    st = status_extents(command(t, CMD_STATUS, 0, 65536))
    report(st is not None and st[0] == 1, "over TLS: BLOCK_STATUS_EXT")

    # Negotiated in plaintext, forgotten by STARTTLS (proto.md).
    s = raw_connect(sock_path)
    option(s, OPT_EXTENDED)
    assert option_reply(s)[0] == REP_ACK
    option(s, OPT_STARTTLS)
    assert option_reply(s)[0] == REP_ACK
    t = ctx.wrap_socket(s)
    option(t, OPT_STRUCTURED)
    report(option_reply(t)[0] == REP_ACK,
           "after STARTTLS, STRUCTURED_REPLY is accepted again")
    assert go(t) == REP_ACK
    t.sendall(compact_req(CMD_READ, 0, 4096))
    magic, flags, typ = struct.unpack(">IHH", recv_exact(t, 8))
    report(magic == 0x668E33EF and typ == TYPE_DATA,
           "after STARTTLS, compact requests and structured replies again")


def budget(plain_path, limit):
    """300 extended reads of 4 MiB sent at once, no reply read until the
    server is idle: the per-connection budget (128 requests, 128 MiB)
    must stop it reading, as for compact requests."""
    with open(plain_path, "rb") as f:
        plain = f.read()
    mib, count, length = 1 << 20, 300, 4 << 20
    s = extended(raw_connect(sock_path))
    offsets = [(i * mib) % (len(plain) - length + 1) for i in range(count)]
    s.sendall(b"".join(ext_req(CMD_READ, off, length, cookie=i)
                       for i, off in enumerate(offsets)))
    pid = os.getppid()
    report(wait_settled(pid), "extended reads: the server settles while the "
           "client reads nothing")
    peak = peak_rss_mib(pid)
    report(0 < peak < limit, f"extended reads: peak RSS {peak} MiB with "
           f"{count * length // mib} MiB asked for")
    good = 0
    for _ in range(count):
        _, _, typ, cookie, off, payload = ext_reply(s)
        good += (typ == TYPE_DATA and off == offsets[cookie] and
                 payload[8:] == plain[off:off + length])
    report(good == count, f"then all {count} extended replies arrive, right "
           f"({good})")


def fair(name, length):
    """A WRITE_ZEROES of `length` (GiBs: zeroing encrypts every byte)
    runs in steps, so a second client's read, sent just after it, waits
    for one step, not for the whole zero: its answer must come within a
    third of the zero's time (queued behind the zero, it came after
    half of it or more: the zero's parts all start at once)."""
    a = extended(raw_connect(sock_path), name)
    b = raw_connect(sock_path)
    assert go(b, name) == REP_ACK
    start = time.monotonic()
    a.sendall(ext_req(CMD_ZEROES, 0, length, cookie=1))
    b.sendall(compact_req(CMD_READ, 0, 4096, cookie=2))
    magic, err, _ = struct.unpack(">IIQ", recv_exact(b, 16))
    read_done = time.monotonic()
    report(magic == SIMPLE_REPLY and err == 0 and
           len(recv_exact(b, 4096)) == 4096,
           "a second client's read is answered right")
    report(error_of(ext_reply(a)) == 0,
           f"the {length >> 30} GiB zero succeeds")
    zero_done = time.monotonic()
    report(read_done - start < (zero_done - start) / 3,
           f"the read took {read_done - start:.2f} s, the zero "
           f"{zero_done - start:.2f} s: it did not wait for the zero")


def stop(name, length):
    """SIGTERM during a long WRITE_ZEROES: the zero ends at its current
    step with ESHUTDOWN instead of holding shutdown for its whole range."""
    a = extended(raw_connect(sock_path), name)
    b = raw_connect(sock_path)
    assert go(b, name) == REP_ACK
    start = time.monotonic()
    a.sendall(ext_req(CMD_ZEROES, 0, length, cookie=1))
    # Once the read is answered the zero is under way (read between steps).
    b.sendall(compact_req(CMD_READ, 0, 4096, cookie=2))
    assert struct.unpack(">IIQ", recv_exact(b, 16))[1] == 0
    recv_exact(b, 4096)
    os.kill(os.getppid(), signal.SIGTERM)
    err = error_of(ext_reply(a))
    took = time.monotonic() - start
    report(err == 108, f"SIGTERM during a {length >> 30} GiB zero: it ends "
           f"with ESHUTDOWN (error {err}, after {took:.2f} s)")


if mode == "proto":
    proto(args[0])
elif mode == "zero":
    one(CMD_ZEROES, int(args[0]), int(args[1]))
elif mode == "trim":
    one(CMD_TRIM, int(args[0]), int(args[1]))
elif mode == "tls":
    tls(args[0], args[1])
elif mode == "budget":
    budget(args[0], int(args[1]))
elif mode == "fair":
    fair(args[0], int(args[1]))
elif mode == "stop":
    stop(args[0], int(args[1]))

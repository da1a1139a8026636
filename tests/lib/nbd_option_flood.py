#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A client that sends options in a loop and reads no reply: the server
must stop reading once its replies to this client are unread (its output
budget before transmission), so its memory stays bounded; then every
reply still arrives, right, and another client is served.
Run as `luks-nbd --run "exec python3 ..."`: the daemon is our parent.
argv: SOCKET LIMIT_MIB KIND [CA_CERT]
KIND: info (NBD_OPT_INFO), list (NBD_OPT_LIST), tlsreqd (NBD_OPT_LIST
under --tls=require: each refused with ERR_TLS_REQD), or tls-info
(NBD_OPT_INFO after STARTTLS; needs CA_CERT).
Prints PASS/FAIL lines that the calling script numbers."""
import os
import socket
import ssl
import struct
import sys
import time

from nbdtest import (IHAVEOPT, go, option, option_reply, peak_rss_mib,
                     raw_connect, recv_exact, report, wait_settled)

sock_path, limit, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ca_cert = sys.argv[4] if len(sys.argv) > 4 else None
pid = os.getppid()
OPT_LIST, OPT_STARTTLS, OPT_INFO = 3, 5, 6
REP_ACK, REP_SERVER, REP_INFO, REP_ERR_TLS_REQD = 1, 2, 3, 0x80000005
# What e8be15f held per option reply (a malloc and a uv_write each) is
# some 30 times the option's size, and over TLS a 16 KiB record buffer per
# reply (2,000 times): this much sent takes it past the limit.
CAP = limit * (1024 if kind == "tls-info" else 128 * 1024)

s = raw_connect(sock_path)
if kind == "tls-info":
    option(s, OPT_STARTTLS)
    assert option_reply(s)[0] == REP_ACK
    ctx = ssl.create_default_context(cafile=ca_cert)
    ctx.check_hostname = False
    s = ctx.wrap_socket(s)
if kind in ("info", "tls-info"):
    opt, code = struct.pack(">QIII", IHAVEOPT, OPT_INFO, 7, 1) + b"v" + \
        struct.pack(">H", 0), OPT_INFO
else:
    opt, code = struct.pack(">QII", IHAVEOPT, OPT_LIST, 0), OPT_LIST
chunk = opt * (65536 // len(opt))

# Send until the server stops taking input (a send blocks for 2 s) or
# CAP bytes are out (bounded: 60 s).
sent, pushed_back, start = 0, False, time.monotonic()
s.settimeout(2)
while sent < CAP and time.monotonic() - start < 60:
    try:
        sent += s.send(chunk)
    except (socket.timeout, ssl.SSLWantWriteError):
        pushed_back = True
        break


# The server has taken all it will once its CPU time stops moving
# (bounded: 60 s of 0.1 s samples).
settled = wait_settled(pid)
peak = peak_rss_mib(pid)
report(pushed_back, f"{kind} flood: the server stops reading while its "
       f"replies are unread ({sent // 1024} KiB of options taken)")
report(0 < peak < limit, f"{kind} flood: peak RSS {peak} MiB (limit {limit})")

# Every whole option sent gets its replies, in order: the first option's
# are checked field by field, the rest must repeat them byte for byte.
s.settimeout(60)
n = sent // len(opt)
first, types = b"", []
while not types or types[-1] not in (REP_ACK, REP_ERR_TLS_REQD):
    hdr = recv_exact(s, 20)
    _, o, typ, ln = struct.unpack(">QIII", hdr)
    first += hdr + recv_exact(s, ln)
    types.append(typ if o == code else -1)
want = {"info": [REP_INFO, REP_INFO, REP_ACK],
        "tls-info": [REP_INFO, REP_INFO, REP_ACK],
        "list": [REP_SERVER, REP_ACK],
        "tlsreqd": [REP_ERR_TLS_REQD]}[kind]
rest, got = len(first) * (n - 1), 0
good = types == want
while got < rest and good:
    block = recv_exact(s, min(len(first) * 4096, rest - got))
    good = block == first * (len(block) // len(first))
    got += len(block)
report(good and got == rest,
       f"{kind} flood: then the replies to all {n} options arrive, right")

t = raw_connect(sock_path)
if kind.startswith("tls") or kind == "tlsreqd":
    option(t, OPT_STARTTLS)
    option_reply(t)
    ctx = ssl.create_default_context(cafile=ca_cert)
    ctx.check_hostname = False
    t = ctx.wrap_socket(t)
report(go(t) == REP_ACK, f"{kind} flood: another client is served meanwhile")

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""NBD_OPT_STARTTLS from a raw client (Python's ssl module as the TLS
peer), against a luks-nbd started with the --tls MODE given.
argv: MODE(on|require|off) SOCKET CA_CERT PLAINTEXT
Prints PASS/FAIL lines that the calling script numbers."""
import ssl
import struct
import sys

from nbdtest import (go, option, option_reply, raw_connect, recv_exact, report,
                     server_closed)

mode, sock_path, ca_cert, plain_path = sys.argv[1:5]
with open(plain_path, "rb") as f:
    plain = f.read(8192)

OPT_EXPORT_NAME, OPT_LIST, OPT_STARTTLS, OPT_GO, OPT_STRUCTURED = 1, 3, 5, 7, 8
REP_ACK, REP_ERR_UNSUP, REP_ERR_INVALID, REP_ERR_TLS_REQD = (
    1, 0x80000001, 0x80000003, 0x80000005)
SIMPLE_MAGIC, STRUCTURED_MAGIC = 0x67446698, 0x668E33EF


def connect():
    return raw_connect(sock_path)


def reply(s):
    return option_reply(s)


def starttls(s):
    ctx = ssl.create_default_context(cafile=ca_cert)
    ctx.check_hostname = False  # a unix socket has no host name
    return ctx.wrap_socket(s)


def read_first_block(s):
    """One NBD_CMD_READ of 4096 bytes at 0; returns (reply magic, data)."""
    s.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 0, 1, 0, 4096))
    magic = struct.unpack(">I", recv_exact(s, 4))[0]
    if magic == SIMPLE_MAGIC:
        err, _ = struct.unpack(">IQ", recv_exact(s, 12))
        return magic, recv_exact(s, 4096) if err == 0 else b""
    return magic, b""


if mode == "on":
    s = connect()
    option(s, OPT_STRUCTURED)
    report(reply(s)[0] == REP_ACK, "plaintext STRUCTURED_REPLY accepted (--tls=on)")
    option(s, OPT_STARTTLS, b"x")
    report(reply(s)[0] == REP_ERR_INVALID, "STARTTLS with data: ERR_INVALID")
    option(s, OPT_STARTTLS)
    report(reply(s)[0] == REP_ACK, "STARTTLS acknowledged")
    t = starttls(s)
    report(t.version() is not None, f"TLS handshake completes ({t.version()})")
    option(t, OPT_STARTTLS)
    report(reply(t)[0] == REP_ERR_INVALID, "STARTTLS inside TLS: ERR_INVALID")
    report(go(t) == REP_ACK, "GO over TLS")
    magic, data = read_first_block(t)
    report(magic == SIMPLE_MAGIC,
           "STARTTLS forgot the plaintext STRUCTURED_REPLY (simple reply)")
    report(data == plain[:4096], "read over TLS returns the plaintext")
    t.close()
elif mode == "require":
    s = connect()
    for opt, name in ((OPT_LIST, "LIST"), (OPT_STRUCTURED, "STRUCTURED_REPLY"),
                      (OPT_GO, "GO")):
        data = b"\0\0\0\0\0\0" if opt == OPT_GO else b""
        option(s, opt, data)
        report(reply(s)[0] == REP_ERR_TLS_REQD,
               f"--tls=require: {name} before STARTTLS gets ERR_TLS_REQD")
    option(s, OPT_STARTTLS)
    report(reply(s)[0] == REP_ACK, "--tls=require: STARTTLS acknowledged")
    t = starttls(s)
    option(t, OPT_LIST)
    typ = reply(t)[0]
    while typ == 2:  # NBD_REP_SERVER
        typ = reply(t)[0]
    report(typ == REP_ACK, "--tls=require: LIST served once TLS is on")
    report(go(t) == REP_ACK and read_first_block(t)[1] == plain[:4096],
           "--tls=require: GO and read over TLS")
    t.close()
    s = connect()
    option(s, OPT_EXPORT_NAME, b"v")
    report(server_closed(s), "--tls=require: EXPORT_NAME without TLS closes the connection")
    s.close()
else:
    s = connect()
    option(s, OPT_STARTTLS)
    report(reply(s)[0] == REP_ERR_UNSUP, "--tls=off: STARTTLS gets ERR_UNSUP")
    report(go(s) == REP_ACK and read_first_block(s)[1] == plain[:4096],
           "--tls=off: options after the failed STARTTLS still work")
    s.close()

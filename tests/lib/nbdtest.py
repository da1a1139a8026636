# SPDX-License-Identifier: LGPL-2.1-or-later
"""Helpers shared by the Python test clients (run with /usr/bin/python3,
which has python3-libnbd)."""
import errno
import json
import select
import socket
import ssl
import struct

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


# --- a raw protocol client, for what libnbd will not send -----------------
NBD_REQUEST_MAGIC = 0x25609513
IHAVEOPT = 0x49484156454F5054


def recv_exact(s, count):
    data = b""
    while len(data) < count:
        chunk = s.recv(count - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def raw_connect(path):
    """Connects to a unix socket and does the fixed newstyle greeting
    (client flags FIXED_NEWSTYLE | NO_ZEROES); returns the socket."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    assert recv_exact(s, 18)[:8] == b"NBDMAGIC"
    s.sendall(struct.pack(">I", 3))
    return s


def option(s, opt, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)


def option_reply(s):
    """Returns (reply type, data) of one option reply."""
    _, _, typ, ln = struct.unpack(">QIII", recv_exact(s, 20))
    return typ, recv_exact(s, ln)


def starttls(s, ca_cert):
    """NBD_OPT_STARTTLS on raw socket s, then the TLS handshake trusting
    CA_CERT (a file); returns the TLS socket."""
    option(s, 5)
    assert option_reply(s)[0] == 1, "STARTTLS refused"
    ctx = ssl.create_default_context(cafile=ca_cert)
    ctx.check_hostname = False
    return ctx.wrap_socket(s)


def go(s, name="v"):
    """NBD_OPT_GO for export `name`; returns the final reply type
    (NBD_REP_ACK = 1 on success), skipping NBD_REP_INFO replies."""
    nm = name.encode()
    option(s, 7, struct.pack(">I", len(nm)) + nm + struct.pack(">H", 0))
    while True:
        typ, _ = option_reply(s)
        if typ != 3:
            return typ


def server_closed(s, seconds=10):
    """True if the server closes the connection (EOF or reset) within
    `seconds` and sends nothing first; a timeout is not a close."""
    s.settimeout(seconds)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


# --- extended headers (NBD_OPT_EXTENDED_HEADERS), from a raw client -------
OPT_SET_META, OPT_EXTENDED = 10, 11
REP_ACK, REP_META = 1, 4
EXT_MAGIC, EXT_REPLY = 0x21E41C71, 0x6E8A278C
TYPE_NONE, TYPE_ERROR = 0, 0x8001


def ext_req(typ, offset, length, flags=0, cookie=1, data=b""):
    return struct.pack(">IHHQQQ", EXT_MAGIC, flags, typ, cookie, offset,
                       length) + data


def ext_reply(s):
    """One extended reply chunk: (magic, flags, type, cookie, offset,
    payload)."""
    magic, flags, typ, cookie, off, ln = struct.unpack(">IHHQQQ",
                                                       recv_exact(s, 32))
    if magic != EXT_REPLY or ln > 64 << 20:
        return magic, flags, typ, cookie, off, b""
    return magic, flags, typ, cookie, off, recv_exact(s, ln)


def error_of(chunk):
    """The NBD error of a final chunk: 0 for NONE, the error of an ERROR
    chunk, -1 for anything else."""
    magic, flags, typ, _, _, payload = chunk
    if magic != EXT_REPLY or not flags & 1:
        return -1
    if typ == TYPE_NONE and payload == b"":
        return 0
    if typ == TYPE_ERROR and len(payload) >= 6:
        return struct.unpack(">I", payload[:4])[0]
    return -1


def set_meta(s, name):
    nm = name.encode()
    option(s, OPT_SET_META, struct.pack(">I", len(nm)) + nm +
           struct.pack(">II", 1, 15) + b"base:allocation")
    first = option_reply(s)[0]
    return first == REP_META and option_reply(s)[0] == REP_ACK


def extended(s, name="v"):
    """Negotiates extended headers and base:allocation, then GO."""
    option(s, OPT_EXTENDED)
    assert option_reply(s)[0] == REP_ACK
    assert set_meta(s, name)
    assert go(s, name) == REP_ACK
    return s


def cpu_ticks(pid):
    """utime + stime of process `pid`, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def peak_rss_mib(pid):
    """The peak resident set (VmHWM) of process `pid`, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    return -1


def wait_settled(pid, samples=5, seconds=60):
    """True once the CPU time of process `pid` has not moved for `samples`
    0.1 s samples in a row (it has taken all the work it will), within
    `seconds`; False if it never settles."""
    last, still = -1, 0
    for _ in range(seconds * 10):
        now = cpu_ticks(pid)
        still = still + 1 if now == last else 0
        last = now
        if still >= samples:
            return True
        select.select([], [], [], 0.1)
    return False


def control_call(path, request):
    """One request (a dict) to luks-nbd's control socket at PATH; the
    reply line, parsed."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall((json.dumps(request) + "\n").encode())
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return json.loads(data)

#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Makes a LUKS volume with a detached header the way QEMU does it: QMP
blockdev-create (driver luks, "file" = the payload node, "header" = the
header node) in a qemu-storage-daemon, as QEMU's own iotest
tests/qemu-iotests/tests/luks-detached-header does, because
`qemu-img create -f luks -o detached-header=true` fails in QEMU 10.0.

Usage: qmp_luks.py KEYFILE HEADER PAYLOAD raw|qcow2 SIZE [LUKS-OPTION=VALUE]...
  HEADER and PAYLOAD must exist (empty files; a qcow2 PAYLOAD made by
  qemu-img create).  The graph is luks -> PAYLOAD (raw: file; qcow2:
  qcow2 -> file) and header -> raw -> file, the secret s0 from KEYFILE.
  Extra options (cipher-alg=aes-128, iter-time=10, ...) go into the
  blockdev-create options; numbers are sent as numbers.

The monitor is one end of a socketpair handed to the daemon as its
chardev (fd=N), so there is no socket path to wait for; the job is
followed through its JOB_STATUS_CHANGE events, never by sleeping.
Exits 0 on success, else 1 with QEMU's error on stderr.
"""
import json
import os
import socket
import subprocess
import sys


class QMP:
    """A minimal QMP client over a connected stream socket."""

    def __init__(self, sock):
        self.file = sock.makefile("rwb", buffering=0)
        self.events = []
        greeting = self.read()
        if "QMP" not in greeting:
            raise RuntimeError("no QMP greeting: %r" % greeting)
        self.cmd("qmp_capabilities")

    def read(self):
        line = self.file.readline()
        if not line:
            raise EOFError("QMP monitor closed")
        return json.loads(line)

    def cmd(self, name, **args):
        """Runs a command; returns its "return" value or raises with
        QEMU's error description.  Events that arrive meanwhile are
        kept for wait_job."""
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.file.write(json.dumps(msg).encode() + b"\n")
        while True:
            r = self.read()
            if "event" in r:
                self.events.append(r)
            elif "error" in r:
                raise RuntimeError("%s: %s" % (name, r["error"]["desc"]))
            elif "return" in r:
                return r["return"]

    def wait_job(self, job_id):
        """Waits for the job to conclude; returns its error or None, and
        dismisses it."""
        while True:
            while self.events:
                e = self.events.pop(0)
                if (e["event"] == "JOB_STATUS_CHANGE"
                        and e["data"]["id"] == job_id
                        and e["data"]["status"] == "concluded"):
                    jobs = [j for j in self.cmd("query-jobs") if j["id"] == job_id]
                    err = jobs[0].get("error") if jobs else "job vanished"
                    self.cmd("job-dismiss", id=job_id)
                    return err
            e = self.read()
            if "event" in e:
                self.events.append(e)


def value(text):
    try:
        return int(text)
    except ValueError:
        return text


def create(keyfile, header, payload, fmt, size, extra):
    ours, theirs = socket.socketpair()
    daemon = subprocess.Popen(
        ["qemu-storage-daemon", "--chardev", "socket,id=m,fd=%d" % theirs.fileno(),
         "--monitor", "chardev=m", "--object", "secret,id=s0,file=" + keyfile],
        pass_fds=[theirs.fileno()])
    theirs.close()
    try:
        q = QMP(ours)
        q.cmd("blockdev-add", driver="file", filename=header, **{"node-name": "hdr-file"})
        q.cmd("blockdev-add", driver="raw", file="hdr-file", **{"node-name": "hdr"})
        q.cmd("blockdev-add", driver="file", filename=payload, **{"node-name": "pl-file"})
        node = "pl-file"
        if fmt == "qcow2":
            q.cmd("blockdev-add", driver="qcow2", file="pl-file", **{"node-name": "pl"})
            node = "pl"
        opts = {"driver": "luks", "file": node, "header": "hdr", "key-secret": "s0",
                "size": size, "iter-time": 10}
        opts.update(extra)
        q.cmd("blockdev-create", **{"job-id": "create", "options": opts})
        err = q.wait_job("create")
        if err:
            print("blockdev-create: %s" % err, file=sys.stderr)
            return 1
        q.cmd("quit")
    except (RuntimeError, EOFError) as e:
        print(e, file=sys.stderr)
        daemon.kill()
        return 1
    finally:
        ours.close()
        daemon.wait(timeout=60)
    return 0 if daemon.returncode == 0 else 1


def main():
    if len(sys.argv) < 6 or sys.argv[4] not in ("raw", "qcow2"):
        sys.exit(__doc__)
    keyfile, header, payload, fmt, size = sys.argv[1:6]
    extra = {}
    for kv in sys.argv[6:]:
        k, _, v = kv.partition("=")
        extra[k] = value(v)
    return create(keyfile, header, payload, fmt, int(size), extra)


if __name__ == "__main__":
    sys.exit(main())

# SPDX-License-Identifier: LGPL-2.1-or-later
"""A QEMU VM for the tests: qemu-system-x86_64 booting the guest that
tests/lib/guest/make-guest.py builds, its serial console read line by line,
and a stdlib QMP client.  Nothing here sleeps to synchronise: every wait
is for a console line, a QMP reply or event, or the process's exit, with
a deadline.  Shared by the VM tests (attach, hot-plug; restart and
migration reuse it)."""
import json
import os
import select
import socket
import subprocess
import time

QEMU = "qemu-system-x86_64"


class VmError(Exception):
    pass


class Vm:
    """qemu-system-x86_64 -nodefaults with the guest, the serial console on
    stdout and QMP on a unix socket.  extra: more QEMU arguments."""

    def __init__(self, guest_dir, append, qmp_path, log_path, accel="tcg",
                 extra=()):
        self.qmp_path, self.lines, self.pos = qmp_path, [], 0
        self.partial, self.events, self.qmp = b"", [], None
        self.greeting = None
        self.log = open(log_path, "ab", buffering=0)
        args = [QEMU, "-accel", accel, "-nodefaults", "-no-reboot",
                "-m", "256", "-display", "none", "-serial", "stdio",
                "-kernel", os.path.join(guest_dir, "kernel"),
                "-initrd", os.path.join(guest_dir, "initramfs.cpio"),
                "-append", "console=ttyS0 quiet panic=-1 " + append,
                "-qmp", f"unix:{qmp_path},server=on,wait=off", *extra]
        self.log.write(("$ " + " ".join(args) + "\n").encode())
        self.started = time.monotonic()
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=self.log)

    # --- waiting on the console, QMP and the process --------------------
    def pump(self, deadline):
        """Reads what the console and QMP have; False once past deadline
        or once QEMU has closed the console (it is exiting)."""
        left = deadline - time.monotonic()
        if left <= 0 or self.proc.stdout.closed:
            return False
        fds = [self.proc.stdout] + ([self.qmp] if self.qmp else [])
        ready, _, _ = select.select(fds, [], [], left)
        if self.proc.stdout in ready:
            data = os.read(self.proc.stdout.fileno(), 65536)
            if not data:
                self.proc.stdout.close()
                self.proc.wait(60)
                return False
            self.log.write(data)
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()
            self.lines += [x.decode(errors="replace").strip("\r") for x in lines]
        if self.qmp in ready:
            self.qmp_read()
        return True

    def expect(self, prefix, seconds):
        """The next console line starting with prefix (None on timeout,
        exit, or the guest script's end when that is not what is asked)."""
        deadline = time.monotonic() + seconds
        while True:
            while self.pos < len(self.lines):
                line = self.lines[self.pos]
                self.pos += 1
                if line.startswith(prefix):
                    return line
                if line.startswith("GUEST-EXIT"):
                    return None
            if self.proc.stdout.closed or not self.pump(deadline):
                return None

    def wait_exit(self, seconds):
        """QEMU's exit status, after reading all its output; None on timeout."""
        deadline = time.monotonic() + seconds
        while not self.proc.stdout.closed:
            if not self.pump(deadline):
                if self.proc.stdout.closed:
                    break
                return None
        return self.proc.wait()

    def send(self, line):
        """A line typed on the guest's console (its /init's stdin)."""
        self.log.write(b"console-> " + line.encode() + b"\n")
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def uptime(self):
        """Seconds since QEMU started."""
        return time.monotonic() - self.started

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    # --- QMP --------------------------------------------------------------
    def qmp_connect(self, seconds=30):
        """Connects (QEMU makes the socket as it starts: retried until the
        deadline) and leaves capabilities negotiation mode."""
        deadline = time.monotonic() + seconds
        while True:
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(self.qmp_path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise VmError("QMP socket never accepted")
                select.select([], [], [], 0.05)
        self.qmp, self.qmp_buf, self.replies = s, b"", []
        if not self.wait_for(lambda: self.greeting, seconds, "QMP greeting"):
            raise VmError("no QMP greeting")
        self.execute("qmp_capabilities")

    def qmp_read(self):
        data = self.qmp.recv(65536)
        if not data:  # QEMU quit: what it said before still counts
            self.qmp.close()
            self.qmp = None
            return
        self.qmp_buf += data
        while b"\n" in self.qmp_buf:
            line, self.qmp_buf = self.qmp_buf.split(b"\n", 1)
            self.log.write(b"QMP<- " + line + b"\n")
            msg = json.loads(line)
            if "QMP" in msg:
                self.greeting = msg
            elif "event" in msg:
                self.events.append(msg)
            else:
                self.replies.append(msg)

    def wait_for(self, cond, seconds, what):
        deadline = time.monotonic() + seconds
        while not cond():
            if not self.pump(deadline):
                self.log.write(f"timed out waiting for {what}\n".encode())
                return False
        return True

    def execute(self, cmd, seconds=60, **arguments):
        """A QMP command's "return" value; VmError with QEMU's error."""
        msg = {"execute": cmd}
        if arguments:
            msg["arguments"] = arguments
        line = json.dumps(msg).encode()
        if not self.qmp:
            raise VmError(f"{cmd}: QMP is closed")
        self.log.write(b"QMP-> " + line + b"\n")
        self.qmp.sendall(line + b"\n")
        if not self.wait_for(lambda: self.replies, seconds, cmd):
            raise VmError(f"{cmd}: no reply")
        reply = self.replies.pop(0)
        if "error" in reply:
            raise VmError(f"{cmd}: {reply['error'].get('desc')}")
        return reply["return"]

    def event(self, name, seconds, **data):
        """The first event NAME whose data has these members (taken off the
        list), or None on timeout."""
        def match():
            for e in self.events:
                d = e.get("data", {})
                if e["event"] == name and all(d.get(k) == v for k, v in data.items()):
                    return e
            return None
        if not self.wait_for(lambda: match() is not None, seconds, name):
            return None
        e = match()
        self.events.remove(e)
        return e


def accel(guest_dir, append, tmpdir, seconds=5):
    """"kvm" if /dev/kvm is there and boots the guest, else "tcg".  (A
    /dev/kvm that opens but cannot run a guest, as under some nested
    hypervisors, must not hang the tests; a working one boots the guest
    in about a second, and a slow start only costs TCG's speed.)"""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    vm = Vm(guest_dir, append, os.path.join(tmpdir, "probe.qmp"),
            os.path.join(tmpdir, "probe.log"), accel="kvm")
    try:
        return "kvm" if vm.expect("GUEST-BOOTED", seconds) else "tcg"
    finally:
        vm.kill()


if __name__ == "__main__":
    # qemu_vm.py accel GUEST_DIR TMPDIR: prints the accelerator to use.
    import sys
    if sys.argv[1:2] != ["accel"] or len(sys.argv) != 4:
        sys.exit("usage: qemu_vm.py accel GUEST_DIR TMPDIR")
    print(accel(sys.argv[2], "wait=0", sys.argv[3]))

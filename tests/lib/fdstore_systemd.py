# SPDX-License-Identifier: LGPL-2.1-or-later
"""A small stand-in for systemd as a service's manager, for make check
(no systemd as PID 1 there): one listening unix socket kept across
restarts (socket activation), NOTIFY_SOCKET with the fd store
(FDSTORE=1, FDNAME=, FDSTOREREMOVE=1; fds received with SCM_RIGHTS, as
a unit with FileDescriptorStoreMax= does), and each start passing the
socket and every stored fd in LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID."""
import array
import os
import select
import signal
import socket
import subprocess
import time

SOCKET_FDNAME = "luks-nbd.socket"


class Manager:
    def __init__(self, sock_path, notify_path):
        self.sock_path = sock_path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(sock_path)
        self.listener.listen(128)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(notify_path)
        self.notify_path = notify_path
        self.store = []  # [(name, fd)], in the order they came
        self.messages = []
        self.proc = None

    def _receive(self, timeout):
        r, _, _ = select.select([self.notify], [], [], timeout)
        if not r:
            return False
        fds = array.array("i")
        msg, anc, _, _ = self.notify.recvmsg(4096, socket.CMSG_SPACE(64 * 4))
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % 4])
        text = msg.decode()
        self.messages.append(text)
        fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
        if fields.get("FDSTOREREMOVE") == "1":
            for name, fd in [x for x in self.store if x[0] == fields.get("FDNAME")]:
                os.close(fd)
                self.store.remove((name, fd))
        if fields.get("FDSTORE") == "1":
            for fd in fds:
                os.set_inheritable(fd, False)
                self.store.append((fields.get("FDNAME", "stored"), fd))
        elif fds:
            for fd in fds:
                os.close(fd)
        return True

    def start(self, cmd, stderr=None):
        """Starts cmd with the socket and the store; returns the Popen."""
        passed = [self.listener.fileno()] + [fd for _, fd in self.store]
        names = [SOCKET_FDNAME] + [n for n, _ in self.store]
        self.messages = []

        def place_fds():
            high = [os.dup(fd) for fd in passed]
            high = [fcntl_dup_high(fd) for fd in high]
            for i, fd in enumerate(high):
                os.dup2(fd, 3 + i)  # inheritable
            for fd in high:
                os.close(fd)

        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path,
                   LISTEN_FDS=str(len(passed)), LISTEN_FDNAMES=":".join(names))
        # LISTEN_PID is the daemon's own pid: sh execs it with $$.
        self.proc = subprocess.Popen(
            ["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh"] + cmd, env=env,
            preexec_fn=place_fds, close_fds=False, stderr=stderr)
        return self.proc

    def wait_ready(self, timeout):
        """Collects notify messages until READY=1; True if it came."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                while self._receive(0):
                    pass
                return any("READY=1" in m for m in self.messages)
            if self._receive(min(0.1, max(0, end - time.monotonic()))):
                if "READY=1" in self.messages[-1]:
                    return True
        return False

    def drain(self):
        while self._receive(0):
            pass

    def stop(self, sig=signal.SIGTERM, timeout=120):
        """Signals the daemon; returns (status, monotonic time of exit)."""
        self.proc.send_signal(sig)
        status = self.proc.wait(timeout)
        t = time.monotonic()
        self.drain()
        return status, t


def fcntl_dup_high(fd):
    import fcntl
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 200)
    os.close(fd)
    return high

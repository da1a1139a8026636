#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The guest half of tests/server/test-systemd-real.sh: runs inside a Debian root
# booted with systemd as PID 1 (a oneshot unit starts it once the system is
# up), follows README.md's steps for the shipped units, writes one
# "PASS what" or "FAIL what" line per check to /root/results, then powers
# the machine off.  Every wait is systemd's own: start, restart and stop
# return once the job is done (Type=notify: once the daemon is ready).
exec > /root/inside.log 2>&1
set -x
results=/root/results
: > "$results"
check () {
  local d=$1
  shift
  if "$@"; then echo "PASS $d" >> "$results"; else echo "FAIL $d" >> "$results"; fi
}
not () { ! "$@"; }
as () { local u=$1; shift; setpriv --reuid "$u" --regid "$u" --init-groups "$@"; }
uri='nbd+unix:///vm1?socket=/run/luks-nbd/vm1.sock'
no_daemon () { ! grep -qx luks-nbd /proc/[0-9]*/comm 2> /dev/null; }
main_pid () { systemctl show -P MainPID luks-nbd@vm1.service; }

check "systemd is PID 1" test "$(cat /proc/1/comm)" = systemd
# README, "Running under systemd": the user and groups, then the
# permissions a volume needs.
systemd-sysusers
check "systemd-sysusers creates the user luks-nbd" getent passwd luks-nbd
check "and the clients' group luks-nbd-client" getent group luks-nbd-client
chgrp luks-nbd /etc/luks-nbd/vm1.hdr
chmod 0640 /etc/luks-nbd/vm1.hdr
chown luks-nbd:luks-nbd /var/lib/luks-nbd/vm1.img
chmod 0600 /var/lib/luks-nbd/vm1.img
useradd -G luks-nbd-client alice
useradd bob
systemctl daemon-reload

check "systemctl enable --now luks-nbd@vm1.socket" systemctl enable --now luks-nbd@vm1.socket
check "the socket unit is active" systemctl is-active -q luks-nbd@vm1.socket
check "the socket is root:luks-nbd-client, mode 660" \
  test "$(stat -c %U:%G:%a /run/luks-nbd/vm1.sock)" = root:luks-nbd-client:660
check "the service waits for the first client" not systemctl is-active -q luks-nbd@vm1.service
check "alice (in luks-nbd-client) reads the volume" as alice nbdcopy "$uri" /tmp/alice.out
check "and gets the plaintext cryptsetup encrypted" cmp /tmp/alice.out /root/vm1.plain
check "the client started the service" systemctl is-active -q luks-nbd@vm1.service
pid=$(main_pid)
check "the daemon runs as luks-nbd" \
  grep -qE "^Uid:[[:space:]]+$(id -u luks-nbd)[[:space:]]" "/proc/$pid/status"
check "bob (not in the group) cannot connect" not as bob nbdinfo --size "$uri"
# A disk starts with structure (here 4 KiB of zeros, as a partition table
# would), else check-plaintext would take the restarted export for another
# volume's payload.
{ head -c 4096 /dev/zero; head -c 1044480 /dev/urandom; } > /tmp/new
chmod 0644 /tmp/new
check "alice writes" as alice nbdcopy /tmp/new "$uri"
journalctl -b -u luks-nbd@vm1.service --no-pager > /root/journal-1.txt
check "systemd saw it ready (Type=notify)" grep -q "Started luks-nbd@vm1.service" /root/journal-1.txt
check "and the daemon logged no warning or error" not grep -qE "luks-nbd\[[0-9]+\]: .*(warning|error)" /root/journal-1.txt

check "systemctl restart luks-nbd@vm1.service" systemctl restart luks-nbd@vm1.service
pid2=$(main_pid)
check "a new daemon serves" test "$pid2" != 0 -a "$pid2" != "$pid"
check "the socket unit stayed active" systemctl is-active -q luks-nbd@vm1.socket
check "a new client is served after the restart" as alice nbdcopy "$uri" /tmp/alice2.out
check "and reads what alice wrote before it" cmp -n 1048576 /tmp/alice2.out /tmp/new
check "and the rest as it was" cmp -i 1048576 /tmp/alice2.out /root/vm1.plain

check "systemctl stop luks-nbd@vm1.service" systemctl stop luks-nbd@vm1.service
check "the service is inactive" test "$(systemctl is-active luks-nbd@vm1.service)" = inactive
check "no luks-nbd process is left" no_daemon
check "the socket unit stays active" systemctl is-active -q luks-nbd@vm1.socket
check "and its socket file stays" test -S /run/luks-nbd/vm1.sock
check "the next client starts the service again" \
  test "$(as alice nbdinfo --size "$uri")" = "$(stat -c %s /root/vm1.plain)"
check "systemctl stop luks-nbd@vm1.socket luks-nbd@vm1.service" \
  systemctl stop luks-nbd@vm1.socket luks-nbd@vm1.service
check "then no luks-nbd process is left" no_daemon
check "and the socket file is gone" test ! -e /run/luks-nbd/vm1.sock

# The single-daemon units: every export of /etc/luks-nbd/exports.conf,
# the key as the credential vm1.key.
echo name=vm1,payload=/var/lib/luks-nbd/vm1.img,header=/etc/luks-nbd/vm1.hdr,credential=vm1.key \
  > /etc/luks-nbd/exports.conf
check "systemctl enable --now luks-nbd.socket" systemctl enable --now luks-nbd.socket
check "alice reads through /run/luks-nbd/luks-nbd.sock" \
  as alice nbdcopy 'nbd+unix:///vm1?socket=/run/luks-nbd/luks-nbd.sock' /tmp/alice3.out
check "the same volume" cmp /tmp/alice3.out /tmp/alice2.out
check "systemctl stop luks-nbd.socket luks-nbd.service" systemctl stop luks-nbd.socket luks-nbd.service
check "and no luks-nbd process is left" no_daemon
journalctl -b --no-pager > /root/journal.txt
echo END >> "$results"
systemctl poweroff --no-block

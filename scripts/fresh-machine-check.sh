#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs the README's two commands, in the README's order, on a machine that
# has none of luks-nbd's packages: a debootstrap'd Debian 12 (bookworm)
# chroot.  A developer tool, not part of `make check` (it downloads ~200 MB of
# packages and takes 10 to 30 minutes); see docs/fresh-machine-check.md.
#
#   scripts/fresh-machine-check.sh SRC_GIT_DIR BRANCH [CHROOT_DIR]
#
# Clones BRANCH of SRC_GIT_DIR into a new chroot at CHROOT_DIR (default
# /var/tmp/luks-nbd-fresh; it must not exist, or be a chroot an earlier run
# of this script made, which is then replaced), then inside it:
#   1. ./quickstart.sh in the background, polled with nbdinfo until it
#      serves the demo export (bounded), then stopped;
#   2. CI=true ./run-tests.sh, whose last line is the verdict.
# Prints how long each step took and the tests that did not pass.  Exit
# status 0 when quickstart.sh served and run-tests.sh passed.  Run as root.
# The chroot is debootstrap's minbase variant (Priority: required and apt,
# like a container image; DEBOOTSTRAP_VARIANT=default for a full
# installation's required+important).  The pristine chroot is kept as
# CHROOT_DIR.VARIANT.tar, so a second run skips debootstrap (delete that
# file to start from the mirror again).
set -eu
# All in one block, which bash reads whole before running it: editing this
# file (a git checkout) during the long run must not change what runs.
{
[ $# -ge 2 ] || { sed -n '2,/^set -eu/s/^# \{0,1\}//p' "$0"; exit 2; }
src=$1 branch=$2 root=${3:-/var/tmp/luks-nbd-fresh}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
quickstart_timeout=${QUICKSTART_TIMEOUT:-1800}
variant=${DEBOOTSTRAP_VARIANT:-minbase}
base_tar=$root.$variant.tar
[ "$(id -u)" -eq 0 ] || { echo "fresh-machine-check: run as root (debootstrap, chroot, mount)" >&2; exit 1; }
git -C "$src" rev-parse --verify -q "$branch^{commit}" > /dev/null ||
  { echo "fresh-machine-check: $src has no branch or commit $branch" >&2; exit 1; }

now () { date +%s; }
say () { echo "== $(date -u +%H:%M:%S) $*"; }

# Mounts are undone on every exit; a chroot is only ever replaced after its
# mounts are gone (rm -rf through a bind mount of /dev would be a disaster).
mounts="proc sys dev dev/pts dev/shm"
unmount_all () {
  local m
  for m in sys/fs/cgroup dev/shm dev/pts dev sys proc; do
    if mountpoint -q "$root/$m" 2>/dev/null; then umount -l "$root/$m"; fi
  done
  if mountpoint -q "$root" 2>/dev/null; then umount -l "$root"; fi
}
trap unmount_all EXIT

if [ -e "$root" ]; then
  [ -f "$root/etc/luks-nbd-fresh-machine-check" ] ||
    { echo "fresh-machine-check: $root exists and is not one of our chroots" >&2; exit 1; }
  unmount_all
  for m in $mounts; do
    if mountpoint -q "$root/$m"; then echo "fresh-machine-check: $root/$m still mounted" >&2; exit 1; fi
  done
  say "removing the previous chroot $root"
  rm -rf --one-file-system "$root"
fi

t0=$(now)
if [ -f "$base_tar" ]; then
  say "unpacking the pristine bookworm chroot $base_tar"
  mkdir -p "$root"
  tar -C "$root" -xpf "$base_tar"
else
  command -v debootstrap > /dev/null || apt-get install -y -q debootstrap
  say "debootstrap --variant=$variant bookworm $root (from $mirror)"
  opt=--variant=$variant
  [ "$variant" != default ] || opt=
  debootstrap $opt bookworm "$root" "$mirror" > "$root.debootstrap.log" 2>&1 ||
    { tail -20 "$root.debootstrap.log"; exit 1; }
  # A fresh Debian 12 installation has the updates and security suites too.
  cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
  touch "$root/etc/luks-nbd-fresh-machine-check"
  tar -C "$root" -cpf "$base_tar" .
fi
t_debootstrap=$(($(now) - t0))
cp /etc/resolv.conf "$root/etc/resolv.conf"
# Every machine has an /etc/hosts (the installer, or the container runtime,
# writes it); a minbase chroot has none, and "localhost" would not resolve.
[ -e "$root/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"

# The chroot's / is a mount point, as a machine's is: a test that makes a
# private mount namespace (the real-systemd test's unshare) needs that.
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
# A booted machine has its cgroup hierarchy mounted; systemd-nspawn (the
# real-systemd test) needs it.
mount -t cgroup2 cgroup2 "$root/sys/fs/cgroup"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
mount -t tmpfs -o mode=1777 shm "$root/dev/shm"

say "cloning $src ($branch) into the chroot's /root/luks-nbd"
git clone -q --no-hardlinks "$src" "$root/root/luks-nbd"
git -C "$root/root/luks-nbd" checkout -q "$branch"
commit=$(git -C "$root/root/luks-nbd" rev-parse --short HEAD)

# Inside the chroot: a clean environment, as a fresh login shell has.
in_chroot () {
  chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

say "./quickstart.sh (in the background; waiting up to ${quickstart_timeout}s for the demo export)"
t0=$(now)
in_chroot bash -c '
  cd /root/luks-nbd
  setsid ./quickstart.sh > quickstart.log 2>&1 < /dev/null &
  pid=$!
  uri="nbd+unix:///demo?socket=/root/luks-nbd/demo/luks-nbd.sock"
  deadline=$(($(date +%s) + $1))
  served=1
  while [ "$(date +%s)" -lt "$deadline" ]; do
    if command -v nbdinfo > /dev/null && nbdinfo "$uri" > nbdinfo.out 2>&1; then served=0; break; fi
    kill -0 "$pid" 2> /dev/null || break
    sleep 1
  done
  kill -- -"$pid" 2> /dev/null || true
  wait "$pid" 2> /dev/null || true
  exit "$served"
' - "$quickstart_timeout" && quickstart=served || quickstart=FAILED
t_quickstart=$(($(now) - t0))
say "quickstart.sh: $quickstart after ${t_quickstart}s"
[ "$quickstart" = served ] || tail -30 "$root/root/luks-nbd/quickstart.log"

say "CI=true ./run-tests.sh"
t0=$(now)
rc=0
in_chroot CI=true bash -c 'cd /root/luks-nbd && ./run-tests.sh > run-tests.log 2>&1' || rc=$?
t_tests=$(($(now) - t0))
log=$root/root/luks-nbd/run-tests.log
last=$(tail -n 1 "$log")

echo
echo "fresh-machine-check of $branch ($commit) in $root ($variant bookworm)"
echo "  debootstrap (or unpack):  ${t_debootstrap}s"
echo "  ./quickstart.sh:          ${t_quickstart}s, $quickstart"
echo "  CI=true ./run-tests.sh:   ${t_tests}s, exit $rc"
echo "  run-tests.sh's last line: $last"
echo "  logs: $root/root/luks-nbd/{quickstart.log,run-tests.log} and build*/tests/*/*.log"
if grep -qE '^(FAIL|ERROR|SKIP|XPASS):|failed$|^CI:' "$log"; then
  echo "  not passed:"
  grep -E '^(FAIL|ERROR|SKIP|XPASS):|failed$|^CI:' "$log" | sed 's/^/    /'
fi
[ "$quickstart" = served ] && [ "$rc" -eq 0 ]
exit
}

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the shipped units under a real systemd as PID 1: `make install`
# into a Debian 12 root (debootstrap, cached in the build directory), booted
# with systemd-nspawn -b; inside (tests/lib/systemd-real-inside.sh), README's
# steps: systemd-sysusers, the volume's permissions, `systemctl enable
# --now luks-nbd@vm1.socket`; a non-root client in the socket's group reads
# the plaintext cryptsetup encrypted, one outside it is refused; restart
# and stop behave (the socket stays, a new client is served, no process
# is left); then the same through luks-nbd.socket and its exports.conf.  Slow: the first run debootstraps (about a minute from a fast
# mirror), later ones unpack the cached root; the boot and the checks take
# seconds.  Root only.  Not in TESTS: make check-systemd-real runs it.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup debootstrap systemd-nspawn unshare script tar
if [ "$(id -u)" != 0 ]; then
  [ "${CI:-}" = true ] && { echo "not ok 1 - CI runs this as root"; echo "1..1"; exit 1; }
  echo "1..0 # SKIP needs root (debootstrap, systemd-nspawn)"
  exit 0
fi
t_start=$(date +%s)

# The root: minbase plus systemd and the daemon's run-time libraries (and
# the sanitizers', for an ASan build), from the mirror install-deps uses.
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
pkgs=systemd,systemd-sysv,libuv1,libgcrypt20,libjson-c5,libnbd0,libgnutls30,libzstd1,zlib1g,libnbd-bin,libasan8,libubsan1
# Cached in the build directory, or in $SYSTEMD_ROOT_CACHE (a directory
# that several builds share); named for the package list.
cache=${SYSTEMD_ROOT_CACHE:-$top_builddir/tests}/systemd-root.$(echo "$pkgs" | cksum | cut -d' ' -f1).tar
mkdir -p "$(dirname "$cache")"
if [ ! -f "$cache" ]; then
  echo "# debootstrap bookworm from $mirror into $cache"
  if ! debootstrap --variant=minbase --include="$pkgs" bookworm "$TMP/pristine" "$mirror" \
    > "$TMP/debootstrap.log" 2>&1; then
    sed 's/^/# /' "$TMP/debootstrap.log" | tail -20
    check "debootstrap makes the root" false
    done_testing
    exit 1
  fi
  tar -C "$TMP/pristine" -cpf "$cache.tmp" . && mv "$cache.tmp" "$cache"
  rm -rf --one-file-system "$TMP/pristine"
fi
root=$TMP/root
mkdir "$root"
tar -C "$root" -xpf "$cache"
t_root=$(date +%s)

# make install, as README says (no DESTDIR tricks beyond the root itself).
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$top_builddir" install DESTDIR="$root" \
  > "$TMP/install.log" 2>&1
check "make install DESTDIR=root" test $? = 0
sbindir=$(sed -n 's/^sbindir = //p' "$top_builddir/Makefile")
prefix=$(sed -n 's/^prefix = //p' "$top_builddir/Makefile")
sbindir=${sbindir/\$\{exec_prefix\}/$prefix}
check "the daemon finds its libraries in the root" \
  not sh -c "chroot '$root' ldd '$sbindir/luks-nbd' | grep 'not found'"
check "the units and the sysusers file are installed" \
  test -f "$root$prefix/lib/systemd/system/luks-nbd@.service" -a \
  -f "$root$prefix/lib/sysusers.d/luks-nbd.conf"

# An ASan build: LeakSanitizer's exit check ptraces the daemon's threads,
# which the units' system-call filter forbids (the daemon then hangs at
# stop until systemd kills it); AddressSanitizer's own checks stay on.
if chroot "$root" ldd "$sbindir/luks-nbd" | grep -q libasan; then
  for u in luks-nbd luks-nbd@; do
    mkdir -p "$root/etc/systemd/system/$u.service.d"
    printf '[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0\n' \
      > "$root/etc/systemd/system/$u.service.d/sanitizers.conf"
  done
fi

# The volume, made by cryptsetup here; its files root's 0600, as
# cryptsetup leaves them.
make_luks2_volume v 4M
mkdir -p "$root/etc/luks-nbd" "$root/var/lib/luks-nbd"
install -m 0600 "$TMP/v.hdr" "$root/etc/luks-nbd/vm1.hdr"
install -m 0600 "$TMP/v.key" "$root/etc/luks-nbd/vm1.key"
install -m 0600 "$TMP/v.payload" "$root/var/lib/luks-nbd/vm1.img"
install -m 0600 "$TMP/v.plain" "$root/root/vm1.plain"
echo "name=vm1,payload=/var/lib/luks-nbd/vm1.img,header=/etc/luks-nbd/vm1.hdr,credential=key" \
  > "$root/etc/luks-nbd/vm1.conf"
install -m 0755 "$top_srcdir/tests/lib/systemd-real-inside.sh" "$root/root/inside.sh"
cat > "$root/etc/systemd/system/luks-nbd-test.service" << 'EOF'
[Unit]
Description=luks-nbd's test of its units
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/root/inside.sh
[Install]
WantedBy=multi-user.target
EOF
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -s ../luks-nbd-test.service "$root/etc/systemd/system/multi-user.target.wants/"

# Boot.  nspawn refuses to clean up /run/systemd/nspawn unless it is a
# tmpfs, which /run is not on every machine: a private one, in a mount
# namespace of its own.  It needs no machined (--register=no) and runs in
# this process's cgroup (--keep-unit); script(1) gives it a terminal, as
# systemd's console.  nspawn's own seccomp filter refuses mlock(2) (EPERM
# even for root), and the daemon locks its key pool: @memlock allows it,
# as it is on a machine.  The guest powers off when done; the timeout only
# bounds a hang.
mkdir -p /run/systemd/nspawn
t_boot=$(date +%s)
timeout --kill-after=10 600 unshare --mount --propagation private sh -c '
  mount -t tmpfs tmpfs /run/systemd/nspawn &&
  exec script -qec "systemd-nspawn -q -b -D $1 --register=no --keep-unit --system-call-filter=@memlock" /dev/null
' - "$root" > "$TMP/boot.log" 2>&1 < /dev/null
check "the guest booted, ran the checks and powered off" test $? = 0
t_end=$(date +%s)

touch "$root/root/results"
grep -q '^END$' "$root/root/results" || {
  sed 's/^/# boot: /' "$TMP/boot.log" | tail -40
  sed 's/^/# inside: /' "$root/root/inside.log" 2> /dev/null | tail -40
}
grep -v '^END$' "$root/root/results" > "$TMP/results"
tap_report "$TMP/results" 35 "the guest"
check "the guest's script ran to its end" grep -q '^END$' "$root/root/results"
if grep -q '^FAIL' "$TMP/results"; then
  sed 's/^/# journal: /' "$root/root/journal.txt" 2> /dev/null | grep -i "luks-nbd" | tail -60
fi
echo "# root ready in $((t_root - t_start)) s, boot and checks in $((t_end - t_boot)) s"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves restarts under running clients: 50 Argon2id exports (distinct
# header files: the shared-key cache cannot hide the KDF) served under
# an emulated systemd with the fd store (tests/lib/fdstore_systemd.py); after
# SIGTERM and the same command line the keys come back from the store
# (memfd_secret or sealed memfds), each verified against its header, and
# the first request is served within 1 s of the old daemon's exit; a
# key whose header was replaced by another volume's is refused and the
# passphrase unlocks instead.  Then a QEMU 10 guest attached with
# reconnect-delay and open-timeout writes numbered 4 KiB blocks (fsync each)
# while luks-nbd is restarted (SIGTERM) and killed (-9) and restarted
# under it: the guest sees no I/O error, and cryptsetup decrypting the
# payload afterwards finds every block the guest had acknowledged.
# Prints the measured gaps.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3 qemu-system-x86_64 xxd
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

N=${RESTART_EXPORTS:-50}
# The issue's "modest Argon2id": 128 MiB, 4 iterations.
ARGON="--pbkdf argon2id --pbkdf-memory ${RESTART_ARGON_KIB:-131072} --pbkdf-force-iterations 4 --pbkdf-parallel 1"
make_luks2_volume base 256K $ARGON
# y: another volume opened by e0's passphrase, to swap in for (b).
make_plaintext "$TMP/y.plain" 262144
cp "$TMP/y.plain" "$TMP/y.payload"
printf 'pass for %s' base > "$TMP/y.key"
cryptsetup_encrypt "$TMP/y.hdr" "$TMP/y.payload" "$TMP/y.key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --cipher aes-xts-plain64 --key-size 256 >/dev/null
check "cryptsetup made the volumes" test -s "$TMP/base.hdr" -a -s "$TMP/y.hdr"
for i in $(seq 0 $((N - 1))); do
  # One header copied: each export its own file (same UUID is fine).
  cp "$TMP/base.hdr" "$TMP/e$i.hdr"
  cp --sparse=always "$TMP/base.payload" "$TMP/e$i.payload"
  cp "$TMP/base.plain" "$TMP/e$i.plain"
  cp "$TMP/base.key" "$TMP/e$i.key"
done
(cd "$top_srcdir/tests/lib" && timeout 1800 python3 restart_continuity.py "$TMP" "$N" \
   "$top_builddir/server/luks-nbd") > "$TMP/py.out" 2>&1
check "the restart script ran" test $? -eq 0
grep '^INFO' "$TMP/py.out" | sed 's/^INFO/#/'
grep -v '^INFO' "$TMP/py.out" > "$TMP/py.tap"
tap_report "$TMP/py.tap" 20 "the restart script"
# cryptsetup agrees on what e1 holds after two restarts: a real peer.
cryptsetup open --test-passphrase --header "$TMP/e1.hdr" --key-file "$TMP/e1.key" "$TMP/e1.payload"
check "cryptsetup still opens e1's header with its key file" test $? -eq 0

# (c) the guest across restarts.
here=$(cd "$(dirname "$0")/../lib" && pwd)
python3 "$here/guest/make-guest.py" "$TMP/guest" "$here/guest/write-stream.sh" \
  > "$TMP/release" 2> "$TMP/make-guest.err"
check "the guest was built ($(cat "$TMP/make-guest.err"))" test -s "$TMP/guest/initramfs.cpio"
accel=$(python3 "$here/qemu_vm.py" accel "$TMP/guest" "$TMP")
echo "# $(qemu-system-x86_64 --version | head -n 1); $accel"
vsize=$((4 * 1048576)) woff=1048576 blocks=${RESTART_VM_BLOCKS:-200}
make_luks2_volume vm "$vsize"
seed=$(head -c 8 /dev/urandom | xxd -p)
start=$SECONDS
(cd "$here" && timeout 1200 python3 vm_restart.py "$TMP/guest" "$TMP" "$accel" \
   "name=vol,payload=$TMP/vm.payload,header=$TMP/vm.hdr,key-file=$TMP/vm.key" \
   "$blocks" "$woff" "$seed" "$top_builddir/server/luks-nbd") > "$TMP/vm.out" 2>&1
check "the VM script ran" test $? -eq 0
echo "# VM part: $((SECONDS - start)) s"
grep '^INFO' "$TMP/vm.out" | sed 's/^INFO/#/'
grep -v '^INFO' "$TMP/vm.out" > "$TMP/vm.tap"
tap_report "$TMP/vm.tap" 15 "the VM script"
# cryptsetup's plaintext of the payload: every acknowledged block is
# there, the rest of the volume as it was.
cp "$TMP/vm.payload" "$TMP/vm.out.img"
cp "$TMP/vm.hdr" "$TMP/vm.hdr-copy"
cryptsetup reencrypt --decrypt --header "$TMP/vm.hdr-copy" --key-file "$TMP/vm.key" \
  --force-offline-reencrypt --batch-mode "$TMP/vm.out.img" >/dev/null
check "cryptsetup decrypts the payload" test $? -eq 0
python3 - "$TMP/vm.out.img" "$TMP/vm.plain" "$TMP/acked" "$woff" "$seed" > "$TMP/blocks.out" <<'EOP'
import sys
img, plain, acked, woff, seed = sys.argv[1:6]
data, orig = open(img, "rb").read(), bytearray(open(plain, "rb").read())
acks = [int(x) for x in open(acked).read().split()]
woff = int(woff)
for i in acks:
    line = f"BLOCK {i:08d} {seed}\n".encode()
    orig[woff + 4096 * i: woff + 4096 * (i + 1)] = (line * (4096 // len(line) + 1))[:4096]
bad = [i for i in acks if data[woff + 4096 * i: woff + 4096 * (i + 1)] != orig[woff + 4096 * i: woff + 4096 * (i + 1)]]
print(f"{len(acks)} acknowledged, {len(bad)} missing or wrong {bad[:5]}")
print("same" if data == bytes(orig) else "differs")
EOP
check "every acknowledged block is in the decrypted payload ($(sed -n 1p "$TMP/blocks.out"))" \
  grep -q "^$blocks acknowledged, 0 missing" "$TMP/blocks.out"
check "and the rest of the volume is intact" grep -qx same "$TMP/blocks.out"
[ "$tap_failed" -eq 0 ] || sed 's/^/# /' "$TMP/vm-restart.log" "$TMP"/vm-daemon*.log | tail -60
done_testing

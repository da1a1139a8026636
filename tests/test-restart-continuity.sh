#!/usr/bin/env bash
# Proves restarts under running clients: 50 Argon2id exports (distinct
# header files: the shared-key cache cannot hide the KDF) served under
# an emulated systemd with the fd store (tests/fdstore_systemd.py); after
# SIGTERM and the same command line the keys come back from the store
# (memfd_secret or sealed memfds), each verified against its header, and
# the first request is served within 1 s of the old daemon's exit; a
# key whose header was replaced by another volume's is refused and the
# passphrase unlocks instead.  Prints the measured gaps.
. "$(dirname "$0")/lib.sh"
need cryptsetup python3
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
(cd "$top_srcdir/tests" && timeout 1800 python3 restart_continuity.py "$TMP" "$N" \
   "$top_builddir/server/luks-nbd") > "$TMP/py.out" 2>&1
check "the restart script ran" test $? -eq 0
grep '^INFO' "$TMP/py.out" | sed 's/^INFO/#/'
grep -v '^INFO' "$TMP/py.out" > "$TMP/py.tap"
tap_report "$TMP/py.tap" 20 "the restart script"
# cryptsetup agrees on what e1 holds after two restarts: a real peer.
cryptsetup open --test-passphrase --header "$TMP/e1.hdr" --key-file "$TMP/e1.key" "$TMP/e1.payload"
check "cryptsetup still opens e1's header with its key file" test $? -eq 0
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that exports become available one by one: the daemon listens
# at once; an export whose unlock is done is served while another's KDF
# still runs (before the daemon is "ready"); a client asking for the
# export still unlocking waits in NBD_OPT_GO and is then served (no
# error to retry); an unknown name is refused at once.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

make_luks2_volume fast 1M
# Seconds of PBKDF2 on any machine of today (a few million iterations).
make_luks2_volume slow 1M --pbkdf-force-iterations 8000000
# timeout passes SIGTERM on to the daemon and exits with its status.
timeout --kill-after=10 600 "$top_builddir/server/luks-nbd" --socket "$TMP/sock" -v \
  --handshake-timeout 300 --export "$(spec fast)" --export "$(spec slow)" 2> "$TMP/log" &
daemon=$!
cleanup_hooks="kill $daemon 2>/dev/null;"
for _ in $(seq 600); do [ -S "$TMP/sock" ] && break; sleep 0.05; done
check "the daemon listens before every export is unlocked" test -S "$TMP/sock"
cat > "$TMP/client.py" <<'EOP'
import sys, time, nbd
sock, name, plain, out = sys.argv[1:5]
h = nbd.NBD()
h.set_export_name(name)
try:
    h.connect_unix(sock)
    data = h.pread(65536, 0)
    ok = data == open(plain, "rb").read(65536)
    open(out, "w").write(f"{'served' if ok else 'wrong data'} {time.monotonic()}\n")
except nbd.Error as e:
    open(out, "w").write(f"error {time.monotonic()} {e}\n")
EOP
# Asks for 'slow' at once: it waits in the handshake.
python3 "$TMP/client.py" "$TMP/sock" slow "$TMP/slow.plain" "$TMP/slow.out" &
slow_client=$!
timeout 120 python3 "$TMP/client.py" "$TMP/sock" fast "$TMP/fast.plain" "$TMP/fast.out"
check "export 'fast' serves its plaintext" grep -q '^served' "$TMP/fast.out"
check "... while 'slow' is still unlocking (the daemon is not ready yet)" \
  not grep -q "ready: " "$TMP/log"
timeout 60 python3 "$TMP/client.py" "$TMP/sock" "" "$TMP/fast.plain" "$TMP/default.out"
check "the default export (\"\") is the first configured, served without waiting for the rest" \
  grep -q '^served' "$TMP/default.out"
check "... while 'slow' is still unlocking" not grep -q "ready: " "$TMP/log"
timeout 60 python3 "$TMP/client.py" "$TMP/sock" nosuch "$TMP/fast.plain" "$TMP/nosuch.out"
check "an unknown export is refused at once, not kept waiting" grep -qi '^error.*unknown\|^error.*not found\|^error.*no such' "$TMP/nosuch.out"
wait $slow_client
check "the client that asked for 'slow' early is served once it is unlocked" \
  grep -q '^served' "$TMP/slow.out"
check "it waited for the unlock (logged)" grep -q "waiting for its export to be unlocked" "$TMP/log"
check "the daemon says ready once both are served" grep -q "ready: 2 export(s)" "$TMP/log"
kill -TERM $daemon
wait $daemon
check "SIGTERM stops the daemon with status 0" test $? -eq 0
# A failing export still stops the daemon at start, with its error.
printf 'wrong' > "$TMP/wrong.key"
check_fails_with "a wrong passphrase stops the daemon (status 1, the error named)" \
  "no key slot" \
  luks_nbd --socket "$TMP/sock2" --export "$(spec fast)" \
  --export "name=w,payload=$TMP/fast.payload,header=$TMP/fast.hdr,key-file=$TMP/wrong.key,locking=off"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the control socket survives hostile lines and keeps its secrets:
# members of the wrong type (null cmd, name or spec killed the daemon),
# duplicates, nesting and trailing text get clear errors and the daemon
# serves on; an inline passphrase is in no block the daemon (or
# `luks-nbd ctl`) frees, as a free() scanner preloaded into both sees;
# SIGTERM ends the daemon while control clients sit idle; the control
# fuzz target runs its seeds (the crashing lines among them).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

make_luks2_volume a 1M
# A passphrase to look for: long, unique, with a quote (escaped in JSON).
secret="scan-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')\"q$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
make_plaintext "$TMP/s.payload" 1M
printf '%s' "$secret" > "$TMP/s.key"
cryptsetup_encrypt "$TMP/s.hdr" "$TMP/s.payload" "$TMP/s.key" --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 >/dev/null
LN=$top_builddir/server/luks-nbd
# The scanner looks for the part before the quote: it is in the raw
# passphrase and in its JSON form alike.
export SCAN_SHIM=$top_builddir/tests/lib/free-scan.so SCAN_SECRET=${secret%%\"*} SCAN_PASSPHRASE=$secret
export SCAN_REPORT=$TMP/daemon.scan SCAN_CLIENT_REPORT=$TMP/client.scan

# The daemon's RSS growth allowed while a client reads no replies (ASan's
# quarantine keeps what the daemon frees).
case $(ldd "$LN") in
  *libasan*) export RSS_GROWTH_LIMIT_KIB=131072 ;;
  *) export RSS_GROWTH_LIMIT_KIB=16384 ;;
esac
timeout 300 python3 "$top_srcdir/tests/lib/control_protocol.py" requests "$TMP/ctl" \
  "name=NAME,payload=$TMP/s.payload,header=$TMP/s.hdr,locking=off" "$LN" -- \
  --socket "$TMP/sock" --control "$TMP/ctl" --export "$(spec a)" > "$TMP/requests.out"
check "the request script ran" test $? -eq 0
tap_report "$TMP/requests.out" 32 "the request script"
check "no block the daemon freed held the inline passphrase ($(cat "$TMP/daemon.scan" 2>/dev/null | wc -l) did)" \
  test ! -s "$TMP/daemon.scan"
check "no block luks-nbd ctl freed held the passphrase ($(cat "$TMP/client.scan" 2>/dev/null | wc -l) did)" \
  test ! -s "$TMP/client.scan"
# The scanner itself works: a process that frees the secret is caught.
PYTHONMALLOC=malloc LD_PRELOAD=$SCAN_SHIM FREE_SCAN_SECRET=$SCAN_SECRET FREE_SCAN_REPORT=$TMP/self.scan \
  python3 -c 'import sys; b = bytearray(sys.argv[1].encode()); del b' "$secret"
check "the scanner finds a secret in a freed block" test -s "$TMP/self.scan"

timeout 300 python3 "$top_srcdir/tests/lib/control_protocol.py" idle "$TMP/ctl" "" "$LN" -- \
  --socket "$TMP/sock" --control "$TMP/ctl" --export "$(spec a)" > "$TMP/idle.out"
check "the idle-client script ran" test $? -eq 0
tap_report "$TMP/idle.out" 6 "the idle-client script"

# The control fuzz target: the lines above as seeds, and mutants of them.
mkdir "$TMP/seeds"
printf '{"cmd":null}\n' > "$TMP/seeds/null-cmd"
printf '{"cmd":"export-remove","name":null}\n' > "$TMP/seeds/null-name"
printf '{"cmd":"export-add","spec":null}\n' > "$TMP/seeds/null-spec"
printf '{"cmd":"export-list"}\n{"cmd":"query-stats"}\n{"cmd":"export-remove","name":"v","force":true}\n{"cmd":"export-list"}\n' > "$TMP/seeds/list"
printf '{"cmd":"export-add","name":"w","payload":"/nonexistent","key-file":"/k","passphrase":"p\\u00e9\\ud83d\\ude00\\"q"}\n{"cmd":"export-add","spec":"name=w,payload=/nonexistent","passphrase":"x\\u0000y"}\n' > "$TMP/seeds/add"
printf '{"cmd":"export-resize","name":"v","size":2097152}\n{"cmd":"export-resize","name":"v","size":"4M","force":true}\n{"cmd":"export-resize","name":"v","size":512,"force":true}\n{"cmd":"export-resize","name":"v","size":"0x10"}\n' > "$TMP/seeds/resize"
printf '{"cmd":"export-remove","name":"v","force":"false","x":[1,{"y":-1.5e+3}],"z":nul}\n{"cmd":"export-list"}{' > "$TMP/seeds/malformed"
FUZZ_HOT=256 "$top_builddir/fuzz/fuzz-control" "${FUZZ_RUNS:-3000}" "$TMP"/seeds/* > "$TMP/fuzz.out" 2>&1
check "control fuzz target: the seeds and ${FUZZ_RUNS:-3000} mutants each, no crash" test $? -eq 0
check "every seed was run" test "$(grep -c 'no crash' "$TMP/fuzz.out")" -eq 7
done_testing

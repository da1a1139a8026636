#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the control socket end to end: a running daemon gets an export
# added (passphrase on stdin of `luks-nbd ctl`, never in argv), data is
# copied through it, query-stats counts it, and it is removed (refused
# while a client is connected unless forced, which drains the client).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

make_luks2_volume a 2M --sector-size 4096
make_luks2_volume b 2M --sector-size 512
LN=$top_builddir/server/luks-nbd
cat > "$TMP/session.sh" <<EOS
set -e
ctl () { "$LN" ctl --control "$TMP/ctl" "\$@"; }
ctl export-list > "$TMP/list1"
ctl export-add "name=b,payload=$TMP/b.payload,header=$TMP/b.hdr" --passphrase-stdin < "$TMP/b.key" > "$TMP/add.out"
nbdcopy "nbd+unix:///b?socket=$TMP/sock" "$TMP/b.out"
head -c 1048576 /dev/urandom > "$TMP/w"
nbdcopy "$TMP/w" "nbd+unix:///b?socket=$TMP/sock"
ctl query-stats > "$TMP/stats"
ctl export-add "name=c,payload=$TMP/b.payload,header=$TMP/b.hdr,locking=off" --passphrase-stdin < /dev/null > "$TMP/bad.out" 2> "$TMP/bad.err" || echo \$? > "$TMP/bad.rc"
exec python3 "$top_srcdir/tests/lib/control_client.py" "$TMP/ctl" "$TMP/sock" > "$TMP/py.out"
EOS
luks_nbd --socket "$TMP/sock" --control "$TMP/ctl" --export "$(spec a)" --run "exec bash $TMP/session.sh"
check "the daemon and the control session ran" test $? -eq 0
check "export-list shows the start-up export" grep -q '"name":"a"' "$TMP/list1"
check "export-add answered ok" grep -q '"ok":true' "$TMP/add.out"
check "the added export serves the plaintext" cmp -s "$TMP/b.out" "$TMP/b.plain"
check "query-stats counts the bytes read from b" \
  python3 -c "import json,sys; s=json.load(open('$TMP/stats'))['stats']['b']; sys.exit(0 if s['bytes_read']==2097152 and s['bytes_written']==1048576 and s['requests']>0 else 1)"
check "export-add with a wrong (empty) passphrase fails with exit 1" test "$(cat "$TMP/bad.rc" 2>/dev/null)" = 1
check "and says why" grep -q "accepts this passphrase" "$TMP/bad.err"
tap_report "$TMP/py.out" 6 "the client script"
check "the control socket is removed at exit" test ! -e "$TMP/ctl"
done_testing

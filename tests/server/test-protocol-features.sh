#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves structured replies, base:allocation block status (holes never
# reported as zeros), write zeroes (encrypted zeros), fast zero, trim with
# discard=on, cache, DF, --max-connections and the handshake timeout, and
# the same through nbdinfo --map, qemu-img map, qemu-io and nbd-client -l.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdinfo qemu-img qemu-io nbd-client python3 fallocate
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

M=1048576
make_luks2_volume v 8M --sector-size 4096
fallocate -p -o $((4 * M)) -l $((2 * M)) "$TMP/v.payload"
cp "$TMP/v.payload" "$TMP/d.payload"
luks_nbd --socket "$TMP/sock" --max-connections 3 --handshake-timeout 3 \
  --export "$(spec v)" \
  --export "name=d,payload=$TMP/d.payload,header=$TMP/v.hdr,key-file=$TMP/v.key,discard=on" \
  --run "exec python3 $top_srcdir/tests/lib/nbd_protocol_features.py $TMP/sock $((4 * M)) $((2 * M)) > $TMP/py.out"
check "the feature script ran" test $? -eq 0
tap_report "$TMP/py.out" 21 "the feature script"

u="nbd+unix:///v?socket=$TMP/sock"
luks_nbd --socket "$TMP/sock" --export "$(spec v)" --run "
  nbdinfo --map '$u' > $TMP/map.txt &&
  qemu-img map --output=json -f raw '$u' > $TMP/qmap.json &&
  qemu-io -f raw '$u' -c 'write -z 8192 4096' -c 'read -P 0 8192 4096' > $TMP/qio.out &&
  nbd-client -unix $TMP/sock -l > $TMP/list.out 2>&1"
check "nbdinfo --map, qemu-img map, qemu-io and nbd-client -l ran" test $? -eq 0
check "nbdinfo --map shows the hole as a hole, not zero" grep -qE "$((4 * M))[[:space:]]+$((2 * M))[[:space:]]+1[[:space:]]+hole" "$TMP/map.txt"
check "qemu-img map: the hole is not reported as zero" \
  python3 -c "import json,sys; m=json.load(open('$TMP/qmap.json')); sys.exit(0 if not any(e['zero'] for e in m) and any(not e['data'] for e in m) else 1)"
check "qemu-io write -z reads back as zeros" not grep -q "Pattern verification failed" "$TMP/qio.out"
check "nbd-client -l lists the export" grep -qx "v" "$TMP/list.out"
done_testing

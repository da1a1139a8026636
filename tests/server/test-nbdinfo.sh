#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves what nbdinfo sees: export list with descriptions, sizes, the
# read-only flag, and block sizes (minimum 1, the sector size preferred).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdinfo python3

make_luks2_volume big 4M --sector-size 4096
make_luks2_volume small 1M --sector-size 512
luks_nbd --socket "$TMP/sock" \
  --export "$(spec big),description=First disk" \
  --export "$(spec small),readonly=on" \
  --run "nbdinfo --list --json \"\$uri\" > $TMP/list.json &&
         nbdinfo --json 'nbd+unix:///big?socket=$TMP/sock' > $TMP/big.json &&
         nbdinfo --json 'nbd+unix:///small?socket=$TMP/sock' > $TMP/small.json &&
         nbdinfo --size \"\$uri\" > $TMP/default.size"
check "luks-nbd --run exits 0 when the command succeeds" test $? -eq 0

field () { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); e=d['exports'][int(sys.argv[2])]; print(e.get(sys.argv[3]))" "$@"; }
check "list names both exports" \
  test "$(python3 -c "import json; print(sorted(e['export-name'] for e in json.load(open('$TMP/list.json'))['exports']))")" = "['big', 'small']"
check "list carries the description" grep -q '"First disk"' "$TMP/list.json"
check "size is the payload size (4 MiB)" test "$(field "$TMP/big.json" 0 export-size)" = 4194304
check "the empty export name selects the first export" test "$(cat "$TMP/default.size")" = 4194304
check "read-write export is not read-only" test "$(field "$TMP/big.json" 0 is_read_only)" = False
check "readonly=on export is read-only" test "$(field "$TMP/small.json" 0 is_read_only)" = True
check "minimum block size 1 (4096-byte sectors)" test "$(field "$TMP/big.json" 0 block_size_minimum)" = 1
check "minimum block size 1 (512-byte sectors)" test "$(field "$TMP/small.json" 0 block_size_minimum)" = 1
check "preferred block size = 4096-byte sector" test "$(field "$TMP/big.json" 0 block_size_preferred)" = 4096
check "preferred block size >= 4096" test "$(field "$TMP/small.json" 0 block_size_preferred)" -ge 4096
check "maximum block size 32 MiB" test "$(field "$TMP/big.json" 0 block_size_maximum)" = 33554432
check "flush and FUA advertised" test "$(field "$TMP/big.json" 0 can_fua)" = True
check "multi-conn advertised" test "$(field "$TMP/big.json" 0 can_multi_conn)" = True
check "the socket is removed at exit" test ! -e "$TMP/sock"
done_testing

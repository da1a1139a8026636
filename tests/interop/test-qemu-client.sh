#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves qemu's NBD client against luks-nbd: qemu-img info and convert
# over nbd+unix, and qemu-io writes and pattern reads at unaligned
# offsets and lengths, checked afterwards through nbdcopy.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup qemu-img qemu-io nbdcopy python3

make_luks2_volume q 4M --sector-size 4096
u="nbd+unix:///q?socket=$TMP/sock"
luks_nbd --socket "$TMP/sock" --export "$(spec q)" --run "
  qemu-img info --output=json '$u' > $TMP/info.json &&
  qemu-img convert -f raw -O raw '$u' $TMP/converted &&
  qemu-io -f raw '$u' \
    -c 'write -P 0xab 1000 3000' -c 'write -P 0xcd 12345 7' \
    -c 'write -P 0x5a 1048576 65536' > $TMP/io-write.out &&
  qemu-io -f raw -r '$u' \
    -c 'read -P 0xab 1000 3000' -c 'read -P 0xcd 12345 7' \
    -c 'read -P 0x5a 1048576 65536' > $TMP/io-read.out &&
  nbdcopy '$u' $TMP/after"
check "qemu-img, qemu-io and nbdcopy all succeeded" test $? -eq 0
check "qemu-img info reports the virtual size" \
  test "$(python3 -c "import json; print(json.load(open('$TMP/info.json'))['virtual-size'])")" = 4194304
check "qemu-img convert of the export equals the plaintext" cmp -s "$TMP/converted" "$TMP/q.plain"
check "qemu-io pattern reads verified every byte" \
  not grep -q "Pattern verification failed" "$TMP/io-read.out"
python3 - "$TMP/q.plain" "$TMP/expected" <<'PY'
import sys
d = bytearray(open(sys.argv[1], "rb").read())
d[1000:4000] = b"\xab" * 3000
d[12345:12352] = b"\xcd" * 7
d[1048576:1048576 + 65536] = b"\x5a" * 65536
open(sys.argv[2], "wb").write(d)
PY
check "unaligned qemu-io writes land exactly, neighbours intact" cmp -s "$TMP/after" "$TMP/expected"
done_testing

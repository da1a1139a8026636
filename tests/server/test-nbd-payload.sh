#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves remote payloads and headers: nbdkit serves the ciphertext and the
# header over NBD and luks-nbd serves the plaintext on top (reads equal
# the plaintext; writes decrypt with cryptsetup to what was written).
# With nbdkit's error filter underneath, payload EIO and ENOSPC reach the
# client as NBD errors, nothing is acknowledged, and the daemon lives on.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdkit nbdcopy nbdinfo python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

make_luks2_volume v 4M --sector-size 4096
mkdir "$TMP/remote"
mv "$TMP/v.payload" "$TMP/remote/payload"
mv "$TMP/v.hdr" "$TMP/remote/hdr"
make_plaintext "$TMP/new" 4M
timeout 300 nbdkit -U - file dir="$TMP/remote" --run "
  $top_builddir/server/luks-nbd --socket $TMP/sock \
    --export \"name=v,payload=nbd+unix:///payload?socket=\$unixsocket,header=nbd+unix:///hdr?socket=\$unixsocket,key-file=$TMP/v.key\" \
    --run 'nbdcopy \"\$uri\" $TMP/read.out && nbdcopy $TMP/new \"\$uri\"'"
check "luks-nbd over nbdkit (payload and header remote) served" test $? -eq 0
check "reads through the remote payload equal the plaintext" cmp -s "$TMP/read.out" "$TMP/v.plain"
cp "$TMP/remote/hdr" "$TMP/hdr-copy"
cp "$TMP/remote/payload" "$TMP/dec"
cryptsetup reencrypt --decrypt --header "$TMP/hdr-copy" --key-file "$TMP/v.key" \
  --force-offline-reencrypt --batch-mode "$TMP/dec"
check "writes reached the remote payload encrypted (cryptsetup decrypts them)" cmp -s "$TMP/dec" "$TMP/new"
check "the remote payload holds no plaintext" not cmp -s "$TMP/remote/payload" "$TMP/new"

# Faults underneath: every payload read fails EIO, every write ENOSPC.
cat > "$TMP/faults.py" <<'PY'
import sys
import nbd
from nbdtest import errno_of as err
h = nbd.NBD()
h.set_export_name("v")
h.connect_unix(sys.argv[1])
print("read", err(lambda: h.pread(4096, 0)))
print("write", err(lambda: h.pwrite(b"x" * 4096, 0)))
print("read-again", err(lambda: h.pread(4096, 8192)))
h.shutdown()
PY
timeout 300 nbdkit -U - --filter=error file "$TMP/remote/payload" \
  error-pread=EIO error-pread-rate=100% error-pwrite=ENOSPC error-pwrite-rate=100% --run "
  $top_builddir/server/luks-nbd --socket $TMP/sock2 \
    --export \"name=v,payload=\$uri,payload-format=raw,header=$TMP/remote/hdr,key-file=$TMP/v.key\" \
    --run 'PYTHONPATH=$top_srcdir/tests/lib python3 $TMP/faults.py $TMP/sock2 > $TMP/faults.out 2>&1; nbdinfo --size \"\$uri\" > $TMP/alive'" 2> "$TMP/faults.log"
check "payload EIO reaches the client as EIO" grep -qx "read $(python3 -c 'import errno; print(errno.EIO)')" "$TMP/faults.out"
check "payload ENOSPC reaches the client as ENOSPC (write not acknowledged)" \
  grep -qx "write $(python3 -c 'import errno; print(errno.ENOSPC)')" "$TMP/faults.out"
check "the connection stays usable after payload errors" grep -q "^read-again " "$TMP/faults.out"
check "the daemon still serves after payload errors" test "$(cat "$TMP/alive")" = 4194304
check "payload errors are logged with their cause" grep -q "Input/output error\|No space left" "$TMP/faults.log"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that a FUA reply means every byte of the request is durable, and
# that FLUSH covers every write before it, through every node on a remote
# payload: luks -> raw -> nbd and luks -> qcow2 -> nbd (header remote
# too), on a remote that takes at most 64 KiB per request (so the stack
# splits), and on a remote without FUA (so flushes must stand in for it);
# and on file payloads, luks -> raw -> file and luks -> qcow2 -> file.  nbdkit's
# log filter records what reached the remote; nbd_durability.py checks
# that each remote write had FUA or a completed flush after it before our
# reply.  For files, tests/lib/fault-inject.so records pwrite and fdatasync in
# the same format.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdkit qemu-img qemu-io python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

make_luks2_volume v 8M --sector-size 4096
mkdir "$TMP/remote"
mv "$TMP/v.payload" "$TMP/remote/payload"
mv "$TMP/v.hdr" "$TMP/remote/hdr"
offset=$(cryptsetup luksDump "$TMP/remote/hdr" | sed -n 's/^[[:space:]]*offset: *\([0-9]*\) \[bytes\].*/\1/p' | head -n1)
# A qcow2 payload on the remote, ciphertext inside.
printf 'qcow2 pass' > "$TMP/q.key"
truncate -s 1M "$TMP/dummy"
cryptsetup luksFormat --type luks2 --header "$TMP/remote/qhdr" --key-file "$TMP/q.key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --sector-size 4096 --batch-mode "$TMP/dummy"
# Its clusters preallocated as zero clusters: a remote cannot grow, and
# writing one turns it into data by an L2 update (metadata to persist).
qemu-img create -q -f qcow2 -o cluster_size=65536,preallocation=metadata \
  "$TMP/remote/q.qcow2" 16M
qemu-io -f qcow2 -c 'write -z 0 16M' "$TMP/remote/q.qcow2" > /dev/null

# remote NAME FILTER...: a recording remote serving a copy of $TMP/remote
# ($TMP/remote-NAME) on $TMP/NAME.sock, logging to $TMP/NAME.log, taking at most 64 KiB per
# request.  (--filter=fua alone is fuamode=none: no FUA advertised.)
remote () {
  local name=$1; shift
  cp -a "$TMP/remote" "$TMP/remote-$name"
  nbdkit -U "$TMP/$name.sock" -P "$TMP/$name.pid" --filter=log "$@" \
    --filter=blocksize-policy file dir="$TMP/remote-$name" logfile="$TMP/$name.log" \
    blocksize-minimum=1 blocksize-preferred=4096 blocksize-maximum=65536
  cleanup_hooks="kill \$(cat $TMP/$name.pid) 2>/dev/null; $cleanup_hooks"
}
remote fua
remote nofua --filter=fua

: > "$TMP/results"
for r in fua nofua; do
  cat > "$TMP/driver.sh" <<SH
for kind in raw qcow2; do
  PYTHONPATH=$top_srcdir/tests/lib python3 $top_srcdir/tests/lib/nbd_durability.py \
    $TMP/sock \$kind \$kind $TMP/$r.log $offset 2>> $TMP/driver.err |
    sed 's/^\(PASS\|FAIL\) /&remote $r: /' >> $TMP/results
done
SH
  uri () { echo "nbd+unix:///$1?socket=$TMP/$r.sock"; }
  luks_nbd --socket "$TMP/sock" \
    --export "name=raw,payload=$(uri payload),payload-format=raw,header=$(uri hdr),key-file=$TMP/v.key" \
    --export "name=qcow2,payload=$(uri q.qcow2),payload-format=qcow2,header=$(uri qhdr),key-file=$TMP/q.key" \
    --run "sh $TMP/driver.sh" 2>> "$TMP/daemon.log"
  check "remote $r: luks-nbd served both exports" test $? -eq 0
done
# The file node: the same requests on local payloads, their pwrite and
# fdatasync calls recorded by the LD_PRELOAD shim (fdatasync is the file
# node's only way to durability).  The qcow2 image here grows, so its
# writes allocate clusters: refcounts and L2 tables must be durable too.
shim=$top_builddir/tests/lib/fault-inject.so
cp "$TMP/remote/payload" "$TMP/f-raw"
qemu-img create -q -f qcow2 -o cluster_size=65536 "$TMP/f-qcow2" 16M
for kind in raw qcow2; do
  hdr=$([ $kind = raw ] && echo hdr || echo qhdr)
  key=$([ $kind = raw ] && echo v.key || echo q.key)
  : > "$TMP/f-$kind.log"
  env LD_PRELOAD="$shim" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
    FAULT_PATH="$TMP/f-$kind" FAULT_RECORD="$TMP/f-$kind.log" \
    "$top_builddir/server/luks-nbd" --socket "$TMP/fsock" \
    --export "name=$kind,payload=$TMP/f-$kind,payload-format=$kind,header=$TMP/remote/$hdr,key-file=$TMP/$key" \
    --run "PYTHONPATH=$top_srcdir/tests/lib python3 $top_srcdir/tests/lib/nbd_durability.py $TMP/fsock $kind $kind $TMP/f-$kind.log $offset 2>> $TMP/driver.err | sed 's/^\(PASS\|FAIL\) /\1 file: /' >> $TMP/file-results" \
    2>> "$TMP/daemon.log"
  check "file $kind payload: luks-nbd served it" test $? -eq 0
done
tap_report "$TMP/file-results" 18 "nbd_durability.py (file payloads, raw and qcow2)"
qemu-img check -q "$TMP/f-qcow2"
check "file payload: qemu-img check of the qcow2 payload is clean" test $? -eq 0

check "the first remote advertised FUA" grep -q "Connect export=payload.* fua=[12]" "$TMP/fua.log"
check "the second did not (FUA from us must become flushes)" \
  grep -q "Connect export=payload.* fua=0" "$TMP/nofua.log"
check "...and it received no FUA write" not grep -q "Write.* fua=1" "$TMP/nofua.log"
tap_report "$TMP/results" 36 "nbd_durability.py (2 remotes, raw and qcow2 payloads)"
for r in fua nofua; do
  pid=$(cat "$TMP/$r.pid")
  kill "$pid"
  for i in $(seq 100); do  # until gone (or a zombie not yet reaped)
    kill -0 "$pid" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ] || break
    sleep 0.1
  done
  qemu-img check -q "$TMP/remote-$r/q.qcow2"
  check "remote $r: qemu-img check of the qcow2 payload is clean" test $? -eq 0
done
sed "s/^/# /" "$TMP/driver.err" "$TMP/daemon.log"
done_testing

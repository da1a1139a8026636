#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs the fuzz targets (fuzz/) over seeds made by cryptsetup and qemu-img
# plus a fixed number of deterministic mutants each: any crash or
# sanitizer report fails.  `make fuzz` builds the same targets with
# libFuzzer for open-ended runs.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup qemu-img qemu-io
runs=${FUZZ_RUNS:-3000}
printf 'k' > "$TMP/key"
truncate -s 1M "$TMP/data"
fast="--pbkdf pbkdf2 --pbkdf-force-iterations 1000 --batch-mode"
cryptsetup luksFormat --type luks1 --header "$TMP/l1.hdr" --key-file "$TMP/key" \
  --pbkdf-force-iterations 1000 --batch-mode "$TMP/data"
cryptsetup luksFormat --type luks2 --header "$TMP/l2.hdr" --key-file "$TMP/key" $fast \
  --luks2-metadata-size 16k --luks2-keyslots-size 512k "$TMP/data"
cryptsetup luksFormat --type luks2 --header "$TMP/l2-argon.hdr" --key-file "$TMP/key" \
  --pbkdf argon2id --pbkdf-memory 32768 --pbkdf-force-iterations 4 --batch-mode \
  --luks2-metadata-size 16k --luks2-keyslots-size 512k --sector-size 4096 "$TMP/data"
qemu-img create -q -f qcow2 "$TMP/v3.qcow2" 64M
qemu-img create -q -f qcow2 -o compat=0.10 "$TMP/v2.qcow2" 64M
qemu-img create -q -f qcow2 -u -b base.raw -F raw "$TMP/backed.qcow2" 64M
qemu-img create -q -f qcow2 -o compression_type=zstd,cluster_size=4096 "$TMP/zstd.qcow2" 64M

"$top_builddir/fuzz/fuzz-luks-header" "$runs" "$TMP/l1.hdr" "$TMP/l2.hdr" "$TMP/l2-argon.hdr" > "$TMP/luks.out" 2>&1
check "LUKS header target: seeds and $runs mutants each, no crash" test $? -eq 0
FUZZ_HOT=4096 "$top_builddir/fuzz/fuzz-qcow2-header" "$runs" "$TMP"/*.qcow2 > "$TMP/qcow2.out" 2>&1
check "qcow2 header target: seeds and $runs mutants each, no crash" test $? -eq 0

# Whole qcow2 images with data, tables and refcounts (small clusters keep
# them small), compressed clusters too.
mkdir "$TMP/img"
qemu-img create -q -f qcow2 -o cluster_size=512 "$TMP/img/small.qcow2" 1M
qemu-io -f qcow2 -c "write -P 0x55 0 8k" -c "write -P 0xaa 64k 4k" -c "write -z 128k 4k" "$TMP/img/small.qcow2" > /dev/null
head -c 65536 /dev/urandom > "$TMP/rand"
qemu-img convert -c -f raw -O qcow2 -o cluster_size=4096 "$TMP/rand" "$TMP/img/compressed.qcow2"
qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=1024 "$TMP/img/v2.qcow2" 1M
qemu-io -f qcow2 -c "write -P 0x11 4k 4k" "$TMP/img/v2.qcow2" > /dev/null
FUZZ_HOT=65536 "$top_builddir/fuzz/fuzz-qcow2-image" "$runs" "$TMP"/img/*.qcow2 > "$TMP/image.out" 2>&1
check "qcow2 image target (tables over an in-memory node): $runs mutants each, no crash" test $? -eq 0

# Export specs as users write them.
mkdir "$TMP/spec"
printf 'name=vm1,payload=/srv/vm1.qcow2,header=/etc/vm1.hdr,key-file=/run/k,cache=none' > "$TMP/spec/1"
printf 'name=a,,b,payload=nbd://h/x,passphrase-file=/p,key-slot=3,readonly=on,discard=off,qcow2-cache-size=4M' > "$TMP/spec/2"
printf 'name=v,payload=p,credential=key,payload-format=qcow2,payload-backing=on,locking=off,backup-header=/b,cache=writeback,description=d ,,x' > "$TMP/spec/3"
CREDENTIALS_DIRECTORY=/nonexistent FUZZ_HOT=256 "$top_builddir/fuzz/fuzz-export-spec" "$runs" "$TMP"/spec/* > "$TMP/spec.out" 2>&1
check "export spec target: $runs mutants each, no crash" test $? -eq 0

# Whole NBD sessions fed to the server's connection code.
mkdir "$TMP/nbd"
python3 "$top_srcdir/tests/lib/nbd_fuzz_seeds.py" "$TMP/nbd"
FUZZ_HOT=512 "$top_builddir/fuzz/fuzz-nbd-server" "$runs" "$TMP"/nbd/* > "$TMP/nbd.out" 2>&1
check "NBD server target (handshake and requests): $runs mutants each, no crash" test $? -eq 0
check "every seed was run" test "$(cat "$TMP"/luks.out "$TMP"/qcow2.out "$TMP"/image.out "$TMP"/spec.out "$TMP"/nbd.out | grep -c 'no crash')" -eq 21
done_testing

#!/usr/bin/env bash
# Runs the fuzz targets (fuzz/) over seeds made by cryptsetup and qemu-img
# plus a fixed number of deterministic mutants each: any crash or
# sanitizer report fails.  `make fuzz` builds the same targets with
# libFuzzer for open-ended runs.
. "$(dirname "$0")/lib.sh"
need cryptsetup qemu-img
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
check "every seed was run" test "$(cat "$TMP/luks.out" "$TMP/qcow2.out" | grep -c 'no crash')" -eq 7
done_testing

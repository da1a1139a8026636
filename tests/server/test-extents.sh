#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves extents: each node reports what is stored where, and the luks
# node maps the payload's to plaintext: a region with no ciphertext is a
# hole but never "reads as zeros" (ciphertext zeros decrypt to noise).
# Raw sparse files, qcow2 payloads and NBD payloads (nbdkit) alike.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup qemu-img nbdkit nbdcopy fallocate
ST=$top_builddir/tests/lib/stack-tool
M=1048576

make_luks2_volume v 8M --sector-size 4096
fallocate -p -o $((2 * M)) -l $((2 * M)) "$TMP/v.payload"
"$ST" raw-extents "$TMP/v.payload" > "$TMP/raw.ext"
check "raw payload file: the punched hole is a hole that reads as zeros" \
  grep -qx "$((2 * M)) $((2 * M)) 3" "$TMP/raw.ext"
"$ST" extents "$TMP/v.payload" "$TMP/v.hdr" "$TMP/v.key" > "$TMP/luks.ext"
check "luks view: the hole is a hole but not zeros" grep -qx "$((2 * M)) $((2 * M)) 1" "$TMP/luks.ext"
check "luks view: data around it" grep -qx "0 $((2 * M)) 0" "$TMP/luks.ext"
check "luks view: never reports zeros" not grep -q ' [23]$' "$TMP/luks.ext"
luks_nbd --socket "$TMP/sock" --export "$(spec v)" --run "nbdcopy \"\$uri\" $TMP/v.read"
check "and the hole really does not read as zeros" \
  not cmp -s -i $((2 * M)) -n 4096 "$TMP/v.read" /dev/zero

timeout 120 nbdkit -U - file "$TMP/v.payload" \
  --run "$ST extents \"\$uri\" $TMP/v.hdr $TMP/v.key > $TMP/nbd.ext"
check "nbd payload (nbdkit): the same extents as the local file" cmp -s "$TMP/nbd.ext" "$TMP/luks.ext"

printf 'q' > "$TMP/q.key"
truncate -s 1M "$TMP/dummy"
cryptsetup luksFormat --type luks2 --header "$TMP/q.hdr" --key-file "$TMP/q.key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --batch-mode "$TMP/dummy"
qemu-img create -q -f qcow2 "$TMP/q.qcow2" 16M
head -c $M /dev/urandom > "$TMP/one"
luks_nbd --socket "$TMP/sock" --export "name=q,payload=$TMP/q.qcow2,header=$TMP/q.hdr,key-file=$TMP/q.key" \
  --run "nbdcopy $TMP/one \"\$uri\""
"$ST" extents "$TMP/q.qcow2" "$TMP/q.hdr" "$TMP/q.key" > "$TMP/q.ext"
check "qcow2 payload: the written first MiB is data" grep -qx "0 $M 0" "$TMP/q.ext"
check "qcow2 payload: unallocated clusters are a hole, not zeros" grep -qx "$M $((15 * M)) 1" "$TMP/q.ext"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves where the data of a detached header with a non-zero payload
# offset is, for cryptsetup, QEMU 10 and luks-nbd alike: at the header's
# offset into the payload (LUKS1 payloadOffset, LUKS2 segment offset),
# detached or not.  cryptsetup encrypts a payload with --header --offset
# 4096 (sectors) behind a 2 MiB prefix it leaves alone; QEMU's luks
# driver (json: with "header") and luks-nbd both read the plaintext from
# there, luks-nbd's writes land there (QEMU reads them, the prefix stays,
# cryptsetup decrypts them), and luks-nbd -v says where it reads.  QEMU
# opens LUKS1 only, so it refuses the LUKS2 header by name.
# The one case where the tools differ: a header with offset 0 (a
# detached one) given as an attached volume.  QEMU refuses it, as the
# data would overlap the header; luks-nbd refuses it too, naming the file
# and the field (it served the header bytes as data before).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup qemu-img nbdcopy cmp head tail python3
need_qemu 10
printf 'offset pass' > "$TMP/key"
make_plaintext "$TMP/pre" 2M
make_plaintext "$TMP/plain" 4M
cat "$TMP/pre" "$TMP/plain" > "$TMP/p"
sock=$TMP/s.sock
uri="nbd+unix:///v?socket=$sock"
obj="secret,id=s0,file=$TMP/key"
qemu_json () {   # HEADER PAYLOAD
  echo "json:{\"driver\":\"luks\",\"key-secret\":\"s0\",\"file\":{\"driver\":\"file\",\"filename\":\"$2\"},\"header\":{\"driver\":\"file\",\"filename\":\"$1\"}}"
}

# cryptsetup's view: LUKS2 detached header, data from sector 4096 on;
# the same key as LUKS1 (cryptsetup convert).
cryptsetup_encrypt "$TMP/h2" "$TMP/p" "$TMP/key" --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 --cipher aes-xts-plain64 --key-size 256 \
  --offset 4096 > /dev/null 2>&1
cp "$TMP/h2" "$TMP/h1"
cryptsetup convert --type luks1 --header "$TMP/h1" --batch-mode "$TMP/p"
check "LUKS1 header: payloadOffset 4096 sectors" \
  grep -qx payload_offset=2097152 <("$CRYPT_TOOL" info "$TMP/h1")
check "cryptsetup left the 2 MiB before the offset alone" \
  cmp -s -n 2097152 "$TMP/p" "$TMP/pre"

rm -f "$TMP/q.out"
qemu-img convert --object "$obj" -O raw "$(qemu_json "$TMP/h1" "$TMP/p")" "$TMP/q.out"
check "QEMU reads a detached LUKS1 payload at payloadOffset" cmp -s "$TMP/q.out" "$TMP/plain"
qemu-img info --output=json --object "$obj" "$(qemu_json "$TMP/h1" "$TMP/p")" > "$TMP/info.json"
check "QEMU's info says detached-header false (its label for offset != 0)" \
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["format-specific"]["data"]; sys.exit(d["detached-header"] is not False)' "$TMP/info.json"
check_fails_with "QEMU opens no LUKS2 header, detached or not" \
  "LUKS version 2 is not supported" \
  qemu-img info --object "$obj" "$(qemu_json "$TMP/h2" "$TMP/p")"

for v in 1 2; do
  rm -f "$TMP/n.out"
  luks_nbd -v --socket "$sock" \
    --export "name=v,payload=$TMP/p,header=$TMP/h$v,key-file=$TMP/key,readonly=on" \
    --run "nbdcopy $uri $TMP/n.out" 2> "$TMP/log"
  check "LUKS$v: luks-nbd reads the plaintext at the header's offset" \
    cmp -s "$TMP/n.out" "$TMP/plain"
  check "LUKS$v: luks-nbd -v says where the data starts" \
    grep -q "data from byte 2097152 of the payload" "$TMP/log"
done

# luks-nbd writes; QEMU and cryptsetup read at the offset.
make_plaintext "$TMP/plain2" 4M
check "luks-nbd writes through the LUKS1 header" \
  luks_nbd --socket "$sock" --export "name=v,payload=$TMP/p,header=$TMP/h1,key-file=$TMP/key" \
  --run "nbdcopy $TMP/plain2 $uri"
check "the bytes before the offset are still the prefix" cmp -s -n 2097152 "$TMP/p" "$TMP/pre"
rm -f "$TMP/q.out"
qemu-img convert --object "$obj" -O raw "$(qemu_json "$TMP/h1" "$TMP/p")" "$TMP/q.out"
check "QEMU reads luks-nbd's writes at payloadOffset" cmp -s "$TMP/q.out" "$TMP/plain2"
# cryptsetup decrypts only detached payloads at offset 0 offline: the
# bytes from the offset on, with a copy of the header set to offset 0.
tail -c +2097153 "$TMP/p" > "$TMP/tail"
cp "$TMP/h1" "$TMP/h0"
printf '\0\0\0\0' | dd of="$TMP/h0" bs=1 seek=104 conv=notrunc status=none
cryptsetup convert --type luks2 --header "$TMP/h0" --batch-mode "$TMP/tail" &&
  cryptsetup reencrypt --decrypt --header "$TMP/h0" --key-file "$TMP/key" \
    --force-offline-reencrypt --batch-mode "$TMP/tail" > /dev/null
check "cryptsetup decrypts luks-nbd's writes from payloadOffset on" cmp -s "$TMP/tail" "$TMP/plain2"

# A detached header (offset 0) given as an attached volume.
head -c 8M /dev/zero > "$TMP/d.payload"
cryptsetup luksFormat --type luks1 --header "$TMP/d.hdr" --key-file "$TMP/key" \
  --pbkdf-force-iterations 1000 --batch-mode "$TMP/d.payload"
cat "$TMP/d.hdr" "$TMP/d.payload" > "$TMP/d.whole"
check_fails_with "QEMU refuses an attached volume whose payload offset is 0" \
  "LUKS payload is overlapping with the header" \
  qemu-img info --object "$obj" "json:{\"driver\":\"luks\",\"key-secret\":\"s0\",\"file\":{\"driver\":\"file\",\"filename\":\"$TMP/d.whole\"}}"
check_fails_with "luks-nbd refuses it too, naming the file and payloadOffset" \
  "$TMP/d.whole: the header's payloadOffset is 0" \
  luks_nbd --socket "$sock" --export "name=v,payload=$TMP/d.whole,key-file=$TMP/key" --run true
cryptsetup luksFormat --type luks2 --header "$TMP/d2.hdr" --key-file "$TMP/key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --batch-mode "$TMP/d.payload"
cat "$TMP/d2.hdr" "$TMP/d.payload" > "$TMP/d2.whole"
check_fails_with "LUKS2 as well, naming the segment offset" \
  "$TMP/d2.whole: the header's segment offset is 0" \
  luks_nbd --socket "$sock" --export "name=v,payload=$TMP/d2.whole,key-file=$TMP/key" --run true
check "the same header detached serves" \
  luks_nbd --socket "$sock" --export "name=v,payload=$TMP/d.payload,header=$TMP/d.hdr,key-file=$TMP/key" \
  --run "nbdcopy $uri null:"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves writes: data written with nbdcopy through luks-nbd is exactly
# what `cryptsetup reencrypt --decrypt --force-offline-reencrypt --header`
# recovers from the payload, and the payload never holds plaintext or a
# LUKS header (detached header: the payload stays anonymous).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy grep

marker=PLAINTEXT-MARKER-8c1f2e
for sectors in 512 4096; do
  n=w$sectors
  make_luks2_volume $n 4M --sector-size $sectors
  { for i in $(seq 2000); do printf '%s-%05d\n' "$marker" "$i"; done
    head -c 4M /dev/urandom; } | head -c 4M > "$TMP/$n.new"
  luks_nbd --socket "$TMP/sock" --export "$(spec $n)" \
    --run "nbdcopy $TMP/$n.new \"\$uri\" && nbdcopy \"\$uri\" $TMP/$n.readback"
  check "$n: nbdcopy wrote and read back" test $? -eq 0
  check "$n: read back equals what was written" cmp -s "$TMP/$n.readback" "$TMP/$n.new"
  check "$n: payload holds no plaintext marker" not grep -q "$marker" "$TMP/$n.payload"
  check "$n: payload holds no LUKS magic" not env LC_ALL=C grep -q "$(printf 'LUKS\272\276')" "$TMP/$n.payload"
  cp "$TMP/$n.payload" "$TMP/$n.decrypted"
  cp "$TMP/$n.hdr" "$TMP/$n.hdr-copy"
  cryptsetup reencrypt --decrypt --header "$TMP/$n.hdr-copy" --key-file "$TMP/$n.key" \
    --force-offline-reencrypt --batch-mode "$TMP/$n.decrypted"
  check "$n: cryptsetup decrypts the payload to exactly the data written" \
    cmp -s "$TMP/$n.decrypted" "$TMP/$n.new"
done
done_testing

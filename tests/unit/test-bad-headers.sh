#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs the broken-header table (tests/unit/test-bad-headers.c) over good headers
# that cryptsetup makes here: LUKS1 and LUKS2 (two keyslots, 4096 sectors).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup
printf 'good pass' > "$TMP/key"
printf 'other pass' > "$TMP/key2"
truncate -s 1M "$TMP/data"
fast="--pbkdf pbkdf2 --pbkdf-force-iterations 1000 --batch-mode"
cryptsetup luksFormat --type luks1 --header "$TMP/h1" --key-file "$TMP/key" \
  --pbkdf-force-iterations 1000 --batch-mode "$TMP/data"
cryptsetup luksFormat --type luks2 --header "$TMP/h2" --key-file "$TMP/key" \
  --sector-size 4096 --cipher aes-xts-plain64 --key-size 512 $fast "$TMP/data"
cryptsetup luksAddKey --header "$TMP/h2" --key-file "$TMP/key" $fast "$TMP/data" "$TMP/key2"
# Nine keyslots, for the bound on all keyslots' KDF costs together, and
# 1 MiB of metadata, for the bound on JSON values.
cryptsetup luksFormat --type luks2 --header "$TMP/h9" --key-file "$TMP/key" $fast \
  --luks2-metadata-size 1024k "$TMP/data"
for i in 1 2 3 4 5 6 7 8; do
  printf 'pass %s' $i > "$TMP/k$i"
  cryptsetup luksAddKey --header "$TMP/h9" --key-file "$TMP/key" $fast "$TMP/data" "$TMP/k$i"
done
exec "$top_builddir/tests/unit/test-bad-headers" "$TMP/h1" "$TMP/h2" "$TMP/key" "$TMP/h9"

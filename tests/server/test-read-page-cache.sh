#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Small whole-sector reads whose bytes the page cache holds are served on
# the daemon's loop thread (preadv2 RWF_NOWAIT), the rest by workers.
# Proves that both paths, and the fallback from one to the other when the
# payload is evicted under the reads' feet (a page-cache miss, a short
# read), return the plaintext cryptsetup encrypted, on 4096- and
# 512-byte-sector volumes, and that reads right after writes see them;
# cryptsetup then decrypts the payload to what was served.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3

make_luks2_volume v 16M --sector-size 4096
make_luks2_volume s 16M --sector-size 512
client=$top_srcdir/tests/lib/nbd_read_page_cache.py
luks_nbd --socket "$TMP/sock" --export "$(spec v)" --export "$(spec s)" \
  --run "python3 $client $TMP/sock v $TMP/v.payload $TMP/v.plain 4096 > $TMP/v.out &&
         python3 $client $TMP/sock s $TMP/s.payload $TMP/s.plain 512 > $TMP/s.out" \
  2> "$TMP/err"
rc=$?
check "the read client ran on both volumes" test $rc -eq 0
for n in v s; do
  sector=$([ $n = v ] && echo 4096 || echo 512)
  while read -r line; do
    case $line in
      "ok - "*) ok "$sector-byte sectors: ${line#ok - }" ;;
      "not ok - "*) not_ok "$sector-byte sectors: ${line#not ok - }" ;;
    esac
  done < "$TMP/$n.out"
  check "$sector-byte sectors: the client reported all 5 checks" grep -q '^# 5 checks' "$TMP/$n.out"
done
grep -v '^luks-nbd' "$TMP/err" | sed 's/^/# /'

# cryptsetup agrees: the payloads decrypt to what the daemon served.
for n in v s; do
  cp "$TMP/$n.hdr" "$TMP/$n.hdr-copy"
  cryptsetup reencrypt --decrypt --header "$TMP/$n.hdr-copy" --key-file "$TMP/$n.key" \
    --force-offline-reencrypt --batch-mode "$TMP/$n.payload" >/dev/null
  check "$n: cryptsetup decrypts the payload to the plaintext with the writes" \
    cmp -s "$TMP/$n.payload" "$TMP/$n.plain.model"
done
done_testing

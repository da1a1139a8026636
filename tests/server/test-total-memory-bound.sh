#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that many clients together cannot make the daemon hold more than
# its daemon-wide in-flight budget (--max-inflight-total, here 256 MiB)
# plus one request per connection: 16 connections each send 8 reads of
# 32 MiB (each within its own 128 MiB budget; 2 GiB held together before
# the total was bounded) and read nothing.  Peak RSS stays under the
# sanitizer-aware bound plus 256 MiB + 16 x 32 MiB; a new client is
# served meanwhile (a connection with nothing in flight always gets one
# request); then every reply arrives, right.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3

make_luks2_volume v 64M --sector-size 4096
limit=$(($(rss_limit_mib) + 256 + 16 * 32))
luks_nbd --socket "$TMP/sock" --max-inflight-total 256 --export "$(spec v)" \
  --run "exec python3 $top_srcdir/tests/lib/nbd_many_slow_readers.py $TMP/sock $TMP/v.plain $limit > $TMP/py.out"
check "the daemon exits 0 after the slow readers" test $? -eq 0
tap_report "$TMP/py.out" 4 "the slow readers"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that a client cannot make the daemon hold more than its in-flight
# limits (128 requests, 128 MiB per connection): 300 reads of 4 MiB sent at
# once, no reply read until the daemon is idle, peak RSS stays far below
# the 1.2 GiB asked for; then every reply arrives, right.  (TLS: the same
# in test-tls.sh.)
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3

make_luks2_volume v 16M --sector-size 4096
limit=$(rss_limit_mib)
luks_nbd --socket "$TMP/sock" --export "$(spec v)" \
  --run "exec python3 $top_srcdir/tests/lib/nbd_slow_reader.py $TMP/sock $TMP/v.plain $limit > $TMP/py.out"
check "the daemon exits 0 after the slow reader" test $? -eq 0
tap_report "$TMP/py.out" 3 "the slow reader"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the request checkpoint and handshake limits through libnbd (strict
# mode off) and a raw socket client: out of range, wrapping, length 0,
# read-only, unknown command and flags, oversized writes and options,
# unaligned and overlapping writes, dropped clients, DF without structured
# replies, a client gone mid-write, 50 and 1000 clients at once.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

make_luks2_volume v 8M --sector-size 4096
long=$(head -c 4096 /dev/zero | tr '\0' n)
ulimit -n 4096 # 1000 clients at once: a socket each, on both sides
luks_nbd --socket "$TMP/sock" --threads 4 --max-connections 1100 --export "$(spec_as rw v)" \
  --export "$(spec_as ro v readonly=on,locking=off)" --export "$(spec_as "$long" v locking=off)" \
  --run "python3 $top_srcdir/tests/lib/nbd_edge_cases.py $TMP/sock $TMP/v.plain"

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# An nbdkit sh plugin: a payload of $GATE_SIZE bytes (up to 2^63 - 1)
# whose first $GATE_REGION bytes live in $GATE_DIR/store; the rest reads
# as zeros.  A write or trim that reaches past the region stops at a
# gate: it leaves a file entered.* in $GATE_DIR, waits until
# $GATE_DIR/release exists (at most 60 s), then fails with EIO.  A test
# can so hold several requests in flight at once for as long as it
# checks something, and then end them all, without timing guesses.
#   nbdkit sh nbdkit-gated-payload.sh   (with the three variables set)
set -u
store=$GATE_DIR/store

# gate: counted, held until released, then refused.
gate () {
  mktemp "$GATE_DIR/entered.XXXXXX" > /dev/null
  for _ in $(seq 600); do
    [ -e "$GATE_DIR/release" ] && break
    sleep 0.1
  done
  echo "EIO $1 of $2 bytes at $3 passes the stored region" >&2
  exit 1
}

case "$1" in
  thread_model) echo parallel ;;
  can_write | can_trim | can_multi_conn) exit 0 ;;
  get_size) echo "$GATE_SIZE" ;;
  pread)
    count=$3 offset=$4 stored=0
    if [ "$offset" -lt "$GATE_REGION" ]; then
      stored=$((GATE_REGION - offset < count ? GATE_REGION - offset : count))
      dd if="$store" iflag=skip_bytes,count_bytes skip="$offset" \
        count="$stored" bs=64K status=none
    fi
    head -c $((count - stored)) /dev/zero
    ;;
  pwrite)
    count=$3 offset=$4
    [ $((offset + count)) -le "$GATE_REGION" ] || gate write "$count" "$offset"
    dd of="$store" oflag=seek_bytes iflag=fullblock,count_bytes conv=notrunc \
      seek="$offset" count="$count" bs=64K status=none
    ;;
  trim)
    # Inside the region a trim may leave the bytes as they are.
    [ $(($4 + $3)) -le "$GATE_REGION" ] || gate trim "$3" "$4"
    ;;
  *) exit 2 ;;
esac

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves keyslot edits on served exports (luks-nbd ctl keyslot-*), judged
# by cryptsetup alone.  For a LUKS2 and a LUKS1 detached header made by
# cryptsetup, while a client keeps writing through the export:
#  - keyslot-add, keyslot-change and keyslot-remove each leave a header
#    that `cryptsetup luksDump` reads and that `cryptsetup open
#    --test-passphrase` opens with the new passphrase and not with a
#    removed one; keyslot-list shows the slots, no secret;
#  - removing the last keyslot is refused unless --force;
#  - the data the client wrote is what cryptsetup decrypts the payload to;
#  - the header watch takes these writes as ours (no "was modified"
#    warning), and a second export on the same header sees them.
# And a crash (the daemon dies right after the first LUKS2 copy is
# durable, before the second) leaves a header that cryptsetup opens, with
# the new passphrase.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy cmp flock od

LN=$top_builddir/server/luks-nbd
SIZE=8M
# Cheap KDFs: the tests measure correctness, not cost.
ARGON="--pbkdf-memory 32768 --pbkdf-force-iterations 4"
PBKDF2="--pbkdf pbkdf2 --pbkdf-force-iterations 1000"
for i in 1 2 3 4; do printf 'new passphrase %d' "$i" > "$TMP/p$i"; done
printf 'wrong' > "$TMP/wrong"

ctl () { "$LN" ctl --control "$TMP/ctl" "$@"; }
opens () { cryptsetup open --test-passphrase --header "$1" --key-file "$2" "$3" 2>/dev/null; }
dumps () { cryptsetup luksDump --header "$1" "$2" > /dev/null; }

# start_daemon LOG ARGS...: serves in the background until stop_daemon.
daemon_pid=
start_daemon () {
  local log=$1; shift
  rm -f "$TMP/ctl" "$TMP/sock"
  # Not through lib.sh's luks_nbd (a function: $! would be a subshell,
  # and killing it would leave the daemon running).
  timeout --kill-after=10 600 ${LUKS_NBD_WRAPPER:-} "$LN" --socket "$TMP/sock" \
    --control "$TMP/ctl" -v "$@" 2> "$log" < /dev/null > /dev/null &
  daemon_pid=$!
  # The sockets come first; exports are served as they unlock, and
  # "ready" is logged once all have.
  for _ in $(seq 1200); do
    [ -S "$TMP/ctl" ] && grep -q 'ready: ' "$log" && return 0
    kill -0 "$daemon_pid" 2> /dev/null || return 1
    sleep 0.05
  done
  return 1
}
stop_rc=
stop_daemon () {
  [ -n "$daemon_pid" ] || return 0
  kill "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null; stop_rc=$?; daemon_pid=
}
cleanup_hooks="stop_daemon; $cleanup_hooks"

# writer_start NAME: nbdcopy DATA into the export, again and again, until
# writer_stop.
writer_start () {
  rm -f "$TMP/stop"
  ( while [ ! -e "$TMP/stop" ]; do
      nbdcopy "$TMP/data" "nbd+unix:///$1?socket=$TMP/sock" || { echo fail > "$TMP/writer.err"; break; }
      echo x >> "$TMP/writes"
    done ) &
  writer_pid=$!
}
writer_stop () { touch "$TMP/stop"; wait "$writer_pid"; }

# run_volume NAME VERSION KDF-OPTS: the live add/change/remove sequence.
run_volume () {
  local n=$1 v=$2 kdf=$3 h=$TMP/$1.hdr p=$TMP/$1.payload
  make_plaintext "$TMP/data" "$SIZE"
  rm -f "$TMP/writes" "$TMP/writer.err"
  start_daemon "$TMP/$n.log" --export "$(spec "$n")" \
    --export "name=$n-ro,payload=$p,header=$h,key-file=$TMP/$n.key,readonly=on,locking=off"
  check "$n: the daemon serves" test -n "$daemon_pid"
  writer_start "$n"
  for _ in $(seq 200); do [ -s "$TMP/writes" ] && break; sleep 0.05; done

  ctl keyslot-list "$n" > "$TMP/$n.list0"
  check "$n: keyslot-list shows slot 0 only, LUKS$v" \
    grep -q "\"luks\":$v,\"keyslots\":\[{\"slot\":0,\"state\":\"active\"" "$TMP/$n.list0"
  check "$n: keyslot-list shows no salt, digest or key" \
    not grep -qiE 'salt|digest|key"' "$TMP/$n.list0"

  # add: a new passphrase in slot 1 (no old passphrase given)
  ctl keyslot-add "$n" --passphrase-stdin $kdf < "$TMP/p1" > "$TMP/$n.add" 2>&1
  check "$n: keyslot-add answers slot 1" grep -q '"ok":true.*"slot":1' "$TMP/$n.add"
  check "$n: after add, cryptsetup luksDump reads the header" dumps "$h" "$p"
  check "$n: after add, cryptsetup opens with the new passphrase" opens "$h" "$TMP/p1" "$p"
  check "$n: after add, and still with the first one" opens "$h" "$TMP/$n.key" "$p"
  check "$n: and not with a wrong one" not opens "$h" "$TMP/wrong" "$p"

  # add into a chosen slot, cost benchmarked (--iter-time), not forced
  ctl keyslot-add "$n" --key-slot 5 --passphrase-stdin --iter-time 100 \
    ${kdf/--pbkdf-force-iterations [0-9]*/} < "$TMP/p2" > "$TMP/$n.add5" 2>&1
  check "$n: keyslot-add --key-slot 5 (benchmarked KDF) answers slot 5" \
    grep -q '"ok":true.*"slot":5' "$TMP/$n.add5"
  check "$n: cryptsetup opens with slot 5's passphrase" opens "$h" "$TMP/p2" "$p"
  check_fails_with "$n: keyslot-add into a used slot is refused" "in use" \
    ctl keyslot-add "$n" --key-slot 5 --passphrase-stdin $kdf < "$TMP/p3"

  # change: slot 0's passphrase replaced (new slot, then 0 removed)
  ctl keyslot-change "$n" 0 --passphrase-stdin $kdf < "$TMP/p3" > "$TMP/$n.chg" 2>&1
  check "$n: keyslot-change 0 answers ok, removed 0" grep -q '"ok":true.*"removed":0' "$TMP/$n.chg"
  local new; new=$(grep -o '"slot":[0-9]*' "$TMP/$n.chg" | cut -d: -f2)
  check "$n: the changed passphrase went to the first free slot, 2" test "$new" = 2
  check "$n: after change, luksDump reads the header" dumps "$h" "$p"
  check "$n: after change, cryptsetup opens with the changed passphrase" opens "$h" "$TMP/p3" "$p"
  check "$n: and NOT with the replaced one" not opens "$h" "$TMP/$n.key" "$p"

  # remove: slot 1; then slot 5 via the other export on the same header
  ctl keyslot-remove "$n" 1 > "$TMP/$n.rm" 2>&1
  check "$n: keyslot-remove 1 answers ok" grep -q '"ok":true' "$TMP/$n.rm"
  check "$n: after remove, luksDump reads the header" dumps "$h" "$p"
  check "$n: after remove, cryptsetup does NOT open with the removed passphrase" \
    not opens "$h" "$TMP/p1" "$p"
  ctl keyslot-list "$n-ro" > "$TMP/$n.list1"
  check "$n: the second export on the shared header lists slot 5 and the changed slot" \
    test "$(grep -o '"slot":[0-9]*' "$TMP/$n.list1" | sort | tr '\n' ' ')" = "\"slot\":$new \"slot\":5 "
  ctl keyslot-remove "$n-ro" 5 > "$TMP/$n.rm5" 2>&1
  check "$n: keyslot-remove 5 through the second export answers ok" grep -q '"ok":true' "$TMP/$n.rm5"
  check "$n: cryptsetup no longer opens with slot 5's passphrase" not opens "$h" "$TMP/p2" "$p"
  check_fails_with "$n: removing the last keyslot is refused without --force" \
    "last one that opens the volume" ctl keyslot-remove "$n" "$new"
  check "$n: which still opens" opens "$h" "$TMP/p3" "$p"
  check_fails_with "$n: a keyslot that is not active cannot be removed" "not active" \
    ctl keyslot-remove "$n" 7

  if [ "$v" = 2 ]; then
    # cryptsetup's metadata lock (flock on the header file) held here, as
    # cryptsetup holds it while it writes: the edit waits for it.
    cp "$h" "$TMP/$n.locked"
    exec 9< "$h"
    flock -x 9
    ctl keyslot-add "$n" --passphrase-stdin $kdf < "$TMP/p4" > "$TMP/$n.addlocked" 2>&1 &
    local add_pid=$! still=0
    for _ in $(seq 20); do
      kill -0 "$add_pid" 2> /dev/null && cmp -s "$h" "$TMP/$n.locked" && still=$((still + 1))
      sleep 0.05
    done
    check "$n: keyslot-add waits while cryptsetup's lock is held (header untouched for 1 s)" \
      test "$still" = 20
    flock -u 9
    exec 9<&-
    wait "$add_pid"
    check "$n: and completes once it is released" grep -q '"ok":true' "$TMP/$n.addlocked"
    check "$n: cryptsetup opens with that passphrase" opens "$h" "$TMP/p4" "$p"
    ctl keyslot-remove "$n" "$(grep -o '"slot":[0-9]*' "$TMP/$n.addlocked" | cut -d: -f2)" > /dev/null
  fi
  if [ "$v" = 1 ]; then
    check_fails_with "$n: argon2id is refused for a LUKS1 keyslot" "LUKS1 keyslots use pbkdf2" \
      ctl keyslot-add "$n" --pbkdf argon2id --passphrase-stdin < "$TMP/p4"
  fi
  writer_stop
  check "$n: the client wrote throughout ($(wc -l < "$TMP/writes") copies), without an error" \
    test ! -e "$TMP/writer.err"
  nbdcopy "nbd+unix:///$n?socket=$TMP/sock" "$TMP/$n.back"
  check "$n: the export still serves what was written" cmp -s "$TMP/$n.back" "$TMP/data"
  ctl export-add "name=$n-new,payload=$p,header=$h,readonly=on,locking=off" \
    --passphrase-stdin < "$TMP/p3" > "$TMP/$n.newexp" 2>&1
  check "$n: a new export opens with the changed passphrase" grep -q '"ok":true' "$TMP/$n.newexp"
  stop_daemon
  check "$n: the daemon stopped cleanly on SIGTERM (exit $stop_rc)" test "$stop_rc" = 0
  check "$n: no sanitizer report in the daemon's log" not grep -q Sanitizer "$TMP/$n.log"
  check "$n: no own edit was taken for someone else's (no 'was modified' warning)" \
    not grep -q "was modified" "$TMP/$n.log"
  check "$n: the re-checks after our edits are logged as ours" \
    grep -q "re-read after our own keyslot edit, vouches" "$TMP/$n.log"

  # cryptsetup decrypts the payload (a copy) with the changed passphrase
  cp "$h" "$TMP/$n.hdr-copy"
  cp "$p" "$TMP/$n.decrypted"
  [ "$v" = 1 ] && cryptsetup convert --type luks2 --header "$TMP/$n.hdr-copy" \
    --batch-mode "$TMP/$n.decrypted"
  cryptsetup reencrypt --decrypt --header "$TMP/$n.hdr-copy" --key-file "$TMP/p3" \
    --force-offline-reencrypt --batch-mode "$TMP/$n.decrypted" > /dev/null 2>&1
  check "$n: cryptsetup decrypts the payload to exactly the data written" \
    cmp -s "$TMP/$n.decrypted" "$TMP/data"
}

make_luks2_volume v2 "$SIZE"
run_volume v2 2 "$ARGON"

make_luks2_volume v1 "$SIZE"
cryptsetup convert --type luks1 --header "$TMP/v1.hdr" --batch-mode "$TMP/v1.payload"
run_volume v1 1 "$PBKDF2"

# An attached LUKS2 header (at the start of a raw payload file) is edited
# in place too.
make_plaintext "$TMP/att.payload" 4M
printf 'attached' > "$TMP/att.key"
cryptsetup luksFormat --type luks2 --batch-mode --key-file "$TMP/att.key" $ARGON \
  "$TMP/att.payload"
start_daemon "$TMP/att.log" --export "name=att,payload=$TMP/att.payload,key-file=$TMP/att.key"
ctl keyslot-add att --passphrase-stdin $ARGON < "$TMP/p1" > "$TMP/att.add" 2>&1
check "attached: keyslot-add answers ok" grep -q '"ok":true.*"slot":1' "$TMP/att.add"
ctl keyslot-remove att 0 > "$TMP/att.rm" 2>&1
check "attached: keyslot-remove 0 answers ok" grep -q '"ok":true' "$TMP/att.rm"
stop_daemon
check "attached: cryptsetup luksDump reads the payload's header" dumps "$TMP/att.payload" "$TMP/att.payload"
check "attached: cryptsetup opens it with the added passphrase" \
  opens "$TMP/att.payload" "$TMP/p1" "$TMP/att.payload"
check "attached: and not with the removed one" \
  not opens "$TMP/att.payload" "$TMP/att.key" "$TMP/att.payload"

# A crash between the two LUKS2 header writes: the daemon dies right after
# the primary copy is durable (test hook), before the secondary is written.
# seqid HEADER COPY-OFFSET: the copy's sequence id (big-endian, at +16).
seqid () { echo $((16#$(od -An -tx1 -j $(($2 + 16)) -N 8 "$1" | tr -d ' \n'))); }
crash_run () { # what-to-do-in-ctl...
  LUKS_NBD_TEST_CRASH_AFTER="primary header" start_daemon "$TMP/crash.log" \
    --export "$(spec c)"
  ctl "$@" > /dev/null 2>&1
  # Bounded: a daemon that does not crash is stopped (and fails below).
  for _ in $(seq 400); do kill -0 "$daemon_pid" 2> /dev/null || break; sleep 0.05; done
  kill "$daemon_pid" 2> /dev/null
  wait "$daemon_pid"; crash_rc=$?; daemon_pid=
}
make_luks2_volume c 2M
s0=$(seqid "$TMP/c.hdr" 0)
crash_run keyslot-add c --passphrase-stdin $ARGON < "$TMP/p4"
check "crash: the daemon died between the two copies (hook exit 99)" test "$crash_rc" = 99
check "crash: the primary copy is one edit ahead of the secondary" \
  test "$(seqid "$TMP/c.hdr" 0)" = $((s0 + 1)) -a "$(seqid "$TMP/c.hdr" 16384)" = "$s0"
check "crash after add: cryptsetup luksDump reads the header" dumps "$TMP/c.hdr" "$TMP/c.payload"
check "crash after add: cryptsetup opens with the added passphrase (newest copy)" \
  opens "$TMP/c.hdr" "$TMP/p4" "$TMP/c.payload"
check "crash after add: and with the old one" opens "$TMP/c.hdr" "$TMP/c.key" "$TMP/c.payload"
crash_run keyslot-remove c 1
check "crash in remove: the daemon died between the two copies" test "$crash_rc" = 99
check "crash in remove: cryptsetup luksDump reads the header" dumps "$TMP/c.hdr" "$TMP/c.payload"
check "crash in remove: cryptsetup no longer opens with the removed passphrase" \
  not opens "$TMP/c.hdr" "$TMP/p4" "$TMP/c.payload"
check "crash in remove: it opens with the remaining one" \
  opens "$TMP/c.hdr" "$TMP/c.key" "$TMP/c.payload"
start_daemon "$TMP/c.log" --export "$(spec c)"
ctl keyslot-add c --passphrase-stdin $ARGON < "$TMP/p4" > "$TMP/c.add" 2>&1
check "after the crashes the daemon edits the header again" grep -q '"ok":true' "$TMP/c.add"
stop_daemon
check "the restarted daemon stopped cleanly (exit $stop_rc), no sanitizer report" \
  test "$stop_rc" = 0 -a -z "$(grep Sanitizer "$TMP/c.log" "$TMP/crash.log")"
check "and both copies agree again (seqid $(seqid "$TMP/c.hdr" 0))" \
  test "$(seqid "$TMP/c.hdr" 0)" = "$(seqid "$TMP/c.hdr" 16384)"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that a daemon started as root with --user still watches a header
# only root may read: the watch is added before root is dropped, so no
# "not watching header" warning, and a passphrase that cryptsetup adds to
# the header while it serves is noticed and re-checked (through the
# descriptor opened as root).  Root only (it drops to nobody).
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdinfo
if [ "$(id -u)" != 0 ]; then
  # shellcheck disable=SC2154 # CI comes from the environment
  [ "${CI:-}" = true ] && { echo "not ok 1 - CI runs this as root"; echo "1..1"; exit 1; }
  echo "1..0 # SKIP needs root (it drops to the user nobody)"
  exit 0
fi

make_luks2_volume v 2M
chmod 0600 "$TMP/v.hdr" "$TMP/v.payload" "$TMP/v.key"

# wait_for PATTERN: polls the daemon's log for up to 20 s.
wait_for () {
  for _ in $(seq 200); do
    grep -qF "$1" "$TMP/log" && return 0
    kill -0 "$pid" 2> /dev/null || return 1
    sleep 0.1
  done
  return 1
}
luks_nbd -v --socket "$TMP/sock" --user nobody --group nogroup \
  --export "$(spec v)" 2> "$TMP/log" &
pid=$!
cleanup_hooks="kill $pid 2>/dev/null;"
check "the daemon becomes ready" wait_for "ready:"
# The daemon's pid: luks_nbd runs it under timeout, in a subshell here.
daemon=$pid
for _ in 1 2 3; do
  [ "$(cat "/proc/$daemon/comm")" = luks-nbd ] && break
  read -r daemon _ < "/proc/$daemon/task/$daemon/children"
done
check "it runs as nobody" \
  grep -qE "^Uid:[[:space:]]+$(id -u nobody)[[:space:]]" "/proc/$daemon/status"
check "nobody cannot read the header itself" not su -s /bin/sh nobody -c "cat $TMP/v.hdr" 2> /dev/null
check "no 'not watching header' warning" not grep -q "not watching" "$TMP/log"
check "it serves" test "$(nbdinfo --size "nbd+unix:///v?socket=$TMP/sock")" = 2097152

printf 'another pass' > "$TMP/new.key"
cryptsetup luksAddKey --batch-mode --header "$TMP/v.hdr" --key-file "$TMP/v.key" \
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "$TMP/v.payload" "$TMP/new.key"
check "cryptsetup added a passphrase to the header" test $? = 0
check "the change is noticed" wait_for "export 'v': header $TMP/v.hdr was modified"
check "and the header is re-read as nobody: it still vouches for the key" \
  wait_for "export 'v': header $TMP/v.hdr, re-read after the change, still vouches"
kill "$daemon"
wait "$pid"
check "the daemon stops cleanly" test $? = 0
done_testing

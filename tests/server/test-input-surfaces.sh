#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the command-line, --config, credential and environment inputs
# refuse what they silently misread before: signed or blank numbers
# (qcow2-cache-size=-18446744073709486080 was 64K), export names with
# control characters or none at all, over-long descriptions, credential
# names that are paths (.., empty) and a relative $CREDENTIALS_DIRECTORY,
# a --config line cut short by a NUL byte (its readonly=on was lost);
# config errors name the file and line; a connected socket passed by
# Accept=yes is named as such; the --run command does not get the
# daemon's NOTIFY_SOCKET; luks-nbd ctl refuses a socket path it would cut.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3
make_luks2_volume v 1M
s=$TMP/sock
refused () {   # refused DESCRIPTION PATTERN SPEC-EXTRA
  check_fails_with "$1" "$2" luks_nbd --socket "$s" --export "$(spec v "$3")" --run true
}
refused "qcow2-cache-size= with a sign is refused (it wrapped around)" \
  "qcow2-cache-size=-18446744073709486080: expected 64K..1G" "qcow2-cache-size=-18446744073709486080"
refused "qcow2-cache-size= with a leading blank is refused" "expected 64K..1G" "qcow2-cache-size= 64K"
refused "key-slot=+0 is refused" "key-slot=+0: expected 0..31" "key-slot=+0"
refused "key-slot= with a leading blank is refused" "expected 0..31" "key-slot= 0"
check_fails_with "an empty name= is refused" "name= is empty" \
  luks_nbd --socket "$s" --export "name=,payload=$TMP/v.payload,header=$TMP/v.hdr,key-file=$TMP/v.key" --run true
check_fails_with "a name= with a newline is refused" "name= holds a control character (0x0a)" \
  luks_nbd --socket "$s" --export "$(spec_as "$(printf 'a\nFAKE log line')" v)" --run true
refused "a description= with an escape character is refused" "description= holds a control character (0x1b)" \
  "description=$(printf 'x\033[2J')"
refused "a description= over 4096 bytes is refused" "description= is longer than 4096 bytes" \
  "description=$(head -c 4097 /dev/zero | tr '\0' d)"

mkdir "$TMP/creds"
cp "$TMP/v.key" "$TMP/creds/vm.key"
cred () { echo "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,credential=$1"; }
CREDENTIALS_DIRECTORY=$TMP/creds luks_nbd --socket "$s" --export "$(cred vm.key)" --run true
check "credential=vm.key unlocks the volume" test $? -eq 0
for name in .. . ""; do
  check_fails_with "credential='$name' is refused" "a name, not a path" \
    env CREDENTIALS_DIRECTORY="$TMP/creds" "$top_builddir/server/luks-nbd" --socket "$s" --export "$(cred "$name")" --run true
done
check_fails_with "an empty \$CREDENTIALS_DIRECTORY is refused (it read /NAME)" "is not an absolute path" \
  env CREDENTIALS_DIRECTORY= "$top_builddir/server/luks-nbd" --socket "$s" --export "$(cred vm.key)" --run true

# --config: a NUL byte in a line, and errors naming file and line.
{ printf '# exports\n\n'; printf '%s\0,readonly=on\n' "$(spec v)"; } > "$TMP/nul.conf"
check_fails_with "a --config line with a NUL byte is refused (its rest was dropped)" \
  "--config $TMP/nul.conf: line 3 holds a NUL byte" \
  luks_nbd --socket "$s" --config "$TMP/nul.conf" --run true
check_fails_with "a --config line of endless bytes is refused at 64 KiB (it grew the daemon to GiBs)" \
  "--config /dev/zero: line 1 is longer than 65536 bytes" \
  timeout 60 "$top_builddir/server/luks-nbd" --socket "$s" --config /dev/zero --run true
printf '# exports\n%s\n  payload=x,colour=red\n' "$(spec v)" > "$TMP/bad.conf"
check_fails_with "a --config error names the file and line" "--config $TMP/bad.conf line 3: unknown key 'colour'" \
  luks_nbd --socket "$s" --config "$TMP/bad.conf" --run true
printf '%s\n' "$(spec v)" > "$TMP/good.conf"
check_fails_with "--export errors count --export options only" "--export #1: unknown key 'colour'" \
  luks_nbd --socket "$s" --config "$TMP/good.conf" --export "payload=x,colour=red" --run true

check_fails_with "a connected socket passed as by Accept=yes is named as such" \
  "not a listening socket (the .socket unit must have Accept=no)" \
  python3 "$top_srcdir/tests/lib/listen_fds.py" connected -- "$top_builddir/server/luks-nbd" --export "$(spec v)"

python3 -c 'import socket, sys; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).bind(sys.argv[1])' "$TMP/notify"
NOTIFY_SOCKET=$TMP/notify WATCHDOG_USEC=100000000 luks_nbd --socket "$s" --export "$(spec v)" \
  --run 'echo "${NOTIFY_SOCKET-unset} ${WATCHDOG_USEC-unset}" > '"$TMP/run.env"
check "the --run command sees neither NOTIFY_SOCKET nor WATCHDOG_USEC" test "$(cat "$TMP/run.env")" = "unset unset"

long=$TMP/$(head -c 120 /dev/zero | tr '\0' c)
check_fails_with "luks-nbd ctl refuses a socket path longer than a unix address holds" "path too long" \
  "$top_builddir/server/luks-nbd" ctl --control "$long" export-list
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves --run under socket activation (it dereferenced NULL: SIGSEGV):
# the command gets $uri (and $unixsocket) for the socket systemd passed,
# unix or TCP (a wildcard address becomes loopback), and reads the
# plaintext through it with nbdcopy; a socket no URI can name (abstract
# unix) is a clear error.  Activation is emulated by tests/lib/listen_fds.py.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy python3
make_luks2_volume v 1M
LN=$top_builddir/server/luks-nbd
activate () { timeout --kill-after=10 600 python3 "$top_srcdir/tests/lib/listen_fds.py" "$@"; }
copy='nbdcopy "$uri" '$TMP'/out && printf "%s\n%s\n" "$uri" "${unixsocket-unset}" > '$TMP'/env'

mkdir "$TMP/dir with space"
activate "$TMP/dir with space/s" -- "$LN" --export "$(spec v)" --run "$copy" 2> "$TMP/err"
check "--run with a passed unix socket: exit 0 (no crash)" test $? -eq 0
check "the command read the plaintext through \$uri" cmp -s "$TMP/out" "$TMP/v.plain"
check "\$uri names the passed socket (percent-encoded)" \
  test "$(sed -n 1p "$TMP/env")" = "nbd+unix:///?socket=$(echo "$TMP" | sed 's/ /%20/g')/dir%20with%20space/s"
check "\$unixsocket is the socket's path" test "$(sed -n 2p "$TMP/env")" = "$TMP/dir with space/s"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rm -f "$TMP/out"
activate "0.0.0.0:$port" -- "$LN" --export "$(spec v)" --run "$copy" 2> "$TMP/err"
check "--run with a passed TCP socket on 0.0.0.0: exit 0" test $? -eq 0
check "the command read the plaintext over TCP" cmp -s "$TMP/out" "$TMP/v.plain"
check "\$uri is loopback with the passed port" test "$(sed -n 1p "$TMP/env")" = "nbd://127.0.0.1:$port/"
check "\$unixsocket is not set for TCP" test "$(sed -n 2p "$TMP/env")" = unset

rm -f "$TMP/out"
activate "$TMP/passed" -- "$LN" --socket "$TMP/ignored" --export "$(spec v)" --run "$copy" 2> "$TMP/err"
check "with --socket too, \$uri is the passed socket" test "$(sed -n 2p "$TMP/env")" = "$TMP/passed"
check "and a warning says --socket is ignored" grep -q "socket and --listen are ignored" "$TMP/err"
check_fails_with "an abstract unix socket: a clear error" "abstract or unnamed unix socket" \
  activate "@luks-nbd-test-$$" -- "$LN" --export "$(spec v)" --run "$copy"
done_testing

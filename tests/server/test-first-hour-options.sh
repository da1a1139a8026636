#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Options as a new user tries them (issue 20, "Options and paths"):
# --listen's forms and the $uri --run gets for each (IPv6 in brackets,
# nbds under --tls=require), --run with no socket (a private one, removed
# afterwards; CMD runs as --user), a missing --socket directory, lock
# conflicts inside one daemon, --tls-certs with --tls-psk, and PSK
# messages (a wrong key or identity, a PSK file others can read).
# Clients are libnbd's nbdinfo; PSKs come from openssl.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdinfo openssl python3

make_luks2_volume v 4M
V=$(spec v)
free_port () {
  python3 -c 'import socket, sys; s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"
}
# run_uri OUT ARGS...: serve with ARGS, --run records $uri and the size
# nbdinfo reads through it.
run_uri () {
  local out=$1; shift
  luks_nbd --export "$V" "$@" --run "echo \"\$uri\" > $out.uri; nbdinfo --size \"\$uri\" > $out.size" 2> "$out.err"
}

# --listen: ports are 1..65535, never wrapped.
check_fails_with "--listen 99999 is refused, not wrapped to 34463" \
  "--listen 99999: port '99999': expected 1..65535" \
  luks_nbd --listen 99999 --export "$V" --run true
check_fails_with "--listen :70000 is refused" "port '70000': expected 1..65535" \
  luks_nbd --listen :70000 --export "$V" --run true
check_fails_with "--listen :0 is refused" "port '0': expected 1..65535" \
  luks_nbd --listen :0 --export "$V" --run true
check_fails_with "--listen ::1 (an IPv6 address without brackets) gets the [ADDRESS]:PORT hint" \
  "an IPv6 address goes in brackets: [ADDRESS]:PORT, e.g. [::1]:10809" \
  luks_nbd --listen ::1 --export "$V" --run true

# An empty port is 10809 in both spellings, and $uri says so.  Port 10809
# may be taken for a moment by something else: bounded retries.
for form in : localhost:; do
  for try in 1 2 3 4 5 6 7 8 9 10; do
    run_uri "$TMP/default" --listen "$form" && break
    grep -q "address already in use" "$TMP/default.err" || break
    sleep 1 # waiting for another program to let go of port 10809
  done
  check "--listen $form: \$uri is nbd://localhost:10809/" \
    test "$(cat "$TMP/default.uri")" = "nbd://localhost:10809/"
  check "--listen $form: nbdinfo reads the export through \$uri" \
    test "$(cat "$TMP/default.size")" = 4194304
done

# A bare number is a port (as nbdkit -p and qemu-nbd -p take it).
port=$(free_port 127.0.0.1)
run_uri "$TMP/bare" --listen "$port"
check "--listen $port (a bare number) listens on that port: \$uri nbd://localhost:$port/" \
  test "$(cat "$TMP/bare.uri")" = "nbd://localhost:$port/"
check "--listen PORT: nbdinfo reads the export through \$uri" test "$(cat "$TMP/bare.size")" = 4194304

# IPv6: brackets on the command line and in $uri.
port6=$(free_port ::1)
run_uri "$TMP/v6" --listen "[::1]:$port6"
check "--listen [::1]:PORT: \$uri is nbd://[::1]:PORT/" test "$(cat "$TMP/v6.uri")" = "nbd://[::1]:$port6/"
check "--listen [::1]:PORT: nbdinfo reads the export through \$uri" test "$(cat "$TMP/v6.size")" = 4194304
port6=$(free_port ::)
run_uri "$TMP/any6" --listen "[::]:$port6"
check "--listen [::]:PORT: \$uri names ::1" test "$(cat "$TMP/any6.uri")" = "nbd://[::1]:$port6/"
check "--listen [::]:PORT: nbdinfo reads the export through \$uri" test "$(cat "$TMP/any6.size")" = 4194304

# --tls=require: $uri is an nbds URI; the client adds its key.
printf 'alice:%s\n' "$(openssl rand -hex 32)" > "$TMP/psk.keys"
chmod 600 "$TMP/psk.keys"
port=$(free_port 127.0.0.1)
luks_nbd --listen "127.0.0.1:$port" --tls=require --tls-psk "$TMP/psk.keys" --export "$V" --run "
  echo \"\$uri\" > $TMP/tls-tcp.uri
  nbdinfo --size \"\${uri%%://*}://alice@\${uri#*://}?tls-psk-file=$TMP/psk.keys\" > $TMP/tls-tcp.size"
check "--tls=require --listen: \$uri is nbds://127.0.0.1:PORT/" \
  test "$(cat "$TMP/tls-tcp.uri")" = "nbds://127.0.0.1:$port/"
check "--tls=require --listen: \$uri with the client's PSK reads the export" \
  test "$(cat "$TMP/tls-tcp.size")" = 4194304
luks_nbd --socket "$TMP/s" --tls=require --tls-psk "$TMP/psk.keys" --export "$V" --run "
  echo \"\$uri\" > $TMP/tls-unix.uri
  nbdinfo --size \"nbds+unix://alice@/?\${uri#*\\?}&tls-psk-file=$TMP/psk.keys\" > $TMP/tls-unix.size"
check "--tls=require --socket: \$uri is nbds+unix:///?socket=PATH" \
  test "$(cat "$TMP/tls-unix.uri")" = "nbds+unix:///?socket=$TMP/s"
check "--tls=require --socket: \$uri with the client's PSK reads the export" \
  test "$(cat "$TMP/tls-unix.size")" = 4194304

# --run alone: a private socket, gone afterwards.
luks_nbd --export "$V" --run "
  echo \"\$uri\" > $TMP/private.uri; echo \"\$unixsocket\" > $TMP/private.sock
  stat -c %a \"\$(dirname \"\$unixsocket\")\" > $TMP/private.mode
  nbdinfo --size \"\$uri\" > $TMP/private.size"
check "--run without --socket/--listen serves (exit 0)" test $? -eq 0
sock=$(cat "$TMP/private.sock")
check "--run alone: \$uri names the private socket" \
  test "$(cat "$TMP/private.uri")" = "nbd+unix:///?socket=$sock"
check "--run alone: nbdinfo reads the export through \$uri" test "$(cat "$TMP/private.size")" = 4194304
check "--run alone: the socket's directory is private (0700)" test "$(cat "$TMP/private.mode")" = 700
check "--run alone: socket and directory are removed afterwards" test ! -e "$(dirname "$sock")"

# CMD runs as --user, and reaches the private socket.
mkdir -m 777 "$TMP/pub"
chmod 755 "$TMP" # nobody writes what it saw to $TMP/pub
luks_nbd --export "$V" --user nobody --run "
  id -u > $TMP/pub/uid; echo \"\$unixsocket\" > $TMP/pub/sock
  nbdinfo --size \"\$uri\" > $TMP/pub/size" 2> "$TMP/user.err"
check "--run with --user: CMD runs as that user" test "$(cat "$TMP/pub/uid")" = "$(id -u nobody)"
check "--run with --user: CMD reads the export through the private socket" \
  test "$(cat "$TMP/pub/size")" = 4194304
check "--run with --user: the private directory is removed afterwards" \
  test ! -e "$(dirname "$(cat "$TMP/pub/sock")")"

# PSK with --user: the keys are read once, as root, at start (the file is
# 0600 root); the client's copy is its own.
install -m 644 "$TMP/psk.keys" "$TMP/pub/alice.key"
luks_nbd --socket "$TMP/pub/psk.sock" --socket-mode 0666 --export "$V" --user nobody \
  --tls=require --tls-psk "$TMP/psk.keys" --run "
  nbdinfo --size \"nbds+unix://alice@/?socket=\$unixsocket&tls-psk-file=$TMP/pub/alice.key\" > $TMP/pub/psk-user.size" 2> "$TMP/psk-user.err"
check "--tls-psk (0600 root) with --user: a PSK client is served after the drop" \
  test "$(cat "$TMP/pub/psk-user.size")" = 4194304

# Paths and locks: say what is wrong.
check_fails_with "--socket in a missing directory says the directory does not exist" \
  "--socket /no/such/dir/s: directory /no/such/dir: does not exist" \
  luks_nbd --socket /no/such/dir/s --export "$V"
err=$(luks_nbd --socket "$TMP/s" --export "$V" --export "$(spec_as w v)" 2>&1)
check "two exports of one payload: the message names this daemon and the other export's file" \
  grep -qF "$TMP/v.payload: this luks-nbd already uses the file (opened as $TMP/v.payload by another export): two exports of one payload keep separate caches and do not see each other's writes (a qcow2 payload would be corrupted); serve it in one export, or make both readonly=on" <<< "$err"
check "two exports of one payload: no other program is blamed" not grep -q "qemu-nbd holds" <<< "$err"
check_fails_with "header= naming the payload says so" \
  "header $TMP/v.payload is the payload file $TMP/v.payload itself" \
  luks_nbd --socket "$TMP/s" --export "name=v,payload=$TMP/v.payload,header=$TMP/v.payload,key-file=$TMP/v.key"
check_fails_with "a payload that is another export's header: this daemon is named" \
  "$TMP/v.hdr: this luks-nbd already uses the file (opened as $TMP/v.hdr by another export)" \
  luks_nbd --socket "$TMP/s" --export "$V" --export "name=w,payload=$TMP/v.hdr,key-file=$TMP/v.key"
luks_nbd --socket "$TMP/s" --control "$TMP/ctl" --export "$V" --run "
  $top_builddir/server/luks-nbd ctl --control $TMP/ctl export-add '$(spec_as w v)' > $TMP/ctl.out 2>&1" 2> /dev/null
check "export-add of a served payload: the reply names this daemon" \
  grep -qF "this luks-nbd already uses the file" "$TMP/ctl.out"
check "two exports of one payload with locking=off on both are served" \
  luks_nbd --socket "$TMP/s" --export "$V,locking=off,readonly=on" \
    --export "$(spec_as w v locking=off,readonly=on)" --run true

# TLS configuration and PSK messages.
check_fails_with "--tls-certs with --tls-psk: choose one" \
  "--tls-certs and --tls-psk: choose one" \
  luks_nbd --socket "$TMP/s" --tls=on --tls-psk "$TMP/psk.keys" --tls-certs "$TMP" --export "$V"
printf 'alice:%s\n' "$(openssl rand -hex 32)" > "$TMP/wrong.key"
printf 'bob:%s\n' "$(openssl rand -hex 32)" > "$TMP/bob.key"
luks_nbd --socket "$TMP/s" --tls=require --tls-psk "$TMP/psk.keys" --export "$V" --run "
  nbdinfo --size 'nbds+unix://alice@/?socket=$TMP/s&tls-psk-file=$TMP/wrong.key'
  nbdinfo --size 'nbds+unix://bob@/?socket=$TMP/s&tls-psk-file=$TMP/bob.key'
  true" 2> "$TMP/psk.err" > /dev/null
check "a wrong PSK is logged (without -v) with the identity: wrong key or unknown identity" \
  grep -qF "TLS handshake failed: PSK identity 'alice': wrong key or unknown identity" "$TMP/psk.err"
check "an unknown PSK identity is logged by name" \
  grep -qF "PSK identity 'bob': wrong key or unknown identity (no such user in --tls-psk $TMP/psk.keys)" "$TMP/psk.err"
check "the 0600 PSK file got no permission warning" not grep -q "readable by group or others" "$TMP/psk.err"
chmod 644 "$TMP/psk.keys"
luks_nbd --socket "$TMP/s" --tls=on --tls-psk "$TMP/psk.keys" --export "$V" --run true 2> "$TMP/psk644.err"
check "a 0644 PSK file gets a warning asking for 0600" \
  grep -qF -- "--tls-psk $TMP/psk.keys: readable by group or others (mode 0644)" "$TMP/psk644.err"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the systemd side: units pass systemd-analyze verify; under
# systemd-socket-activate the daemon serves on the passed socket (greets at
# once, answers the export once unlocked), says
# READY=1 before serving, reads its key from a credential and a --config
# file, and says STOPPING=1 on SIGTERM; a passed TCP socket serves too.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup systemd-analyze systemd-socket-activate python3 nbdcopy ss
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

mkdir "$TMP/units"
for u in luks-nbd.socket luks-nbd@.socket; do cp "$top_srcdir/systemd/$u" "$TMP/units/"; done
for u in luks-nbd.service luks-nbd@.service; do
  sed -e "s|%SBINDIR%|$top_builddir/server|g" \
      -e "/%HARDENING%/{r $top_srcdir/systemd/hardening.conf" -e 'd}' \
      "$top_srcdir/systemd/$u.in" > "$TMP/units/$u"
done
(cd "$TMP/units" && systemd-analyze verify --man=no luks-nbd.socket luks-nbd.service \
   luks-nbd@vm1.socket luks-nbd@vm1.service) > "$TMP/verify.out" 2>&1
check "systemd-analyze verify passes on every unit" test $? -eq 0
check "and says nothing" test ! -s "$TMP/verify.out"

make_luks2_volume v 2M --sector-size 4096 --pbkdf-force-iterations 200000
mkdir "$TMP/creds"
cp "$TMP/v.key" "$TMP/creds/vm.key"
cat > "$TMP/exports.conf" <<EOC
# one export per line, as --export takes it
name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,credential=vm.key

EOC
timeout 300 python3 "$top_srcdir/tests/lib/systemd_activation.py" "$TMP/sock" "$TMP/notify" \
  "$TMP/creds" "$TMP/v.plain" -- "$top_builddir/server/luks-nbd" --config "$TMP/exports.conf" > "$TMP/py.out"
check "the activation script ran" test $? -eq 0
tap_report "$TMP/py.out" 9 "the activation script"
# TCP: systemd passes a listening TCP socket (luks-nbd@.socket with
# ListenStream=PORT); libnbd reads the plaintext over it.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CREDENTIALS_DIRECTORY=$TMP/creds timeout --preserve-status 120 systemd-socket-activate -l "127.0.0.1:$port" \
  -E CREDENTIALS_DIRECTORY "$top_builddir/server/luks-nbd" -v --config "$TMP/exports.conf" \
  2> "$TMP/tcp.log" &
activated=$!
# Until systemd-socket-activate listens (a bounded wait on a condition).
for _ in $(seq 600); do
  [ -n "$(ss -Hltn "sport = :$port")" ] && break
  sleep 0.05
done
timeout 60 nbdcopy "nbd://127.0.0.1:$port" "$TMP/tcp.back"
check "socket activation on TCP: nbdcopy reads the plaintext" cmp -s "$TMP/tcp.back" "$TMP/v.plain"
check "the daemon served the socket systemd passed" \
  grep -q "listening on a socket passed by systemd" "$TMP/tcp.log"
kill -TERM $activated
wait $activated
check "SIGTERM ends the TCP-activated daemon with status 0" test $? -eq 0
check_fails_with "credential= without \$CREDENTIALS_DIRECTORY is a clear error" \
  "CREDENTIALS_DIRECTORY is not set" \
  env -u CREDENTIALS_DIRECTORY "$top_builddir/server/luks-nbd" --socket "$TMP/s2" --config "$TMP/exports.conf"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that a remote payload connection that died is made again: nbdkit
# serving the ciphertext is restarted on the same socket while luks-nbd
# serves, and reads and writes work again with the right data; a request
# in flight when the remote dies fails with EIO at once; with the remote
# gone a request fails after bounded retries; writes not yet flushed when
# the remote went away make every later flush fail (EIO) instead of lying;
# each reconnect is logged; over TCP the connection has keepalive armed.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdkit python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

make_luks2_volume v 4M --sector-size 512
mkdir "$TMP/remote"
mv "$TMP/v.payload" "$TMP/remote/payload"

# The remote's controller: restart [slow] | stop, killing it as a crash would
# (SIGKILL: a SIGTERMed nbdkit waits for its clients to hang up).  nbdkit writes its pid
# file once it listens, so a restart returns when the remote is ready.
cat > "$TMP/remote.sh" <<SH
#!/bin/sh
if [ -s $TMP/r.pid ]; then
  pid=\$(cat $TMP/r.pid)
  kill -9 \$pid
  i=0
  # Gone, or a zombie that its new parent has not reaped yet.
  while kill -0 \$pid 2>/dev/null &&
        [ "\$(cut -d' ' -f3 /proc/\$pid/stat 2>/dev/null)" != Z ]; do
    i=\$((i + 1)); [ \$i -lt 200 ] || exit 1
    sleep 0.05
  done
  rm -f $TMP/r.pid $TMP/r.sock
fi
[ "\$1" = stop ] && exit 0
: > $TMP/r.log
exec nbdkit -U $TMP/r.sock -P $TMP/r.pid --filter=log \${2:+--filter=delay} \\
  file $TMP/remote/payload logfile=$TMP/r.log \${2:+rdelay=10}
SH
chmod +x "$TMP/remote.sh"
"$TMP/remote.sh" restart
cleanup_hooks="$TMP/remote.sh stop; $cleanup_hooks"

luks_nbd --socket "$TMP/sock" \
  --export "name=v,payload=nbd+unix:///?socket=$TMP/r.sock,payload-format=raw,header=$TMP/v.hdr,key-file=$TMP/v.key" \
  --run "PYTHONPATH=$top_srcdir/tests/lib python3 $top_srcdir/tests/lib/nbd_reconnect.py $TMP/sock $TMP/remote.sh $TMP/r.log > $TMP/results" \
  2> "$TMP/daemon.log"
check "luks-nbd served through the remote's restarts" test $? -eq 0
tap_report "$TMP/results" 13 "nbd_reconnect.py"
check "the reconnects are logged" grep -q "r.sock: reconnected" "$TMP/daemon.log"
check "the lost connection is logged with its cause" grep -q "r.sock: the connection died" "$TMP/daemon.log"

# Over TCP a remote that vanishes without closing (power loss, a cut
# cable) must not hold requests for ever: the payload connection has
# keepalive armed (timer 02 in /proc/net/tcp) so the kernel fails it.
# (nbd_reconnect.py wrote random data over the start: check-plaintext=off.)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
nbdkit -i 127.0.0.1 -p "$port" -P "$TMP/tcp.pid" file "$TMP/remote/payload"
cleanup_hooks="kill \$(cat $TMP/tcp.pid) 2>/dev/null; $cleanup_hooks"
cat > "$TMP/timers.py" <<'PY'
import sys
port = int(sys.argv[1])
for line in open("/proc/net/tcp").read().splitlines()[1:]:
    f = line.split()
    if int(f[2].split(":")[1], 16) == port and f[3] == "01":  # ESTABLISHED
        print(f[5].split(":")[0])
PY
luks_nbd --socket "$TMP/tsock" \
  --export "name=v,payload=nbd://127.0.0.1:$port,payload-format=raw,header=$TMP/v.hdr,key-file=$TMP/v.key,check-plaintext=off" \
  --run "nbdinfo --size \"\$uri\" > /dev/null && python3 $TMP/timers.py $port > $TMP/timers"
check "luks-nbd served a payload over TCP" test $? -eq 0
check "its TCP connection to the remote has keepalive armed" \
  test -s "$TMP/timers" -a "$(sort -u "$TMP/timers")" = 02
sed 's/^/# /' "$TMP/daemon.log"
done_testing

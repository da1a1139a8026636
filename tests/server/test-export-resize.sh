#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# luks-nbd ctl export-resize (issue 17, "Resize"):
# - a raw payload and qcow2 payloads (one where the L1 table must grow,
#   over several clusters; one where it need not) grow while a client is
#   connected: that client keeps the old size and its I/O keeps working,
#   a new client sees the new size (nbdinfo --size) and writes and reads
#   past the old end;
# - cryptsetup decrypts the grown payloads (qcow2 converted to raw by
#   qemu-img first) to exactly what the clients wrote; qemu-img check of
#   the grown qcow2 images is clean and qemu-img info shows the new size;
# - a 64 KiB-cluster qcow2 grown to 1 GiB (L1 grows) keeps data written
#   near its new end across a restart;
# - a remote (NBD) payload is refused, naming NBD; shrinking is refused
#   without --force and while a client is connected, a raw payload
#   shrinks with --force, a qcow2 one is refused by name; bad sizes are
#   refused with a clear message, and so is a LUKS2 header whose data
#   segment has a fixed size;
# - QEMU 10's nbd client keeps its size until it reconnects, then grows
#   to the new size (the path of block_resize) and uses the new end.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup qemu-img qemu-io qemu-nbd nbdinfo nbdsh python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

LN=$top_builddir/server/luks-nbd
M=$((1024 * 1024))
make_luks2_volume r 2M
make_luks2_volume q 2M
make_luks2_volume d 2M
make_luks2_volume big 2M
make_luks2_volume net 2M
make_luks2_volume s4 2M --sector-size 4096
make_luks2_volume ext 2M
# q: 1 KiB clusters, so one L1 entry covers 128 KiB: 2 MiB needs 16
# entries (one cluster of L1), 32 MiB needs 256 (two clusters).  (Not
# 512-byte clusters: their one-cluster refcount table covers only 8 MiB
# of file, and growing that table is not supported.)
qemu-img convert -q -f raw -O qcow2 -o cluster_size=1024 "$TMP/q.payload" "$TMP/q.qcow2"
qemu-img convert -q -f raw -O qcow2 "$TMP/d.payload" "$TMP/d.qcow2"
qemu-img convert -q -f raw -O qcow2 "$TMP/big.payload" "$TMP/big.qcow2"
# The new areas the clients write: structured (4 KiB of zeros first).
make_plaintext "$TMP/r.new" $((2 * M))
make_plaintext "$TMP/q.new" $((30 * M))
make_plaintext "$TMP/d.new" $((1 * M))
make_plaintext "$TMP/big.new" $((1 * M))

# fx: a LUKS2 header whose data segment has a fixed size (1 MiB of the
# 2 MiB payload) instead of "dynamic": the JSON edited in both header
# copies and their checksums redone; cryptsetup must still accept it.
make_luks2_volume fx 2M
python3 - "$TMP/fx.hdr" <<'EOP'
import hashlib, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
hdr_size = struct.unpack(">Q", b[8:16])[0]
for off in (0, hdr_size):  # the primary and the secondary header
    area = b[off:off + hdr_size]
    end = area.index(b"\0", 4096)
    js = area[4096:end].replace(b'"size":"dynamic"', b'"size":"1048576"', 1)
    area[4096:end] = js + b"\0" * (end - 4096 - len(js))
    area[448:512] = bytes(64)  # the checksum covers the area with it zeroed
    area[448:480] = hashlib.sha256(area).digest()
    b[off:off + hdr_size] = area
open(sys.argv[1], "wb").write(b)
EOP
check "cryptsetup accepts the fixed-size segment header" \
  sh -c "cryptsetup luksDump '$TMP/fx.hdr' | grep -q 'length: 1048576 \[bytes\]'"

qemu-nbd --fork --pid-file "$TMP/qnbd.pid" -f raw -k "$TMP/qsock" "$TMP/net.payload"
cleanup_hooks="kill \$(cat $TMP/qnbd.pid) 2>/dev/null; $cleanup_hooks"

cat > "$TMP/session.py" <<'EOP'
import json, nbd, subprocess, sys
sock, ctl_path, ln, tmp = sys.argv[1:5]
M = 1024 * 1024

def ctl(*args):
    r = subprocess.run([ln, "ctl", "--control", ctl_path, *args],
                       capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).strip()

def connect(name):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sock)
    return h

def nbdinfo_size(name):
    return subprocess.run(["nbdinfo", "--size",
                           f"nbd+unix:///{name}?socket={sock}"],
                          capture_output=True, text=True).stdout.strip()

def out(key, value):
    if isinstance(value, tuple):
        value = "%d %s" % value
    print(key, value, flush=True)

def grow(name, new_size, new_file):
    old = connect(name)
    old_size = old.get_size()
    rc, text = ctl("export-resize", name, str(new_size // M) + "M")
    out(f"{name}.resize.rc", rc)
    out(f"{name}.resize.reply", text)
    out(f"{name}.old.size", old.get_size())
    # The connected client still works, within the size it was told.
    last = old.pread(4096, old_size - 4096)
    old.pwrite(last, old_size - 4096)
    old.flush()
    out(f"{name}.old.io", "ok")
    try:
        old.pread(512, old_size)
        out(f"{name}.old.past_end", "read")
    except nbd.Error as e:
        out(f"{name}.old.past_end", "refused")
    out(f"{name}.nbdinfo.size", nbdinfo_size(name))
    new = connect(name)
    out(f"{name}.new.size", new.get_size())
    data = open(new_file, "rb").read()
    new.pwrite(data, old_size)
    new.flush()
    out(f"{name}.new.readback", "same" if new.pread(len(data), old_size) == data else "differs")
    new.shutdown()
    old.shutdown()

grow("r", 4 * M, tmp + "/r.new")
grow("q", 32 * M, tmp + "/q.new")
grow("d", 3 * M, tmp + "/d.new")

# 64 KiB clusters: 1 GiB needs two L1 entries instead of one.
rc, text = ctl("export-resize", "big", "1G")
out("big.resize.rc", rc)
h = connect("big")
out("big.new.size", h.get_size())
data = open(tmp + "/big.new", "rb").read()
h.pwrite(data, 1024 * M - len(data))
h.flush()
h.shutdown()

# Refusals.
out("net", ctl("export-resize", "net", "4M"))
out("shrink", ctl("export-resize", "r", "1M"))
held = connect("r")
out("shrink.connected", ctl("export-resize", "r", "1M", "--force"))
held.shutdown()
out("shrink.qcow2", ctl("export-resize", "d", "2M", "--force"))
for bad in ("12X", "0", "1.5G", "99999999999T"):
    out("bad." + bad, ctl("export-resize", "r", bad))
out("sector", ctl("export-resize", "s4", str(2 * M + 512)))
out("noexport", ctl("export-resize", "nope", "4M"))
out("fixed", ctl("export-resize", "fx", "2M"))
# A payload file extended behind the daemon's back is large enough: a
# resize within it must not truncate it.
import os
os.truncate(tmp + "/ext.payload", 8 * M)
out("ext", ctl("export-resize", "ext", "4M"))
out("ext.file", os.stat(tmp + "/ext.payload").st_size)
out("ext.nbdinfo", nbdinfo_size("ext"))
# With --force and no client: a raw payload shrinks (3 MiB: keeps what
# the test decrypts below in a copy taken before).
subprocess.run(["cp", tmp + "/r.payload", tmp + "/r.grown"], check=True)
out("shrink.forced", ctl("export-resize", "r", "3M", "--force"))
out("shrink.nbdinfo", nbdinfo_size("r"))
EOP

luks_nbd -v --socket "$TMP/sock" --control "$TMP/ctl" \
  --export "$(spec r)" --export "name=q,payload=$TMP/q.qcow2,header=$TMP/q.hdr,key-file=$TMP/q.key" \
  --export "name=d,payload=$TMP/d.qcow2,header=$TMP/d.hdr,key-file=$TMP/d.key" \
  --export "name=big,payload=$TMP/big.qcow2,header=$TMP/big.hdr,key-file=$TMP/big.key" \
  --export "name=net,payload=nbd+unix:///?socket=$TMP/qsock,header=$TMP/net.hdr,key-file=$TMP/net.key" \
  --export "$(spec s4)" \
  --export "$(spec fx)" \
  --export "$(spec ext)" \
  --run "python3 $TMP/session.py $TMP/sock $TMP/ctl $LN $TMP" > "$TMP/out" 2> "$TMP/err"
rc=$?
check "the session ran to its end" test $rc -eq 0
get () { sed -n "s/^$1 //p" "$TMP/out"; }

for v in r:4 q:32 d:3; do
  n=${v%:*} mib=${v#*:}
  check "$n: export-resize succeeds" test "$(get "$n.resize.rc")" = 0
  check "$n: the reply gives old and new size and the connected client" \
    grep -qF "{\"ok\":true,\"name\":\"$n\",\"old_size\":$((2 * M)),\"size\":$((mib * M)),\"connections\":1}" <<< "$(get "$n.resize.reply")"
  check "$n: the connected client keeps the old size" test "$(get "$n.old.size")" = $((2 * M))
  check "$n: ... and its I/O keeps working" test "$(get "$n.old.io")" = ok
  check "$n: ... and it may not address past its old end" test "$(get "$n.old.past_end")" = refused
  check "$n: a new client sees the new size (nbdinfo --size)" test "$(get "$n.nbdinfo.size")" = $((mib * M))
  check "$n: ... also through libnbd" test "$(get "$n.new.size")" = $((mib * M))
  check "$n: ... and writes and reads past the old end" test "$(get "$n.new.readback")" = same
done
check "the log says connected clients keep the old size" \
  grep -qF "export 'r' resized from $((2 * M)) to $((4 * M)) bytes; 1 connected client(s) keep the old size until they reconnect" "$TMP/err"

# cryptsetup decrypts what the clients wrote (a copy: in user space).
decrypt () { # NAME RAWCIPHERTEXT -> $TMP/NAME.dec
  cp "$TMP/$1.hdr" "$TMP/$1.hdr2" && cp "$2" "$TMP/$1.dec" &&
    cryptsetup reencrypt --decrypt --header "$TMP/$1.hdr2" --key-file "$TMP/$1.key" \
      --force-offline-reencrypt --batch-mode "$TMP/$1.dec" > /dev/null
}
check "raw: the payload file grew to 4 MiB" test "$(stat -c %s "$TMP/r.grown")" = $((4 * M))
decrypt r "$TMP/r.grown"
check "raw: cryptsetup decrypts the grown payload to the old plaintext + what the new client wrote" \
  cmp -s "$TMP/r.dec" <(cat "$TMP/r.plain" "$TMP/r.new")
for v in q:32 d:3; do
  n=${v%:*} mib=${v#*:}
  check "$n: qemu-img check of the grown qcow2 is clean" qemu-img check -q "$TMP/$n.qcow2"
  check "$n: qemu-img info shows the new virtual size" \
    test "$(qemu-img info --output=json "$TMP/$n.qcow2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')" = $((mib * M))
  qemu-img convert -q -f qcow2 -O raw "$TMP/$n.qcow2" "$TMP/$n.raw"
  decrypt "$n" "$TMP/$n.raw"
  check "$n: cryptsetup decrypts the grown qcow2 payload to the old plaintext + what the new client wrote" \
    cmp -s "$TMP/$n.dec" <(cat "$TMP/$n.plain" "$TMP/$n.new")
done
check "q: the L1 table grew (1 KiB clusters: 256 entries, two clusters, for 32 MiB)" \
  test "$(python3 -c 'import struct,sys; print(struct.unpack(">I", open(sys.argv[1],"rb").read(40)[36:40])[0])' "$TMP/q.qcow2")" -ge 256

check "big: grown to 1 GiB (the L1 table grows from one entry to two)" \
  test "$(get big.new.size)" = $((1024 * M))
check "big: qemu-img check is clean" qemu-img check -q "$TMP/big.qcow2"
check "big: qemu-img info shows 1 GiB" \
  test "$(qemu-img info --output=json "$TMP/big.qcow2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')" = $((1024 * M))
luks_nbd --socket "$TMP/sock2" --export "name=big,payload=$TMP/big.qcow2,header=$TMP/big.hdr,key-file=$TMP/big.key" \
  --run "nbdsh -u nbd+unix:///big?socket=$TMP/sock2 -c 'import sys; sys.stdout.buffer.write(h.pread($M, 1023 * $M))'" \
  > "$TMP/big.back" 2>> "$TMP/err"
check "big: what was written at the new end reads back after a restart" cmp -s "$TMP/big.back" "$TMP/big.new"

check "a remote payload is refused, naming NBD's lack of resize" \
  grep -qF "NBD has no resize: resize the export on its server, then export-remove and export-add it here" <<< "$(get net)"
check "shrinking is refused without --force" \
  grep -qF "shrinking from $((4 * M)) to $((1 * M)) bytes destroys the data past the new end; refused without --force" <<< "$(get shrink)"
check "shrinking with --force is refused while a client is connected" \
  grep -qF "export 'r' has 1 connected client(s), which may address the bytes a shrink removes" <<< "$(get shrink.connected)"
check "shrinking a qcow2 payload is refused by name" \
  grep -qF "shrinking a qcow2 payload is not supported" <<< "$(get shrink.qcow2)"
check "a raw payload shrinks with --force and no client" grep -q '^0 .*"ok":true' <<< "$(get shrink.forced)"
check "... a new client sees 3 MiB" test "$(get shrink.nbdinfo)" = $((3 * M))
check "... and the payload file is 3 MiB" test "$(stat -c %s "$TMP/r.payload")" = $((3 * M))
check "a bad suffix is refused with the syntax" \
  grep -qF "size '12X' is not a number of bytes (with an optional K, M, G or T suffix)" <<< "$(get bad.12X)"
check "size 0 is refused" grep -qF "size 0: an export needs at least one byte" <<< "$(get bad.0)"
check "a fractional size is refused" grep -qF "size '1.5G' is not a number" <<< "$(get bad.1.5G)"
check "an overflowing size is refused" grep -qF "size '99999999999T' is too large" <<< "$(get bad.99999999999T)"
check "a size that is not a multiple of the sector size is refused" \
  grep -qF "export 's4': $((2 * M + 512)) bytes is not a multiple of its 4096-byte sectors" <<< "$(get sector)"
check "a fixed-size LUKS2 segment is refused by name" \
  grep -qF "the LUKS2 header's data segment has a fixed size of 1048576 bytes, not \\\"dynamic\\\"" <<< "$(get fixed)"
check "a payload file already larger than needed (extended meanwhile) grows the export" \
  grep -q '^0 .*"ok":true' <<< "$(get ext)"
check "... and is not truncated to the smaller size" test "$(get ext.file)" = $((8 * M))
check "... and new clients see the size asked for" test "$(get ext.nbdinfo)" = $((4 * M))
check "an unknown export is refused" grep -qF "no export 'nope'" <<< "$(get noexport)"
# QEMU 10's nbd client (qemu-io; its truncate is block_resize's path):
# it keeps the size it connected with ("Cannot grow NBD nodes"), and after
# it reconnects (export-remove --force and export-add drop and restore the
# export; reconnect-delay makes its next request wait for the new
# connection) it takes the new size and uses the new end.
make_luks2_volume qio 2M
cat > "$TMP/qio.py" <<'EOP'
import os, pty, subprocess, sys, termios
sock, ctl_path, ln, spec, key = sys.argv[1:6]
m, s = pty.openpty()  # qemu-io flushes its output per line only on a tty
attr = termios.tcgetattr(s)
attr[3] &= ~termios.ECHO
termios.tcsetattr(s, termios.TCSANOW, attr)
p = subprocess.Popen(["qemu-io", "--image-opts",
                      f"driver=nbd,server.type=unix,server.path={sock},export=qio,reconnect-delay=10"],
                     stdin=s, stdout=s, stderr=s, close_fds=True)
os.close(s)
buf = b""
def until_prompt():
    global buf
    while b"qemu-io> " not in buf:
        chunk = os.read(m, 4096)
        if not chunk:
            sys.exit("qemu-io exited: " + buf.decode(errors="replace"))
        buf += chunk
    out, _, buf = buf.partition(b"qemu-io> ")
    # Keep the last line that is not the (redrawn) command line.
    return out.decode(errors="replace").replace("\r", "").split("\n", 1)[-1].strip()
def cmd(key, c):
    os.write(m, (c + "\n").encode())
    print(key, until_prompt().replace("\n", " | "), flush=True)
def ctl(*args, **kw):
    return subprocess.run([ln, "ctl", "--control", ctl_path, *args], capture_output=True, text=True, **kw).returncode
until_prompt()
cmd("qio.length0", "length")
print("qio.resize", ctl("export-resize", "qio", "4M"))
cmd("qio.truncate0", "truncate 4M")
cmd("qio.length1", "length")
print("qio.remove", ctl("export-remove", "qio", "--force"))
print("qio.add", ctl("export-add", spec, "--passphrase-stdin", stdin=open(key)))
cmd("qio.read", "read 0 512")
cmd("qio.truncate1", "truncate 4M")
cmd("qio.length2", "length")
cmd("qio.write", "write -P 0x5a 4193792 512")
cmd("qio.readback", "read -P 0x5a 4193792 512")
os.write(m, b"quit\n")
p.wait()
EOP
luks_nbd --socket "$TMP/sock3" --control "$TMP/ctl3" --export "$(spec qio)" \
  --run "python3 $TMP/qio.py $TMP/sock3 $TMP/ctl3 $LN name=qio,payload=$TMP/qio.payload,header=$TMP/qio.hdr $TMP/qio.key" \
  > "$TMP/qio.out" 2>> "$TMP/err"
check "qemu-io session ran" test $? -eq 0
check "QEMU: the nbd node keeps its size after export-resize" grep -qx "qio.length1 2 MiB" "$TMP/qio.out"
check "QEMU: growing the nbd node before it reconnects fails: 'Cannot grow NBD nodes'" \
  grep -q "^qio.truncate0 .*Cannot grow NBD nodes" "$TMP/qio.out"
check "QEMU: it reconnects to the re-added export (reconnect-delay)" \
  grep -q "^qio.read read 512/512 bytes at offset 0" "$TMP/qio.out"
check "QEMU: after the reconnect, growing it to the new size succeeds" grep -qx "qio.length2 4 MiB" "$TMP/qio.out"
check "QEMU: ... and it writes and reads back the new last sector" \
  grep -q "^qio.readback read 512/512 bytes at offset 4193792" "$TMP/qio.out"
check "luks-nbd ctl --help lists export-resize" sh -c "'$LN' ctl --help 2>&1 | grep -qF 'export-resize NAME SIZE [--force]'"
done_testing

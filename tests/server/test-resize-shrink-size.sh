#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# export-resize tells new clients a size the node can serve:
# - during a shrink (its ftruncate held by the fault shim until the test
#   lets it go: no timing), a client that connects is told the new size
#   (nbdinfo and libnbd), and a read past it, sent with libnbd's own
#   bounds check off, is refused by the daemon with EINVAL; after the
#   shrink a new client sees the new size and is refused the same way
#   (before the fix, a client connecting meanwhile was told the old size
#   and read the bytes being removed);
# - a shrink that fails in the payload (ftruncate fails with EIO) tells
#   clients connecting during it the smaller size, and afterwards the
#   node's size again (the payload file's, by stat), no more than before;
#   a grow that fails, and a size that is not whole sectors, leave the
#   size as it was.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdinfo python3 stat
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

M=$((1024 * 1024))
make_luks2_volume v 4M --sector-size 4096
shim=$top_builddir/tests/lib/fault-inject.so
check "the fault shim is built" test -f "$shim"

cat > "$TMP/session.py" <<'EOP'
import os, select, subprocess, sys
import nbd
sock, ctl_path, ln, tmp = sys.argv[1:5]
payload, hold, trigger = tmp + "/v.payload", tmp + "/hold", tmp + "/trigger"
M = 1024 * 1024

def out(key, value):
    print(key, value, flush=True)

def resize_start(size):
    return subprocess.Popen([ln, "ctl", "--control", ctl_path, "export-resize",
                             "v", str(size), "--force"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

def resize_end(p):
    text = p.communicate(timeout=120)[0]
    return "%d %s" % (p.returncode, " ".join(text.split()))

def held():
    """True once the resize's ftruncate is held by the shim (60 s)."""
    for _ in range(600):
        if os.path.exists(hold + ".held"):
            os.unlink(hold + ".held")
            return True
        select.select([], [], [], 0.1)
    return False

def nbdinfo_size():
    return subprocess.run(["nbdinfo", "--size",
                           f"nbd+unix:///v?socket={sock}"],
                          capture_output=True, text=True).stdout.strip()

def connect():
    h = nbd.NBD()
    # The daemon must refuse what is past the end, not libnbd.
    h.set_strict_mode(h.get_strict_mode() & ~nbd.STRICT_BOUNDS)
    h.set_export_name("v")
    h.connect_unix(sock)
    return h

def read(h, offset):
    try:
        h.pread(4096, offset)
        return "read"
    except nbd.Error as e:
        return "refused %s" % e.errno

def touch(path):
    open(path, "w").close()

# (a) A shrink from 4 MiB to 2 MiB, held in its ftruncate.
touch(hold)
p = resize_start("2M")
out("a.held", held())
out("a.during.nbdinfo", nbdinfo_size())
h = connect()
out("a.during.size", h.get_size())
out("a.during.past", read(h, 2 * M))
out("a.during.last", read(h, 2 * M - 4096))
os.unlink(hold)
out("a.resize", resize_end(p))
out("a.file", os.stat(payload).st_size)
out("a.during_client.last", read(h, 2 * M - 4096))
h.shutdown()
out("a.after.nbdinfo", nbdinfo_size())
h = connect()
out("a.after.size", h.get_size())
out("a.after.past", read(h, 2 * M))
out("a.after.last", read(h, 2 * M - 4096))
h.shutdown()

# (b) A shrink to 1 MiB whose ftruncate fails (EIO), held first.
touch(trigger)
touch(hold)
p = resize_start("1M")
out("b.held", held())
out("b.during.nbdinfo", nbdinfo_size())
os.unlink(hold)
out("b.resize", resize_end(p))
out("b.file", os.stat(payload).st_size)
out("b.after.nbdinfo", nbdinfo_size())
h = connect()
out("b.after.last", read(h, 2 * M - 4096))
h.shutdown()
# A grow to 3 MiB that fails the same way.
out("c.resize", resize_end(resize_start("3M")))
out("c.file", os.stat(payload).st_size)
out("c.after.nbdinfo", nbdinfo_size())
os.unlink(trigger)
# A size that is not whole 4 KiB sectors.
out("d.resize", resize_end(resize_start(str(M + 512))))
out("d.after.nbdinfo", nbdinfo_size())
EOP

env LD_PRELOAD="$shim" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
  FAULT_PATH="$TMP/v.payload" FAULT_OP=ftruncate FAULT_ERRNO=EIO \
  FAULT_TRIGGER="$TMP/trigger" FAULT_HOLD="$TMP/hold" \
  timeout --kill-after=10 600 "$top_builddir/server/luks-nbd" -v --socket "$TMP/sock" \
  --control "$TMP/ctl" --export "$(spec v)" \
  --run "exec python3 $TMP/session.py $TMP/sock $TMP/ctl $top_builddir/server/luks-nbd $TMP" \
  > "$TMP/out" 2> "$TMP/err"
check "the session ran to its end and the daemon exited 0" test $? -eq 0
get () { sed -n "s/^$1 //p" "$TMP/out"; }

check "a shrink 4 MiB -> 2 MiB is held in its ftruncate" test "$(get a.held)" = True
check "meanwhile a new client is told 2 MiB (nbdinfo --size)" test "$(get a.during.nbdinfo)" = $((2 * M))
check "... and through libnbd" test "$(get a.during.size)" = $((2 * M))
check "... and the daemon refuses its read at 2 MiB with EINVAL" test "$(get a.during.past)" = "refused EINVAL"
check "... and serves its read of the last 4 KiB" test "$(get a.during.last)" = read
check "the shrink then succeeds" grep -q '^0 .*"ok":true,"name":"v","old_size":'$((4 * M))',"size":'$((2 * M)) <<< "$(get a.resize)"
check "... the payload file is 2 MiB (stat)" test "$(get a.file)" = $((2 * M))
check "... and the client that connected during it still reads its last 4 KiB" test "$(get a.during_client.last)" = read
check "after the shrink a new client is told 2 MiB (nbdinfo --size)" test "$(get a.after.nbdinfo)" = $((2 * M))
check "... and through libnbd" test "$(get a.after.size)" = $((2 * M))
check "... its read at 2 MiB is refused with EINVAL" test "$(get a.after.past)" = "refused EINVAL"
check "... and its read of the last 4 KiB is served" test "$(get a.after.last)" = read

check "a shrink 2 MiB -> 1 MiB is held in its ftruncate" test "$(get b.held)" = True
check "meanwhile a new client is told 1 MiB" test "$(get b.during.nbdinfo)" = $((1 * M))
check "the shrink fails with the payload's error" \
  grep -q "^[1-9][0-9]* .*resizing to $((1 * M)) bytes: Input/output error" <<< "$(get b.resize)"
check "... the payload file is still 2 MiB (stat)" test "$(get b.file)" = $((2 * M))
check "... and new clients are told the node's 2 MiB again, no more than before" \
  test "$(get b.after.nbdinfo)" = $((2 * M))
check "... and a read of its last 4 KiB is served" test "$(get b.after.last)" = read
check "a grow 2 MiB -> 3 MiB that fails in the payload is refused" \
  grep -q "^[1-9][0-9]* .*resizing to $((3 * M)) bytes: Input/output error" <<< "$(get c.resize)"
check "... the payload file is still 2 MiB (stat)" test "$(get c.file)" = $((2 * M))
check "... and new clients are told 2 MiB" test "$(get c.after.nbdinfo)" = $((2 * M))
check "a size that is not whole sectors is refused" \
  grep -qF "$((M + 512)) bytes is not a multiple of its 4096-byte sectors" <<< "$(get d.resize)"
check "... and new clients are told 2 MiB" test "$(get d.after.nbdinfo)" = $((2 * M))
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that the daemon's memory goes back (issue 19; a host runs one
# daemon per volume, so what an idle one holds is paid per volume): with
# one export it starts idle at <= 8 MiB RSS; a burst of reads and writes
# (nbdcopy, checked with cmp) raises it, and within 10 s of idling it is
# back at <= 12 MiB (the buffer pool's trim timer and malloc_trim, polled
# in /proc/PID/status); 100 exports in one daemon stay <= 32 MiB idle.
# Sanitizer builds carry their own shadow and allocator, so there the
# bounds are relative to a first daemon's idle RSS (the same margins: 1
# MiB for the second start, 4 MiB after the load, 24 MiB for 99 more
# exports), with ASan's quarantine off so freed memory can go back at all.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy nbdinfo

case $(ldd "$top_builddir/server/luks-nbd") in
  *libasan* | *libtsan*) sanitized=1
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:allocator_release_to_os_interval_ms=500" ;;
  *) sanitized= ;;
esac

# The client side, run by the daemon (--run): its parent is the daemon.
# Writes "NAME KiB" lines to $1.
cat > "$TMP/burst.sh" <<'EOF'
set -u
pid=$PPID out=$1 plain=$2 bound_kib=$3
rss () { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
echo "idle $(rss)" > "$out"
nbdcopy "$uri" - | cmp - "$plain" && echo "read_ok 1" >> "$out"
nbdcopy --flush "$plain" "$uri" && echo "write_ok 1" >> "$out"
# Large requests: buffers that glibc maps and the pool keeps, so that
# the load shows in RSS whatever the read-ahead gate lets run at once.
nbdcopy --request-size=4194304 "$uri" null: &&
  nbdcopy --request-size=4194304 "$uri" null: || exit 1
echo "loaded $(rss)" >> "$out"
echo "peak $(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")" >> "$out"
# Poll for the return, for at most 10 s from the end of the load.
t0=$(date +%s%N)
while now=$(rss); [ "$now" -gt "$bound_kib" ] &&
  [ $(($(date +%s%N) - t0)) -lt 10000000000 ]; do
  sleep 0.1
done
echo "after $now" >> "$out"
echo "after_ms $((($(date +%s%N) - t0) / 1000000))" >> "$out"
EOF
value () { sed -n "s/^$1 //p" "$2"; }

# One export, 64 MiB: nbdcopy's four connections keep ~17 MiB of buffers
# in flight (more with 4 MiB requests).
make_luks2_volume v 64M --sector-size 4096
if [ -n "$sanitized" ]; then
  # The same daemon idle first, for the relative bound.
  luks_nbd --socket "$TMP/s0" --export "$(spec v)" \
    --run "awk '/^VmRSS:/ {print \$2}' /proc/\$PPID/status > $TMP/idle0"
  idle_bound=$(($(cat "$TMP/idle0") + 1024)) after_bound=$(($(cat "$TMP/idle0") + 4096))
else
  idle_bound=$((8 * 1024)) after_bound=$((12 * 1024))
fi
luks_nbd --socket "$TMP/sock" --export "$(spec v)" \
  --run "exec bash $TMP/burst.sh $TMP/one.out $TMP/v.plain $after_bound"
check "the daemon exits 0 after the burst" test $? -eq 0
sed 's/^/# /' "$TMP/one.out"
idle=$(value idle "$TMP/one.out")
check "the burst read the volume right (cmp) and wrote it" \
  test "$(value read_ok "$TMP/one.out")$(value write_ok "$TMP/one.out")" = 11
check "the burst raised RSS by 8 MiB or more (the load was real)" \
  test "$(value peak "$TMP/one.out")" -ge $((idle + 8 * 1024))
check "idle with one export: RSS <= $idle_bound KiB ($idle KiB)" test "$idle" -le "$idle_bound"
check "within 10 s of idling RSS is back under $after_bound KiB ($(value after "$TMP/one.out") KiB after $(value after_ms "$TMP/one.out") ms)" \
  test "$(value after "$TMP/one.out")" -le "$after_bound"

# 100 exports, each its own header and key (cryptsetup), on 1 MiB sparse
# payloads: what one export costs is what 99 more add.
printf 'pass for many' > "$TMP/many.key"
for i in $(seq 100); do
  truncate -s 1M "$TMP/p$i"
  cryptsetup luksFormat --type luks2 --header "$TMP/h$i" --key-file "$TMP/many.key" \
    --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
    --luks2-metadata-size 16k --luks2-keyslots-size 256k "$TMP/p$i" >/dev/null 2>&1
  # Sparse payloads decrypt to noise: no plaintext check.
  echo "name=e$i,payload=$TMP/p$i,header=$TMP/h$i,key-file=$TMP/many.key,check-plaintext=off"
done > "$TMP/many.conf"
luks_nbd --socket "$TMP/many.sock" --config "$TMP/many.conf" \
  --run "awk '/^VmRSS:/ {print \$2}' /proc/\$PPID/status > $TMP/many.rss;
         nbdinfo --list \"\$uri\" | grep -c '^export=' > $TMP/many.n"
check "the daemon with 100 exports exits 0" test $? -eq 0
check "all 100 exports are served" test "$(cat "$TMP/many.n")" -eq 100
many=$(cat "$TMP/many.rss")
echo "# 100 exports: $many KiB; one export: $idle KiB; each more: $(((many - idle) / 99)) KiB"
if [ -n "$sanitized" ]; then
  check "100 exports idle: RSS <= one export's + 24 MiB ($many KiB)" \
    test "$many" -le $(($(cat "$TMP/idle0") + 24 * 1024))
else
  check "100 exports idle: RSS <= 32 MiB ($many KiB)" test "$many" -le $((32 * 1024))
fi
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves nbdkit-luksnbd-filter.so (nbdkit/) serves cryptsetup's LUKS1 and
# LUKS2 volumes -- detached and attached headers, argon2id, 4096-byte
# sectors -- through nbdkit's file, memory and nbd plugins: what it reads
# is cryptsetup's plaintext, what it writes (nbdcopy, nbdsh, unaligned too)
# cryptsetup decrypts; nbdkit's own luks filter reads what it wrote on a
# LUKS1 volume and the reverse; holes stay holes; a wrong passphrase or a
# volume the daemon refuses fails at load with the daemon's message: with a
# header file before nbdkit forks, so also in the background and --run.
. "$(dirname "$0")/../lib/lib.sh"
need nbdkit cryptsetup nbdcopy nbdsh nbdinfo qemu-nbd qemu-img cmp python3
FILTER=$top_builddir/nbdkit/nbdkit-luksnbd-filter.so
if [ ! -f "$FILTER" ]; then
  echo "1..0 # SKIP the nbdkit filter was not built (nbdkit-plugin-dev)"
  exit 0
fi

# luksnbd PLUGIN ARGS...: nbdkit with our filter over PLUGIN (add --run CMD).
luksnbd () { timeout --kill-after=10 300 nbdkit -U - --filter="$FILTER" "$@"; }

# data_offset VOLUME: where cryptsetup says the encrypted area starts.
data_offset () {
  local dump o
  dump=$(cryptsetup luksDump "$1")
  o=$(sed -nE 's/^\s+offset:\s+([0-9]+) \[bytes\]$/\1/p' <<<"$dump" | head -1)
  [ -n "$o" ] || o=$(($(sed -nE 's/^Payload offset:\s+([0-9]+)$/\1/p' <<<"$dump") * 512))
  echo "$o"
}

# cs_decrypt HEADER DATA KEY OUT: DATA (the encrypted area alone)
# decrypted by cryptsetup.  cryptsetup 2.6 decrypts neither attached LUKS2
# nor LUKS1 without device-mapper, so: the volume key cryptsetup reads from
# HEADER goes into a fresh detached LUKS2 header of the same cipher and
# sector size, and `cryptsetup reencrypt --decrypt` decrypts a copy of
# DATA with that (same key, same sectors: the same ciphertext).
cs_decrypt () {
  local h=$1 d=$2 k=$3 out=$4 dump cipher sector
  rm -f "$TMP/cs.vk" "$TMP/cs.hdr"
  cryptsetup luksDump --dump-volume-key --volume-key-file "$TMP/cs.vk" \
    --key-file "$k" --batch-mode "$h" >/dev/null || return 1
  dump=$(cryptsetup luksDump "$h")
  cipher=$(sed -nE 's/^\s+cipher:\s+(\S+)$/\1/p' <<<"$dump" | head -1)
  [ -n "$cipher" ] || cipher=$(sed -nE 's/^Cipher name:\s+(\S+)$/\1/p' <<<"$dump")-$(sed -nE 's/^Cipher mode:\s+(\S+)$/\1/p' <<<"$dump")
  sector=$(sed -nE 's/^\s+sector:\s+([0-9]+) \[bytes\]$/\1/p' <<<"$dump" | head -1)
  cp "$d" "$out"
  cryptsetup luksFormat --batch-mode --type luks2 --header "$TMP/cs.hdr" \
    --volume-key-file "$TMP/cs.vk" --key-size $(($(stat -c %s "$TMP/cs.vk") * 8)) \
    --cipher "$cipher" --sector-size "${sector:-512}" --pbkdf pbkdf2 \
    --pbkdf-force-iterations 1000 --key-file "$k" "$out" >/dev/null 2>&1 &&
    cryptsetup reencrypt --decrypt --header "$TMP/cs.hdr" --key-file "$k" \
      --force-offline-reencrypt --batch-mode "$out" >/dev/null
}

# cs_decrypt_attached IMAGE KEY OUT: the plaintext of an attached volume.
cs_decrypt_attached () {
  tail -c +$(($(data_offset "$1") + 1)) "$1" > "$TMP/area"
  cs_decrypt "$1" "$TMP/area" "$2" "$3"
}

# unaligned_writes SRC BASE OUT: the bytes after the writes that
# unaligned.py makes (SRC's bytes at odd ranges over BASE), in Python.
cat > "$TMP/unaligned.py" <<'EOF'
import os, sys
src = open(os.environ["SRC"], "rb").read()
size = int(os.environ["SIZE"])
ranges = [(777, 1000), (4095, 2), (8191, 12289), (size - 3, 3), (65536 + 1, 4094)]
if "BASE" in os.environ:  # the expected image
    out = bytearray(open(os.environ["BASE"], "rb").read()[:size])
    for off, n in ranges:
        out[off:off + n] = src[off:off + n]
    sys.stdout.buffer.write(out)
else:  # through nbdsh: h is the connection
    for off, n in ranges:
        h.pwrite(src[off:off + n], off)
EOF
unaligned_expected () { SRC=$1 SIZE=$2 BASE=$3 python3 "$TMP/unaligned.py" > "$4"; }
UNALIGNED="nbdsh -u \"\$uri\" -c \"exec(open('$TMP/unaligned.py').read())\""

# --- LUKS2, detached header, file plugin ---------------------------------
make_luks2_volume v1 8M
cs_decrypt "$TMP/v1.hdr" "$TMP/v1.payload" "$TMP/v1.key" "$TMP/self"
check "cs_decrypt recovers cryptsetup's own plaintext (the checker is sound)" \
  cmp -s "$TMP/self" "$TMP/v1.plain"
luksnbd file "$TMP/v1.payload" header="$TMP/v1.hdr" passphrase=+"$TMP/v1.key" \
  --run 'nbdcopy "$uri" '"$TMP/out"
check "LUKS2 detached (file plugin): reads cryptsetup's plaintext" \
  cmp -s "$TMP/out" "$TMP/v1.plain"
make_plaintext "$TMP/new1" 8M
luksnbd file "$TMP/v1.payload" header="$TMP/v1.hdr" key-file="$TMP/v1.key" \
  --run 'nbdcopy '"$TMP/new1"' "$uri"'
make_plaintext "$TMP/odd1" 8M
luksnbd file "$TMP/v1.payload" header="$TMP/v1.hdr" passphrase=-3 \
  --run "SRC=$TMP/odd1 SIZE=8388608 $UNALIGNED" 3< "$TMP/v1.key"
unaligned_expected "$TMP/odd1" 8388608 "$TMP/new1" "$TMP/expect1"
cs_decrypt "$TMP/v1.hdr" "$TMP/v1.payload" "$TMP/v1.key" "$TMP/out"
check "LUKS2 detached: nbdcopy and unaligned nbdsh writes decrypt with cryptsetup" \
  cmp -s "$TMP/out" "$TMP/expect1"
luksnbd file "$TMP/v1.payload" header="$TMP/v1.hdr" passphrase=+"$TMP/v1.key" \
  --run 'nbdinfo "$uri"' > "$TMP/info1"
check "block size hints as the daemon's: minimum 1" grep -q "block_size_minimum: 1$" "$TMP/info1"
check "block size hints as the daemon's: preferred 4096" grep -q "block_size_preferred: 4096$" "$TMP/info1"
check "cannot fast-zero (zeroing writes encrypted zeros)" grep -q "can_fast_zero: false" "$TMP/info1"

# Holes: a hole punched in the payload is a hole in the plaintext, never
# "zero" (zero ciphertext decrypts to noise).
fallocate -p -o 1M -l 1M "$TMP/v1.payload"
luksnbd file "$TMP/v1.payload" header="$TMP/v1.hdr" passphrase=+"$TMP/v1.key" \
  --run 'nbdinfo --map "$uri"' > "$TMP/map1"
check "file plugin: the punched hole is a hole" \
  grep -qE '^\s*1048576\s+1048576\s+1\s+hole$' "$TMP/map1"
check "file plugin: nothing reads as zero" not grep -q zero "$TMP/map1"

# --- LUKS2, attached, argon2id, 4096-byte sectors, file plugin -------------
make_plaintext "$TMP/v2.plain" 8M
cp "$TMP/v2.plain" "$TMP/v2.img"
truncate -s +4M "$TMP/v2.img"
printf 'argon pass' > "$TMP/v2.key"
cryptsetup reencrypt --encrypt --type luks2 --reduce-device-size 4M \
  --sector-size 4096 --pbkdf argon2id --pbkdf-memory 32768 \
  --pbkdf-force-iterations 4 --pbkdf-parallel 1 --key-file "$TMP/v2.key" \
  --force-offline-reencrypt --batch-mode "$TMP/v2.img" >/dev/null 2>&1
check "cryptsetup made an attached argon2id volume of 4096-byte sectors" \
  grep -q "sector: 4096" <(cryptsetup luksDump "$TMP/v2.img")
luksnbd file "$TMP/v2.img" passphrase=+"$TMP/v2.key" \
  --run 'nbdcopy "$uri" '"$TMP/out"' && nbdinfo "$uri"' > "$TMP/info2"
check "LUKS2 attached argon2id 4K (file plugin): reads cryptsetup's plaintext" \
  cmp -s -n 8388608 "$TMP/out" "$TMP/v2.plain"
check "4K sectors: block size minimum 1 (read-modify-write)" grep -q "block_size_minimum: 1$" "$TMP/info2"
check "4K sectors: block size preferred 4096" grep -q "block_size_preferred: 4096$" "$TMP/info2"
size2=$(stat -c %s "$TMP/out")
make_plaintext "$TMP/new2" "$size2"
make_plaintext "$TMP/odd2" "$size2"
luksnbd file "$TMP/v2.img" header= passphrase=+"$TMP/v2.key" \
  --run 'nbdcopy '"$TMP/new2"' "$uri" && SRC='"$TMP/odd2 SIZE=$size2 $UNALIGNED"
unaligned_expected "$TMP/odd2" "$size2" "$TMP/new2" "$TMP/expect2"
cs_decrypt_attached "$TMP/v2.img" "$TMP/v2.key" "$TMP/out"
check "LUKS2 attached argon2id 4K: writes (unaligned too) decrypt with cryptsetup" \
  cmp -s "$TMP/out" "$TMP/expect2"

# --- the nbd plugin: qemu-nbd serves the ciphertext --------------------------
# qemu_nbd IMAGE SOCKET: a qemu-nbd for the test's lifetime.
qemu_nbd () {
  qemu-nbd -f raw -t -e 16 -k "$2" "$1" > /dev/null 2>&1 &
  cleanup_hooks="$cleanup_hooks kill $! 2>/dev/null; wait $! 2>/dev/null;"
  for _ in $(seq 100); do [ -S "$2" ] && return 0; sleep 0.1; done
  return 1
}
qemu_nbd "$TMP/v2.img" "$TMP/q2.sock"
luksnbd nbd socket="$TMP/q2.sock" passphrase=+"$TMP/v2.key" \
  --run 'nbdcopy "$uri" '"$TMP/out"' && nbdcopy '"$TMP/new1"' "$uri"'
check "nbd plugin: an attached header is read through the plugin" \
  cmp -s "$TMP/out" "$TMP/expect2"
cs_decrypt_attached "$TMP/v2.img" "$TMP/v2.key" "$TMP/out"
check "nbd plugin: writes decrypt with cryptsetup" \
  cmp -s -n 8388608 "$TMP/out" "$TMP/new1"

# LUKS1, detached header, over qemu-nbd.
printf 'luks1 detached' > "$TMP/v4.key"
truncate -s 4M "$TMP/v4.payload"
truncate -s 2M "$TMP/v4.hdr"
cryptsetup luksFormat --batch-mode --type luks1 --header "$TMP/v4.hdr" \
  --pbkdf-force-iterations 1000 --key-file "$TMP/v4.key" "$TMP/v4.payload" >/dev/null 2>&1
qemu_nbd "$TMP/v4.payload" "$TMP/q4.sock"
make_plaintext "$TMP/new4" 4M
luksnbd nbd socket="$TMP/q4.sock" header="$TMP/v4.hdr" passphrase=+"$TMP/v4.key" \
  --run 'nbdcopy '"$TMP/new4"' "$uri" && nbdcopy "$uri" '"$TMP/back4"
check "LUKS1 detached (nbd plugin): reads back what it wrote" cmp -s "$TMP/back4" "$TMP/new4"
cs_decrypt "$TMP/v4.hdr" "$TMP/v4.payload" "$TMP/v4.key" "$TMP/out"
check "LUKS1 detached (nbd plugin): writes decrypt with cryptsetup" cmp -s "$TMP/out" "$TMP/new4"
qemu_nbd "$TMP/v4.hdr" "$TMP/q4h.sock"
luksnbd nbd socket="$TMP/q4.sock" header="nbd+unix:///?socket=$TMP/q4h.sock" \
  passphrase=+"$TMP/v4.key" --run 'nbdcopy "$uri" '"$TMP/out"
check "header= an NBD URI (qemu-nbd serving the detached header)" cmp -s "$TMP/out" "$TMP/new4"

# --- the memory plugin: a detached header over a sparse RAM disk ----------
make_plaintext "$TMP/m.data" 1M
luksnbd memory size=8M header="$TMP/v1.hdr" passphrase=+"$TMP/v1.key" \
  --run 'nbdcopy '"$TMP/m.data"' "$uri" && nbdsh -u "$uri" -c "import sys; sys.stdout.buffer.write(h.pread(1048576, 0))" > '"$TMP/m.back"' && nbdinfo --map "$uri"' > "$TMP/map.m"
check "memory plugin: reads back what it wrote" cmp -s "$TMP/m.back" "$TMP/m.data"
check "memory plugin: the written MiB is data" grep -qE '^\s*0\s+1048576\s+0\s+data$' "$TMP/map.m"
check "memory plugin: the unwritten rest is a hole" \
  grep -qE '^\s*1048576\s+7340032\s+1\s+hole$' "$TMP/map.m"
check "memory plugin: nothing reads as zero" not grep -q zero "$TMP/map.m"

# --- LUKS1 attached: nbdkit's own luks filter and ours, both ways ----------
printf 'luks1 pass' > "$TMP/v3.key"
truncate -s 8M "$TMP/v3.img"
cryptsetup luksFormat --batch-mode --type luks1 --pbkdf-force-iterations 1000 \
  --key-file "$TMP/v3.key" "$TMP/v3.img" >/dev/null 2>&1
size3=$(($(stat -c %s "$TMP/v3.img") - $(data_offset "$TMP/v3.img")))
make_plaintext "$TMP/new3" "$size3"
luksnbd file "$TMP/v3.img" passphrase=+"$TMP/v3.key" --run 'nbdcopy '"$TMP/new3"' "$uri"'
timeout 300 nbdkit -U - --filter=luks file "$TMP/v3.img" passphrase=+"$TMP/v3.key" \
  --run 'nbdcopy "$uri" '"$TMP/out"
check "LUKS1 attached: nbdkit's luks filter reads what ours wrote" cmp -s "$TMP/out" "$TMP/new3"
make_plaintext "$TMP/other3" "$size3"
timeout 300 nbdkit -U - --filter=luks file "$TMP/v3.img" passphrase=+"$TMP/v3.key" \
  --run 'nbdcopy '"$TMP/other3"' "$uri"'
luksnbd file "$TMP/v3.img" passphrase=+"$TMP/v3.key" --run 'nbdcopy "$uri" '"$TMP/out"
check "LUKS1 attached: ours reads what nbdkit's luks filter wrote" cmp -s "$TMP/out" "$TMP/other3"
cs_decrypt_attached "$TMP/v3.img" "$TMP/v3.key" "$TMP/out"
check "LUKS1 attached: cryptsetup decrypts the same" cmp -s "$TMP/out" "$TMP/other3"
# qemu-img's LUKS1 (the volume bench/run serves to both filters).
printf 'qemu secret' > "$TMP/q.key"
make_plaintext "$TMP/q.plain" 2M
qemu_luks "$TMP/q.plain" "$TMP/q.luks" "$TMP/q.key" "cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,hash-alg=sha256"
luksnbd file "$TMP/q.luks" passphrase=+"$TMP/q.key" --run 'nbdcopy "$uri" '"$TMP/out"
check "qemu-img's LUKS1 volume reads as its plaintext" cmp -s "$TMP/out" "$TMP/q.plain"

# --- refusals, at load ------------------------------------------------------
printf 'not it' > "$TMP/wrong.key"
check_fails_with "a wrong passphrase fails at load (foreground), naming the header" \
  "no key slot in $TMP/v1.hdr accepts this passphrase" \
  timeout 120 nbdkit -f -U "$TMP/w.sock" --filter="$FILTER" file "$TMP/v1.payload" \
  header="$TMP/v1.hdr" passphrase=+"$TMP/wrong.key"
check "nothing is served after a wrong passphrase" \
  not nbdinfo --size "nbd+unix:///?socket=$TMP/w.sock"
# nbdkit forks (into the background, or for --run) before the filter's
# .after_fork: a header file is unlocked before that, so a wrong
# passphrase is nbdkit's own exit status in every mode.
check_fails_with "a wrong passphrase fails at load in the background (header file)" \
  "no key slot in $TMP/v1.hdr accepts this passphrase" \
  timeout 120 nbdkit -U "$TMP/bg.sock" -P "$TMP/bg.pid" --filter="$FILTER" \
  file "$TMP/v1.payload" header="$TMP/v1.hdr" passphrase=+"$TMP/wrong.key"
check "nothing is served in the background after a wrong passphrase" \
  not nbdinfo --size "nbd+unix:///?socket=$TMP/bg.sock"
rc=0
timeout 30 nbdkit -U - --filter="$FILTER" file "$TMP/v1.payload" \
  header="$TMP/v1.hdr" passphrase=+"$TMP/wrong.key" \
  --run 'nbdinfo --size "$uri"' > /dev/null 2> "$TMP/run.err" || rc=$?
check "a wrong passphrase with --run fails at once, not at the 30 s timeout (exit $rc)" \
  test "$rc" -ne 0 -a "$rc" -ne 124
check "... with the reason on stderr" \
  grep -qF "no key slot in $TMP/v1.hdr accepts this passphrase" "$TMP/run.err"
# The right passphrase in the background: it serves, the key unlocked
# before the fork is the one served (no second KDF), and the serving
# process has the secure memory locked again (mlock is not inherited).
nbdkit -v -U "$TMP/bg2.sock" -P "$TMP/bg2.pid" --filter="$FILTER" \
  file "$TMP/v1.payload" header="$TMP/v1.hdr" passphrase=+"$TMP/v1.key" \
  2> "$TMP/bg.log"
rc=$?
cleanup_hooks="$cleanup_hooks [ -s $TMP/bg2.pid ] && kill \$(cat $TMP/bg2.pid) 2>/dev/null;"
check "the right passphrase in the background: nbdkit starts (exit $rc)" test "$rc" -eq 0
for _ in $(seq 100); do [ -S "$TMP/bg2.sock" ] && [ -s "$TMP/bg2.pid" ] && break; sleep 0.1; done
check "... and serves the volume (8 MiB)" \
  test "$(nbdinfo --size "nbd+unix:///?socket=$TMP/bg2.sock")" = 8388608
check "... with the key unlocked before the fork (one KDF run)" \
  grep -q "unlocked luks(the plugin): .* (key unlocked before fork)" "$TMP/bg.log"
locked=$(sed -nE 's/^VmLck:\s+([0-9]+) kB$/\1/p' "/proc/$(cat "$TMP/bg2.pid")/status")
# libgcrypt's 1 MiB pool is locked when RLIMIT_MEMLOCK allows (root may
# always); else it is not, in nbdkit's process or in the daemon.
if [ "$(id -u)" = 0 ] || [ "$(ulimit -l)" = unlimited ] || [ "$(ulimit -l)" -ge 2048 ]; then
  check "... and its secure memory locked in the serving process (VmLck ${locked:-?} kB >= 1024)" \
    test "${locked:-0}" -ge 1024
else
  check "... and (RLIMIT_MEMLOCK $(ulimit -l) KiB) serving without locked memory" \
    test "${locked:-0}" -eq 0
fi
kill "$(cat "$TMP/bg2.pid")"
check_fails_with "a wrong passphrase fails at load (attached header, read through the plugin)" \
  "no key slot in the plugin accepts this passphrase" \
  timeout 120 nbdkit -f -U "$TMP/w3.sock" --filter="$FILTER" file "$TMP/v3.img" \
  passphrase=+"$TMP/wrong.key"
check_fails_with "a passphrase on the command line is refused" \
  "a passphrase on the command line is visible" \
  luksnbd file "$TMP/v3.img" passphrase=secret --run true
# A LUKS2 reencryption in progress: the daemon's refusal, word for word.
head -c 4M /dev/zero > "$TMP/r.payload"
cryptsetup reencrypt --encrypt --init-only --type luks2 --header "$TMP/r.hdr" \
  --key-file "$TMP/v1.key" --batch-mode --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 "$TMP/r.payload" >/dev/null 2>&1
luks_nbd --socket "$TMP/d.sock" \
  --export "name=r,payload=$TMP/r.payload,header=$TMP/r.hdr,key-file=$TMP/v1.key" \
  --run true > /dev/null 2> "$TMP/daemon.err" || true
refusal=$(grep -oE "$TMP/r.hdr: LUKS2 requirement [^;]*; finish it with cryptsetup first" "$TMP/daemon.err")
check "the daemon refuses a reencrypting volume" test -n "$refusal"
check_fails_with "the filter refuses it with the daemon's message" "${refusal:-none}" \
  timeout 120 nbdkit -f -U "$TMP/r.sock" --filter="$FILTER" file "$TMP/r.payload" \
  header="$TMP/r.hdr" key-file="$TMP/v1.key"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves that a refused request is logged with the rule it broke (as
# nbdkit and QEMU say it), its command, range, flags and error, for every
# rule of the request checkpoint; and that a client refused without end
# cannot flood the log: with -v a connection's first 16 refusals are
# logged, then one line says the rest go to -vv, where all are logged.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup python3

make_luks2_volume v 8M
flood=1000
# serve LEVEL: runs the client against a daemon logging at -v or -vv.
serve () {
  luks_nbd "$1" --socket "$TMP/sock" --export "$(spec_as rw v)" \
    --export "$(spec_as ro v readonly=on,locking=off)" \
    --run "python3 $top_srcdir/tests/lib/request_refusals.py $TMP/sock $flood" \
    > "$TMP/client$1.out" 2> "$TMP/daemon$1.log"
}
serve -v
check "the daemon ran the client and exited 0 (-v)" test $? -eq 0
tap_report "$TMP/client-v.out" 14 "the client (-v)"

logged () { grep -qF -- "$1" "$TMP/daemon-v.log" || { echo "# not logged: $1"; return 1; }; }
check "past the end: logged with the rule" \
  logged "read of 512 bytes at 8388608 (flags 0x0) refused with EINVAL: past the end of the export"
check "an unknown command: logged by its number" \
  logged "command 42 of 512 bytes at 0 (flags 0x0) refused with EINVAL: unknown command"
check "an unknown flag: logged with the flags" \
  logged "read of 512 bytes at 0 (flags 0x8000) refused with EINVAL: a flag this command does not take"
check "a trim without discard=on" \
  logged "trim of 4096 bytes at 0 (flags 0x0) refused with EINVAL: trim is not offered (discard=off)"
check "block status without a context" \
  logged "block status of 4096 bytes at 0 (flags 0x0) refused with EINVAL: no metadata context was selected"
check "length 0" logged "read of 0 bytes at 0 (flags 0x0) refused with EINVAL: length 0"
check "over the maximum" \
  logged "read of 67108864 bytes at 0 (flags 0x0) refused with EOVERFLOW: longer than the 32 MiB maximum"
check "a wrapping range" \
  logged "read of 1024 bytes at 18446744073709551104 (flags 0x0) refused with EINVAL: offset + length wraps past 2^64"
check "a write past the end: ENOSPC" \
  logged "write of 1024 bytes at 8388096 (flags 0x0) refused with ENOSPC: past the end of the export"
check "a write to a read-only export" \
  logged "write of 4096 bytes at 0 (flags 0x0) refused with EPERM: the export is read-only"
unnamed () { grep -F 'refused with' "$TMP/daemon-v.log" | grep -vE '^luks-nbd: connection [0-9]+: '; }
check "every refusal names its connection" not unnamed

flooded () { grep -cF "at 1099511627776 (flags 0x0) refused" "$TMP/daemon$1.log"; }
check "-v: the flood logged only its first 16 refusals ($(flooded -v) of $flood)" \
  test "$(flooded -v)" -eq 16
check "-v: and one line saying the rest go to -vv" \
  test "$(grep -c 'more than 16 options or requests refused: the rest are logged with -vv only' "$TMP/daemon-v.log")" -eq 1

serve -vv
check "the daemon ran the client and exited 0 (-vv)" test $? -eq 0
tap_report "$TMP/client-vv.out" 14 "the client (-vv)"
check "-vv: every refusal of the flood is logged ($(flooded -vv) of $flood)" \
  test "$(flooded -vv)" -eq "$flood"
done_testing

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Proves the command-line contract: bad input gets a clear error naming
# the export and key, exit status 1, and no socket; ',,' escapes a comma;
# a stale socket file is replaced and a live one refused; --help works.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdinfo

make_luks2_volume v 1M
s=$TMP/sock
fails () {   # fails DESCRIPTION PATTERN ARGS...
  local d=$1 pat=$2; shift 2
  check_fails_with "$d" "$pat" luks_nbd --socket "$s" "$@" --run true
  check "$d: no socket left behind" test ! -e "$s"
}
fails "unknown key" "export 'v': unknown key 'colour'" --export "$(spec v colour=red)"
fails "passphrase= on the command line is refused" "passphrase= is refused: every user can read a command line" \
  --export "$(spec v passphrase=hunter2-in-argv)"
luks_nbd --socket "$s" --export "$(spec v passphrase=hunter2-in-argv)" > "$TMP/refused.log" 2>&1
check "the refused passphrase is not echoed" not grep -q hunter2-in-argv "$TMP/refused.log"
fails "missing payload file" "export 'v': payload=$TMP/nope: No such file or directory" \
  --export "name=v,payload=$TMP/nope,header=$TMP/v.hdr,key-file=$TMP/v.key"
fails "missing header file" "export 'v': header=$TMP/nope.hdr: No such file or directory" \
  --export "name=v,payload=$TMP/v.payload,header=$TMP/nope.hdr,key-file=$TMP/v.key"
fails "duplicate export names" "export 'v' is given twice" --export "$(spec v)" --export "$(spec v)"
fails "no passphrase source" "key-file= or passphrase-file= is required" \
  --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr"
fails "bad key-slot" "key-slot=99: expected 0..31" --export "$(spec v key-slot=99)"
fails "bad readonly" "readonly=maybe: expected on or off" --export "$(spec v readonly=maybe)"
printf 'not the passphrase' > "$TMP/wrong"
fails "wrong passphrase" "no key slot in $TMP/v.hdr accepts this passphrase" \
  --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,key-file=$TMP/wrong"
fails "payload-format=qcow2 on a raw file" "v.payload: not a qcow2 image (bad magic)" --export "$(spec v payload-format=qcow2)"
fails "qcow2-cache-size out of range" "qcow2-cache-size=1K: expected 64K..1G" --export "$(spec v qcow2-cache-size=1K)"
fails "payload is not a LUKS header when attached" "not a LUKS header (bad magic)" \
  --export "name=v,payload=$TMP/v.payload,key-file=$TMP/v.key"

# passphrase-file= strips one trailing newline; key-file= does not.
{ cat "$TMP/v.key"; echo; } > "$TMP/v.passfile"
luks_nbd --socket "$s" --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,passphrase-file=$TMP/v.passfile" --run true
check "passphrase-file= strips the trailing newline" test $? -eq 0
check_fails_with "key-file= keeps every byte (newline included)" "accepts this passphrase" \
  luks_nbd --socket "$s" --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,key-file=$TMP/v.passfile" --run true

# ',,' is a literal comma in a value.
mkdir -p "$TMP/a,b"
cp "$TMP/v.payload" "$TMP/a,b/pay"
luks_nbd --socket "$s" --export "name=v,payload=$TMP/a,,b/pay,header=$TMP/v.hdr,key-file=$TMP/v.key,description=one,, two" \
  --run "nbdinfo --list --json \"\$uri\" > $TMP/list.json"
check "',,' gives a literal comma (path and description)" grep -q '"one, two"' "$TMP/list.json"

# Stale socket replaced; live socket refused.
python3 -c "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])" "$s"
check "a stale socket file exists" test -S "$s"
luks_nbd --socket "$s" --export "$(spec v)" --run "nbdinfo --size \"\$uri\" > $TMP/size"
check "a stale socket file is replaced" test "$(cat "$TMP/size")" = 1048576
luks_nbd --socket "$s" --export "$(spec v)" \
  --run "$top_builddir/server/luks-nbd --socket $s --export '$(spec v locking=off)' --run true 2> $TMP/second.err; echo \$? > $TMP/second.rc"
check "a second daemon on a live socket exits 1" test "$(cat "$TMP/second.rc")" = 1
check "and says another server is listening" grep -q "another server is listening on it" "$TMP/second.err"
# --user/--group: root is dropped once everything is open.
if [ "$(id -u)" = 0 ]; then
  luks_nbd --socket "$s" --user nobody --group nogroup --export "$(spec v)" \
    --run 'grep -E "^(Uid|Gid):" /proc/$PPID/status; echo "environ-owner: $(stat -c %U /proc/$PPID/environ)"' > "$TMP/ids"
  check "--user nobody --group nogroup: the daemon runs as nobody" \
    grep -qE "^Uid:[[:space:]]+$(id -u nobody)[[:space:]]" "$TMP/ids"
  check "--group nogroup: and as nogroup" \
    grep -qE "^Gid:[[:space:]]+$(getent group nogroup | cut -d: -f3)[[:space:]]" "$TMP/ids"
  # The kernel gives a non-dumpable process's /proc files to root: no core
  # dump, no ptrace or /proc/PID/mem for the user it runs as.
  check "--user nobody: the daemon stays non-dumpable (its /proc files are root's)" \
    grep -qx "environ-owner: root" "$TMP/ids"
  # nobody cannot unlink a socket in root's directory; the next start
  # replaces such a stale file, as tested above.
  rm -f "$s"
fi
fails "an unknown --user" "--user nosuchuser: no such user" --user nosuchuser --export "$(spec v)"

luks_nbd --help > "$TMP/help"
check "--help documents --export keys" grep -q "payload-format=auto|raw|qcow2" "$TMP/help"
# Every key the parser knows (its unknown-key message lists them) is in --help.
keys=$(luks_nbd --socket "$s" --export "name=v,payload=x,no-such-key=1" 2>&1 |
  sed -n 's/.*(expected \(.*\))$/\1/p' | tr -d ',')
missing=""
for k in $keys; do grep -qE -- "^ +$k=" "$TMP/help" || missing="$missing $k"; done
check "--help names all $(echo $keys | wc -w) export keys (missing:${missing:- none})" \
  test -n "$keys" -a -z "$missing"
check_fails_with "no --export is an error" "no --export given" luks_nbd --socket "$s"
# Secrets never reach the logs, at any verbosity: the passphrase, and the
# volume key (as cryptsetup prints it, in hex) are absent from -vv output.
cryptsetup luksDump --dump-volume-key --batch-mode --header "$TMP/v.hdr" \
  --key-file "$TMP/v.key" "$TMP/v.payload" 2>/dev/null |
  sed -n '/MK dump:/,$p' | sed 's/MK dump://' | tr -d ' \t\n' > "$TMP/vk.hex"
vk=$(cat "$TMP/vk.hex")
check "cryptsetup dumped the volume key (256 bits)" test "${#vk}" -eq 64
luks_nbd --socket "$s" -v -v --export "$(spec v)" \
  --run "nbdcopy \"\$uri\" $TMP/out.raw && nbdcopy $TMP/out.raw \"\$uri\"" > "$TMP/log" 2>&1
check "-vv run served requests (its log has request lines)" test "$(wc -l < "$TMP/log")" -gt 10
check "-vv log holds no passphrase" not grep -qF "$(cat "$TMP/v.key")" "$TMP/log"
check "-vv log holds no volume key (hex, either half)" not grep -qiE "${vk:0:32}|${vk:32:32}" "$TMP/log"
done_testing

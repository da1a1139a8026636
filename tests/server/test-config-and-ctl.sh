#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# --config files and `luks-nbd ctl` as a new user writes them (issue 20):
# - errors name the config file and line, also once name= is known and
#   when the unlock fails;
# - relative paths resolve against the config file's directory (the
#   daemon runs from /);
# - a "# comment" after a spec is a comment, a # inside a value is kept;
# - a file of only comments says so (not the whole --help);
# - ctl export-add resolves relative paths in the caller's directory;
#   forgetting --passphrase-stdin, passphrase= in a spec and a refused
#   export-remove give hints that name ctl's flags; --control=PATH and
#   options after the command work; replies print paths unescaped;
# - ctl's own refusals (no daemon needed) come from the command table:
#   an unknown command lists the commands, a missing or inapplicable
#   argument names it and prints that command's synopsis, --help prints
#   every command to stdout with exit status 0.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy python3
python3 -c 'import nbd' 2>/dev/null || { echo "1..0 # SKIP python3-libnbd is not installed"; exit 0; }

LN=$top_builddir/server/luks-nbd
make_luks2_volume a 2M --sector-size 4096
make_luks2_volume b 2M --sector-size 512
mkdir -p "$TMP/conf" "$TMP/vols/sub"
mv "$TMP/a.payload" "$TMP/vols/disk#1.payload"
cp "$TMP/a.hdr" "$TMP/a.key" "$TMP/vols/"
cp "$TMP/b.payload" "$TMP/b.hdr" "$TMP/b.key" "$TMP/vols/sub/"

# --- --config
cat > "$TMP/conf/ok.conf" <<'EOC'
# two volumes, paths relative to this file
name=a,payload=../vols/disk#1.payload,header=../vols/a.hdr,key-file=../vols/a.key   # the first disk
	name=b,payload=../vols/sub/b.payload,header=../vols/sub/b.hdr,key-file=../vols/sub/b.key	# tab, then a comment
EOC
(cd / && luks_nbd --socket "$TMP/sock" --config "$TMP/conf/ok.conf" \
   --run "nbdcopy nbd+unix:///a?socket=$TMP/sock $TMP/a.out && nbdcopy nbd+unix:///b?socket=$TMP/sock $TMP/b.out") \
  2> "$TMP/ok.err"
check "--config: relative paths resolve against its directory, a # after blanks is a comment, a # inside a value is kept (disk#1.payload)" \
  cmp -s "$TMP/a.out" "$TMP/a.plain"
check "... and on an indented line, a comment after a tab" cmp -s "$TMP/b.out" "$TMP/b.plain"
printf '# nothing here\n\n   # nor here\n' > "$TMP/conf/empty.conf"
check_fails_with "a config of only comments says so, naming the file" \
  "--config $TMP/conf/empty.conf holds no export spec (only blank lines and comments)" \
  "$LN" --socket "$TMP/sock" --config "$TMP/conf/empty.conf"
check "... without printing the whole help" \
  sh -c "! '$LN' --socket '$TMP/sock' --config '$TMP/conf/empty.conf' 2>&1 | grep -q Usage"
printf '# line 1\nname=a,payload=../vols/disk#1.payload,header=../vols/a.hdr,key-file=../vols/a.key\nname=c,payload=../vols/sub/b.payload,key-slot=99,key-file=../vols/sub/b.key\n' \
  > "$TMP/conf/bad.conf"
check_fails_with "a bad key after name= still names the file and line" \
  "export 'c' (--config $TMP/conf/bad.conf line 3): key-slot=99: expected 0..31" \
  "$LN" --socket "$TMP/sock" --config "$TMP/conf/bad.conf"
printf 'name=a,payload=../vols/disk#1.payload,header=../vols/a.hdr,key-file=../vols/sub/b.key\n' \
  > "$TMP/conf/wrongkey.conf"
check_fails_with "a refused passphrase names the file and line" \
  "export 'a' (--config $TMP/conf/wrongkey.conf line 1): no key slot in $TMP/conf/../vols/a.hdr accepts this passphrase" \
  "$LN" --socket "$TMP/sock" --config "$TMP/conf/wrongkey.conf" --run true

# --- luks-nbd ctl, from the caller's directory (the daemon runs from /)
cat > "$TMP/session.sh" <<EOS
cd "$TMP/vols"
"$LN" ctl export-add "name=a2,payload=disk#1.payload,header=a.hdr" --control "$TMP/ctl" --passphrase-stdin < a.key > "$TMP/add.out" 2>&1
nbdcopy "nbd+unix:///a2?socket=$TMP/sock" "$TMP/a2.out"
"$LN" ctl --control="$TMP/ctl" export-add "name=a3,payload=disk#1.payload,header=a.hdr" > "$TMP/nopass.out" 2>&1
"$LN" ctl --control="$TMP/ctl" export-add "name=a3,payload=disk#1.payload,header=a.hdr,passphrase=x" > "$TMP/inline.out" 2>&1
"$LN" ctl --control="$TMP/ctl" export-add "name=a3,payload=sub/b.payload,header=sub/b.hdr" --passphrase-stdin < a.key > "$TMP/wrong.out" 2>&1
"$LN" ctl export-list --control "$TMP/ctl" > "$TMP/list.out" 2>&1
python3 - "$TMP/sock" "$TMP/ctl" "$LN" > "$TMP/remove.out" <<'EOP'
import nbd, subprocess, sys
h = nbd.NBD()
h.set_export_name("a2")
h.connect_unix(sys.argv[1])
def ctl(*args):
    return subprocess.run([sys.argv[3], "ctl", "--control", sys.argv[2], *args],
                          capture_output=True, text=True)
r = ctl("export-remove", "a2")
print("refused", r.returncode, r.stderr.strip())
r = ctl("export-remove", "a2", "--force")
print("forced", r.returncode, r.stdout.strip())
EOP
EOS
(cd / && luks_nbd --socket "$TMP/sock" --control "$TMP/ctl" --export "$(spec b)" \
   --run "exec bash $TMP/session.sh") 2> "$TMP/ctl.err"
check "ctl export-add resolves relative paths in the caller's directory (options after the command)" \
  grep -q '"ok":true' "$TMP/add.out"
check "... and the export serves the plaintext" cmp -s "$TMP/a2.out" "$TMP/a.plain"
check "forgetting --passphrase-stdin: the hint names it (--control=PATH works)" \
  grep -qF "no passphrase: give it with luks-nbd ctl export-add SPEC --passphrase-stdin" "$TMP/nopass.out"
check "passphrase= in a spec given to ctl: the hint names --passphrase-stdin" \
  grep -qF "passphrase= is refused in a spec (it was on a command line): send the passphrase apart, with luks-nbd ctl export-add SPEC --passphrase-stdin" "$TMP/inline.out"
check "... not \"the control socket\" it already uses" not grep -qF "or the control socket" "$TMP/inline.out"
check "replies print paths as paths (no \\/ escapes)" \
  grep -qF "no key slot in $TMP/vols/sub/b.hdr accepts" "$TMP/wrong.out"
check "ctl export-list with --control after the command works" grep -q '"name":"a2"' "$TMP/list.out"
check "export-remove refused while a client is connected names ctl's --force" \
  grep -qF "refused 1 {\"ok\":false,\"error\":\"export-remove: export 'a2' has 1 connected client(s); to drain them, luks-nbd ctl export-remove --force (\\\"force\\\":true in the request)\"}" "$TMP/remove.out"
check "... and --force drains it" grep -q '^forced 0 .*"ok":true' "$TMP/remove.out"

# --- luks-nbd ctl's command line, checked before any connection
check_fails_with "an unknown ctl command lists the commands" \
  "unknown command 'export-frob' (expected export-add, export-remove, export-list, query-stats, export-resize" \
  "$LN" ctl --control "$TMP/none" export-frob
check_fails_with "keyslot-add without --passphrase-stdin says it is required, with the synopsis" \
  "keyslot-add: --passphrase-stdin is required (the new passphrase comes from stdin)
usage: luks-nbd ctl --control PATH keyslot-add NAME --passphrase-stdin [--key-slot N] [KDF]" \
  "$LN" ctl --control "$TMP/none" keyslot-add a2
check_fails_with "--force on export-activate does not apply" \
  "export-activate: --force does not apply" "$LN" ctl --control "$TMP/none" export-activate a2 --force
check_fails_with "keyslot-remove's SLOT must be a number" \
  "keyslot-remove: SLOT is a number, not 'one'" "$LN" ctl --control "$TMP/none" keyslot-remove a2 one
check_fails_with "export-list takes no NAME" \
  "export-list: unexpected argument 'a2'" "$LN" ctl --control "$TMP/none" export-list a2
check_fails_with "export-resize without SIZE names it" \
  "export-resize: SIZE is missing" "$LN" ctl --control "$TMP/none" export-resize a2
"$LN" ctl --help > "$TMP/ctl-help.out" 2> "$TMP/ctl-help.err"
check "ctl --help: exit 0, the commands on stdout" \
  sh -c "grep -qF 'keyslot-change NAME SLOT --passphrase-stdin [KDF]' '$TMP/ctl-help.out' && test ! -s '$TMP/ctl-help.err'"
done_testing

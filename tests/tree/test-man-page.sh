#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The man page as groff renders it says what --help says: every export key
# sits under --export (not at the options' level, where a stray .RE once
# put locking=, backup-header= and credential=), every option of --help is
# in the SYNOPSIS and in OPTIONS, every long option the daemon takes is in
# OPTIONS, nothing but options sits at the options' level, the page renders
# without a groff warning, and the README names every export key.  The
# export keys --help lists (export_spec.c's table) are exactly the keys
# under --export, in the same order; the control commands luks-nbd ctl --help lists
# (control_commands.c's table) are exactly those of the SYNOPSIS, each
# with its arguments, and of the control protocol under --control.
. "$(dirname "$0")/../lib/lib.sh"
need groff python3

page=$top_srcdir/docs/luks-nbd.8
check "groff -ww renders the man page without a warning" \
  test -z "$(groff -man -Tascii -ww -z "$page" 2>&1)"
# ASCII, no overstriking, lines long enough that no option is wrapped.
groff -man -Tascii -P-cbou -rLL=250n "$page" > "$TMP/page.txt" 2> /dev/null
"$top_builddir/server/luks-nbd" --help > "$TMP/help.txt"
"$top_builddir/server/luks-nbd" ctl --help > "$TMP/ctl-help.txt"
check "the man page, --help and ctl --help were produced" \
  test -s "$TMP/page.txt" -a -s "$TMP/help.txt" -a -s "$TMP/ctl-help.txt"

python3 - "$TMP/page.txt" "$TMP/help.txt" "$top_srcdir/server/options.c" \
  "$top_srcdir/README.md" "$TMP/ctl-help.txt" > "$TMP/checks.out" 2>&1 <<'EOF'
import re, sys

page = open(sys.argv[1]).read().splitlines()
help_text = open(sys.argv[2]).read().splitlines()
options_c = open(sys.argv[3]).read()
readme = open(sys.argv[4]).read()
ctl_help = open(sys.argv[5]).read().splitlines()

def report(ok, what):
    print(("PASS " if ok else "FAIL ") + what)

def section(name):
    start = page.index(name)
    end = next(i for i in range(start + 1, len(page))
               if page[i] and not page[i][0].isspace())
    return page[start + 1:end]

def indent(line):
    return len(line) - len(line.lstrip())

# --help: the option column (lines starting "  -") and the --export block.
help_options, export_keys, in_export = [], [], False
for line in help_text:
    if re.match(r"  -", line):
        in_export = line.startswith("  --export")
        # the option column ends at the first run of two spaces
        column = line.strip().split("  ")[0]
        for opt in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", column):
            help_options.append(opt)
    elif not line.strip():
        in_export = False
    if line.startswith("  --export"):
        # the option's help column; keys are items left of it, one a line
        # (export_spec.c's table makes them)
        help_column = re.match(r"  --export SPEC +", line).end()
    elif in_export:
        m = re.match(r"( +)([a-z][a-z0-9-]*)=", line)
        if m and len(m.group(1)) < help_column:
            export_keys.append(m.group(2))
export_keys = list(dict.fromkeys(export_keys))
help_options = list(dict.fromkeys(help_options))
report(len(export_keys) >= 16, "--help lists the export keys (%d)" % len(export_keys))
report(len(help_options) >= 20, "--help lists the options (%d)" % len(help_options))

synopsis = " ".join(section("SYNOPSIS"))
options = section("OPTIONS")
opt_level = indent(next(l for l in options if l.strip().startswith("--export")))

def has_token(text, opt):
    return re.search(r"(?<![\w-])" + re.escape(opt) + r"(?![\w-])", text) is not None

for opt in help_options:
    report(has_token(synopsis, opt), "SYNOPSIS lists %s" % opt)
    report(any(indent(l) == opt_level and has_token(l, opt) for l in options),
           "OPTIONS has an item for %s" % opt)

# Every long option the daemon parses (aliases too) is documented.
for opt in re.findall(r'\{ "([a-z][a-z-]*)", (?:required|no)_argument', options_c):
    report(any(indent(l) == opt_level and has_token(l, "--" + opt) for l in options),
           "OPTIONS documents --%s (options.c's long_options)" % opt)

# Export keys: an item indented under --export, before the next option.
export_at = next(i for i, l in enumerate(options)
                 if indent(l) == opt_level and l.strip().startswith("--export"))
export_end = next(i for i in range(export_at + 1, len(options))
                  if options[i].strip() and indent(options[i]) <= opt_level)
# An item's tag sits at the least indentation of the key lines; a body line
# that merely starts with "key=" (wrapped text) is deeper.
key_lines = [l for l in options[export_at + 1:export_end]
             if any(l.strip().startswith(k + "=") for k in export_keys)]
key_level = min((indent(l) for l in key_lines), default=-1)
for key in export_keys:
    items = [i for i, l in enumerate(options)
             if l.strip().startswith(key + "=") and indent(l) <= key_level]
    report(len(items) == 1 and export_at < items[0] < export_end
           and indent(options[items[0]]) > opt_level,
           "%s= is an item under --export" % key)
    report("`%s" % key in readme, "README names the export key %s" % key)

# ... and nothing else is an item there: the man page lists no key the
# parser does not know.
man_keys = [l.strip().split("=")[0] for l in options[export_at + 1:export_end]
            if indent(l) == key_level and re.match(r"[a-z][a-z0-9-]*=", l.strip())]
report(man_keys == export_keys,
       "the keys under --export are --help's, in its order (only in the man page: %s; only in --help: %s)"
       % (sorted(set(man_keys) - set(export_keys)), sorted(set(export_keys) - set(man_keys))))

# Control commands: luks-nbd ctl --help lists each as "  SYNOPSIS" after
# "Commands:", its help indented deeper.
start = next(i for i, l in enumerate(ctl_help) if l.endswith("Commands:"))
synopses = []
for line in ctl_help[start + 1:]:
    if not line.startswith(" "):
        break
    if indent(line) == 2:
        synopses.append(line.strip())
commands = [s.split()[0] for s in synopses]
report(len(commands) >= 11, "ctl --help lists the commands (%d)" % len(commands))
ctl_synopsis = re.sub(r"\s+", " ", " ".join(section("SYNOPSIS")))
for synopsis in synopses:
    report(synopsis in ctl_synopsis, "SYNOPSIS has ctl %s" % synopsis)
requests = re.findall(r'\{"cmd":"([a-z-]+)"', " ".join(options))
for command in commands:
    report(command in requests, 'OPTIONS shows the request {"cmd":"%s"' % command)
report(set(requests) <= set(commands),
       "OPTIONS shows no request ctl does not know (%s)" % sorted(set(requests) - set(commands)))
man_commands = re.findall(r"(?:PATH|\|) ([a-z]+-[a-z-]+)", ctl_synopsis)
report(sorted(man_commands) == sorted(commands),
       "the SYNOPSIS's ctl commands are ctl --help's (%s)" % sorted(set(man_commands) ^ set(commands)))

# Nothing but options at the options' level (no "Shared headers",
# "In-flight limits" or export key there).
strays = [l.strip() for l in options
          if l.strip() and indent(l) == opt_level and not l.strip().startswith("-")]
report(not strays, "only options at the options' level of OPTIONS (strays: %s)" % strays)
print("END")
EOF
while read -r verdict desc; do
  case $verdict in
    PASS) ok "$desc" ;;
    FAIL) not_ok "$desc" ;;
    END) ;;
    *) not_ok "the checker said: $verdict $desc" ;;
  esac
done < "$TMP/checks.out"
check "the man page checker ran to the end" test "$(tail -n 1 "$TMP/checks.out")" = END
done_testing

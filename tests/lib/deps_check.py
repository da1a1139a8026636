#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks that every program and Python module the tests use comes from a
Debian package that scripts/install-deps.sh installs.

Usage: deps_check.py INSTALL_DEPS_SH TEST_FILE...

Finds what the tests use by reading them: the tools named by `need`, the
command words of the shell tests (also inside $(...), `--run '...'`,
`sh -c '...'` and here-documents that are shell or Python), the programs
the Python clients start with subprocess/os.exec*, the modules they
import, and the programs those tools run in turn (RUN_BY).  Each is mapped to the package owning it (`dpkg -S`).  A package
counts as installed by install-deps when it is in its PKGS list, pulled in
by one of those through Depends/Pre-Depends (first alternative), or has
Priority: required / Essential: yes (every Debian system has those).

Prints one line per checked item, "PASS what" or "FAIL what: why", for
tap_report-style TAP conversion.
"""

import ast
import os
import re
import shutil
import subprocess
import sys
import importlib.util

# Words that start a command but run the next word (after their options).
WRAPPERS = {"!", "if", "then", "elif", "else", "do", "while", "until",
            "time", "exec", "nohup", "command", "not", "env", "timeout",
            "xargs", "setsid", "stdbuf", "nice", "{", "}"}
# Options of wrappers that take a separate argument.
WRAPPER_ARG_OPTS = {"-s", "-k", "-u", "--signal", "--kill-after", "-n", "-I",
                    "-o", "-e", "-i"}
# Commands whose first word(s) are not commands (test helper functions).
SKIP_ARGS = {"check": 1, "check_fails_with": 2}
# Commands after which nothing on the line is a command word.
NOT_COMMANDS = {"for", "case", "esac", "[[", "((", "select", "function",
                "local", "export", "declare", "readonly", "unset", "trap"}
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.+-]*")
# Programs that tools the tests use run in turn, which reading the tests
# cannot see (the fresh-machine check found these; docs/fresh-machine-check.md).
RUN_BY = {
    # nbdinfo runs `file -b` on the first sectors for its "content" field;
    # without file(1), bookworm's nbdinfo --json writes invalid UTF-8.
    "nbdinfo": ["file"],
}


def matching(s, i, open_, close):
    """Index of the bracket closing the one before s[i] (quotes respected)."""
    depth = 1
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            i = s.find("'", i + 1) + 1 or len(s)
            continue
        if s.startswith(open_, i):
            depth += 1
        elif s.startswith(close, i):
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(s)


def lex(s, commands):
    """Splits shell text into simple commands (lists of words) appended to
    commands; nested $(...) and `...` become commands of their own.  Words
    of arithmetic ((...)) and case patterns (up to an unopened ")") are
    not commands."""
    cur, word, drop_next = [], None, False
    pipe = []       # commands of a pipeline (or case pattern) so far
    depth = 0       # open ( subshells
    i = 0

    def end_word():
        nonlocal word, drop_next
        if word is not None:
            if drop_next:
                drop_next = False
            else:
                cur.append(word)
        word = None

    def end_command(op):
        nonlocal cur, pipe, depth
        end_word()
        if cur:
            pipe.append(cur)
        cur = []
        if op == "(":
            depth += 1
        if op == ")" and depth == 0:
            pipe = []           # "a | b)": a case pattern
            return
        if op == ")":
            depth -= 1
        if op != "|":
            commands.extend(pipe)
            pipe = []

    while i < len(s):
        c = s[i]
        if c in " \t":
            end_word()
            i += 1
        elif c == "#" and word is None:
            i = s.find("\n", i) if "\n" in s[i:] else len(s)
        elif c == "\\":
            word = (word or "") + s[i + 1:i + 2]
            i += 2
        elif c == "'":
            j = s.find("'", i + 1)
            j = len(s) if j < 0 else j
            word = (word or "") + s[i + 1:j]
            i = j + 1
        elif c == '"':
            j, text = i + 1, ""
            while j < len(s) and s[j] != '"':
                if s[j] == "\\":
                    text += s[j + 1:j + 2]
                    j += 2
                elif s.startswith("$((", j):
                    k = matching(s, j + 3, "((", "))")
                    text += "$(())"
                    j = k + 2
                elif s.startswith("$(", j):
                    k = matching(s, j + 2, "(", ")")
                    lex(s[j + 2:k], commands)
                    text += "$()"
                    j = k + 1
                else:
                    text += s[j]
                    j += 1
            word = (word or "") + text
            i = j + 1
        elif s.startswith("$((", i) or (word is None and s.startswith("((", i)):
            start = i + 3 if s[i] == "$" else i + 2
            k = matching(s, start, "((", "))")
            word = (word or "") + "$(())"
            i = k + 2
        elif s.startswith("$(", i) or s.startswith("<(", i) or s.startswith(">(", i):
            k = matching(s, i + 2, "(", ")")
            lex(s[i + 2:k], commands)
            word = (word or "") + "$()"
            i = k + 1
        elif c == "`":
            j = s.find("`", i + 1)
            j = len(s) if j < 0 else j
            lex(s[i + 1:j], commands)
            word = (word or "") + "$()"
            i = j + 1
        elif c in "<>":
            # A redirection: its target is not a command word.  A bare
            # number before it (2>) is its fd.
            if word is not None and word.isdigit():
                word = None
            end_word()
            m = re.match(r"[<>]+&?-?", s[i:])
            i += len(m.group(0))
            if re.match(r"[0-9]", s[i:i + 1]) and s[i - 1] == "&":
                i += 1
            else:
                drop_next = True
        elif s.startswith("||", i) or s.startswith("&&", i) or s.startswith(";;", i):
            end_command(s[i:i + 2])
            i += 2
        elif c in "|&;()\n":
            end_command(c)
            i += 1
        else:
            word = (word or "") + c
            i += 1
    end_command("\n")


def heredocs(text):
    """Splits here-documents out of shell text: returns the text without
    their bodies and a list of (kind, body), kind "python", "shell" or
    "data" from the command that reads or writes the document."""
    out, docs = [], []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        m = re.search(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1", line)
        if not m or "<<<" in line:
            continue
        delim, body = m.group(2), []
        while i < len(lines) and lines[i].strip() != delim:
            body.append(lines[i])
            i += 1
        i += 1
        if re.search(r"\bpython3?\b|>\s*\S+\.py\b", line):
            kind = "python"
        elif re.search(r">\s*\S+\.sh\b|\b(ba)?sh\b", line):
            kind = "shell"
        else:
            kind = "data"
        body = "\n".join(body)
        if not m.group(1):
            # Unquoted: the shell expands the body, so \$ \` \\ are
            # the literal characters the written script holds.
            body = re.sub(r"\\([$`\\])", r"\1", body)
        docs.append((kind, body))
    return "\n".join(out), docs


def command_words(words):
    """The programs a simple command runs: its command word (past
    assignments and wrappers), every tool of `need`, and the commands in
    --run and sh -c arguments."""
    found, nested, py = [], [], []
    skip, i = 0, 0
    while i < len(words):
        w = words[i]
        i += 1
        if skip:
            skip -= 1
            continue
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", w):
            continue
        if w in WRAPPERS:
            while i < len(words) and (words[i].startswith("-")
                                      or re.fullmatch(r"[0-9.]+[smhd]?", words[i])
                                      or re.fullmatch(r"[A-Za-z_]+=.*", words[i])):
                i += 2 if words[i] in WRAPPER_ARG_OPTS else 1
            continue
        if w in SKIP_ARGS:
            skip = SKIP_ARGS[w]
            continue
        if w in NOT_COMMANDS:
            break
        if w == "need":
            found.extend(x for x in words[i:] if NAME.fullmatch(x))
            break
        found.append(w)
        rest = words[i:]
        for j, a in enumerate(rest):
            if a == "--run" and j + 1 < len(rest):
                nested.append(rest[j + 1])
            elif a.startswith("--run="):
                nested.append(a[len("--run="):])
            elif a == "-c" and j + 1 < len(rest) and w in ("sh", "bash"):
                nested.append(rest[j + 1])
            elif a == "-c" and j + 1 < len(rest) and w.startswith("python"):
                py.append(rest[j + 1])
        break
    return found, nested, py


def shell_uses(text, tools, modules):
    text = text.replace("\\\n", " ")
    text, docs = heredocs(text)
    commands = []
    lex(text, commands)
    for words in commands:
        found, nested, py = command_words(words)
        tools.update(w for w in found if NAME.fullmatch(w))
        for n in nested:
            shell_uses(n, tools, modules)
        for p in py:
            python_uses(p, tools, modules)
    for kind, body in docs:
        if kind == "python":
            python_uses(body, tools, modules)
        elif kind == "shell":
            shell_uses(body, tools, modules)


def python_uses(text, tools, modules):
    try:
        tree = ast.parse(text)
    except SyntaxError:
        # An unquoted here-document with shell expansions: imports only.
        modules.update(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)",
                                  text, re.M))
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args:
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if not (name in ("Popen", "run", "call", "check_call", "check_output")
                    or name.startswith(("execv", "execl", "spawn"))):
                continue
            a = node.args[0]
            if isinstance(a, (ast.List, ast.Tuple)) and a.elts:
                a = a.elts[0]
            if isinstance(a, ast.Constant) and isinstance(a.value, str) and a.value:
                tools.add(a.value.split()[0])


def functions(text):
    return set(re.findall(r"^\s*(?:function\s+)?([A-Za-z_][\w-]*)\s*\(\)", text, re.M))


def dpkg_owner(path):
    """The package owning path, trying the /usr-merged twin and the
    resolved symlink (alternatives) too."""
    cands = []
    for p in (path, os.path.realpath(path)):
        cands.append(p)
        if p.startswith("/usr/"):
            cands.append(p[4:])
        else:
            cands.append("/usr" + p)
    for p in cands:
        r = subprocess.run(["dpkg-query", "-S", p], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            if line.startswith("diversion "):
                continue
            pkgs, _, owned = line.partition(": ")
            if owned == p:
                return pkgs.split(",")[0].strip().split(":")[0]
    return None


def installed_packages():
    """{package: (essential, priority, [first alternative of each dep])}"""
    r = subprocess.run(["dpkg-query", "-W", "-f",
                        "${Package}\t${Status}\t${Essential}\t${Priority}\t"
                        "${Depends}, ${Pre-Depends}\n"],
                       capture_output=True, text=True, check=True)
    pkgs = {}
    for line in r.stdout.splitlines():
        name, status, ess, prio, deps = line.split("\t")
        if not status.endswith(" installed"):
            continue
        first = [d.split("|")[0].split("(")[0].split(":")[0].strip()
                 for d in deps.split(",")]
        pkgs[name] = (ess == "yes", prio, [d for d in first if d])
    return pkgs


def install_deps_packages(path):
    m = re.search(r'^PKGS="([^"]*)"', open(path).read(), re.M)
    if not m:
        sys.exit("no PKGS=\"...\" list in " + path)
    return m.group(1).split()


def main():
    listed = install_deps_packages(sys.argv[1])
    files = sys.argv[2:]
    tools, modules, local_funcs = {}, {}, set()
    local_modules = {os.path.basename(f)[:-3] for f in files if f.endswith(".py")}
    for f in files:
        text = open(f).read()
        t, m = set(), set()
        if f.endswith(".py"):
            python_uses(text, t, m)
        else:
            local_funcs |= functions(text)
            shell_uses(text, t, m)
        for x in t:
            tools.setdefault(x, os.path.basename(f))
            for y in RUN_BY.get(x, []):
                tools.setdefault(y, "run by %s in %s" % (x, os.path.basename(f)))
        for x in m:
            modules.setdefault(x, os.path.basename(f))

    pkgs = installed_packages()
    provided = set()
    todo = [p for p in listed if p in pkgs]
    while todo:
        p = todo.pop()
        if p in provided:
            continue
        provided.add(p)
        todo.extend(d for d in pkgs[p][2] if d in pkgs)

    def verdict(what, user, path):
        if path is None:
            return f"FAIL {what} ({user}): not installed, so no package of install-deps provides it"
        pkg = dpkg_owner(path)
        if pkg is None:
            return f"FAIL {what} ({user}): {path} belongs to no Debian package"
        if pkg in provided:
            return f"PASS {what} ({user}) comes from {pkg}, installed by install-deps"
        ess, prio, _ = pkgs.get(pkg, (False, "", []))
        if ess or prio == "required":
            return f"PASS {what} ({user}) comes from {pkg}, on every Debian system"
        return (f"FAIL {what} ({user}) comes from {pkg}, which scripts/install-deps.sh "
                f"does not install: add it to PKGS")

    for tool, user in sorted(tools.items()):
        if tool in local_funcs or "/" in tool:
            continue
        kind = subprocess.run(["bash", "-c", 'type -t "$1"', "-", tool],
                              capture_output=True, text=True).stdout.strip()
        if kind in ("builtin", "keyword"):
            continue
        print(verdict("program " + tool, user, shutil.which(tool)))
    for mod, user in sorted(modules.items()):
        if mod in local_modules:
            continue
        spec = importlib.util.find_spec(mod)
        path = None
        if spec is not None:
            path = spec.origin
            if path in (None, "built-in", "frozen"):
                path = os.path.realpath(sys.executable)
        print(verdict("Python module " + mod, user, path))


if __name__ == "__main__":
    main()

# SPDX-License-Identifier: LGPL-2.1-or-later
# Shared helpers for the shell tests: TAP output, temp dir, tool checks,
# volume makers that use cryptsetup and qemu-img (never our own code).
set -u
export PATH=/usr/bin:/usr/sbin:/bin:/sbin:${top_builddir:-.}/server:$PATH
: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
CRYPT_TOOL=$top_builddir/tests/lib/luks-crypt-tool

tap_n=0
tap_failed=0
ok () { tap_n=$((tap_n + 1)); echo "ok $tap_n - $*"; }
not_ok () { tap_n=$((tap_n + 1)); tap_failed=$((tap_failed + 1)); echo "not ok $tap_n - $*"; }
# check DESCRIPTION COMMAND...: one assertion.
# not COMMAND...: succeeds if COMMAND fails (for use inside check).
not () { ! "$@"; }
check () { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
# check_fails_with DESCRIPTION PATTERN COMMAND...: the command must fail
# and its stderr must contain PATTERN (a fixed string).
check_fails_with () {
  local d=$1 pat=$2; shift 2
  local err rc=0
  err=$("$@" 2>&1 >/dev/null) || rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] && printf '%s' "$err" | grep -qF -- "$pat"; then
    ok "$d"
  else
    not_ok "$d"; echo "#   exit $rc, stderr: $err"; echo "#   expected: $pat"
  fi
}
# rss_limit_mib: a bound for the daemon's peak RSS in the memory-bound
# tests, with room for a sanitizer's own memory (ASan's 256 MiB quarantine
# and shadow; TSan's shadow, several times the heap).
rss_limit_mib () {
  local libs
  libs=$(ldd "$top_builddir/server/luks-nbd")
  case $libs in
    *libtsan*) echo 4000 ;;
    *libasan*) echo 900 ;;
    *) echo 400 ;;
  esac
}
# tap_report FILE N WHAT: a Python client's PASS/FAIL lines (nbdtest.report)
# as TAP, then one check that all N of them arrived.
tap_report () {
  local verdict desc
  while read -r verdict desc; do
    if [ "$verdict" = PASS ]; then ok "$desc"; else not_ok "$desc"; fi
  done < "$1"
  check "$3 reported all $2 checks" test "$(wc -l < "$1")" -eq "$2"
}
done_testing () { echo "1..$tap_n"; [ "$tap_failed" -eq 0 ]; }

# need TOOL...: skip the whole test if a tool is missing (CI counts a
# skip as a failure, so CI must install every tool).
need () {
  local t
  for t; do
    command -v "$t" >/dev/null 2>&1 || { echo "1..0 # SKIP $t is not installed"; exit 0; }
  done
}

# need_qemu MAJOR: QEMU (qemu-img) at least MAJOR.  Detached LUKS headers
# need 9; install-deps.sh installs 10 from bookworm-backports.  Older:
# the test bails out under CI=true (a clear error, not a quiet skip),
# else skips.
need_qemu () {
  local v
  v=$(qemu-img --version 2>/dev/null | sed -n '1s/^qemu-img version \([0-9]*\)\..*/\1/p')
  [ "${v:-0}" -ge "$1" ] && return 0
  local why="qemu-img ${v:-(none)} is older than $1 (scripts/install-deps.sh installs QEMU 10 from bookworm-backports)"
  if [ "${CI:-}" = true ]; then echo "Bail out! $why"; exit 1; fi
  echo "1..0 # SKIP $why"; exit 0
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/luks-nbd-test.XXXXXX")
cleanup_hooks=""
cleanup () { eval "$cleanup_hooks"; [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"; }
trap cleanup EXIT

# make_plaintext FILE SIZE: random bytes after a first 4 KiB of zeros, as
# a disk starts with a partition table or superblock: the daemon refuses
# a payload whose written start decrypts to random (check-plaintext=).
make_plaintext () { { head -c 4096 /dev/zero; head -c "$2" /dev/urandom; } | head -c "$2" > "$1"; }

# cryptsetup_encrypt HEADER PAYLOAD KEYFILE ARGS...: encrypt PAYLOAD in
# place with a detached LUKS2 header, in user space.
cryptsetup_encrypt () {
  local h=$1 p=$2 k=$3; shift 3
  cryptsetup reencrypt --encrypt --type luks2 --header "$h" --key-file "$k" \
    --force-offline-reencrypt --batch-mode "$@" "$p"
}

# qemu_luks PLAIN OUT KEYFILE OPTS: qemu-img's LUKS1 volume (attached).
# One attempt: QEMU 7.2 as Debian patched it (the thread-CPU benchmark of
# PBKDF2 from QEMU 9.2) failed at random with "Unable to get accurate CPU
# usage" when a run took under a clock tick, and tests retried; QEMU 10
# only gives up after six scalings at 0 ms (0 failures in 20 runs at load
# average 18).  need_qemu 10 in the tests that call this.
qemu_luks () {
  rm -f "$2"
  qemu-img convert -f raw -O luks --object "secret,id=s0,file=$3" \
    -o "key-secret=s0,iter-time=10,$4" "$1" "$2"
}

# split_detached ATTACHED HEADER PAYLOAD: cut a LUKS1 image into a detached
# header (payloadOffset set to 0, as cryptsetup --header writes it) and the
# bare payload.
split_detached () {
  local off
  off=$("$CRYPT_TOOL" info "$1" | sed -n 's/^payload_offset=//p')
  head -c "$off" "$1" > "$2"
  tail -c +"$((off + 1))" "$1" > "$3"
  printf '\0\0\0\0' | dd of="$2" bs=1 seek=104 conv=notrunc status=none
}

# luks_nbd ARGS...: the daemon under test (add --run CMD to serve while
# CMD runs; the daemon exits with CMD's status).
# A bound on every run, so a hang fails the test instead of stalling CI.
# $LUKS_NBD_WRAPPER (e.g. valgrind with its options) runs it under a checker.
luks_nbd () { timeout --kill-after=10 600 ${LUKS_NBD_WRAPPER:-} "$top_builddir/server/luks-nbd" "$@"; }
# make_test_pki DIR: a CA (DIR/ca-cert.pem) and a server certificate for
# localhost signed by it, in DIR/server as --tls-certs wants them (the CA
# too), and DIR/client with the CA for a client to trust.
make_test_pki () {
  local d=$1
  mkdir -p "$d/server" "$d/client"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=luks-nbd test CA" \
    -keyout "$d/ca-key.pem" -out "$d/ca-cert.pem" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null || return 1
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$d/server/server-key.pem" \
    -out "$d/server.csr" 2>/dev/null || return 1
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n' > "$d/server.ext"
  openssl x509 -req -days 2 -in "$d/server.csr" -CA "$d/ca-cert.pem" -CAkey "$d/ca-key.pem" \
    -CAcreateserial -extfile "$d/server.ext" -out "$d/server/server-cert.pem" 2>/dev/null || return 1
  cp "$d/ca-cert.pem" "$d/server/"
  cp "$d/ca-cert.pem" "$d/client/"
}

# make_luks2_volume NAME SIZE ARGS...: $TMP/NAME.plain, .payload (ciphertext
# made by cryptsetup in user space), .hdr (detached header), .key.
make_luks2_volume () {
  local n=$1 size=$2; shift 2
  make_plaintext "$TMP/$n.plain" "$size"
  cp "$TMP/$n.plain" "$TMP/$n.payload"
  printf 'pass for %s' "$n" > "$TMP/$n.key"
  cryptsetup_encrypt "$TMP/$n.hdr" "$TMP/$n.payload" "$TMP/$n.key" \
    --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --cipher aes-xts-plain64 \
    --key-size 256 "$@" >/dev/null
}

# spec NAME [EXTRA]: the --export value for a volume made above.
spec () { echo "name=$1,payload=$TMP/$1.payload,header=$TMP/$1.hdr,key-file=$TMP/$1.key${2:+,$2}"; }
# spec_as EXPORT VOLUME [EXTRA]: the same volume under another export name.
spec_as () { echo "name=$1,payload=$TMP/$2.payload,header=$TMP/$2.hdr,key-file=$TMP/$2.key${3:+,$3}"; }

#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Secrets and headers that are easy to get wrong, as a new user meets them
# (issue 20): each mistake gets a message that names the cause and the
# fix, and a header of another volume is caught before it is served.
# - A key file (or systemd credential) written by echo ends in a newline
#   that key-file= takes as part of the passphrase: the refusal says so
#   and names passphrase-file= (which strips it, and then serves).
# - A missing credential is named, not its $CREDENTIALS_DIRECTORY path.
# - An empty key or passphrase file is named (argon2 said "Invalid value").
# - A missing header= on a detached volume hints at header=.
# - backup-header= of another volume (another UUID) is refused, naming
#   both files and UUIDs; -v logs each header's UUID.
# - check-plaintext: another volume's header with the same passphrase on a
#   used payload (an ext4 file system encrypted in place by cryptsetup
#   reencrypt) is refused, check-plaintext=off serves it anyway; a fresh
#   volume (luksFormat over a sparse file: ciphertext of nothing) is
#   served, and once written through its header, a wrong header on it is
#   refused too.
. "$(dirname "$0")/../lib/lib.sh"
need cryptsetup nbdcopy mkfs.ext4 truncate

LN=$top_builddir/server/luks-nbd
make_luks2_volume v 4M --sector-size 4096
runs () { luks_nbd --socket "$TMP/sock" "$@" --run true; }

# --- key files and credentials ending in a newline
printf 'pass for v\n' > "$TMP/v.key.nl"
check_fails_with "a key file ending in a newline: the refusal says so" \
  "the key file $TMP/v.key.nl ends in a newline" \
  runs --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,key-file=$TMP/v.key.nl"
check_fails_with "and names passphrase-file=, which strips it" \
  "use passphrase-file=$TMP/v.key.nl" \
  runs --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,key-file=$TMP/v.key.nl"
check "passphrase-file= with that very file serves the volume" \
  luks_nbd --socket "$TMP/sock" --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,passphrase-file=$TMP/v.key.nl" \
  --run "nbdcopy nbd+unix:///v?socket=$TMP/sock $TMP/v.out"
check "... and reads the plaintext" cmp -s "$TMP/v.out" "$TMP/v.plain"
mkdir "$TMP/creds"
printf 'pass for v\n' > "$TMP/creds/vkey"
check_fails_with "a credential ending in a newline: the refusal names the credential" \
  "the credential vkey ends in a newline" \
  env CREDENTIALS_DIRECTORY="$TMP/creds" "$LN" --socket "$TMP/sock" --run true \
  --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,credential=vkey"
env CREDENTIALS_DIRECTORY="$TMP/creds" "$LN" --socket "$TMP/sock" --run true \
  --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,credential=nokey" \
  2> "$TMP/cred.err" >/dev/null
check "a missing credential is named (credential=nokey)" \
  grep -qF "credential=nokey: No such file or directory in \$CREDENTIALS_DIRECTORY" "$TMP/cred.err"
check "... with the unit setting that provides it, not as a key-file= path" \
  sh -c "grep -qF 'LoadCredential=nokey:' '$TMP/cred.err' && ! grep -qF 'key-file=$TMP/creds/nokey' '$TMP/cred.err'"

# --- empty key files
: > "$TMP/empty.key"
printf '\n' > "$TMP/newline.pass"
check_fails_with "an empty key file is named as such" \
  "$TMP/empty.key: empty key file" \
  runs --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,key-file=$TMP/empty.key"
check_fails_with "a passphrase file holding only a newline is an empty passphrase file" \
  "$TMP/newline.pass: empty passphrase file" \
  runs --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,passphrase-file=$TMP/newline.pass"

# --- a detached volume served without header=
check_fails_with "no header= on a payload without LUKS magic: the hint names header=" \
  "a detached header needs header=" \
  runs --export "name=v,payload=$TMP/v.payload,key-file=$TMP/v.key"

# --- another volume with the same passphrase
make_plaintext "$TMP/w.plain" 4M
cp "$TMP/w.plain" "$TMP/w.payload"
cryptsetup_encrypt "$TMP/w.hdr" "$TMP/w.payload" "$TMP/v.key" --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 --cipher aes-xts-plain64 --key-size 256 \
  --sector-size 4096 >/dev/null
vu=$(cryptsetup luksUUID "$TMP/v.hdr")
wu=$(cryptsetup luksUUID "$TMP/w.hdr")
check_fails_with "backup-header= of another volume is refused, naming both files and UUIDs" \
  "backup-header=$TMP/w.hdr (UUID $wu) belongs to another volume than the header $TMP/v.hdr (UUID $vu)" \
  runs --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,backup-header=$TMP/w.hdr,key-file=$TMP/v.key"
cryptsetup luksHeaderBackup "$TMP/v.hdr" --header-backup-file "$TMP/v.hdr.bak"
luks_nbd -v --socket "$TMP/sock" --run true \
  --export "name=v,payload=$TMP/v.payload,header=$TMP/v.hdr,backup-header=$TMP/v.hdr.bak,key-file=$TMP/v.key" \
  2> "$TMP/uuid.log"
check "a backup made by luksHeaderBackup is taken; -v logs the header's UUID" \
  grep -qF "export 'v': serving with the header of UUID $vu" "$TMP/uuid.log"
check "... and the backup header's" \
  grep -qF "export 'v': backup-header=$TMP/v.hdr.bak has UUID $vu" "$TMP/uuid.log"

# --- check-plaintext: a used volume (ext4, encrypted in place by
# cryptsetup) and another volume's header with the same passphrase.
truncate -s 16M "$TMP/fs.img"
mkfs.ext4 -q -F "$TMP/fs.img"
cp "$TMP/fs.img" "$TMP/fs.payload"
cryptsetup_encrypt "$TMP/fs.hdr" "$TMP/fs.payload" "$TMP/v.key" --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 --cipher aes-xts-plain64 --key-size 256 >/dev/null
check "an ext4 volume with its own header is served and reads back the file system" \
  luks_nbd --socket "$TMP/sock" --export "name=fs,payload=$TMP/fs.payload,header=$TMP/fs.hdr,key-file=$TMP/v.key,readonly=on" \
  --run "nbdcopy nbd+unix:///fs?socket=$TMP/sock $TMP/fs.out"
check "... byte for byte" cmp -s "$TMP/fs.out" "$TMP/fs.img"
check_fails_with "the same payload with another volume's header (same passphrase) is refused" \
  "the payload $TMP/fs.payload does not decrypt to data with the header $TMP/w.hdr" \
  runs --export "name=fs,payload=$TMP/fs.payload,header=$TMP/w.hdr,key-file=$TMP/v.key"
check_fails_with "... and the message names the opt-out" "add check-plaintext=off" \
  runs --export "name=fs,payload=$TMP/fs.payload,header=$TMP/w.hdr,key-file=$TMP/v.key"
check "check-plaintext=off serves it anyway" \
  runs --export "name=fs,payload=$TMP/fs.payload,header=$TMP/w.hdr,key-file=$TMP/v.key,check-plaintext=off"
check_fails_with "check-plaintext= takes on or off" "check-plaintext=maybe: expected on or off" \
  runs --export "name=fs,payload=$TMP/fs.payload,header=$TMP/fs.hdr,key-file=$TMP/v.key,check-plaintext=maybe"
check_fails_with "a payload of zeros then random data (made by make_plaintext) with another header is refused too" \
  "does not decrypt to data with the header $TMP/w.hdr" \
  runs --export "name=w,payload=$TMP/v.payload,header=$TMP/w.hdr,key-file=$TMP/v.key"

# A fresh volume: luksFormat with a detached header writes nothing into
# the sparse payload, so its plaintext is the decryption of zeros (noise).
truncate -s 8M "$TMP/fresh.payload"
cryptsetup luksFormat -q --type luks2 --header "$TMP/fresh.hdr" --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 --sector-size 4096 --key-file "$TMP/v.key" "$TMP/fresh.payload"
make_plaintext "$TMP/fresh.plain" 8M
check "a fresh volume (payload never written) is served, and takes a first write" \
  luks_nbd --socket "$TMP/sock" --export "name=f,payload=$TMP/fresh.payload,header=$TMP/fresh.hdr,key-file=$TMP/v.key" \
  --run "nbdcopy $TMP/fresh.plain nbd+unix:///f?socket=$TMP/sock"
check "once written it is served again, with the data written" \
  luks_nbd --socket "$TMP/sock" --export "name=f,payload=$TMP/fresh.payload,header=$TMP/fresh.hdr,key-file=$TMP/v.key" \
  --run "nbdcopy nbd+unix:///f?socket=$TMP/sock $TMP/fresh.out"
check "... byte for byte" cmp -s "$TMP/fresh.out" "$TMP/fresh.plain"
check_fails_with "and now a wrong header on it is refused" "does not decrypt to data" \
  runs --export "name=f,payload=$TMP/fresh.payload,header=$TMP/w.hdr,key-file=$TMP/v.key"
# One client write of random bytes to a fresh volume (dd of /dev/urandom
# over its first 4 KiB) is too little evidence: served, with a warning.
truncate -s 8M "$TMP/fresh2.payload"
cryptsetup luksFormat -q --type luks2 --header "$TMP/fresh2.hdr" --pbkdf pbkdf2 \
  --pbkdf-force-iterations 1000 --sector-size 4096 --key-file "$TMP/v.key" "$TMP/fresh2.payload"
head -c 4096 /dev/urandom > "$TMP/rnd4k"
F2="name=f2,payload=$TMP/fresh2.payload,header=$TMP/fresh2.hdr,key-file=$TMP/v.key"
luks_nbd --socket "$TMP/sock" --export "$F2" --run "nbdcopy $TMP/rnd4k nbd+unix:///f2?socket=$TMP/sock"
check "one random 4 KiB block written to a fresh volume: still served at the next start" \
  luks_nbd --socket "$TMP/sock" --export "$F2" \
    --run "nbdcopy nbd+unix:///f2?socket=$TMP/sock $TMP/f2.out" 2> "$TMP/f2.err"
check "... with a warning that one block is too little to judge" \
  grep -q "only 1 written block(s) sampled" "$TMP/f2.err"
check "... and it reads back what was written" cmp -s -n 4096 "$TMP/f2.out" "$TMP/rnd4k"
done_testing

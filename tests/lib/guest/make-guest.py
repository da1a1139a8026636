#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Builds a tiny Linux guest for the VM tests: the host's Debian kernel and
an initramfs (newc cpio, written here: no cpio, no root needed for
/dev/console) holding a static busybox, the kernel modules a virtio disk
needs, a generic /init and the test's own guest script.

Usage: make-guest.py OUTDIR GUEST_SCRIPT [--kernel VMLINUZ] [--no-pvh]
                     [--modules-dir DIR] [--busybox PATH] [--module NAME]...

Writes OUTDIR/initramfs.cpio and OUTDIR/kernel, what qemu's -kernel takes,
and prints the kernel's release.  OUTDIR/kernel is the ELF vmlinux unpacked
from the bzImage when that is xz- or gzip-compressed and has a PVH entry
point (Debian's has): QEMU then starts it directly, and the guest does not
spend seconds of TCG decompressing itself (here about 18 s -> 10 s per
boot); else, or with --no-pvh, a symlink to the bzImage.

The kernel is --kernel, else $LUKS_NBD_GUEST_KERNEL, else the newest
/boot/vmlinuz-* with a /lib/modules/RELEASE (Debian's linux-image-amd64);
busybox is busybox-static's /bin/busybox.  Modules: virtio_pci and
virtio_blk and what modules.dep says they need, in load order; those the
kernel has built in (modules.builtin) are left out; .ko.xz/.ko.gz are
unpacked.

What /init does: mounts proc, sysfs, devtmpfs; insmods the modules; says
"GUEST-BOOTED" on the console; runs GUEST_SCRIPT (/guest.sh) with sh;
says "GUEST-EXIT STATUS"; syncs and powers off (poweroff -f).  A boot's
parameters reach the script as environment variables: the kernel passes
every KEY=VALUE of its command line it does not know itself (and whose KEY
has no dot) to /init, so one image serves boots that differ in what they
ask of the guest (-append "console=ttyS0 ... mode=read size=16777216").
Console lines the host waits for start with "GUEST-"; the script's stdin
is the console, so the host can answer it (tests/lib/qemu_vm.py: Vm.send).
"""
import argparse
import gzip
import lzma
import os
import re
import struct
import sys
import zlib

MODULES = ["virtio_pci", "virtio_blk"]

INIT = """#!/bin/busybox sh
# Made by tests/lib/guest/make-guest.py: mounts, modules, the guest script,
# power off.  Console lines the host waits for start with GUEST-.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
  insmod "/lib/modules/$m" || echo "GUEST-ERROR insmod $m failed"
done < /etc/modules
echo GUEST-BOOTED
sh /guest.sh
echo "GUEST-EXIT $?"
sync
poweroff -f
"""


def fail(msg):
    sys.exit("make-guest: " + msg)


def release_of(kernel):
    m = re.match(r"vmlinuz-(.+)$", os.path.basename(kernel))
    return m.group(1) if m else None


def version_key(release):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", release)]


def find_kernel():
    """The newest /boot/vmlinuz-RELEASE that has its modules installed."""
    found = []
    for name in os.listdir("/boot"):
        r = release_of(name)
        if r and os.path.isdir("/lib/modules/" + r):
            found.append(r)
    if not found:
        fail("no /boot/vmlinuz-* with /lib/modules/RELEASE "
             "(install linux-image-amd64: scripts/install-deps.sh)")
    return "/boot/vmlinuz-" + max(found, key=version_key)


def elf_notes(elf):
    """(name, type) of the notes in an ELF64's PT_NOTE segments."""
    phoff, = struct.unpack_from("<Q", elf, 32)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    notes = []
    for i in range(phnum):
        ptype, _, off, _, _, size = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        end = off + size
        while ptype == 4 and off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, off)
            notes.append((elf[off + 12:off + 12 + namesz].rstrip(b"\0"), ntype))
            off += 12 + (-namesz % 4 + namesz) + (-descsz % 4 + descsz)
    return notes


XEN_ELFNOTE_PHYS32_ENTRY = 18


def pvh_vmlinux(kernel):
    """The vmlinux inside a bzImage, if compressed with xz or gzip (what
    Python unpacks) and PVH-bootable; else None."""
    data = open(kernel, "rb").read()
    for magic, unpacker in [(b"\xfd7zXZ\0", lzma.LZMADecompressor),
                            (b"\x1f\x8b\x08", lambda: zlib.decompressobj(31))]:
        at = data.find(magic)
        while at >= 0:
            try:
                elf = unpacker().decompress(data[at:])
            except (lzma.LZMAError, zlib.error):
                elf = b""
            if elf[:5] == b"\x7fELF\x02" and \
               (b"Xen", XEN_ELFNOTE_PHYS32_ENTRY) in elf_notes(elf):
                return elf
            at = data.find(magic, at + 1)
    return None


def is_static_elf(path):
    """An ELF executable with no PT_INTERP: runs with no libraries."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return False
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3
               for i in range(phnum))


def mod_name(path):
    base = os.path.basename(path)
    return re.sub(r"\.ko(\.(xz|gz|zst))?$", "", base).replace("-", "_")


def read_modules_dep(moddir):
    deps = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[mod_name(path)] = (path, rest.split())
    return deps


def builtin_modules(moddir):
    try:
        with open(os.path.join(moddir, "modules.builtin")) as f:
            return {mod_name(line.strip()) for line in f}
    except FileNotFoundError:
        return set()


def load_order(moddir, wanted):
    """Module files to insmod, each after the ones it needs."""
    deps, builtin, order = read_modules_dep(moddir), builtin_modules(moddir), []

    def visit(name):
        if name in builtin or any(p == deps[name][0] for p in order):
            return
        path, needs = deps[name]
        for d in needs:
            visit(mod_name(d))
        order.append(path)

    for name in wanted:
        if name in builtin:
            continue
        if name not in deps:
            fail(f"module {name} is neither in {moddir}/modules.dep "
                 "nor built in")
        visit(name)
    return order


def module_bytes(path):
    data = open(path, "rb").read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".gz"):
        return gzip.decompress(data)
    if path.endswith(".zst"):
        fail(f"{path}: zstd modules are not supported (no zstd in Python)")
    return data


class Cpio:
    """A newc archive, as the kernel's initramfs unpacker reads it."""

    def __init__(self):
        self.out, self.ino = bytearray(), 1

    def add(self, name, mode, data=b"", rdev=(0, 0)):
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0,
                  rdev[0], rdev[1], len(name) + 1, 0]
        self.ino += 1
        self.out += b"070701" + b"".join(b"%08X" % v for v in fields)
        self.out += name.encode() + b"\0"
        self.pad()
        self.out += data
        self.pad()

    def pad(self):
        self.out += b"\0" * (-len(self.out) % 4)

    def finish(self):
        self.add("TRAILER!!!", 0)
        return bytes(self.out)


def build(args):
    kernel = args.kernel or os.environ.get("LUKS_NBD_GUEST_KERNEL") or find_kernel()
    release = release_of(kernel)
    moddir = args.modules_dir or (release and "/lib/modules/" + release)
    if not os.access(kernel, os.R_OK):
        fail(f"no readable kernel at {kernel}")
    if not moddir or not os.path.isdir(moddir):
        fail(f"no modules directory for {kernel} (give --modules-dir)")
    if not os.path.isfile(args.busybox) or not is_static_elf(args.busybox):
        fail(f"{args.busybox} is not a static busybox "
             "(install busybox-static: scripts/install-deps.sh)")

    c = Cpio()
    for d in ["bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp"]:
        c.add(d, 0o40755)
    c.add("dev/console", 0o20600, rdev=(5, 1))
    c.add("bin/busybox", 0o100755, open(args.busybox, "rb").read())
    c.add("init", 0o100755, INIT.encode())
    c.add("guest.sh", 0o100755, open(args.guest_script, "rb").read())
    names = []
    for path in load_order(moddir, MODULES + args.module):
        name = mod_name(path) + ".ko"
        c.add("lib/modules/" + name, 0o100644,
              module_bytes(os.path.join(moddir, path)))
        names.append(name)
    c.add("etc/modules", 0o100644, "".join(n + "\n" for n in names).encode())

    os.makedirs(args.outdir, exist_ok=True)
    with open(os.path.join(args.outdir, "initramfs.cpio"), "wb") as f:
        f.write(c.finish())
    out = os.path.join(args.outdir, "kernel")
    if os.path.lexists(out):
        os.unlink(out)
    elf = None if args.no_pvh else pvh_vmlinux(kernel)
    if elf:
        with open(out, "wb") as f:
            f.write(elf)
    else:
        os.symlink(os.path.abspath(kernel), out)
    print(release or os.path.basename(kernel))


def main():
    p = argparse.ArgumentParser(description="Builds the VM tests' guest.")
    p.add_argument("outdir")
    p.add_argument("guest_script")
    p.add_argument("--kernel")
    p.add_argument("--modules-dir")
    p.add_argument("--no-pvh", action="store_true",
                   help="boot the bzImage as it is")
    p.add_argument("--busybox", default="/bin/busybox")
    p.add_argument("--module", action="append", default=[],
                   help="another module to load (with its dependencies)")
    build(p.parse_args())


if __name__ == "__main__":
    main()

#!/bin/sh
#
# Builds the x86_64 disk image from image/x86_64/genimage.cfg. That layout
# reads, by these names, from BINARIES_DIR: rootfs.ext4 (made by buildroot,
# written to both rootfs slots), bootx64.efi, grub.cfg and grubenv.
# Called by buildroot as: post-image.sh BINARIES_DIR; BUILD_DIR comes from
# the environment buildroot sets.

set -eu

BINARIES_DIR="$1"
X86_DIR="$(cd "$(dirname "$0")/../../../image/x86_64" && pwd)"

# buildroot's grub2 package leaves its EFI image in the ESP tree it lays out.
cp "${BINARIES_DIR}/efi-part/EFI/BOOT/bootx64.efi" "${BINARIES_DIR}/bootx64.efi"
cp "${X86_DIR}/grub.cfg" "${BINARIES_DIR}/grub.cfg"

# A fresh GRUB environment block: slot a committed, no trial armed, padded
# with '#' to the 1024 bytes GRUB expects.
{
	printf '# GRUB Environment Block\nobsbox_default=a\nobsbox_try=\n'
	head -c 1024 /dev/zero | tr '\0' '#'
} | head -c 1024 > "${BINARIES_DIR}/grubenv"

"$(dirname "$0")/../common/genimage.sh" "${BINARIES_DIR}" "${X86_DIR}/genimage.cfg"

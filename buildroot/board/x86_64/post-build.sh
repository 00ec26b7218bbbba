#!/bin/sh
#
# Gives each slot's rootfs the /boot/vmlinuz and /boot/initrd.img that
# image/x86_64/grub.cfg boots, and the mount points of the shared init.
# Called by buildroot as: post-build.sh TARGET_DIR.

set -eu

TARGET_DIR="$1"
X86_DIR="$(cd "$(dirname "$0")/../../../image/x86_64" && pwd)"

# buildroot installs the kernel as /boot/bzImage.
ln -sf bzImage "${TARGET_DIR}/boot/vmlinuz"

# Mount points the shared init uses on the read-only rootfs: the ESP
# (grubenv) and the data partition.
mkdir -p "${TARGET_DIR}/boot/efi" "${TARGET_DIR}/data"

# The firmware version (Cargo.toml's) stamped into firmware.json.
"${X86_DIR}/../stamp-firmware" "${TARGET_DIR}" x86_64 >/dev/null

# The initramfs: image/x86_64/initramfs/init (it mounts the rootfs of the
# slot on the kernel command line) run by buildroot's busybox. This kernel
# has its disk drivers built in, so the initramfs loads no modules.
INITRAMFS="$(mktemp -d)"
trap 'rm -rf "${INITRAMFS}"' EXIT
mkdir -p "${INITRAMFS}/bin" "${INITRAMFS}/dev" "${INITRAMFS}/proc" \
	"${INITRAMFS}/sys" "${INITRAMFS}/newroot" "${INITRAMFS}/lib/modules"
cp "${TARGET_DIR}/bin/busybox" "${INITRAMFS}/bin/busybox"
ln -s busybox "${INITRAMFS}/bin/sh"
install -m 0755 "${X86_DIR}/initramfs/init" "${INITRAMFS}/init"
: > "${INITRAMFS}/lib/modules/order"
BUSYBOX="${TARGET_DIR}/bin/busybox"
# The libraries busybox needs, and theirs in turn.
TODO="${BUSYBOX}"
while [ -n "${TODO}" ]; do
	FILE="${TODO%% *}"
	TODO="$(echo "${TODO#"${FILE}"}" | sed 's/^ *//')"
	for lib in $(readelf -d "${FILE}" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
		[ -e "${INITRAMFS}/lib/${lib}" ] && continue
		cp -L "${TARGET_DIR}/lib/${lib}" "${INITRAMFS}/lib/"
		TODO="${TODO:+${TODO} }${INITRAMFS}/lib/${lib}"
	done
done
LOADER="$(readelf -l "${BUSYBOX}" | sed -n 's/.*interpreter: \(.*\)\]/\1/p')"
mkdir -p "${INITRAMFS}$(dirname "${LOADER}")"
cp -L "${TARGET_DIR}${LOADER}" "${INITRAMFS}${LOADER}"
(cd "${INITRAMFS}" && find . | LC_ALL=C sort | cpio --create --format=newc --quiet) |
	gzip -9 > "${TARGET_DIR}/boot/initrd.img"

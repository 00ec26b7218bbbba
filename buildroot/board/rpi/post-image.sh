#!/bin/sh
#
# Builds obsbox-<board>.img for a Raspberry Pi from image/rpi/.
# Called by buildroot as: post-image.sh BINARIES_DIR BOARD, BOARD being
# rpi4 or rpi5 (BR2_ROOTFS_POST_SCRIPT_ARGS); BUILD_DIR comes from the
# environment buildroot sets.

set -eu

BINARIES_DIR="$1"
BOARD="$2"
RPI_DIR="$(cd "$(dirname "$0")/../../../image/rpi" && pwd)"

# The boot text files are staged under BINARIES_DIR because genimage reads
# every input relative to one input path.
STAGE="${BINARIES_DIR}/obsbox-boot"
rm -rf "${STAGE}"
mkdir -p "${STAGE}"
cp "${RPI_DIR}/autoboot.txt" "${STAGE}/"
cp "${RPI_DIR}/${BOARD}/config.txt" \
	"${RPI_DIR}/${BOARD}/cmdline-a.txt" \
	"${RPI_DIR}/${BOARD}/cmdline-b.txt" "${STAGE}/"

"$(dirname "$0")/../common/genimage.sh" "${BINARIES_DIR}" "${RPI_DIR}/genimage-${BOARD}.cfg"

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

GENIMAGE_TMP="${BUILD_DIR}/genimage.tmp"
rm -rf "${GENIMAGE_TMP}"

# genimage copies its root path whole into its temporary directory; every
# file system it makes here is filled from listed files (or left empty, as
# the data partition), so an empty root path is enough.
ROOTPATH_TMP="$(mktemp -d)"
trap 'rm -rf "${ROOTPATH_TMP}"' EXIT

genimage \
	--rootpath "${ROOTPATH_TMP}" \
	--tmppath "${GENIMAGE_TMP}" \
	--inputpath "${BINARIES_DIR}" \
	--outputpath "${BINARIES_DIR}" \
	--config "${RPI_DIR}/genimage-${BOARD}.cfg"

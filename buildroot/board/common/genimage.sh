#!/bin/sh
#
# Runs genimage with CONFIG, reading inputs from and writing the image to
# BINARIES_DIR. Shared by the boards' post-image scripts.
# Usage: genimage.sh BINARIES_DIR CONFIG; BUILD_DIR comes from the
# environment buildroot sets.

set -eu

BINARIES_DIR="$1"
CONFIG="$2"

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
	--config "${CONFIG}"

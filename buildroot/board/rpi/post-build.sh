#!/bin/sh
#
# Mount points the shared init uses on the read-only rootfs: the firmware
# partition (autoboot.txt) and the data partition. Called by buildroot as:
# post-build.sh TARGET_DIR BOARD.

set -eu

mkdir -p "$1/boot/firmware" "$1/data"

#!/bin/sh
#
# Mount points the shared init uses on the read-only rootfs: the firmware
# partition (autoboot.txt) and the data partition; and the firmware version
# (Cargo.toml's) stamped into firmware.json. Called by buildroot as:
# post-build.sh TARGET_DIR BOARD.

set -eu

mkdir -p "$1/boot/firmware" "$1/data"
"$(dirname "$0")/../../../image/stamp-firmware" "$1" "$2" >/dev/null

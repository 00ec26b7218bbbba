#!/bin/sh
#
# image/x86_64/grub.cfg boots a slot's /boot/vmlinuz; buildroot installs the
# kernel as /boot/bzImage. Called by buildroot as: post-build.sh TARGET_DIR.

set -eu

ln -sf bzImage "$1/boot/vmlinuz"

#!/usr/bin/env bash
# Build (or reuse) the emulated arm64 board: Debian bookworm arm64 minbase with python3, OpenSSH
# and procps, run under qemu-user-static, plus the aarch64 wheels of paddlepaddle, onnxruntime and
# a numpy of their ABI, installed from the host with pip --target (no aarch64 pip run needed).
# Why these versions: 3.2.2 is the newest cp311 aarch64 paddlepaddle wheel on the index (the host
# runs 3.3.1: the skew is recorded on every row through the runtime version); onnxruntime 1.32.0 is
# manylinux_2_28 (bookworm's glibc is 2.36) and built against numpy 2.
# Usage: build-arm64.sh [--force]. Prints the board directory on stdout.
set -euo pipefail
BOARD_NAME=arm64
# shellcheck source=scripts/boards/common.sh
. "$(dirname "$0")/common.sh"

PADDLE_VERSION=3.2.2
ORT_VERSION=1.32.0
NUMPY_VERSION=2.3.5
RECIPE="arm64 bookworm minbase python3,openssh-server,procps paddlepaddle==$PADDLE_VERSION onnxruntime==$ORT_VERSION numpy==$NUMPY_VERSION v1"
begin_build qemu-aarch64 "$RECIPE" "${1:-}"  # sets dst, stage, start (scripts/boards/common.sh)
log "debootstrap bookworm arm64 (about 6 min)"
debootstrap --arch=arm64 --variant=minbase --include=python3,openssh-server,procps \
  bookworm "$stage/root" "$DEBIAN_MIRROR" > "$stage/debootstrap.log" 2>&1 \
  || { tail -n 20 "$stage/debootstrap.log" >&2; exit 1; }
rm -rf "$stage/root/var/cache/apt/archives/"*.deb
log "aarch64 wheels: paddlepaddle $PADDLE_VERSION, onnxruntime $ORT_VERSION, numpy $NUMPY_VERSION"
python3 -m pip install --quiet --no-cache-dir --no-compile \
  --target "$stage/root/usr/local/lib/python3.11/dist-packages" \
  --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
  --python-version 3.11 --implementation cp --only-binary=:all: \
  "paddlepaddle==$PADDLE_VERSION" "onnxruntime==$ORT_VERSION" "numpy==$NUMPY_VERSION" setuptools
# sshd's host keys, generated on the board itself (aarch64 ssh-keygen under qemu).
chroot "$stage/root" /usr/bin/ssh-keygen -A >/dev/null
chroot "$stage/root" /usr/bin/python3 -c \
  "import platform, numpy, onnxruntime; assert platform.machine() == 'aarch64', platform.machine()"
board_commit "$BOARD_NAME" "$RECIPE" "$(( $(date +%s) - start ))"
echo "$dst"

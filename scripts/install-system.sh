#!/usr/bin/env bash
# System packages for running arm64/armv7 artifacts here: qemu-user and the targets' C libraries.
set -euo pipefail
if command -v qemu-aarch64-static >/dev/null && [ -d /usr/aarch64-linux-gnu ] \
   && command -v qemu-arm-static >/dev/null && [ -d /usr/arm-linux-gnueabihf ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-user-static libc6-arm64-cross \
  libc6-armhf-cross >/dev/null

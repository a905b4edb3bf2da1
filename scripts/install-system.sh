#!/usr/bin/env bash
# System packages for running foreign-arch artifacts here (arm64, armv7, riscv64): qemu-user and the
# targets' C libraries (the qemu and cross_libc of each row of neo.ir.target.ARCHES).
set -euo pipefail
if command -v qemu-aarch64-static >/dev/null && [ -d /usr/aarch64-linux-gnu ] \
   && command -v qemu-arm-static >/dev/null && [ -d /usr/arm-linux-gnueabihf ] \
   && command -v qemu-riscv64-static >/dev/null && [ -d /usr/riscv64-linux-gnu ]; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-user-static libc6-arm64-cross \
  libc6-armhf-cross libc6-riscv64-cross >/dev/null

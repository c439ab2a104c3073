#!/usr/bin/env bash
# Installs every package the build, the tests and the benchmarks need (Debian 12, apt).
# Idempotent and quiet: packages already present are not fetched again.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git python3
  clang-format
  libgtest-dev
  libopenblas-dev
  ocl-icd-opencl-dev opencl-headers pocl-opencl-icd clinfo
  libvulkan-dev mesa-vulkan-drivers glslc spirv-tools vulkan-validationlayers vulkan-tools
  libopenmpi-dev openmpi-bin
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "setup: all packages present"
fi

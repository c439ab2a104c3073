#!/usr/bin/env bash
# ci/demo.sh — installs what is missing, builds trit (Release, in build/), prints what trit finds
# (trit-info), then runs trit-bench on every device found. Arguments go to trit-bench
# (`ci/demo.sh --help` shows its options). Fails if the build, trit-info or trit-bench fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
JOBS=2

step() { printf '\n==> %s\n' "$*"; }

step "setup"
ci/setup.sh

step "build (build/, Release, -j$JOBS; log: build/ci-build.log)"
mkdir -p build
if ! cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >build/ci-configure.log 2>&1; then
    cat build/ci-configure.log
    echo "ci/demo.sh: configure failed" >&2
    exit 1
fi
grep -E '^-- trit:' build/ci-configure.log || true
# Everything, not just the two programs: every plugin the toolchains allow must be there for the
# bench to find its devices (and build/ stays the same tree ci/test.sh builds).
if ! cmake --build build -j "$JOBS" >build/ci-build.log 2>&1; then
    tail -n 60 build/ci-build.log
    echo "ci/demo.sh: build failed (log: build/ci-build.log)" >&2
    exit 1
fi

step "build/bin/trit-info"
build/bin/trit-info

step "build/bin/trit-bench $*"
build/bin/trit-bench "$@"

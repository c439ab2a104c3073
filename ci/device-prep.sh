#!/usr/bin/env bash
# ci/device-prep.sh — run on the build machine (Debian 12 with ci/setup.sh's packages) before a
# GPU check on a machine that has the NVIDIA driver, nvcc, CMake and PyTorch but no package
# manager, no GoogleTest and no network. Builds there cost scarce GPU time, so this builds here
# and stages what ci/device-check.sh needs into .device/ (ignored by git), small enough to carry:
#
#   .device/bin/          trit-tests, trit-bench, trit-info, example-gemv (Release)
#   .device/lib/          libtrit and every plugin (CUDA kernels for TRIT_DEVICE_CUDA_ARCHS)
#   .device/fake-plugins/ the ABI tests' fake plugins
#   .device/loaders/      libvulkan.so.1 and libOpenCL.so.1 (Debian's libvulkan1 and
#                         ocl-icd-libopencl1), so the Vulkan and OpenCL plugins can reach the
#                         NVIDIA driver's ICDs on a machine without the loaders
#   .device/googletest/   GoogleTest's sources (Debian's /usr/src/googletest), for the fallback
#                         build there when the carried binaries cannot start
#   .device/build.env     the build's absolute path (compiled into the tests and RUNPATHs; the
#                         check links it to .device/ there), commit, date, architectures
#
# The glibc there is newer than Debian 12's, so binaries built here run there (checked by
# ci/device-check.sh, which falls back to building there if they do not).
#
# Environment: TRIT_DEVICE_BUILD_DIR (default build-device), TRIT_DEVICE_CUDA_ARCHS (default
# "80-real;90-real": A100 and H100/H200 machine code), TRIT_DEVICE_CMAKE_ARGS (more configure
# options, e.g. -DTRIT_VULKAN=OFF), JOBS (default 2).
# Prints the size to carry at the end; fails if the build fails or .device/ exceeds 60 MiB.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BUILD=${TRIT_DEVICE_BUILD_DIR:-build-device}
ARCHS=${TRIT_DEVICE_CUDA_ARCHS:-80-real;90-real}
JOBS=${JOBS:-2}
DEST=$ROOT/.device
LIMIT_MIB=60

step() { printf '\n==> %s\n' "$*"; }

step "configure $BUILD (Release, CUDA archs $ARCHS; log: $BUILD/device-configure.log)"
mkdir -p "$BUILD"
BUILD_ABS=$(cd "$BUILD" && pwd)
read -r -a extra <<<"${TRIT_DEVICE_CMAKE_ARGS:-}"
# The other backends are reset to AUTO each time, so an option given once does not stick in the
# cache of later runs.
if ! cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTRIT_CUDA=ON -DTRIT_OPENCL=AUTO \
    -DTRIT_VULKAN=AUTO "-DTRIT_CUDA_ARCHS=$ARCHS" -DTRIT_BUILD_TESTS=ON -DTRIT_BUILD_BENCH=ON \
    "${extra[@]}" \
    >"$BUILD/device-configure.log" 2>&1; then
    tail -n 40 "$BUILD/device-configure.log"
    echo "device-prep: configure failed" >&2
    exit 1
fi
grep -E '^-- trit:' "$BUILD/device-configure.log" || true

step "build (-j$JOBS; log: $BUILD/device-build.log)"
# Plugins of an earlier configuration must not be staged: remove them, the build relinks the
# enabled ones.
rm -f "$BUILD"/lib/libtrit-plugin-*.so
if ! cmake --build "$BUILD" -j "$JOBS" >"$BUILD/device-build.log" 2>&1; then
    grep -E -A4 ': (fatal )?error|undefined reference|Error [0-9]+' "$BUILD/device-build.log" |
        head -n 80 || true
    echo "device-prep: build failed (log: $BUILD/device-build.log)" >&2
    exit 1
fi
warnings=$(grep -cE ': warning:' "$BUILD/device-build.log" || true)
[ "$warnings" -eq 0 ] || echo "note: the build printed $warnings warnings ($BUILD/device-build.log)"

step "stage into .device/"
rm -rf "$DEST"
mkdir -p "$DEST/bin" "$DEST/lib" "$DEST/loaders"
for exe in trit-tests trit-bench trit-info example-gemv; do
    if [ -x "$BUILD/bin/$exe" ]; then
        cp "$BUILD/bin/$exe" "$DEST/bin/"
    else
        echo "device-prep: $BUILD/bin/$exe was not built" >&2
        exit 1
    fi
done
cp -a "$BUILD"/lib/libtrit*.so* "$DEST/lib/"
if [ ! -e "$DEST/lib/libtrit-plugin-cuda.so" ]; then
    echo "device-prep: the CUDA plugin was not built (is nvcc on the PATH?)" >&2
    exit 1
fi
cp -a "$BUILD/fake-plugins" "$DEST/"
# Symbols are not needed there; stripping halves trit-tests.
strip --strip-unneeded "$DEST"/bin/* "$DEST"/lib/*.so* 2>/dev/null || true

# The loaders: from the installed packages when present, else downloaded (apt-get download needs
# no root) and unpacked here. Only the library itself is kept, under its soname.
stage_loader() {
    local pkg=$1 soname=$2 file
    file=$(dpkg -L "$pkg" 2>/dev/null | grep -E "/$soname(\.[0-9.]+)?$" | head -n 1 || true)
    if [ -n "$file" ] && [ -e "$file" ]; then
        cp -L "$file" "$DEST/loaders/$soname"
        echo "$soname: from the installed $pkg ($(dpkg-query -W -f='${Version}' "$pkg"))"
        return 0
    fi
    local tmp
    tmp=$(mktemp -d)
    if (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1) && dpkg-deb -x "$tmp"/*.deb "$tmp/x"; then
        file=$(find "$tmp/x" -name "$soname*" \( -type f -o -type l \) | sort | head -n 1)
        if [ -n "$file" ]; then
            cp -L "$file" "$DEST/loaders/$soname"
            echo "$soname: from $(basename "$tmp"/*.deb)"
            rm -rf "$tmp"
            return 0
        fi
    fi
    rm -rf "$tmp"
    echo "warning: could not get $soname ($pkg): Vulkan/OpenCL there will use whatever loader it has"
}
stage_loader libvulkan1 libvulkan.so.1
stage_loader ocl-icd-libopencl1 libOpenCL.so.1

if [ -d /usr/src/googletest ]; then
    cp -a /usr/src/googletest "$DEST/googletest"
    rm -rf "$DEST/googletest/googlemock/docs" "$DEST/googletest/googletest/docs"
else
    echo "warning: /usr/src/googletest is missing (libgtest-dev): the fallback build there will" \
        "have no tests"
fi

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)
{
    echo "TRIT_DEVICE_BUILD_PATH=$BUILD_ABS"
    echo "TRIT_DEVICE_COMMIT=$commit"
    echo "TRIT_DEVICE_DIRTY_FILES=$dirty"
    echo "TRIT_DEVICE_BUILT=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "TRIT_DEVICE_CUDA_ARCHS='$ARCHS'"
    echo "TRIT_DEVICE_BUILD_GLIBC='$(ldd --version 2>/dev/null | head -n 1)'"
} >"$DEST/build.env"

step "smoke test here (no GPU needed)"
LD_LIBRARY_PATH="$DEST/lib" TRIT_PLUGIN_PATH="$DEST/lib" "$DEST/bin/trit-info" | sed -n '1,12p'
"$DEST/bin/trit-bench" --baselines

size_kib=$(du -sk "$DEST" | cut -f1)
step "done: .device/ is $((size_kib / 1024)) MiB (commit $commit, $dirty modified tracked files)"
if [ "$size_kib" -gt $((LIMIT_MIB * 1024)) ]; then
    echo "device-prep: .device/ is over ${LIMIT_MIB} MiB: too big to carry" >&2
    exit 1
fi
echo "carry: .device   (one ignored folder; the rest of the tree travels as files)"
echo "then, on the GPU machine, from the repository root: ci/device-check.sh OUT_DIR"

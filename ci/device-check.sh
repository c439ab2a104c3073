#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run through `step` (bash -c) look unreachable to it
# ci/device-check.sh OUT_DIR — everything a short GPU session should prove and measure, in one
# run of about 8 minutes at most, from the repository root of a machine with an NVIDIA GPU:
#
#   1. the GPU as nvidia-smi sees it (clocks, memory, driver)
#   2. which trit tree to use: the one ci/device-prep.sh staged in .device/ (built elsewhere) if
#      it starts here, else a build here (CUDA + CPU plugins; tests from .device/googletest)
#   3. trit-info
#   4. CUDA conformance: trit-tests on cuda devices only, TRIT_REQUIRE_BACKENDS=cuda
#   5. trit-bench on CUDA (GEMV, attention, sweep + RoPE; cuBLAS baseline from the toolkit or
#      PyTorch's wheels)
#   6. bench/compare_torch.py (PyTorch SDPA flash / default, torch fp16 matmul)
#   7. Vulkan and OpenCL on the NVIDIA driver, where their ICDs load: conformance + trit-bench
#      --quick (GEMV and attention)
#   8. a summary table, printed last (bench/device_summary.py)
#
# Every step runs under `timeout` within a global budget (TRIT_DEVICE_CHECK_BUDGET seconds,
# default 480, in priority order), one failing or missing piece never stops the rest, and each
# says why it was skipped. Without a GPU it reports "no CUDA device" and finishes in seconds.
#
# The conformance runs call trit-tests directly with a --gtest_filter instead of ctest: CTest's
# list of tests was discovered on the build machine, which has no CUDA device, so it holds no
# cuda test instances.
#
# OUT_DIR gets summary.txt, logs/ (every log, JSON and CSV) and logs.tar.gz (the same, one file).
# Exit status: 0 when every step that ran passed, 1 otherwise, 2 for bad arguments.
set -uo pipefail

if [ $# -ne 1 ] || [ "${1:0:1}" = "-" ]; then
    sed -n '3,/^set /p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 2
fi
mkdir -p "$1" || exit 2
OUT_DIR=$(cd "$1" && pwd)
LOGS=$OUT_DIR/logs
rm -rf "$LOGS" "$OUT_DIR/summary.txt" "$OUT_DIR/logs.tar.gz" # a rerun must not summarize old logs
mkdir -p "$LOGS" || exit 2
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
ROOT=$PWD
BUDGET=${TRIT_DEVICE_CHECK_BUDGET:-480}
T0=$(date +%s)
CARRY=${TRIT_DEVICE_DIR:-$ROOT/.device}
WORK=${TMPDIR:-/tmp}/trit-device-check.$$
mkdir -p "$WORK/no-icd"
STEPS=$LOGS/steps.tsv
: >"$STEPS"
FAILED=0
export PYTHONUNBUFFERED=1

echo "trit device check in $ROOT -> $OUT_DIR (budget ${BUDGET}s, $(nproc) cores, $(date -u +%FT%TZ))"

record() { # record NAME STATUS SECONDS [NOTE]
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >>"$STEPS"
    case "$2" in ok | skipped) ;; *) FAILED=$((FAILED + 1)) ;; esac
}

skip() { # skip NAME REASON
    echo "==> $1: skipped ($2)"
    record "$1" skipped 0 "$2"
}

# step NAME LIMIT LOG COMMAND...: runs COMMAND with stdout+stderr into LOG under `timeout`
# (LIMIT seconds, cut to what is left of the budget); returns the command's status.
step() {
    local name=$1 limit=$2 log=$3 left t rc dt
    shift 3
    left=$((T0 + BUDGET - $(date +%s) - 10))
    if [ "$left" -lt 15 ]; then
        skip "$name" "the ${BUDGET}s budget is spent"
        return 125
    fi
    [ "$limit" -le "$left" ] || limit=$left
    echo "==> $name (at most ${limit}s; log: logs/$(basename "$log"))"
    t=$(date +%s)
    # bash -c, so COMMAND may be one of the exported functions below.
    timeout -k 10 "$limit" bash -c '"$@"' "$name" "$@" >"$log" 2>&1
    rc=$?
    dt=$(($(date +%s) - t))
    if [ $rc -eq 0 ]; then
        record "$name" ok "$dt"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        record "$name" TIMEOUT "$dt" "stopped after ${limit}s"
    else
        record "$name" FAILED "$dt" "exit $rc"
    fi
    [ $rc -eq 0 ] || tail -n 6 "$log" | sed 's/^/    /'
    return $rc
}

finish() {
    local summary=$OUT_DIR/summary.txt
    rm -rf "$WORK"
    {
        echo
        if command -v python3 >/dev/null && [ -f "$ROOT/bench/device_summary.py" ]; then
            python3 "$ROOT/bench/device_summary.py" "$OUT_DIR" 2>&1
        else
            echo "==== device check summary (no python3: steps only)"
            cat "$STEPS"
        fi
        echo
        echo "total $(($(date +%s) - T0))s; $FAILED step(s) failed; logs in $OUT_DIR/logs"
    } >"$summary"
    tar -czf "$OUT_DIR/logs.tar.gz" -C "$OUT_DIR" logs summary.txt 2>/dev/null || true
    cat "$summary"
    [ "$FAILED" -eq 0 ]
    exit $?
}

# ---- 1. the GPU -------------------------------------------------------------------------------
HAVE_GPU=0
GPU_CC=""
if command -v nvidia-smi >/dev/null; then
    if step "nvidia-smi" 30 "$LOGS/nvidia-smi.log" nvidia-smi; then
        HAVE_GPU=1
        q=name,driver_version,memory.total,compute_cap,clocks.sm,clocks.max.sm,clocks.mem
        q=$q,clocks.max.mem,temperature.gpu,power.draw,power.limit,pstate
        nvidia-smi --query-gpu="$q" --format=csv >>"$LOGS/nvidia-smi.log" 2>&1 || true
        GPU_CC=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')
        tail -n 2 "$LOGS/nvidia-smi.log" | sed 's/^/    /'
    fi
else
    skip "nvidia-smi" "no nvidia-smi: no NVIDIA driver here"
fi

# ---- 2. which trit tree -----------------------------------------------------------------------
# run_env COMMAND...: in the environment every trit program runs in. Vulkan and OpenCL see no
# driver unless a step names one (VK_DRIVER_FILES, OCL_ICD_VENDORS), so a driver problem there
# cannot take the CUDA runs down with it.
run_env() {
    env LD_LIBRARY_PATH="$TREE/lib${LOADERS:+:$LOADERS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        TRIT_PLUGIN_PATH="$TREE/lib" \
        VK_DRIVER_FILES="${VK_DRIVER_FILES:-$WORK/no-icd.json}" \
        VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-$WORK/no-icd.json}" \
        OCL_ICD_VENDORS="${OCL_ICD_VENDORS:-$WORK/no-icd}" "$@"
}
export -f run_env
TREE=""
LOADERS=""
if [ -x "$CARRY/bin/trit-info" ]; then
    # The tests and RUNPATHs name the build directory of the machine that built them; point that
    # path at the carried tree when it does not exist here.
    if [ -f "$CARRY/build.env" ]; then
        # shellcheck disable=SC1091
        . "$CARRY/build.env"
        if [ -n "${TRIT_DEVICE_BUILD_PATH:-}" ] && [ ! -e "$TRIT_DEVICE_BUILD_PATH" ]; then
            mkdir -p "$(dirname "$TRIT_DEVICE_BUILD_PATH")" 2>/dev/null &&
                ln -s "$CARRY" "$TRIT_DEVICE_BUILD_PATH" 2>/dev/null ||
                echo "note: cannot link $TRIT_DEVICE_BUILD_PATH here: the ABI tests that load" \
                    "fake plugins from it will fail"
        fi
        echo "carried tree: commit ${TRIT_DEVICE_COMMIT:-?} (${TRIT_DEVICE_DIRTY_FILES:-?} modified" \
            "files), built ${TRIT_DEVICE_BUILT:-?}, CUDA archs ${TRIT_DEVICE_CUDA_ARCHS:-?}"
    fi
    [ -d "$CARRY/loaders" ] && LOADERS=$CARRY/loaders
    export LOADERS WORK
    if TREE=$CARRY step "carried binaries start" 30 "$LOGS/probe.log" run_env "$CARRY/bin/trit-info"; then
        TREE=$CARRY
    elif grep -qE 'GLIBC|GLIBCXX|error while loading shared libraries|cannot execute' \
        "$LOGS/probe.log" 2>/dev/null; then
        echo "    the carried binaries cannot start here: building here instead"
    else
        TREE=$CARRY # it started; trit-info reported a problem, which the logs keep
    fi
else
    echo "no carried tree in $CARRY (run ci/device-prep.sh on the build machine): building here"
fi

build_here() {
    local prefix="" tests=OFF gen=() arch=${GPU_CC:-90}
    command -v ninja >/dev/null && gen=(-G Ninja)
    if [ -d "$CARRY/googletest" ]; then
        cmake -S "$CARRY/googletest" -B "$WORK/gtest-build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
            -DBUILD_GMOCK=OFF -DCMAKE_INSTALL_PREFIX="$WORK/gtest" &&
            cmake --build "$WORK/gtest-build" -j "$(nproc)" &&
            cmake --install "$WORK/gtest-build" >/dev/null &&
            prefix=$WORK/gtest && tests=ON
    fi
    cmake -S "$ROOT" -B "$WORK/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DTRIT_CUDA=ON \
        "-DTRIT_CUDA_ARCHS=${arch}-real" -DTRIT_BUILD_TESTS="$tests" -DCMAKE_PREFIX_PATH="$prefix" &&
        cmake --build "$WORK/build" -j "$(nproc)"
}
export -f build_here
export WORK CARRY GPU_CC ROOT
if [ -z "$TREE" ]; then
    if [ "$HAVE_GPU" = 1 ] && command -v cmake >/dev/null && command -v nvcc >/dev/null; then
        if step "build here (CUDA + CPU plugins)" 300 "$LOGS/build-here.log" build_here; then
            TREE=$WORK/build
        fi
    else
        skip "build here" "no GPU, or no cmake / nvcc here"
    fi
fi

# ---- 3. trit-info -----------------------------------------------------------------------------
bench_json() { # bench_json OUT.json ARGS...: trit-bench --json into OUT.json, the table to stderr
    local json=$1
    shift
    # The cuBLAS directories go on the library path too: libcublas finds libcublasLt beside it.
    LD_LIBRARY_PATH="${TRIT_BENCH_CUBLAS_DIR:+$TRIT_BENCH_CUBLAS_DIR:}${LD_LIBRARY_PATH:-}" \
        run_env "$TREE/bin/trit-bench" "$@" --json >"$json"
}
export -f bench_json
export TREE LOADERS
N_CUDA=0
if [ -n "$TREE" ]; then
    step "trit-info" 60 "$LOGS/trit-info.log" run_env "$TREE/bin/trit-info"
    N_CUDA=$(grep -cE '^ +\[[0-9]+\] cuda:[0-9]+' "$LOGS/trit-info.log" 2>/dev/null) || N_CUDA=0
    grep -E '^ +\[[0-9]+\] +[a-z]+ +(LOADED|SKIPPED)' "$LOGS/trit-info.log" 2>/dev/null |
        sed 's/^/    /'
else
    skip "trit-info" "no trit tree to run"
fi
if [ "$N_CUDA" -eq 0 ]; then
    reason=$(grep -E '^ +\[[0-9]+\] +cuda ' "$LOGS/trit-info.log" 2>/dev/null | sed 's/^ *//')
    echo "no CUDA device${reason:+ ($reason)}"
fi

# ---- 4-6. CUDA ----------------------------------------------------------------------------------
# cuBLAS for trit-bench's baseline: the toolkit's, then PyTorch's wheels'.
cublas_dirs() {
    local d out=""
    for d in "${CUDA_HOME:-/usr/local/cuda}/lib64" /usr/local/cuda/lib64; do
        case ":$out:" in *":$d:"*) continue ;; esac
        [ -e "$d/libcublas.so.13" ] || [ -e "$d/libcublas.so.12" ] || [ -e "$d/libcublas.so" ] &&
            out="$out:$d"
    done
    if command -v python3 >/dev/null; then
        out="$out:$(timeout 60 python3 - <<'EOF' 2>/dev/null
import glob, os
dirs = []
try:
    import nvidia
    for base in list(nvidia.__path__):
        for pat in ("libcublas.so*", "libcudart.so*"):
            dirs += [os.path.dirname(p) for p in glob.glob(os.path.join(base, "**", pat),
                                                           recursive=True)]
except Exception:
    pass
try:
    import torch
    dirs.append(os.path.join(os.path.dirname(torch.__file__), "lib"))
except Exception:
    pass
print(":".join(dict.fromkeys(dirs)))
EOF
)"
    fi
    echo "$out" | sed 's/^:*//; s/:*$//; s/::*/:/g'
}

if [ "$N_CUDA" -gt 0 ]; then
    if [ -x "$TREE/bin/trit-tests" ]; then
        step "CUDA conformance (trit-tests, cuda devices)" 180 "$LOGS/tests-cuda.log" \
            run_env env TRIT_REQUIRE_BACKENDS=cuda "$TREE/bin/trit-tests" \
            "--gtest_filter=*cuda*:CudaPlugin.*:Backends.*" \
            "--gtest_output=json:$LOGS/tests-cuda.json"
        grep -E '^\[  (PASSED|FAILED) |tests? ran' "$LOGS/tests-cuda.log" 2>/dev/null | tail -n 3 |
            sed 's/^/    /'
    else
        skip "CUDA conformance" "trit-tests was not built (no GoogleTest)"
    fi

    export TRIT_BENCH_CUBLAS_DIR
    TRIT_BENCH_CUBLAS_DIR=$(cublas_dirs)
    echo "cuBLAS search path: ${TRIT_BENCH_CUBLAS_DIR:-(none found)}"
    run_env "$TREE/bin/trit-bench" --baselines 2>&1 | tee "$LOGS/baselines.log" | sed 's/^/    /'
    # Three runs, so that a hang or crash in one op keeps the others' JSON.
    for ops in gemv attention sweep,rope; do
        name=${ops%%,*}
        limit=150
        [ "$name" = gemv ] || limit=100
        step "trit-bench cuda --op $ops" $limit "$LOGS/bench-cuda-$name.log" \
            bench_json "$LOGS/bench-cuda-$name.json" --backend cuda --op "$ops"
    done
else
    skip "CUDA conformance" "no CUDA device"
    skip "trit-bench cuda" "no CUDA device"
fi

if [ "$HAVE_GPU" = 1 ] && command -v python3 >/dev/null; then
    if timeout 60 python3 -c 'import torch' >/dev/null 2>&1; then
        step "compare_torch.py (SDPA, fp16 matmul)" 150 "$LOGS/torch.log" \
            python3 "$ROOT/bench/compare_torch.py" --out "$LOGS"
    else
        skip "compare_torch.py" "python3 has no torch here"
    fi
else
    skip "compare_torch.py" "no GPU or no python3"
fi

# ---- 7. Vulkan and OpenCL on the NVIDIA driver ---------------------------------------------------
other_backend() { # other_backend NAME FILTER
    local name=$1 filter=$2
    step "$name: trit-info" 60 "$LOGS/trit-info-$name.log" run_env "$TREE/bin/trit-info"
    if ! grep -qE "^ +\[[0-9]+\] $name:[0-9]+" "$LOGS/trit-info-$name.log" 2>/dev/null; then
        skip "$name conformance + bench" "no $name device: $(grep -E "^ +\[[0-9]+\] +$name " \
            "$LOGS/trit-info-$name.log" 2>/dev/null | sed 's/^ *//' | head -c 160)"
        return
    fi
    if [ -x "$TREE/bin/trit-tests" ]; then
        step "$name conformance" 120 "$LOGS/tests-$name.log" \
            run_env env TRIT_REQUIRE_BACKENDS="$name" "$TREE/bin/trit-tests" \
            "--gtest_filter=$filter" "--gtest_output=json:$LOGS/tests-$name.json"
    fi
    step "trit-bench $name" 90 "$LOGS/bench-$name.log" \
        bench_json "$LOGS/bench-$name-all.json" --backend "$name" --op gemv,attention --quick
}

if [ "$HAVE_GPU" = 1 ] && [ -n "$TREE" ] && [ -e "$TREE/lib/libtrit-plugin-vulkan.so" ]; then
    icd=${VK_DRIVER_FILES:-${VK_ICD_FILENAMES:-}}
    if [ -z "$icd" ]; then
        for d in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d \
            /usr/local/nvidia/share/vulkan/icd.d; do
            [ -f "$d/nvidia_icd.json" ] && icd=$d/nvidia_icd.json && break
        done
    fi
    if [ -n "$icd" ]; then
        echo "Vulkan ICD: $icd"
        # No validation layer travels; the check is the driver's, not the layer's.
        VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd TRIT_VULKAN_VALIDATION=0 \
            TRIT_VULKAN_CACHE_DIR=$WORK/vk-cache other_backend vulkan '*vulkan*:Vulkan.*'
    else
        skip "vulkan" "no nvidia_icd.json found (the driver's Vulkan part is not installed here)"
    fi
else
    skip "vulkan" "no GPU or no Vulkan plugin in this tree"
fi

if [ "$HAVE_GPU" = 1 ] && [ -n "$TREE" ] && [ -e "$TREE/lib/libtrit-plugin-opencl.so" ]; then
    vendors=${OCL_ICD_VENDORS:-}
    if [ -n "$vendors" ]; then
        : # the caller named the ICDs
    elif [ -f /etc/OpenCL/vendors/nvidia.icd ]; then
        vendors=/etc/OpenCL/vendors
    else
        lib=$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1/ { print $NF; exit }')
        for d in /usr/local/nvidia/lib64 /usr/lib/x86_64-linux-gnu /usr/lib64; do
            [ -z "$lib" ] && [ -e "$d/libnvidia-opencl.so.1" ] && lib=$d/libnvidia-opencl.so.1
        done
        if [ -n "$lib" ]; then
            vendors=$WORK/ocl-vendors
            mkdir -p "$vendors" && echo "$lib" >"$vendors/nvidia.icd"
        fi
    fi
    if [ -n "$vendors" ]; then
        echo "OpenCL vendors: $vendors ($(cat "$vendors"/*.icd | tr '\n' ' '))"
        OCL_ICD_VENDORS=$vendors TRIT_OPENCL_CACHE_DIR=$WORK/cl-cache \
            other_backend opencl '*opencl*:Opencl.*:Options/OpenclFallback.*'
    else
        skip "opencl" "no libnvidia-opencl.so.1 (the driver's OpenCL part is not installed here)"
    fi
else
    skip "opencl" "no GPU or no OpenCL plugin in this tree"
fi

finish

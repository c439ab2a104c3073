#!/usr/bin/env bash
# ci/test.sh — what CI runs, and what to run before pushing:
#   format   clang-format 14 check of every C/C++ source; README's example is tools/example_gemv.c
#   release  Release build in build/ and the whole CTest suite
#   asan     ASan + UBSan build in build-asan/ and the same suite under the sanitizers
# With no arguments all three run; name phases to run only those (`ci/test.sh format`).
# Every phase runs even when an earlier one failed (except a test phase whose build failed), so
# one run shows every problem; the exit status is non-zero if any phase failed.
#
# Environment:
#   TRIT_REQUIRE_BACKENDS  backends whose plugin must load and find a device (default
#                          "cpu,opencl,vulkan"). Set it empty to require none.
#   POCL_DEVICES           PoCL's devices (default "pthread pthread": two OpenCL devices, so the
#                          suite runs on both and copies between them).
#   TRIT_VULKAN_VALIDATION  default 1: the Khronos validation layer is on for every Vulkan test,
#                          and any message it prints fails the test that caused it.
#   The OpenCL kernel cache and the Vulkan pipeline cache go to <build dir>/, Mesa's shader cache
#   (lavapipe compiles every pipeline with LLVM; warm, the Vulkan tests take seconds, not minutes)
#   to build-mesa-cache/, shared by both builds; never to $HOME.
#   ASAN_OPTIONS, UBSAN_OPTIONS, LSAN_OPTIONS  appended to the settings below (later ones win).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
JOBS=2 # the CI machine has 2 cores; not $(nproc), so a big workstation behaves the same
export TRIT_REQUIRE_BACKENDS="${TRIT_REQUIRE_BACKENDS-cpu,opencl,vulkan}"
export POCL_DEVICES="${POCL_DEVICES-pthread pthread}"
export TRIT_VULKAN_VALIDATION="${TRIT_VULKAN_VALIDATION-1}"
export MESA_SHADER_CACHE_DIR="${MESA_SHADER_CACHE_DIR-$ROOT/build-mesa-cache}"
FORMAT_DIRS=(include host cpu cuda opencl vulkan bench tests tools)

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$ROOT/ci/test.sh"
}

phases=()
for arg in "$@"; do
    case "$arg" in
    format | release | asan) phases+=("$arg") ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        echo "ci/test.sh: unknown phase '$arg'" >&2
        usage >&2
        exit 2
        ;;
    esac
done
[ ${#phases[@]} -gt 0 ] || phases=(format release asan)
wants() {
    local p
    for p in "${phases[@]}"; do [ "$p" = "$1" ] && return 0; done
    return 1
}

fmt_time() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

T_START=$(date +%s)
results=()
failures=0

# run_step NAME COMMAND...: runs COMMAND in a subshell with `set -e` in force, prints its time and
# records the outcome in STEP_OK (1 or 0). It always returns 0: bash ignores `set -e` inside
# anything called from `if`, `||` or `&&`, subshells included, so run_step must never be called
# there.
STEP_OK=0
run_step() {
    local name=$1 t0 rc dt
    shift
    t0=$(date +%s)
    echo
    echo "==> $name"
    set +e
    (
        set -e
        "$@"
    )
    rc=$?
    set -e
    dt=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then
        STEP_OK=1
        echo "<== $name: ok ($(fmt_time $dt))"
        results+=("ok      $(fmt_time $dt)  $name")
    else
        STEP_OK=0
        echo "<== $name: FAILED (exit $rc, $(fmt_time $dt))"
        results+=("FAILED  $(fmt_time $dt)  $name")
        failures=$((failures + 1))
    fi
}

skip_step() {
    echo
    echo "==> $1: skipped ($2)"
    results+=("skipped        $1 ($2)")
}

# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------

setup() {
    ci/setup.sh
}

# Sources to check: tracked files plus new ones not yet added, never ignored build output.
format_files() {
    local dirs=()
    local d
    for d in "${FORMAT_DIRS[@]}"; do [ -d "$d" ] && dirs+=("$d"); done
    [ ${#dirs[@]} -gt 0 ] || return 0
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files --cached --others --exclude-standard -- "${dirs[@]}"
    else
        find "${dirs[@]}" -type f
    fi | grep -E '\.(c|h|cpp|cu|cuh)$' | sort -u | while IFS= read -r f; do
        [ -f "$f" ] && printf '%s\n' "$f"
    done
}

format_check() {
    local cf
    cf=$(command -v clang-format-14 || command -v clang-format || true)
    if [ -z "$cf" ]; then
        echo "clang-format is not installed (ci/setup.sh installs it)"
        return 1
    fi
    local version
    version=$("$cf" --version)
    echo "$version"
    case "$version" in
    *"version 14."*) ;;
    *) echo "warning: .clang-format is checked with clang-format 14; other versions may disagree" ;;
    esac
    local files log bad
    mapfile -t files < <(format_files)
    echo "checking ${#files[@]} files"
    [ ${#files[@]} -gt 0 ] || return 0
    log=$(mktemp)
    # One clang-format per file so one unparsable file cannot hide the others' results.
    printf '%s\0' "${files[@]}" |
        xargs -0 -P "$JOBS" -n 1 "$cf" --dry-run --Werror --style=file >/dev/null 2>"$log" || true
    mapfile -t bad < <(grep -oE '^[^:]+:[0-9]+:[0-9]+: error' "$log" | cut -d: -f1 | sort -u)
    if [ ${#bad[@]} -gt 0 ] || [ -s "$log" ]; then
        echo "files not formatted (${#bad[@]}):"
        printf '  %s\n' "${bad[@]}"
        echo "first differences:"
        head -n 40 "$log"
        echo "fix with: clang-format -i ${bad[*]}"
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
    echo "all formatted"
}

# README.md shows tools/example_gemv.c, which CI builds and runs; the two must not drift apart.
readme_example_check() {
    local block
    block=$(mktemp)
    awk '/^```c$/ { inside = 1; next } /^```$/ && inside { exit } inside' README.md >"$block"
    if ! diff -u --label "README.md (first C block)" --label tools/example_gemv.c \
        "$block" tools/example_gemv.c; then
        rm -f "$block"
        echo "README.md's C example differs from tools/example_gemv.c: update one from the other"
        return 1
    fi
    rm -f "$block"
    echo "README.md's example matches tools/example_gemv.c"
}

# build DIR CMAKE_ARGS...: configure and build quietly; the logs stay in DIR for later reading.
build() {
    local dir=$1
    shift
    mkdir -p "$dir"
    # Test discovery runs the test binary, which starts the plugins: same caches as the tests.
    export TRIT_OPENCL_CACHE_DIR="$ROOT/$dir/opencl-cache"
    export TRIT_VULKAN_CACHE_DIR="$ROOT/$dir/vulkan-cache"
    if ! cmake -S . -B "$dir" "$@" >"$dir/ci-configure.log" 2>&1; then
        cat "$dir/ci-configure.log"
        echo "configure failed (log: $dir/ci-configure.log)"
        return 1
    fi
    grep -E '^-- trit:' "$dir/ci-configure.log" || true
    echo "building in $dir with -j$JOBS (log: $dir/ci-build.log)"
    if ! cmake --build "$dir" -j "$JOBS" >"$dir/ci-build.log" 2>&1; then
        grep -E -A4 ': (fatal )?error:|undefined reference|CMake Error|Error [0-9]+|\*\*\*' \
            "$dir/ci-build.log" | head -n 150 || true
        echo "--- last lines of the build log:"
        tail -n 30 "$dir/ci-build.log"
        echo "build failed (log: $dir/ci-build.log)"
        return 1
    fi
    local warnings
    warnings=$(grep -cE ': warning:' "$dir/ci-build.log" || true)
    if [ "$warnings" -gt 0 ]; then
        echo "the build printed $warnings warnings (the tree should build warning-free):"
        grep -E -A3 ': warning:' "$dir/ci-build.log" | head -n 80
    fi
}

# run_ctest DIR: the whole suite; passing tests are hidden, failures and the summary are shown as
# they happen, and the full log is kept in DIR/ci-ctest.log.
run_ctest() {
    local dir=$1
    export TRIT_OPENCL_CACHE_DIR="$ROOT/$dir/opencl-cache"
    export TRIT_VULKAN_CACHE_DIR="$ROOT/$dir/vulkan-cache"
    echo "TRIT_VULKAN_VALIDATION=${TRIT_VULKAN_VALIDATION}"
    echo "TRIT_REQUIRE_BACKENDS=${TRIT_REQUIRE_BACKENDS} POCL_DEVICES=\"${POCL_DEVICES}\""
    ctest --test-dir "$dir" --output-on-failure --no-tests=error -j "$JOBS" 2>&1 |
        tee "$dir/ci-ctest.log" |
        { grep --line-buffered -vE '^ *Start +[0-9]+:|Test +#[0-9]+: .* Passed ' || true; }
}

export_sanitizer_options() {
    # halt_on_error + -fno-sanitize-recover: the first report fails the test that caused it.
    local asan="detect_leaks=1:halt_on_error=1:check_initialization_order=1:strict_init_order=1"
    asan+=":detect_stack_use_after_return=1"
    export ASAN_OPTIONS="${asan}${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
    local lsan="suppressions=$ROOT/tests/sanitizer/lsan.supp:print_suppressions=0"
    export LSAN_OPTIONS="${lsan}${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

echo "trit CI in $ROOT: phases ${phases[*]}, -j$JOBS, $(nproc) cores here"
run_step "setup (ci/setup.sh)" setup
if [ $STEP_OK = 0 ]; then
    echo "setup failed: nothing else can run"
    exit 1
fi

if wants format; then
    run_step "format: clang-format --dry-run --Werror" format_check
    run_step "format: README example" readme_example_check
fi

if wants release; then
    # No GPU here, so CUDA kernels are compiled for one architecture per build instead of all
    # three: sm_90 in this one and sm_80 in the sanitizer build. ptxas still checks both for
    # spills (a spill fails the build), at a third of the compile time.
    run_step "release: build (build/, Release)" build build -DCMAKE_BUILD_TYPE=Release \
        -DTRIT_CUDA_ARCHS=90-real
    if [ $STEP_OK = 1 ]; then
        run_step "release: ctest" run_ctest build
    else
        skip_step "release: ctest" "the build failed"
    fi
fi

if wants asan; then
    # The sanitizer options are needed while building too: gtest_discover_tests runs the test
    # binary at build time to list the tests. RelWithDebInfo gives symbolized, usable reports at
    # a fraction of a Debug build's test time; trit-bench is left out (the suite never runs it).
    export_sanitizer_options
    run_step "asan: build (build-asan/, ASan+UBSan)" build build-asan \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRIT_SANITIZE=ON -DTRIT_BUILD_BENCH=OFF \
        -DTRIT_CUDA_ARCHS=80-real
    if [ $STEP_OK = 1 ]; then
        run_step "asan: ctest under ASan+UBSan+LSan" run_ctest build-asan
    else
        skip_step "asan: ctest" "the build failed"
    fi
fi

echo
echo "==== summary ($(fmt_time $(($(date +%s) - T_START))) in all)"
printf '  %s\n' "${results[@]}"
if [ "$failures" -gt 0 ]; then
    echo "ci/test.sh: $failures step(s) FAILED"
    exit 1
fi
echo "ci/test.sh: all steps passed"

// gemv.cu — fused ternary GEMV on CUDA: y = epilogue(scale * (W . prologue(x))), N = 1..16.
//
// Layout (gemv_layout.h): 2-bit codes, rows padded to whole 64-weight chunks of 16 bytes, the
// 2-bit fields of each word transposed so that (word >> 2t) & 0x03030303 is a dp4a operand for
// four consecutive weights. Scales as the format gives them (per tensor, row, or 256-block),
// with block scales that repeat along every row stored per row and equal row scales per tensor.
//
// Kernels, per call (all on the caller's stream):
//  1. gemv_prologue: one block of PRO_THREADS per token: RMSNorm (fp64 sums in a fixed tree
//     order), max|x'|, then int8 pseudo-columns (INT8: the absmax quantization; FLOAT: four
//     base-256 digits of x' in 30-bit fixed point, as the CPU plugin) with their per-chunk and
//     per-column sums, since the weights are biased codes (w + 1). The first two passes are
//     unrolled x8, loads first (the sum of squares keeps its per-thread order, so results are
//     bit-identical; max|x'| reads four elements a load where the row is aligned) and keep x' in
//     shared memory (when 256 + 4 kp bytes fit the device's opt-in limit: K up to ~58000 on an
//     H100, ~41000 on an A100, ~25000 on sm_86/89), so the last pass neither reloads x and g
//     nor recomputes x'; beyond that it reloads them.
//  2. gemv_main<T, PLANES, MATS, BLOCK>: a warp owns 4 weight rows (4 rows of W, or 2 rows of
//     the gate and the same 2 of up; half that when a tile has 8 or more pseudo-columns, to stay
//     in registers); its 32 lanes walk the row's chunks with stride 32, so one
//     load instruction reads 512 contiguous bytes of each row (one 16-byte uint4 per lane, L1
//     bypassed). Each decoded chunk serves the T tokens of the block's token tile (T * PLANES
//     pseudo-columns: 16 dp4a each), whose 64 bytes the prologue stores interleaved per 32
//     chunks (gemv_layout.h, cu_gemv_q_offset), so each warp-wide activation load is 512
//     contiguous bytes too. The next chunk's loads are issued before the current one
//     is used (the next two chunks' with one pseudo-column and no block scales: INT8 N = 1).
//     Lane sums meet by an xor butterfly (same result on every lane, fixed order), and the
//     lanes then run the epilogue of the warp's (row, token) pairs. The token tile is the
//     fastest-varying block index (main_block_coords; grid.x = row blocks x tiles, continued on
//     grid.z only past 2^31 - 1), so a row block's tiles run side by side and share W via L2.
//     Split-K (grid.y > 1, for short-wide matrices that would leave SMs idle): each split owns a
//     fixed chunk range and writes its partials to scratch; gemv_finish sums the splits in index
//     order and runs the epilogue, so results never depend on timing.
//  Programmatic dependent launch (PDL): the main kernel's blocks start while the prologue runs,
//  prefetch their warp's first two iterations of weight chunks into L2 (prefetch.global.L2:
//  volatile asm, which ptxas keeps above griddepcontrol.wait, where it used to sink the first
//  loads below the wait in 28 of the 32 variants; now all 32 prefetch, checked in the sm_90
//  SASS) and wait (griddepcontrol.wait) before reading the prologue's output. The split-K finish
//  is launched the same way and waits before reading the partials. The wait is compiled only
//  from PTX 9.0 up, so PDL is used only where the main kernel's cudaFuncGetAttributes ptxVersion
//  is >= 90 (a compute_80 PTX JIT-compiled on an H100 has no wait and would race). Option
//  cuda.gemv_pdl=off turns PDL off; cuda.gemv_splits=S forces S splits (tests use it to put
//  every conformance case through split-K); both are read once per device, at its first GEMV
//  use (gemv_prepare), with the kernel-image check that supports() reports.
//
// Floor (H100 SXM, 3.35 TB/s): the codes are M K / 4 bytes; 8192 x 28672 is 58.7 MB = 17.5 us,
// BitNet-2B 2560 x 2560 1.6 MB = 0.49 us, 6912 x 2560 (gate+up pair 8.8 MB) = 2.6 us,
// 2560 x 6912 4.4 MB = 1.3 us. Expected: INT8 N = 1 is memory bound: per 64 weights a lane does
// 16 dp4a + 16 AND + 12 shifts, ~0.75 integer ops per weight, about 45% of the SM's integer
// issue rate at 3.35 TB/s; at 80 registers (6 blocks, 24 warps per SM) a two-deep ring of
// loads keeps ~96 KB in flight per SM, well past what the DRAM latency needs (~20 KB per SM);
// the big matrix (M = 8192 or 28672, no split-K) should run at >= 90% of copy bandwidth in the
// main kernel, plus the prologue. The prologue is latency bound: at K = 28672 (N = 1, RMSNorm)
// it makes ~7 dependent round trips for the sum of squares and 2 for max|x'| (x is usually in
// L2: ~0.2-0.6 us each), then 14 steps from shared memory, an estimated 3-7 us (it was one
// round trip per 512 elements and pass, ~170 in all: 10-30 us); at K = 2560 about 1-2 us. PDL
// overlaps it with the L2 prefetch of the first 4 KB per warp (~13 MB on an H100 at full
// occupancy, ~4 us of DRAM time), so most of it should hide. Estimates, not measurements.
// The small BitNet matrices are latency bound (one or two DRAM round trips plus launch gaps:
// a few us, not the 0.5-2.6 us floor).
// FLOAT does 4x the dp4a of INT8 (four digit planes), ~64 dp4a lanes per SM per cycle at
// 3.35 TB/s, about the dp4a issue limit: expect it near, not at, the floor. Large N is compute
// bound (16 N dp4a per 64 weights); FLOAT with N > 4 makes one weight pass per 4 tokens, the
// first from DRAM and the others (adjacent blocks) from L2.
// Short-wide shapes (2560 x 6912: 160 blocks of 4 warps for 132 SMs) take split-K, which adds
// the finish kernel (launched with PDL, so its launch overlaps the main kernel's tail).
// Limits: K < 2^24 (a FLOAT plane sum reaches 128 K, which must stay below 2^31; upload rejects
// larger K).
// None of this has been measured: it has been compiled (sm_80, sm_90) but has never run on a GPU.
// The device code and the launch planning live in gemv_kernels.h; this file is the host side.
// tests/test_cuda_gemv_emulated.cpp runs those kernels, planned by the same plan_launch, on a CPU
// emulation of the CUDA features they use (tests/cuda_emu.h), against the fp64 reference.
#include <cuda_fp16.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu.h"
#include "gemv_kernels.h"
#include "gemv_layout.h"

using namespace cuda_gemv_kernels;

namespace {

struct cuda_ternary {
    uint4 *codes;  // rows * pitch chunks
    float *scales; // ROW: [rows]; BLOCK: [rows][nb]; TENSOR: NULL
    int64_t rows, cols, pitch, nb;
    trit_scale_kind kind;
    float tensor_scale;
};

// --- host side --------------------------------------------------------------------------------

// Turns the error a launch call returned into a status and sentence. Only that return value
// counts (cudaGetLastError would also report an earlier, unrelated failure); a failure is then
// cleared from the runtime's last-error slot so that it does not surface elsewhere.
trit_status launch_check(const cuda_device *dev, cudaError_t err, const char *what)
{
    if (err == cudaSuccess)
        return TRIT_OK;
    (void)cudaGetLastError();
    if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorInvalidDeviceFunction)
        return cuda_error(dev, TRIT_ERROR_UNSUPPORTED,
                          "%s: no kernel image for sm_%d%d in this build (rebuild with "
                          "TRIT_CUDA_ARCHS including %d%d)",
                          what, dev->prop.major, dev->prop.minor, dev->prop.major, dev->prop.minor);
    return cuda_fail(dev, err, what);
}

const char *option(const cuda_device *dev, const char *key)
{
    const trit_plugin_host *h = dev->host;
    return h && h->get_option ? h->get_option(h->user, key) : NULL;
}

// What the GEMV needs to know about a device, found at its first use and kept in dev->gemv:
//  - whether this build has a kernel image for it (cudaFuncGetAttributes on the prologue fails
//    without one; supports() then declines);
//  - whether PDL is safe: pdl_wait is compiled only from PTX 9.0 up, so a main kernel built
//    from older PTX (compute_80 JIT-compiled on an H100) has no griddepcontrol.wait and would
//    read the prologue's output early; PDL is used only where its ptxVersion is >= 90;
//  - the options cuda.gemv_pdl and cuda.gemv_splits (read once, not on every call);
//  - the prologue's shared memory opt-in (x' kept there when K fits).
trit_status gemv_prepare(cuda_device *dev)
{
    if (__atomic_load_n(&dev->gemv.ready, __ATOMIC_ACQUIRE))
        return TRIT_OK;
    trit_status st = cuda_use(dev);
    if (st != TRIT_OK)
        return st;
    int no_image = 0, pdl = 0;
    size_t pro_smem = kPrologueSmemBytes;
    cudaFuncAttributes pro, mainf;
    cudaError_t err = cudaFuncGetAttributes(&pro, gemv_prologue);
    if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorInvalidDeviceFunction) {
        (void)cudaGetLastError();
        no_image = 1;
        err = cudaSuccess;
    } else if (err == cudaSuccess) {
        // Every main variant comes from the same compilation as this one.
        err = cudaFuncGetAttributes(&mainf, gemv_main<1, 1, 1, false>);
        const char *opt = option(dev, "gemv_pdl");
        pdl = err == cudaSuccess && mainf.ptxVersion >= 90 && dev->prop.major >= 9 &&
              !(opt && strcmp(opt, "off") == 0);
        const size_t optin = dev->prop.sharedMemPerBlockOptin;
        if (err == cudaSuccess && optin > pro.sharedSizeBytes + kPrologueSmemBytes) {
            err = cudaFuncSetAttribute(gemv_prologue, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)(optin - pro.sharedSizeBytes));
            if (err == cudaSuccess)
                pro_smem = optin - pro.sharedSizeBytes;
        }
    }
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        return cuda_fail(dev, err, "gemv: kernel attributes");
    }
    const char *force = option(dev, "gemv_splits");
    const long forced = force ? strtol(force, NULL, 10) : 0;
    dev->gemv.no_image = no_image;
    dev->gemv.pdl = pdl;
    dev->gemv.forced_splits = forced >= 1 && forced <= MAX_SPLITS ? (int)forced : 0;
    dev->gemv.prologue_smem = pro_smem;
    __atomic_store_n(&dev->gemv.ready, 1, __ATOMIC_RELEASE);
    return TRIT_OK;
}

const void *tensor_ptr(const trit_plugin_tensor *t)
{
    return (const char *)((const cuda_buffer *)t->buffer)->ptr + t->offset;
}

} // namespace

// --- the vtable's slots -------------------------------------------------------------------------

extern "C" trit_status cuda_ternary_create(void *device, const trit_ternary_host *w,
                                           void **out_ternary, uint64_t *out_device_bytes)
{
    cuda_device *dev = (cuda_device *)device;
    if (!w || !w->codes || w->rows < 1 || w->cols < 1 || w->row_bytes < (uint64_t)(w->cols + 3) / 4)
        return cuda_error(dev, TRIT_ERROR_INTERNAL, "ternary upload: malformed host matrix");
    if (!cu_gemv_k_supported(w->cols) || w->rows > INT32_MAX)
        return cuda_error(dev, TRIT_ERROR_UNSUPPORTED,
                          "ternary upload: a %lld x %lld matrix is too large for the CUDA GEMV "
                          "(rows < 2^31, cols < 2^24 keep the int32 sums exact)",
                          (long long)w->rows, (long long)w->cols);
    const int64_t rows = w->rows, cols = w->cols, pitch = cu_gemv_pitch(cols);
    const int64_t nb = (cols + TRIT_SCALE_BLOCK_K - 1) / TRIT_SCALE_BLOCK_K;
    trit_scale_kind kind = w->scale_kind;
    const uint64_t want = kind == TRIT_SCALE_TENSOR ? 1
                          : kind == TRIT_SCALE_ROW  ? (uint64_t)rows
                                                    : (uint64_t)rows * (uint64_t)nb;
    if (kind > TRIT_SCALE_BLOCK || (w->scales ? w->scale_count != want : kind != TRIT_SCALE_TENSOR))
        return cuda_error(dev, TRIT_ERROR_INTERNAL,
                          "ternary upload: %llu scales do not fit scale kind %d",
                          (unsigned long long)w->scale_count, (int)kind);

    // Store the simplest scale kind that gives the same products (as the CPU plugin does):
    // block scales constant along every row become row scales, equal row scales one scale.
    const float *scales = w->scales;
    float *row_scales = NULL;
    if (kind == TRIT_SCALE_BLOCK) {
        bool per_row = true;
        for (int64_t r = 0; r < rows && per_row; r++)
            for (int64_t b = 1; b < nb; b++)
                if (!(scales[r * nb + b] == scales[r * nb])) {
                    per_row = false;
                    break;
                }
        if (per_row) {
            row_scales = (float *)malloc((size_t)rows * sizeof(float));
            if (!row_scales)
                return cuda_error(dev, TRIT_ERROR_OUT_OF_MEMORY,
                                  "ternary upload: out of host memory");
            for (int64_t r = 0; r < rows; r++)
                row_scales[r] = scales[r * nb];
            scales = row_scales;
            kind = TRIT_SCALE_ROW;
        }
    }
    if (kind == TRIT_SCALE_ROW) {
        bool same = true;
        for (int64_t r = 1; r < rows && same; r++)
            same = scales[r] == scales[0];
        if (same)
            kind = TRIT_SCALE_TENSOR;
    }
    const float tensor_scale = scales ? scales[0] : 1.0f;
    const uint64_t scale_vals = kind == TRIT_SCALE_TENSOR ? 0
                                : kind == TRIT_SCALE_ROW  ? (uint64_t)rows
                                                          : (uint64_t)rows * (uint64_t)nb;
    const uint64_t code_bytes = (uint64_t)rows * (uint64_t)pitch * CU_GEMV_CHUNK_BYTES;

    trit_status st = cuda_use(dev);
    cuda_ternary *t = st == TRIT_OK ? (cuda_ternary *)calloc(1, sizeof(*t)) : NULL;
    uint8_t *host = t && code_bytes <= SIZE_MAX ? (uint8_t *)malloc((size_t)code_bytes) : NULL;
    if (st == TRIT_OK && !host)
        st = cuda_error(dev, TRIT_ERROR_OUT_OF_MEMORY,
                        "ternary upload: out of host memory repacking a %lld x %lld matrix",
                        (long long)rows, (long long)cols);
    if (st == TRIT_OK) {
        for (int64_t r = 0; r < rows; r++)
            cu_gemv_repack_row(w->codes + (uint64_t)r * w->row_bytes, cols,
                               host + (uint64_t)r * (uint64_t)pitch * CU_GEMV_CHUNK_BYTES);
        cudaError_t err = cudaMalloc((void **)&t->codes, (size_t)code_bytes);
        if (err == cudaSuccess)
            err = cudaMemcpy(t->codes, host, (size_t)code_bytes, cudaMemcpyHostToDevice);
        if (err == cudaSuccess && scale_vals) {
            err = cudaMalloc((void **)&t->scales, (size_t)scale_vals * sizeof(float));
            if (err == cudaSuccess)
                err = cudaMemcpy(t->scales, scales, (size_t)scale_vals * sizeof(float),
                                 cudaMemcpyHostToDevice);
        }
        if (err != cudaSuccess)
            st = cuda_fail(dev, err, "ternary upload");
    }
    free(host);
    free(row_scales);
    if (st != TRIT_OK) {
        if (t) {
            cudaFree(t->codes);
            cudaFree(t->scales);
            free(t);
        }
        return st;
    }
    t->rows = rows;
    t->cols = cols;
    t->pitch = pitch;
    t->nb = nb;
    t->kind = kind;
    t->tensor_scale = tensor_scale;
    *out_ternary = t;
    if (out_device_bytes)
        *out_device_bytes = code_bytes + scale_vals * sizeof(float);
    return TRIT_OK;
}

extern "C" void cuda_ternary_destroy(void *device, void *ternary)
{
    cuda_ternary *t = (cuda_ternary *)ternary;
    if (!t)
        return;
    if (cuda_use((cuda_device *)device) == TRIT_OK) {
        cudaFree(t->codes);
        cudaFree(t->scales);
    }
    free(t);
}

extern "C" int cuda_gemv_supports(const cuda_device *dev, const trit_op_desc *desc, char *reason,
                                  size_t reason_size)
{
    const char *why = NULL;
    if (desc->op != TRIT_OP_GEMV && desc->op != TRIT_OP_GEMV_GATED)
        why = "not a GEMV op";
    else if (desc->x_dtype != TRIT_DTYPE_F32 && desc->x_dtype != TRIT_DTYPE_F16)
        why = "gemv: x must be f32 or f16";
    else if (desc->y_dtype != TRIT_DTYPE_F32 && desc->y_dtype != TRIT_DTYPE_F16)
        why = "gemv: y must be f32 or f16";
    else if (desc->path != TRIT_GEMV_FLOAT && desc->path != TRIT_GEMV_INT8)
        why = "gemv: unknown numeric path";
    else if (desc->n < 1 || desc->n > TRIT_GEMV_MAX_N)
        why = "gemv: N must be 1..16";
    else if (dev->prop.major * 10 + dev->prop.minor < 61)
        why = "gemv: the CUDA kernels need dp4a (sm_61 or newer)";
    if (why) {
        if (reason && reason_size)
            snprintf(reason, reason_size, "%s", why);
        return 0;
    }
    // The device object is the plugin's own (const here only by the vtable's signature);
    // preparing fills its GEMV cache.
    cuda_device *d = (cuda_device *)dev;
    if (gemv_prepare(d) != TRIT_OK) {
        if (reason && reason_size)
            snprintf(reason, reason_size, "gemv: %s",
                     "the CUDA runtime could not query the GEMV kernels on this device");
        return 0;
    }
    if (d->gemv.no_image) {
        if (reason && reason_size)
            snprintf(reason, reason_size,
                     "gemv: this build has no kernel image for sm_%d%d (rebuild with "
                     "TRIT_CUDA_ARCHS including %d%d)",
                     dev->prop.major, dev->prop.minor, dev->prop.major, dev->prop.minor);
        return 0;
    }
    return 1;
}

extern "C" trit_status cuda_gemv(void *stream, const trit_plugin_gemv_args *args)
{
    cuda_stream *s = (cuda_stream *)stream;
    cuda_device *dev = s->dev;
    const cuda_ternary *w = (const cuda_ternary *)args->w, *wu = (const cuda_ternary *)args->w_up;
    if (!w || args->m != w->rows || args->k != w->cols || args->n < 1 ||
        args->n > TRIT_GEMV_MAX_N || (wu && (wu->rows != w->rows || wu->cols != w->cols)))
        return cuda_error(dev, TRIT_ERROR_INTERNAL,
                          "gemv: arguments do not match the matrix (host validation missed it)");
    trit_status st = gemv_prepare(dev);
    if (st == TRIT_OK)
        st = cuda_use(dev);
    if (st != TRIT_OK)
        return st;
    if (dev->gemv.no_image)
        return launch_check(dev, cudaErrorNoKernelImageForDevice, "gemv");

    const bool int8 = args->path == TRIT_GEMV_INT8;
    const int mats = wu ? 2 : 1, n = (int)args->n;
    const int64_t m = args->m, k = args->k, pitch = w->pitch, kp = pitch * CU_GEMV_CHUNK;
    const bool block = w->kind == TRIT_SCALE_BLOCK || (wu && wu->kind == TRIT_SCALE_BLOCK);

    // Element alignment of every tensor (the host checks bounds, not alignment).
    const size_t xsz = args->x.dtype == TRIT_DTYPE_F16 ? 2 : 4;
    const size_t ysz = args->y.dtype == TRIT_DTYPE_F16 ? 2 : 4;
    if (args->x.offset % xsz || args->y.offset % ysz ||
        (args->has_rmsnorm && args->rmsnorm_weight.offset % 4) ||
        (args->has_bias && args->bias.offset % 4) ||
        (args->has_residual && args->residual.offset % ysz) ||
        (args->has_accumulators && args->accumulators.offset % 4))
        return cuda_error(dev, TRIT_ERROR_UNSUPPORTED,
                          "gemv: a tensor's byte offset is not a multiple of its element size");

    // cuda.gemv_splits=S forces S splits (1..16), so tests can run every case through split-K.
    const launch_plan pl =
        plan_launch(int8, n, mats, block, m, pitch, dev->prop.multiProcessorCount,
                    dev->gemv.forced_splits, dev->gemv.prologue_smem);
    void *scratch = NULL;
    if ((st = cuda_stream_scratch(s, pl.scratch_bytes, &scratch)) != TRIT_OK)
        return st;

    prologue_args pa;
    memset(&pa, 0, sizeof(pa));
    pa.x = tensor_ptr(&args->x);
    pa.x_stride = args->x.strides[0];
    pa.x_f16 = args->x.dtype == TRIT_DTYPE_F16;
    pa.k = k;
    pa.kp = kp;
    pa.pitch = pitch;
    pa.g = args->has_rmsnorm ? (const float *)tensor_ptr(&args->rmsnorm_weight) : NULL;
    pa.eps = args->rmsnorm_eps;

    main_args ma;
    memset(&ma, 0, sizeof(ma));
    ma.codes[0] = w->codes;
    ma.scales[0] = w->scales;
    ma.kind[0] = w->kind;
    ma.tscale[0] = w->tensor_scale;
    if (wu) {
        ma.codes[1] = wu->codes;
        ma.scales[1] = wu->scales;
        ma.kind[1] = wu->kind;
        ma.tscale[1] = wu->tensor_scale;
    }
    ma.m = m;
    ma.pitch = pitch;
    ma.nb = w->nb;
    ma.kp = kp;
    ma.n = n;
    ma.bias = args->has_bias ? (const float *)tensor_ptr(&args->bias) : NULL;
    if (args->has_residual) {
        ma.res = tensor_ptr(&args->residual);
        ma.res_stride = args->residual.strides[0];
    }
    ma.y = (void *)tensor_ptr(&args->y);
    ma.y_stride = args->y.strides[0];
    ma.y_f16 = args->y.dtype == TRIT_DTYPE_F16;
    ma.act = (int)args->act;
    if (args->has_accumulators && int8 && !wu) {
        ma.acc = (int32_t *)tensor_ptr(&args->accumulators);
        ma.acc_stride = args->accumulators.strides[0];
    }

    bind_scratch(pl, (char *)scratch, &pa, &ma);

    // Launched with cudaLaunchKernelEx, whose return value is the launch's own error.
    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.gridDim = dim3((unsigned)n, 1, 1);
    cfg.blockDim = dim3(PRO_THREADS, 1, 1);
    cfg.dynamicSmemBytes = pl.pro_smem;
    cfg.stream = s->stream;
    if ((st = launch_check(dev, cudaLaunchKernelEx(&cfg, gemv_prologue, pa),
                           "gemv prologue launch")) != TRIT_OK)
        return st;

    // The main kernel and the split-K finish each start while their predecessor runs (PDL) and
    // wait for it (griddepcontrol.wait) before reading its output.
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    memset(&cfg, 0, sizeof(cfg));
    cfg.gridDim = dim3((unsigned)pl.grid_x, (unsigned)pl.splits, (unsigned)pl.grid_z);
    cfg.blockDim = dim3(MAIN_THREADS, 1, 1);
    cfg.dynamicSmemBytes = pl.v.smem;
    cfg.stream = s->stream;
    cfg.attrs = dev->gemv.pdl ? attr : NULL;
    cfg.numAttrs = dev->gemv.pdl ? 1 : 0;
    if ((st = launch_check(dev, cudaLaunchKernelEx(&cfg, pl.v.main, ma), "gemv launch")) != TRIT_OK)
        return st;

    if (pl.splits > 1) {
        cfg.gridDim = dim3((unsigned)pl.finish_blocks, 1, 1);
        cfg.blockDim = dim3(FIN_THREADS, 1, 1);
        cfg.dynamicSmemBytes = 0;
        st = launch_check(dev, cudaLaunchKernelEx(&cfg, pl.v.finish, ma),
                          "gemv split-K finish launch");
    }
    return st;
}

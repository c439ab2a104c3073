/*
 * gemv_kernels.h — the device side of the CUDA GEMV (gemv.cu explains the design, the layout and
 * the floors): the kernel arguments, the device helpers, gemv_prologue, gemv_main and
 * gemv_finish, and the launch planning (template variant, grid, splits, scratch layout) that
 * gemv.cu's host side and the tests both call. Kept apart from the host code so that a CPU
 * emulation (tests/cuda_emu.h defines TRIT_CUDA_GEMV_EMULATE and the test provides load_stream,
 * prefetch_l2, pdl_wait and pdl_launch_dependents in namespace cuda_gemv_kernels) runs the same
 * kernel source; only
 * gemv.cu includes it in the plugin.
 */
#ifndef TRIT_CUDA_GEMV_KERNELS_H
#define TRIT_CUDA_GEMV_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <type_traits>

#ifndef TRIT_CUDA_GEMV_EMULATE
#include <cuda_fp16.h>
#endif

#include "gemv_layout.h"
#include "trit/trit.h"

namespace cuda_gemv_kernels {

enum {
    MAIN_WARPS = 4, // warps per block of gemv_main
    MAIN_THREADS = MAIN_WARPS * 32,
    MAX_SLOTS = 4, // weight rows a warp reads side by side (2 for >= 8 pseudo-columns)
    PRO_THREADS = CU_GEMV_PRO_THREADS, // threads per token in gemv_prologue
    FIN_THREADS = 256,
    MAX_SPLITS = 16,
};

struct prologue_args {
    const void *x;
    int64_t x_stride; // elements between tokens
    int x_f16;
    int64_t k, kp; // kp = pitch * 64
    int64_t pitch;
    const float *g; // RMSNorm weight or NULL
    float eps;
    int xp_cache;  // 1: x' is kept in dynamic shared memory (kp floats) for the quantization pass
    int planes;    // 1 (INT8) or CU_GEMV_PLANES (FLOAT)
    int8_t *q;     // [n * planes][cu_gemv_q_bytes(pitch)], interleaved (cu_gemv_q_offset)
    int32_t *qsum; // [n * planes][pitch]
    int32_t *qtot; // [n * planes]
    float *colf;   // INT8: a / 127 per token (0 for a = 0, NaN for x' not finite)
    double *unit;  // FLOAT: a / 2^30 per token (same conventions)
};

struct main_args {
    const uint4 *codes[2];
    const float *scales[2];
    int kind[2];
    float tscale[2];
    int64_t m, pitch, nb, kp;
    int n, splits;
    const int8_t *q;
    const int32_t *qsum, *qtot;
    const float *colf;
    const double *unit;
    uint32_t *partial; // [splits][mats][n * planes][m] when splits > 1
    // Epilogue.
    const float *bias;
    const void *res;
    int64_t res_stride;
    void *y;
    int64_t y_stride;
    int y_f16;
    int act;
    int32_t *acc;
    int64_t acc_stride;
};

// --- small device helpers ---------------------------------------------------------------------

#ifndef TRIT_CUDA_GEMV_EMULATE
__device__ __forceinline__ uint4 load_stream(const uint4 *p)
{
    // Weights are read once: keep them out of L1, where the activations live. (Only weights,
    // which never change, take the non-coherent path: see pdl_wait for the prologue's data.)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
#else
    return __ldg(p);
#endif
}

// A hint that the 16 bytes at p (weights) will be read soon: the line is fetched into L2. Issued
// before pdl_wait because, unlike the loads (which ptxas sinks below griddepcontrol.wait, next to
// their first use), volatile asm keeps its place relative to the wait.
__device__ __forceinline__ void prefetch_l2(const void *p)
{
#if defined(__CUDA_ARCH__)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#endif
}

// Programmatic dependent launch: wait until the prologue grid has completed and its writes are
// visible. What the prologue writes is read with plain loads after this, never with ld.global.nc
// (__ldg), which the compiler may treat as invariant and move. Compiled only for sm_90 and newer:
// code built from older PTX has no wait, so the host enables PDL only where the kernel's
// ptxVersion is 90 or more (a compute_80 PTX JIT-compiled on an H100 would otherwise race).
__device__ __forceinline__ void pdl_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_launch_dependents()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
#endif /* TRIT_CUDA_GEMV_EMULATE */

__device__ __forceinline__ float load_elem(const void *base, int64_t i, int f16)
{
    if (f16)
        return __half2float(__ushort_as_half(((const unsigned short *)base)[i]));
    return ((const float *)base)[i];
}

__device__ __forceinline__ float act_apply(int act, float v)
{
    switch (act) {
    case TRIT_ACT_RELU2: return v > 0.0f ? v * v : 0.0f;
    case TRIT_ACT_SILU: return v / (1.0f + expf(-v));
    case TRIT_ACT_GELU: {
        // 0.5 (1 + tanh(u)) = 1 / (1 + e^-2u), u = sqrt(2/pi) (v + 0.044715 v^3), as the CPU.
        const float u2 = 1.5957691216057308f * (v + 0.044715f * v * v * v);
        return v / (1.0f + expf(-u2));
    }
    default: return v;
    }
}

template <typename V> __device__ __forceinline__ V warp_sum(V v)
{
    // Xor butterfly: every lane ends with the same value, summed in the same (fixed) order.
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the block in a fixed order; every thread gets the result. `sh` holds one V per warp.
template <typename V> __device__ V block_sum(V v, V *sh)
{
    v = warp_sum(v);
    const int warp = threadIdx.x / 32, nw = blockDim.x / 32;
    if ((threadIdx.x & 31) == 0)
        sh[warp] = v;
    __syncthreads();
    V t = sh[0];
    for (int w = 1; w < nw; w++)
        t += sh[w];
    __syncthreads();
    return t;
}

__device__ uint32_t block_max_u32(uint32_t v, uint32_t *sh)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int warp = threadIdx.x / 32, nw = blockDim.x / 32;
    if ((threadIdx.x & 31) == 0)
        sh[warp] = v;
    __syncthreads();
    uint32_t t = sh[0];
    for (int w = 1; w < nw; w++)
        t = max(t, sh[w]);
    __syncthreads();
    return t;
}

// --- 1. prologue ----------------------------------------------------------------------------

// x' as the CPU plugin computes it: x * (1 / sqrt(mean(x^2) + eps)) * g in fp64, rounded once.
__device__ __forceinline__ float xprime_of(float v, float g, bool has_g, double inv)
{
    if (!has_g)
        return v;
    return (float)(__dmul_rn(__dmul_rn((double)v, inv), (double)g));
}

// Four consecutive elements of x from element i (a multiple of 4) with one load: 16 bytes (f32)
// or 8 (f16). The caller checked that the token's row is aligned for it.
__device__ __forceinline__ float4 load_x4(const void *base, int64_t i, int f16)
{
    if (f16) {
        const uint2 u = *reinterpret_cast<const uint2 *>((const unsigned short *)base + i);
        return make_float4(__half2float(__ushort_as_half((unsigned short)(u.x & 0xffffu))),
                           __half2float(__ushort_as_half((unsigned short)(u.x >> 16))),
                           __half2float(__ushort_as_half((unsigned short)(u.y & 0xffffu))),
                           __half2float(__ushort_as_half((unsigned short)(u.y >> 16))));
    }
    return *reinterpret_cast<const float4 *>((const float *)base + i);
}

// Dynamic shared memory of gemv_prologue: the reduction slots (one double and one uint32 per
// warp, padded to 256 bytes), then with xp_cache the kp floats of x'.
constexpr size_t kPrologueSmemBytes = 256;
static_assert(PRO_THREADS / 32 * (sizeof(double) + sizeof(uint32_t)) <= kPrologueSmemBytes,
              "prologue reduction slots fit their 256 bytes");
__host__ __device__ constexpr size_t prologue_smem_bytes(int64_t kp, bool xp_cache)
{
    return kPrologueSmemBytes + (xp_cache ? (size_t)kp * sizeof(float) : 0);
}

// The prologue. The two passes over x (sum of squares; max|x'|) are unrolled x8 with their loads
// issued before their uses, so they cost ceil(K / 4096) and, where the row is 16-byte aligned
// (four elements a load), ceil(K / 16384) dependent round trips instead of one per 512
// elements each. The third pass (quantization) reads x' back from shared memory, or where kp
// floats do not fit the shared memory the host allows, reloads x and g (a step at a time).
__global__ void __launch_bounds__(PRO_THREADS) gemv_prologue(const prologue_args a)
{
    // The main kernel may start now; it waits for this grid to finish before reading q.
    pdl_launch_dependents();

    extern __shared__ __align__(16) unsigned char smem_raw[];
    double *const sh_d = reinterpret_cast<double *>(smem_raw);                    // [warps]
    uint32_t *const sh_u = reinterpret_cast<uint32_t *>(sh_d + PRO_THREADS / 32); // [warps]
    float *const xs = reinterpret_cast<float *>(smem_raw + kPrologueSmemBytes);   // [kp] x'
    const int tok = blockIdx.x;
    const void *xb = a.x_f16 ? (const void *)((const unsigned short *)a.x + tok * a.x_stride)
                             : (const void *)((const float *)a.x + tok * a.x_stride);
    const int tid = threadIdx.x, nthr = blockDim.x;
    const int64_t k = a.k;
    const bool has_g = a.g != nullptr;
    // Four elements per load where the row (and g) allow it.
    const bool vec = (uintptr_t)xb % (a.x_f16 ? 8 : 16) == 0 && (uintptr_t)a.g % 16 == 0;

    // 1. Sum of squares: thread i sums elements i, i + 512, ... in that order (the order the
    // layout fixes, CU_GEMV_PRO_THREADS), eight loads ahead of the fma's.
    double inv = 1.0;
    if (has_g) {
        double part = 0.0;
        for (int64_t i0 = tid; i0 < k; i0 += 8 * (int64_t)nthr) {
            float v[8];
#pragma unroll
            for (int u = 0; u < 8; u++) {
                const int64_t i = i0 + (int64_t)u * nthr;
                v[u] = i < k ? load_elem(xb, i, a.x_f16) : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < 8; u++)
                if (i0 + (int64_t)u * nthr < k)
                    part = __fma_rn((double)v[u], (double)v[u], part);
        }
        const double ss = block_sum(part, sh_d);
        inv = 1.0 / sqrt(ss / (double)k + (double)a.eps);
    }

    // 2. a = max |x'| as bits (NaN sorts above inf, so "not finite" is one compare); the order
    // does not matter, so a thread takes groups of four elements. x' goes to shared memory.
    uint32_t mb = 0;
    if (vec) {
        const int64_t quads = k / 4;
        for (int64_t q0 = tid; q0 < quads; q0 += 8 * (int64_t)nthr) {
            float4 xv[8], gv[8];
#pragma unroll
            for (int u = 0; u < 8; u++) {
                const int64_t q = q0 + (int64_t)u * nthr;
                if (q < quads) {
                    xv[u] = load_x4(xb, 4 * q, a.x_f16);
                    gv[u] = has_g ? *reinterpret_cast<const float4 *>(a.g + 4 * q)
                                  : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
                } else {
                    xv[u] = gv[u] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                }
            }
#pragma unroll
            for (int u = 0; u < 8; u++) {
                const int64_t q = q0 + (int64_t)u * nthr;
                if (q >= quads)
                    break;
                const float4 p = make_float4(xprime_of(xv[u].x, gv[u].x, has_g, inv),
                                             xprime_of(xv[u].y, gv[u].y, has_g, inv),
                                             xprime_of(xv[u].z, gv[u].z, has_g, inv),
                                             xprime_of(xv[u].w, gv[u].w, has_g, inv));
                mb = max(mb, __float_as_uint(p.x) & 0x7fffffffu);
                mb = max(mb, __float_as_uint(p.y) & 0x7fffffffu);
                mb = max(mb, __float_as_uint(p.z) & 0x7fffffffu);
                mb = max(mb, __float_as_uint(p.w) & 0x7fffffffu);
                if (a.xp_cache)
                    *reinterpret_cast<float4 *>(xs + 4 * q) = p;
            }
        }
    }
    // The elements the vector loop did not take (all of them without it), one at a time.
    for (int64_t i0 = (vec ? k / 4 * 4 : 0) + tid; i0 < k; i0 += 8 * (int64_t)nthr) {
        float xv[8], gv[8];
#pragma unroll
        for (int u = 0; u < 8; u++) {
            const int64_t i = i0 + (int64_t)u * nthr;
            if (i < k) {
                xv[u] = load_elem(xb, i, a.x_f16);
                gv[u] = has_g ? a.g[i] : 1.0f;
            } else {
                xv[u] = gv[u] = 0.0f;
            }
        }
#pragma unroll
        for (int u = 0; u < 8; u++) {
            const int64_t i = i0 + (int64_t)u * nthr;
            if (i >= k)
                break;
            const float p = xprime_of(xv[u], gv[u], has_g, inv);
            mb = max(mb, __float_as_uint(p) & 0x7fffffffu);
            if (a.xp_cache)
                xs[i] = p;
        }
    }
    const uint32_t abits = block_max_u32(mb, sh_u); // (its barrier also publishes xs)
    const float amax = __uint_as_float(abits);
    const bool finite = abits < 0x7f800000u;
    const bool zero = !finite || amax == 0.0f;
    const float s = zero ? 0.0f : __fdiv_rn(127.0f, amax);
    const double mul = zero ? 0.0 : 1073741824.0 / (double)amax;

    // Each thread makes one 4-byte word of every pseudo-column per step; 16 lanes = one chunk.
    const int lane = tid & 31, warp = tid / 32, nwarps = nthr / 32;
    const int64_t words = a.kp / 4, words_r = (words + 31) / 32 * 32;
    const int planes = a.planes;
    uint32_t tot[CU_GEMV_PLANES] = {0, 0, 0, 0};
    for (int64_t base = (int64_t)warp * 32; base < words_r; base += (int64_t)nwarps * 32) {
        const int64_t wi = base + lane;
        uint32_t wv[CU_GEMV_PLANES] = {0, 0, 0, 0};
        if (wi < words && !zero) {
            // x' of the word's four elements: from shared memory, else x and g again (one load
            // each where aligned and whole).
            float xq[4];
            if (a.xp_cache) {
                const float4 p = *reinterpret_cast<const float4 *>(xs + wi * 4);
                xq[0] = p.x, xq[1] = p.y, xq[2] = p.z, xq[3] = p.w;
            } else if (vec && wi * 4 + 3 < k) {
                const float4 xv = load_x4(xb, wi * 4, a.x_f16);
                const float4 gv = has_g ? *reinterpret_cast<const float4 *>(a.g + wi * 4)
                                        : make_float4(1.0f, 1.0f, 1.0f, 1.0f);
                xq[0] = xprime_of(xv.x, gv.x, has_g, inv);
                xq[1] = xprime_of(xv.y, gv.y, has_g, inv);
                xq[2] = xprime_of(xv.z, gv.z, has_g, inv);
                xq[3] = xprime_of(xv.w, gv.w, has_g, inv);
            } else {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int64_t i = wi * 4 + e;
                    xq[e] = i < k ? xprime_of(load_elem(xb, i, a.x_f16), has_g ? a.g[i] : 1.0f,
                                              has_g, inv)
                                  : 0.0f;
                }
            }
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int64_t i = wi * 4 + e;
                if (i >= k)
                    break;
                const float xp = xq[e];
                if (planes == 1) {
                    wv[0] |= (uint32_t)(uint8_t)cu_gemv_quantize(xp, s) << (8 * e);
                } else {
                    int8_t d[CU_GEMV_PLANES];
                    cu_gemv_digits((int32_t)rint(__dmul_rn((double)xp, mul)), d);
#pragma unroll
                    for (int p = 0; p < CU_GEMV_PLANES; p++)
                        wv[p] |= (uint32_t)(uint8_t)d[p] << (8 * e);
                }
            }
        }
#pragma unroll
        for (int p = 0; p < CU_GEMV_PLANES; p++) {
            if (p >= planes)
                break;
            const int64_t pc = (int64_t)tok * planes + p;
            const int32_t ws = __dp4a((int)wv[p], 0x01010101, 0); // sum of the four bytes
            int32_t cs = ws;
#pragma unroll
            for (int o = 8; o > 0; o >>= 1)
                cs += __shfl_xor_sync(0xffffffffu, cs, o);
            if (wi < words) {
                *(uint32_t *)(a.q + pc * cu_gemv_q_bytes(a.pitch) + cu_gemv_q_word_offset(wi)) =
                    wv[p];
                if ((lane & 15) == 0)
                    a.qsum[pc * a.pitch + wi / 16] = cs;
            }
            tot[p] += (uint32_t)ws;
        }
    }
#pragma unroll
    for (int p = 0; p < CU_GEMV_PLANES; p++) {
        if (p >= planes)
            break;
        const uint32_t t = block_sum(tot[p], sh_u);
        if (tid == 0)
            a.qtot[(int64_t)tok * planes + p] = (int32_t)t;
    }
    if (tid == 0) {
        if (planes == 1)
            a.colf[tok] = !finite ? __int_as_float(0x7fc00000) : __fdiv_rn(amax, 127.0f);
        else
            a.unit[tok] =
                !finite ? __longlong_as_double(0x7ff8000000000000ll) : (double)amax / 1073741824.0;
    }
}

// --- 2. main kernel and 3. split-K finish ------------------------------------------------------

// t of matrix `mat` at (row, tok) before the epilogue, from its PLANES raw sums (int sums of
// code * q mod 2^32, or for BLOCK f32 sums of true chunk dots times block scales, as bits).
template <int PLANES, bool BLOCK>
__device__ __forceinline__ float finish_mat(const main_args &a, int mat, int64_t row, int tok,
                                            const uint32_t *v)
{
    const int kind = a.kind[mat];
    const float rs = kind == TRIT_SCALE_ROW      ? a.scales[mat][row]
                     : kind == TRIT_SCALE_TENSOR ? a.tscale[mat]
                                                 : 1.0f;
    const int64_t pc = (int64_t)tok * PLANES;
    if constexpr (PLANES == 1) {
        const float cf = a.colf[tok];
        if constexpr (BLOCK)
            return __fmul_rn(__fmul_rn(__uint_as_float(v[0]), cf), rs);
        const int32_t acc = cu_gemv_int8_acc(v[0], a.qtot[pc]);
        if (mat == 0 && a.acc)
            a.acc[tok * a.acc_stride + row] = acc;
        return __fmul_rn(__fmul_rn((float)acc, cf), rs);
    }
    const double u = a.unit[tok];
    if constexpr (BLOCK) {
        const double s = (double)__uint_as_float(v[0]) + (double)__uint_as_float(v[1]) * 256.0 +
                         (double)__uint_as_float(v[2]) * 65536.0 +
                         (double)__uint_as_float(v[3]) * 16777216.0;
        return (float)(s * u * (double)rs);
    } else {
        const int32_t qt[CU_GEMV_PLANES] = {a.qtot[pc], a.qtot[pc + 1], a.qtot[pc + 2],
                                            a.qtot[pc + 3]};
        return cu_gemv_float_combine(v, qt, u, rs);
    }
}

// The epilogue of (row, tok): bias, activation, the up product, residual, store.
template <int PLANES, int MATS, bool BLOCK>
__device__ __forceinline__ void epilogue(const main_args &a, int64_t row, int tok,
                                         const uint32_t *vg, const uint32_t *vu)
{
    float t = finish_mat<PLANES, BLOCK>(a, 0, row, tok, vg);
    if (a.bias)
        t += a.bias[row];
    t = act_apply(a.act, t);
    if constexpr (MATS == 2)
        t *= finish_mat<PLANES, BLOCK>(a, 1, row, tok, vu);
    if (a.res)
        t += load_elem(a.res, tok * a.res_stride + row, a.y_f16);
    if (a.y_f16)
        ((__half *)a.y)[tok * a.y_stride + row] = __float2half_rn(t);
    else
        ((float *)a.y)[tok * a.y_stride + row] = t;
}

// The row block and token tile of gemv_main's block b = blockIdx.z * gridDim.x + blockIdx.x
// (plan_launch sizes the grid): the token tile varies fastest, so the `tiles` blocks of one row
// block are consecutive, run in the same wave, and read those rows of W once from DRAM and the
// other times from L2 (with the tile slowest, each tile re-streamed W: 58 MB for 8192 x 28672,
// more than an H100's 50 MB L2). Blocks past the last row block return at once.
__host__ __device__ inline void main_block_coords(uint32_t b, uint32_t tiles, uint32_t *row_block,
                                                  uint32_t *tile)
{
    // 32-bit: plan_launch keeps the grid under 2^32 blocks.
    *row_block = b / tiles;
    *tile = b - *row_block * tiles;
}

// The widest token tile of a path (pick_variant): the only variants that see n > T, so the only
// ones launched with more than one tile.
template <int PLANES> __host__ __device__ constexpr int widest_tile_of()
{
    return PLANES == 1 ? 16 : 4;
}

// T tokens per block (main_block_coords tiles N), PLANES pseudo-columns per token, MATS matrices
// (gated pair), BLOCK: f32 accumulation with a scale per chunk (some matrix has block scales).
template <int T, int PLANES> __host__ __device__ constexpr int slots_of()
{
    // Decoded chunks (16 registers a slot) and sums (P a slot) must fit the register file.
    return T * PLANES >= 8 ? 2 : MAX_SLOTS;
}

// Iterations of weight loads a lane keeps in flight (see gemv_main): two where one
// pseudo-column without block scales leaves the registers for it (80 of the 80 that 6 blocks per
// SM allow, no spills on sm_80 / sm_90; with block scales ptxas spilled), else one.
template <int T, int PLANES, bool BLOCK> __host__ __device__ constexpr int ring_depth_of()
{
    return T * PLANES == 1 && !BLOCK ? 2 : 1;
}

// Blocks per SM asked of ptxas: the one-pseudo-column variants (INT8 decode, the case that must
// run at memory speed) need ~70 registers, and 6 blocks (24 warps) keep ~48 KB of loads in flight
// per SM; four pseudo-columns (FLOAT decode) fit 3 blocks (<= 170 registers, ~24 KB in flight)
// except with block scales, which spilled there;
// the wider tiles take what they need (without a minimum, ptxas aimed at 128 registers for some
// and spilled).
template <int T, int PLANES, bool BLOCK> __host__ __device__ constexpr int min_blocks_of()
{
    return T * PLANES == 1 ? 6 : T * PLANES == 4 && !BLOCK ? 3 : 1;
}

template <int T, int PLANES, int MATS, bool BLOCK>
__global__ void __launch_bounds__(MAIN_THREADS, (min_blocks_of<T, PLANES, BLOCK>()))
    gemv_main(const main_args a)
{
    constexpr int P = T * PLANES; // pseudo-columns of the tile
    constexpr int SLOTS = slots_of<T, PLANES>();
    constexpr int R = SLOTS / MATS; // rows of each matrix per warp
    typedef typename std::conditional<BLOCK, float, uint32_t>::type acc_t;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    uint32_t *const red = reinterpret_cast<uint32_t *>(smem_raw); // [MAIN_WARPS][SLOTS * P]

    const int lane = threadIdx.x & 31, wib = threadIdx.x / 32;
    // Narrower tiles have one tile: the division folds away and row0 stays a function of
    // blockIdx, which ptxas recomputes instead of keeping live (FLOAT T = 1 spilled otherwise).
    const uint32_t tiles = T == widest_tile_of<PLANES>() ? (uint32_t)(a.n + T - 1) / T : 1u;
    uint32_t row_block, tile;
    main_block_coords(blockIdx.z * gridDim.x + blockIdx.x, tiles, &row_block, &tile);
    const int64_t row0 = ((int64_t)row_block * MAIN_WARPS + wib) * R;
    if (row0 >= a.m)
        return; // whole warp: no block-wide barrier follows
    const int split = blockIdx.y;
    const int tok0 = (int)tile * T;
    const int ntok = min(T, a.n - tok0);
    const int np = ntok * PLANES;
    const int64_t pc0 = (int64_t)tok0 * PLANES;
    int64_t c0, c1;
    cu_gemv_split_range(a.pitch, a.splits, split, &c0, &c1);
    const int64_t qbytes = cu_gemv_q_bytes(a.pitch); // one pseudo-column of q

    const uint4 *wp[SLOTS];
    const float *bsp[SLOTS]; // BLOCK: the row's block scales, or NULL for a row/tensor scale
#pragma unroll
    for (int s = 0; s < SLOTS; s++) {
        const int mat = s / R;
        // Rows past M read row M - 1 (in bounds) and are never stored.
        const int64_t row = row0 + s % R < a.m ? row0 + s % R : a.m - 1;
        wp[s] = a.codes[mat] + row * a.pitch;
        bsp[s] = BLOCK && a.kind[mat] == TRIT_SCALE_BLOCK ? a.scales[mat] + row * a.nb : nullptr;
    }

    acc_t acc[SLOTS][P];
#pragma unroll
    for (int s = 0; s < SLOTS; s++)
#pragma unroll
        for (int p = 0; p < P; p++)
            acc[s][p] = 0;

    int64_t c = c0 + lane;
    // The weights do not depend on the prologue: while it runs, pull the warp's first two
    // iterations of chunks into L2 (these stay above the wait; the loads below may not).
#pragma unroll
    for (int s = 0; s < SLOTS; s++) {
        if (c < c1)
            prefetch_l2(wp[s] + c);
        if (c + 32 < c1)
            prefetch_l2(wp[s] + c + 32);
    }
    // A ring of DEPTH iterations of loads in flight: two for INT8 decode without block scales
    // (the case that must run at memory speed), one where the registers are needed for decoded
    // chunks, sums and block scales.
    constexpr int DEPTH = ring_depth_of<T, PLANES, BLOCK>();
    uint4 ring[DEPTH][SLOTS];
#pragma unroll
    for (int d = 0; d < DEPTH; d++)
#pragma unroll
        for (int s = 0; s < SLOTS; s++)
            ring[d][s] = c + 32 * d < c1 ? load_stream(wp[s] + c + 32 * d) : make_uint4(0, 0, 0, 0);

    pdl_wait(); // the prologue's q, sums and column scales are complete past this point

    for (; c < c1; c += 32) {
        uint32_t pl[SLOTS][16];
#pragma unroll
        for (int s = 0; s < SLOTS; s++)
            cu_gemv_decode_chunk(ring[0][s].x, ring[0][s].y, ring[0][s].z, ring[0][s].w, pl[s]);
#pragma unroll
        for (int d = 0; d + 1 < DEPTH; d++)
#pragma unroll
            for (int s = 0; s < SLOTS; s++)
                ring[d][s] = ring[d + 1][s];
        if (c + 32 * DEPTH < c1) {
#pragma unroll
            for (int s = 0; s < SLOTS; s++)
                ring[DEPTH - 1][s] = load_stream(wp[s] + c + 32 * DEPTH);
        }
        float bs[SLOTS];
        if constexpr (BLOCK) {
#pragma unroll
            for (int s = 0; s < SLOTS; s++)
                bs[s] = bsp[s] ? __ldg(bsp[s] + c / CU_GEMV_BLOCK_CHUNKS) : 1.0f;
        }
#pragma unroll
        for (int p = 0; p < P; p++) {
            if (p >= np)
                break;
            // Interleaved (cu_gemv_q_offset): uint4 j of the lanes' chunks is 512 contiguous
            // bytes (two runs where the split does not start on 32 chunks).
            const uint4 *qp = (const uint4 *)(a.q + (pc0 + p) * qbytes + cu_gemv_q_offset(c, 0));
            constexpr int J = CU_GEMV_LANES; // uint4 between j and j + 1
            const uint4 q0 = qp[0], q1 = qp[J], q2 = qp[2 * J], q3 = qp[3 * J];
            const uint32_t qw[16] = {q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w,
                                     q2.x, q2.y, q2.z, q2.w, q3.x, q3.y, q3.z, q3.w};
            if constexpr (BLOCK) {
                const int32_t qs = a.qsum[(pc0 + p) * a.pitch + c];
#pragma unroll
                for (int s = 0; s < SLOTS; s++) {
                    const int32_t d = (int32_t)(cu_gemv_dot_chunk(pl[s], qw, 0u) - (uint32_t)qs);
                    acc[s][p] = __fmaf_rn((float)d, bs[s], acc[s][p]);
                }
            } else {
#pragma unroll
                for (int s = 0; s < SLOTS; s++)
                    acc[s][p] = (acc_t)cu_gemv_dot_chunk(pl[s], qw, (uint32_t)acc[s][p]);
            }
        }
    }

    // With split-K the finish kernel (launched with PDL) may start; it waits for this grid.
    pdl_launch_dependents();

    // Lane sums -> one value per (slot, pseudo-column), kept as bits in shared memory.
    uint32_t *const r = red + wib * SLOTS * P;
#pragma unroll
    for (int s = 0; s < SLOTS; s++)
#pragma unroll
        for (int p = 0; p < P; p++) {
            if (p >= np)
                break;
            const acc_t v = warp_sum(acc[s][p]);
            if (lane == 0) {
                if constexpr (BLOCK)
                    r[s * P + p] = __float_as_uint(v);
                else
                    r[s * P + p] = v;
            }
        }
    __syncwarp();

    if (a.splits == 1) {
        for (int i = lane; i < R * ntok; i += 32) {
            const int rr = i % R, j = i / R;
            const int64_t row = row0 + rr;
            if (row >= a.m)
                continue;
            epilogue<PLANES, MATS, BLOCK>(a, row, tok0 + j, r + rr * P + j * PLANES,
                                          MATS == 2 ? r + (R + rr) * P + j * PLANES : nullptr);
        }
        return;
    }
    const int64_t pall = (int64_t)a.n * PLANES;
    for (int i = lane; i < SLOTS * np; i += 32) {
        const int s = i / np, p = i % np;
        const int mat = s / R;
        const int64_t row = row0 + s % R;
        if (row < a.m)
            a.partial[(((int64_t)split * MATS + mat) * pall + pc0 + p) * a.m + row] = r[s * P + p];
    }
}

// Split-K: one thread per (row, token) sums the splits' partials in split order, then the
// epilogue. Launched with PDL after gemv_main: nothing is read before the wait.
template <int PLANES, int MATS, bool BLOCK>
__global__ void __launch_bounds__(FIN_THREADS) gemv_finish(const main_args a)
{
    pdl_wait(); // the partials (and, through gemv_main's own wait, the prologue's output)
    const int64_t i = (int64_t)blockIdx.x * FIN_THREADS + threadIdx.x;
    if (i >= a.m * a.n)
        return;
    const int tok = (int)(i / a.m);
    const int64_t row = i % a.m;
    const int64_t pall = (int64_t)a.n * PLANES;
    uint32_t v[MATS][PLANES];
#pragma unroll
    for (int mat = 0; mat < MATS; mat++)
#pragma unroll
        for (int p = 0; p < PLANES; p++) {
            const int64_t pc = (int64_t)tok * PLANES + p;
            float f = 0.0f;
            uint32_t u = 0;
            for (int s = 0; s < a.splits; s++) {
                const uint32_t x = a.partial[(((int64_t)s * MATS + mat) * pall + pc) * a.m + row];
                if constexpr (BLOCK)
                    f += __uint_as_float(x);
                else
                    u += x;
            }
            if constexpr (BLOCK)
                v[mat][p] = __float_as_uint(f);
            else
                v[mat][p] = u;
        }
    epilogue<PLANES, MATS, BLOCK>(a, row, tok, v[0], v[MATS - 1]);
}

// --- launch planning (host) ---------------------------------------------------------------------

// One main-kernel variant and its split-K finish.
struct variant {
    void (*main)(const main_args);
    void (*finish)(const main_args);
    int t;       // tokens per tile
    int rows;    // rows of each matrix per warp
    size_t smem; // dynamic shared memory of gemv_main: one sum per (warp, slot, pseudo-column)
};

template <int T, int PLANES, int MATS, bool BLOCK> variant make_variant()
{
    return variant{gemv_main<T, PLANES, MATS, BLOCK>, gemv_finish<PLANES, MATS, BLOCK>, T,
                   slots_of<T, PLANES>() / MATS,
                   (size_t)MAIN_WARPS * slots_of<T, PLANES>() * T * PLANES * sizeof(uint32_t)};
}

template <int T, int PLANES> variant pick_mb(int mats, bool block)
{
    if (mats == 2)
        return block ? make_variant<T, PLANES, 2, true>() : make_variant<T, PLANES, 2, false>();
    return block ? make_variant<T, PLANES, 1, true>() : make_variant<T, PLANES, 1, false>();
}

// The smallest token tile that holds n (INT8: 1, 2, 4, 8, 16; FLOAT: 1, 2, 4, then tiles of 4,
// since each FLOAT token is four pseudo-columns and a tile keeps SLOTS * T * PLANES <= 64 sums).
inline variant pick_variant(bool int8, int n, int mats, bool block)
{
    if (int8) {
        if (n <= 1)
            return pick_mb<1, 1>(mats, block);
        if (n <= 2)
            return pick_mb<2, 1>(mats, block);
        if (n <= 4)
            return pick_mb<4, 1>(mats, block);
        if (n <= 8)
            return pick_mb<8, 1>(mats, block);
        return pick_mb<16, 1>(mats, block);
    }
    if (n <= 1)
        return pick_mb<1, CU_GEMV_PLANES>(mats, block);
    if (n <= 2)
        return pick_mb<2, CU_GEMV_PLANES>(mats, block);
    return pick_mb<4, CU_GEMV_PLANES>(mats, block);
}

inline uint64_t align256(uint64_t v)
{
    return (v + 255) & ~(uint64_t)255;
}

// What one call launches: gemv_prologue on n blocks of PRO_THREADS (prologue_smem_bytes),
// v.main on grid (grid_x, splits, grid_z) blocks of MAIN_THREADS (v.smem): blocks_x row blocks
// times `tiles` token tiles, tile fastest (main_block_coords), on x while that fits x's limit of
// 2^31 - 1 and spread over z beyond (only for M near 2^31), and with splits > 1
// v.finish on finish_blocks blocks of FIN_THREADS; and where each array lives in the scratch.
struct launch_plan {
    variant v;
    int planes, tiles, splits;
    bool xp_cache;                                   // the prologue keeps x' in shared memory
    size_t pro_smem;                                 // its dynamic shared memory
    int64_t blocks_x, grid_x, grid_z, finish_blocks; // blocks_x: row blocks
    // Byte offsets into the scratch, each on 256 bytes: q [n * planes][cu_gemv_q_bytes(pitch)]
    // int8 (interleaved, cu_gemv_q_offset), qsum
    // [n * planes][pitch] and qtot [n * planes] int32, colf [n] float, unit [n] double, the
    // split-K partials [splits][mats][n * planes][m] uint32 (splits > 1); and the total.
    uint64_t q_off, qsum_off, qtot_off, colf_off, unit_off, part_off, scratch_bytes;
};

// Plans a call: m x k matrices (pitch chunks a row), `mats` 1 or 2 (gated pair), `block`: some
// matrix keeps block scales. Split-K is chosen when the row groups leave the SMs short of work
// (about 4 blocks per SM on `sm_count` SMs), keeping at least one chunk per lane in every split;
// forced_splits in 1..MAX_SPLITS overrides that (0: no override). The prologue keeps x' in
// shared memory when that fits prologue_smem_limit (the device's opt-in maximum per block).
inline launch_plan plan_launch(bool int8, int n, int mats, bool block, int64_t m, int64_t pitch,
                               int sm_count, int forced_splits, size_t prologue_smem_limit)
{
    launch_plan pl;
    pl.xp_cache = prologue_smem_bytes(pitch * CU_GEMV_CHUNK, true) <= prologue_smem_limit;
    pl.pro_smem = prologue_smem_bytes(pitch * CU_GEMV_CHUNK, pl.xp_cache);
    pl.v = pick_variant(int8, n, mats, block);
    pl.planes = int8 ? 1 : CU_GEMV_PLANES;
    pl.tiles = (n + pl.v.t - 1) / pl.v.t;
    const int64_t warps = (m + pl.v.rows - 1) / pl.v.rows;
    pl.blocks_x = (warps + MAIN_WARPS - 1) / MAIN_WARPS;
    const int64_t blocks = pl.blocks_x * pl.tiles, x_max = ((int64_t)1 << 31) - 1;
    pl.grid_z = (blocks + x_max - 1) / x_max;
    pl.grid_x = (blocks + pl.grid_z - 1) / pl.grid_z;

    pl.splits = 1;
    const int64_t want_blocks = (int64_t)sm_count * 4;
    if (pl.blocks_x * pl.tiles < want_blocks) {
        int64_t sp = want_blocks / (pl.blocks_x * pl.tiles);
        sp = sp < pitch / CU_GEMV_LANES ? sp : pitch / CU_GEMV_LANES;
        pl.splits = (int)(sp < 1 ? 1 : sp > MAX_SPLITS ? MAX_SPLITS : sp);
    }
    if (forced_splits >= 1 && forced_splits <= MAX_SPLITS)
        pl.splits = forced_splits;
    pl.finish_blocks = (m * n + FIN_THREADS - 1) / FIN_THREADS;

    const uint64_t pall = (uint64_t)n * (uint64_t)pl.planes;
    pl.q_off = 0;
    pl.qsum_off = align256(pl.q_off + pall * (uint64_t)cu_gemv_q_bytes(pitch));
    pl.qtot_off = align256(pl.qsum_off + pall * (uint64_t)pitch * 4);
    pl.colf_off = align256(pl.qtot_off + pall * 4);
    pl.unit_off = align256(pl.colf_off + (uint64_t)n * 4);
    pl.part_off = align256(pl.unit_off + (uint64_t)n * 8);
    pl.scratch_bytes =
        pl.part_off +
        (pl.splits > 1 ? (uint64_t)pl.splits * (uint64_t)mats * pall * (uint64_t)m * 4 : 0);
    return pl;
}

// Points the kernels' scratch arrays into `scratch` (256-byte aligned, pl.scratch_bytes long).
inline void bind_scratch(const launch_plan &pl, char *scratch, prologue_args *pa, main_args *ma)
{
    pa->planes = pl.planes;
    pa->xp_cache = pl.xp_cache;
    pa->q = (int8_t *)(scratch + pl.q_off);
    pa->qsum = (int32_t *)(scratch + pl.qsum_off);
    pa->qtot = (int32_t *)(scratch + pl.qtot_off);
    pa->colf = (float *)(scratch + pl.colf_off);
    pa->unit = (double *)(scratch + pl.unit_off);
    ma->splits = pl.splits;
    ma->q = pa->q;
    ma->qsum = pa->qsum;
    ma->qtot = pa->qtot;
    ma->colf = pa->colf;
    ma->unit = pa->unit;
    ma->partial = pl.splits > 1 ? (uint32_t *)(scratch + pl.part_off) : nullptr;
}

} // namespace cuda_gemv_kernels

#endif /* TRIT_CUDA_GEMV_KERNELS_H */

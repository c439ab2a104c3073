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
//     per-column sums, since the weights are biased codes (w + 1).
//  2. gemv_main<T, PLANES, MATS, BLOCK>: a warp owns 4 weight rows (4 rows of W, or 2 rows of
//     the gate and the same 2 of up; half that when a tile has 8 or more pseudo-columns, to stay
//     in registers); its 32 lanes walk the row's chunks with stride 32, so one
//     load instruction reads 512 contiguous bytes of each row (one 16-byte uint4 per lane, L1
//     bypassed). Each decoded chunk serves the T tokens of the block's token tile (T * PLANES
//     pseudo-columns: 16 dp4a each). The next chunk's loads are issued before the current one is
//     used. Lane sums meet by an xor butterfly (same result on every lane, fixed order), and
//     the lanes then run the epilogue of the warp's (row, token) pairs.
//     Split-K (grid.y > 1, for short-wide matrices that would leave SMs idle): each split owns a
//     fixed chunk range and writes its partials to scratch; gemv_finish sums the splits in index
//     order and runs the epilogue, so results never depend on timing.
//  On sm_90 the main kernel is launched with programmatic dependent launch: its blocks start and
//  issue their first weight loads while the prologue runs, and wait (griddepcontrol.wait) before
//  reading its output. Option cuda.gemv_pdl=off turns that off; cuda.gemv_splits=S forces S
//  splits (tests use it to put every conformance case through split-K).
//
// Floor (H100 SXM, 3.35 TB/s): the codes are M K / 4 bytes; 8192 x 28672 is 58.7 MB = 17.5 us,
// BitNet-2B 2560 x 2560 1.6 MB = 0.49 us, 6912 x 2560 (gate+up pair 8.8 MB) = 2.6 us,
// 2560 x 6912 4.4 MB = 1.3 us. Expected: INT8 N = 1 is memory bound: per 64 weights a lane does
// 16 dp4a + 16 AND + 12 shifts, ~0.75 integer ops per weight, about 45% of the SM's integer
// issue rate at 3.35 TB/s; at 72 registers, 24 warps per SM keep ~48 KB of loads in flight,
// more than the DRAM latency needs (~20 KB per SM); the big matrix (M = 8192 or 28672, no
// split-K) should run at >= 90% of copy bandwidth in the main kernel, plus the
// prologue (~1-2 us for N = 1, hidden in part by PDL). The small BitNet matrices are latency
// bound (one or two DRAM round trips plus launch gaps: a few us, not the 0.5-2.6 us floor).
// FLOAT does 4x the dp4a of INT8 (four digit planes), ~64 dp4a lanes per SM per cycle at
// 3.35 TB/s, about the dp4a issue limit: expect it near, not at, the floor. Large N is compute
// bound (16 N dp4a per 64 weights); FLOAT with N > 4 makes one weight pass per 4 tokens.
// Short-wide shapes (2560 x 6912: 160 blocks of 4 warps for 132 SMs) take split-K, which adds
// the finish kernel's launch.
// None of this has been measured: the file has been compiled (sm_80, sm_90) but has never run.
#include <cuda_fp16.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu.h"
#include "gemv_layout.h"

#include <type_traits>

namespace {

enum {
    MAIN_WARPS = 4, // warps per block of gemv_main
    MAIN_THREADS = MAIN_WARPS * 32,
    MAX_SLOTS = 4, // weight rows a warp reads side by side (2 for >= 8 pseudo-columns)
    PRO_THREADS = CU_GEMV_PRO_THREADS, // threads per token in gemv_prologue
    FIN_THREADS = 256,
    MAX_SPLITS = 16,
};

struct cuda_ternary {
    uint4 *codes;  // rows * pitch chunks
    float *scales; // ROW: [rows]; BLOCK: [rows][nb]; TENSOR: NULL
    int64_t rows, cols, pitch, nb;
    trit_scale_kind kind;
    float tensor_scale;
};

struct prologue_args {
    const void *x;
    int64_t x_stride; // elements between tokens
    int x_f16;
    int64_t k, kp; // kp = pitch * 64
    int64_t pitch;
    const float *g; // RMSNorm weight or NULL
    float eps;
    int planes;    // 1 (INT8) or CU_GEMV_PLANES (FLOAT)
    int8_t *q;     // [n * planes][kp]
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

// Programmatic dependent launch: wait until the prologue grid has completed and its writes are
// visible. What the prologue writes is read with plain loads after this, never with ld.global.nc
// (__ldg), which the compiler may treat as invariant and move.
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
__device__ __forceinline__ float xprime(const prologue_args &a, const void *xb, int64_t i,
                                        double inv)
{
    const float v = load_elem(xb, i, a.x_f16);
    if (!a.g)
        return v;
    return (float)(__dmul_rn(__dmul_rn((double)v, inv), (double)a.g[i]));
}

__global__ void __launch_bounds__(PRO_THREADS) gemv_prologue(const prologue_args a)
{
    // The main kernel may start now; it waits for this grid to finish before reading q.
    pdl_launch_dependents();

    __shared__ double sh_d[PRO_THREADS / 32];
    __shared__ uint32_t sh_u[PRO_THREADS / 32];
    const int tok = blockIdx.x;
    const void *xb = a.x_f16 ? (const void *)((const unsigned short *)a.x + tok * a.x_stride)
                             : (const void *)((const float *)a.x + tok * a.x_stride);
    const int tid = threadIdx.x, nthr = blockDim.x;

    double inv = 1.0;
    if (a.g) {
        double part = 0.0;
        for (int64_t i = tid; i < a.k; i += nthr) {
            const double v = (double)load_elem(xb, i, a.x_f16);
            part = __fma_rn(v, v, part);
        }
        const double ss = block_sum(part, sh_d);
        inv = 1.0 / sqrt(ss / (double)a.k + (double)a.eps);
    }

    // a = max |x'| as bits (NaN sorts above inf, so "not finite" is one compare).
    uint32_t mb = 0;
    for (int64_t i = tid; i < a.k; i += nthr)
        mb = max(mb, __float_as_uint(xprime(a, xb, i, inv)) & 0x7fffffffu);
    const uint32_t abits = block_max_u32(mb, sh_u);
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
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int64_t i = wi * 4 + e;
                if (i >= a.k)
                    break;
                const float xp = xprime(a, xb, i, inv);
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
                ((uint32_t *)(a.q + pc * a.kp))[wi] = wv[p];
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

// T tokens per block (grid.z tiles N), PLANES pseudo-columns per token, MATS matrices (gated
// pair), BLOCK: f32 accumulation with a scale per chunk (some matrix has block scales).
template <int T, int PLANES> __host__ __device__ constexpr int slots_of()
{
    // Decoded chunks (16 registers a slot) and sums (P a slot) must fit the register file.
    return T * PLANES >= 8 ? 2 : MAX_SLOTS;
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
    __shared__ uint32_t red[MAIN_WARPS][SLOTS * P];

    const int lane = threadIdx.x & 31, wib = threadIdx.x / 32;
    const int64_t row0 = ((int64_t)blockIdx.x * MAIN_WARPS + wib) * R;
    if (row0 >= a.m)
        return; // whole warp: no block-wide barrier follows
    const int split = blockIdx.y;
    const int tok0 = blockIdx.z * T;
    const int ntok = min(T, a.n - tok0);
    const int np = ntok * PLANES;
    const int64_t pc0 = (int64_t)tok0 * PLANES;
    int64_t c0, c1;
    cu_gemv_split_range(a.pitch, a.splits, split, &c0, &c1);

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
    uint4 nxt[SLOTS];
#pragma unroll
    for (int s = 0; s < SLOTS; s++)
        nxt[s] = c < c1 ? load_stream(wp[s] + c) : make_uint4(0, 0, 0, 0);

    pdl_wait(); // the prologue's q, sums and column scales are complete past this point

    for (; c < c1; c += 32) {
        uint32_t pl[SLOTS][16];
#pragma unroll
        for (int s = 0; s < SLOTS; s++)
            cu_gemv_decode_chunk(nxt[s].x, nxt[s].y, nxt[s].z, nxt[s].w, pl[s]);
        if (c + 32 < c1) {
#pragma unroll
            for (int s = 0; s < SLOTS; s++)
                nxt[s] = load_stream(wp[s] + c + 32);
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
            const uint4 *qp = (const uint4 *)(a.q + (pc0 + p) * a.kp) + c * 4;
            const uint4 q0 = qp[0], q1 = qp[1], q2 = qp[2], q3 = qp[3];
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

    // Lane sums -> one value per (slot, pseudo-column), kept as bits in shared memory.
    uint32_t *r = red[wib];
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
// epilogue.
template <int PLANES, int MATS, bool BLOCK>
__global__ void __launch_bounds__(FIN_THREADS) gemv_finish(const main_args a)
{
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

// --- host side --------------------------------------------------------------------------------

trit_status set_error(const cuda_device *dev, trit_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

trit_status set_error(const cuda_device *dev, trit_status st, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (dev->host && dev->host->set_error)
        dev->host->set_error(dev->host->user, msg);
    return st;
}

// Turns a launch's error (from the launch call or cudaGetLastError) into a status and sentence.
trit_status launch_check(const cuda_device *dev, cudaError_t err, const char *what)
{
    const cudaError_t last = cudaGetLastError(); // also clears a launch error
    if (err == cudaSuccess)
        err = last;
    if (err == cudaSuccess)
        return TRIT_OK;
    if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorInvalidDeviceFunction)
        return set_error(dev, TRIT_ERROR_UNSUPPORTED,
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

// One main-kernel variant and its split-K finish.
struct variant {
    void (*main)(const main_args);
    void (*finish)(const main_args);
    int t;    // tokens per tile
    int rows; // rows of each matrix per warp
};

template <int T, int PLANES, int MATS, bool BLOCK> variant make_variant()
{
    return variant{gemv_main<T, PLANES, MATS, BLOCK>, gemv_finish<PLANES, MATS, BLOCK>, T,
                   slots_of<T, PLANES>() / MATS};
}

template <int T, int PLANES> variant pick_mb(int mats, bool block)
{
    if (mats == 2)
        return block ? make_variant<T, PLANES, 2, true>() : make_variant<T, PLANES, 2, false>();
    return block ? make_variant<T, PLANES, 1, true>() : make_variant<T, PLANES, 1, false>();
}

// The smallest token tile that holds n (INT8: 1, 2, 4, 8, 16; FLOAT: 1, 2, 4, then tiles of 4,
// since each FLOAT token is four pseudo-columns and a tile keeps SLOTS * T * PLANES <= 64 sums).
variant pick_variant(bool int8, int n, int mats, bool block)
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

uint64_t align256(uint64_t v)
{
    return (v + 255) & ~(uint64_t)255;
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
        return set_error(dev, TRIT_ERROR_INTERNAL, "ternary upload: malformed host matrix");
    if (w->cols > CU_GEMV_MAX_K || w->rows > INT32_MAX)
        return set_error(dev, TRIT_ERROR_UNSUPPORTED,
                         "ternary upload: a %lld x %lld matrix is too large for the CUDA GEMV "
                         "(rows < 2^31, cols <= 2^24 keep the int32 sums exact)",
                         (long long)w->rows, (long long)w->cols);
    const int64_t rows = w->rows, cols = w->cols, pitch = cu_gemv_pitch(cols);
    const int64_t nb = (cols + TRIT_SCALE_BLOCK_K - 1) / TRIT_SCALE_BLOCK_K;
    trit_scale_kind kind = w->scale_kind;
    const uint64_t want = kind == TRIT_SCALE_TENSOR ? 1
                          : kind == TRIT_SCALE_ROW  ? (uint64_t)rows
                                                    : (uint64_t)rows * (uint64_t)nb;
    if (kind > TRIT_SCALE_BLOCK || (w->scales ? w->scale_count != want : kind != TRIT_SCALE_TENSOR))
        return set_error(dev, TRIT_ERROR_INTERNAL,
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
                return set_error(dev, TRIT_ERROR_OUT_OF_MEMORY,
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
        st = set_error(dev, TRIT_ERROR_OUT_OF_MEMORY,
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
    if (why && reason && reason_size)
        snprintf(reason, reason_size, "%s", why);
    return why == NULL;
}

extern "C" trit_status cuda_gemv(void *stream, const trit_plugin_gemv_args *args)
{
    cuda_stream *s = (cuda_stream *)stream;
    cuda_device *dev = s->dev;
    const cuda_ternary *w = (const cuda_ternary *)args->w, *wu = (const cuda_ternary *)args->w_up;
    if (!w || args->m != w->rows || args->k != w->cols || args->n < 1 ||
        args->n > TRIT_GEMV_MAX_N || (wu && (wu->rows != w->rows || wu->cols != w->cols)))
        return set_error(dev, TRIT_ERROR_INTERNAL,
                         "gemv: arguments do not match the matrix (host validation missed it)");
    trit_status st = cuda_use(dev);
    if (st != TRIT_OK)
        return st;

    const bool int8 = args->path == TRIT_GEMV_INT8;
    const int mats = wu ? 2 : 1, n = (int)args->n, planes = int8 ? 1 : CU_GEMV_PLANES;
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
        return set_error(dev, TRIT_ERROR_UNSUPPORTED,
                         "gemv: a tensor's byte offset is not a multiple of its element size");

    const variant v = pick_variant(int8, n, mats, block);
    const int tiles = (n + v.t - 1) / v.t;
    const int rows_per_warp = v.rows;
    const int64_t warps = (m + rows_per_warp - 1) / rows_per_warp;
    const int64_t blocks_x = (warps + MAIN_WARPS - 1) / MAIN_WARPS;

    // Split-K when the row groups leave the SMs short of work (about 4 blocks per SM wanted),
    // keeping at least one chunk per lane in every split.
    int splits = 1;
    const int64_t want_blocks = (int64_t)dev->prop.multiProcessorCount * 4;
    if (blocks_x * tiles < want_blocks) {
        int64_t sp = want_blocks / (blocks_x * tiles);
        sp = sp < pitch / CU_GEMV_LANES ? sp : pitch / CU_GEMV_LANES;
        splits = (int)(sp < 1 ? 1 : sp > MAX_SPLITS ? MAX_SPLITS : sp);
    }
    // cuda.gemv_splits=S forces S splits (1..16), so tests can run every case through split-K.
    const char *force = option(dev, "gemv_splits");
    if (force) {
        const long f = strtol(force, NULL, 10);
        if (f >= 1 && f <= MAX_SPLITS)
            splits = (int)f;
    }

    // Scratch: q, per-chunk and per-column sums, column scales, split-K partials.
    const uint64_t pall = (uint64_t)n * (uint64_t)planes;
    const uint64_t q_off = 0;
    const uint64_t qsum_off = align256(q_off + pall * (uint64_t)kp);
    const uint64_t qtot_off = align256(qsum_off + pall * (uint64_t)pitch * 4);
    const uint64_t colf_off = align256(qtot_off + pall * 4);
    const uint64_t unit_off = align256(colf_off + (uint64_t)n * 4);
    const uint64_t part_off = align256(unit_off + (uint64_t)n * 8);
    const uint64_t total =
        part_off + (splits > 1 ? (uint64_t)splits * (uint64_t)mats * pall * (uint64_t)m * 4 : 0);
    void *scratch = NULL;
    if ((st = cuda_stream_scratch(s, total, &scratch)) != TRIT_OK)
        return st;
    char *sc = (char *)scratch;

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
    pa.planes = planes;
    pa.q = (int8_t *)(sc + q_off);
    pa.qsum = (int32_t *)(sc + qsum_off);
    pa.qtot = (int32_t *)(sc + qtot_off);
    pa.colf = (float *)(sc + colf_off);
    pa.unit = (double *)(sc + unit_off);
    gemv_prologue<<<n, PRO_THREADS, 0, s->stream>>>(pa);
    if ((st = launch_check(dev, cudaSuccess, "gemv prologue launch")) != TRIT_OK)
        return st;

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
    ma.splits = splits;
    ma.q = pa.q;
    ma.qsum = pa.qsum;
    ma.qtot = pa.qtot;
    ma.colf = pa.colf;
    ma.unit = pa.unit;
    ma.partial = splits > 1 ? (uint32_t *)(sc + part_off) : NULL;
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

    cudaLaunchConfig_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.gridDim = dim3((unsigned)blocks_x, (unsigned)splits, (unsigned)tiles);
    cfg.blockDim = dim3(MAIN_THREADS, 1, 1);
    cfg.stream = s->stream;
    cudaLaunchAttribute attr[1];
    const char *pdl = option(dev, "gemv_pdl");
    if (dev->prop.major >= 9 && !(pdl && strcmp(pdl, "off") == 0)) {
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
    }
    if ((st = launch_check(dev, cudaLaunchKernelEx(&cfg, v.main, ma), "gemv launch")) != TRIT_OK)
        return st;

    if (splits > 1) {
        memset(&cfg, 0, sizeof(cfg));
        cfg.gridDim = dim3((unsigned)((m * n + FIN_THREADS - 1) / FIN_THREADS), 1, 1);
        cfg.blockDim = dim3(FIN_THREADS, 1, 1);
        cfg.stream = s->stream;
        st =
            launch_check(dev, cudaLaunchKernelEx(&cfg, v.finish, ma), "gemv split-K finish launch");
    }
    return st;
}

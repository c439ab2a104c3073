/*
 * attention_kernels.h — the device side of the CUDA attention (attention.cu explains the design,
 * the tiling and the floors): tile shapes, the kernel parameters, the PTX wrappers (cp.async,
 * ldmatrix, mma.sync) and the three kernels. Kept apart from the host code so that a CPU
 * emulation of the PTX wrappers (defining TRIT_CUDA_ATTENTION_EMULATE and providing them) can
 * run the same kernel source; only attention.cu includes it in the plugin.
 */
#ifndef TRIT_CUDA_ATTENTION_KERNELS_H
#define TRIT_CUDA_ATTENTION_KERNELS_H

#include <math.h>
#include <stdint.h>

#ifndef TRIT_CUDA_ATTENTION_EMULATE
#include <cuda_fp16.h>
#endif

#include "attention_plan.h"

#include "kernel_elem.h"

namespace cuda_attn {

constexpr int kThreads = 128;
constexpr int kMmaRows = 64; /* query rows per MMA block: 4 warps x 16 */
constexpr int kMmaMinQ = 16; /* sequences with fewer queries take the SIMT path */
/* The combine's weight table (a group's rows x splits floats) stays within the 48 KB of shared
 * memory every block may use without opting in; the plan caps the split count to fit. */
constexpr int kCombineFloatsMax = 48 * 1024 / (int)sizeof(float);
constexpr uint64_t kPartialBytesMax = (uint64_t)64 << 20;

/* Keys per MMA tile and whether Q stays in registers. */
__host__ __device__ constexpr int mma_tile(int d)
{
    return d <= 128 ? 64 : 32;
}
__host__ __device__ constexpr bool mma_q_in_regs(int d)
{
    return d <= 128;
}
/* Query rows per SIMT item and keys per SIMT tile (a tile row of K or V is at most 256 bytes
 * for 32 keys, 1 KB for 16). */
__host__ __device__ constexpr int simt_rows(int d)
{
    return d <= 128 ? 16 : 8;
}
__host__ __device__ constexpr int simt_tile(int d, int es)
{
    return d * es <= 256 ? 32 : 16;
}
/* Layout of a SIMT K tile, free of bank conflicts in the score step. There a quarter warp (8
 * lanes: one 128-bit shared-memory wavefront) reads, with 4 lanes per key (32-key tiles), chunks
 * c..c+3 (16 bytes each) of two neighbouring keys; the 32 banks are 8 chunks, so the second key's
 * chunks must land 4 chunks away modulo 8. A row of NCH = d es / 16 chunks that is a multiple of
 * 8 (f16 D = 64, 128; f32 D = 64) is stored unpadded with chunk c of row r at c ^ 4 (r & 1) (an
 * XOR swizzle, no extra shared memory); the others (f16 D = 80, 96: 10, 12 chunks) are padded to
 * NCH + pad = 4 (mod 8), 12 chunks. With 8 lanes per key (16-key tiles) a quarter warp reads 8
 * neighbouring chunks of one row, conflict-free as is; those rows keep one chunk of padding. */
__host__ __device__ constexpr bool simt_k_swizzled(int d, int es)
{
    return simt_tile(d, es) == 32 && (d * es / 16) % 8 == 0;
}
__host__ __device__ constexpr int simt_ldk(int d, int es)
{
    return d + (simt_tile(d, es) != 32   ? 1
                : simt_k_swizzled(d, es) ? 0
                                         : (12 - (d * es / 16) % 8) % 8) *
                   (16 / es);
}
/* V rows are read as pairs along one row (any stride is conflict-free): one chunk of padding. */
__host__ __device__ constexpr int simt_ldv(int d, int es)
{
    return d + 16 / es;
}
/* Where chunk c of K row r of a tile lives, in chunks from the row's start. */
template <int D, int ES> __device__ __forceinline__ int simt_kchunk(int r, int c)
{
    return simt_k_swizzled(D, ES) ? c ^ ((r & 1) << 2) : c;
}

inline size_t mma_smem_bytes(int d)
{
    size_t ld = (size_t)d + 8, tile = (size_t)mma_tile(d);
    size_t kv = 4 * tile * ld * 2; /* K and V, two stages each, f16 */
    return mma_q_in_regs(d) ? kv : kv + (size_t)kMmaRows * ld * 2;
}

inline size_t simt_smem_bytes(int d, int es)
{
    size_t bn = (size_t)simt_tile(d, es), rmax = (size_t)simt_rows(d);
    size_t kv = 2 * bn * (size_t)(simt_ldk(d, es) + simt_ldv(d, es)) * (size_t)es;
    return kv + rmax * ((size_t)d + 4) * 4 + rmax * bn * 4 + 5 * rmax * 4;
}

struct attn_params {
    const char *q;
    int64_t q_s0, q_s1;
    int q_f16;
    char *out;
    int64_t o_s0, o_s1;
    int o_f16;
    const char *k, *v;
    int64_t k_s0, k_s1, k_s2, v_s0, v_s1, v_s2;
    int block_size; /* 0: contiguous cache */
    int max_blocks;
    int kv_aligned; /* every K/V row starts on 16 bytes: cp.async */
    int head_dim;
    const int32_t *table;
    const float *slopes, *sinks;
    const cuda_attn_item *items;
    const cuda_attn_group *groups;
    float *partials;
    float scale, softcap, inv_softcap;
    int causal, window;
    /* Combine: output elements per block and blocks per group (cuda_attn_combine_plan);
     * 0: one block per group takes all of it. */
    int combine_chunk, combine_chunks;
};

/* --- device helpers -------------------------------------------------------------------------- */

using cuda_elem::ld_elem;
using cuda_elem::st_elem;

/* Element offsets of key j of sequence seq in the K and V caches (contiguous or paged). */
__device__ __forceinline__ void cache_rows(const attn_params &p, int seq, int j, int g,
                                           int64_t *koff, int64_t *voff)
{
    int64_t blk = seq, row = j;
    if (p.block_size) {
        blk = p.table[(int64_t)seq * p.max_blocks + j / p.block_size];
        row = j % p.block_size;
    }
    *koff = blk * p.k_s0 + row * p.k_s1 + (int64_t)g * p.k_s2;
    *voff = blk * p.v_s0 + row * p.v_s1 + (int64_t)g * p.v_s2;
}

#ifndef TRIT_CUDA_ATTENTION_EMULATE
__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, bypassing L1; src_bytes 0 fills zeros (and reads nothing). */
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int src_bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)),
                 "l"(gmem), "r"(src_bytes)
                 : "memory");
}

__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* Waits until at most n of this thread's committed groups are still in flight. */
template <int n> __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(n) : "memory");
}

/* Four 8x8 b16 matrices; lanes 8i..8i+7 give the row addresses of matrix i, and register i
 * receives matrix i: lane l holds row l/4, columns 2(l%4), 2(l%4)+1 (.trans: column l/4, rows
 * 2(l%4), 2(l%4)+1). */
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *smem)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(smem))
                 : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *smem)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(smem))
                 : "memory");
}

/* c += a * b for one m16n8k16 tile, f16 inputs, f32 accumulators. With g = lane / 4 and
 * t = lane % 4: a[0] = A[g][2t..2t+1], a[1] = A[g+8][2t..], a[2] = A[g][2t+8..], a[3] =
 * A[g+8][2t+8..]; b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]; c[0..1] = C[g][2t..2t+1],
 * c[2..3] = C[g+8][2t..2t+1]. */
__device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

#endif /* TRIT_CUDA_ATTENTION_EMULATE */

/* A register seen as an f16 pair or as 32 bits (a union, not a pointer cast: that would break
 * strict aliasing). */
union half2_bits {
    __half2 h;
    uint32_t u;
};

/* Two floats as an f16 pair, the first in the low half (the lower column index). */
__device__ __forceinline__ uint32_t pack_half2(float lo, float hi)
{
    half2_bits b;
    b.h = __floats2half2_rn(lo, hi);
    return b.u;
}

/* Output scale of a finished row: 1 / l, with the sink folded into the denominator; 0 when
 * the row saw no key. m is the row's running max, in the units of the scores. */
__device__ __forceinline__ float finish_mul(const float *sinks, int h, float m, float l)
{
    if (!(l > 0.0f))
        return 0.0f;
    if (!sinks)
        return 1.0f / l;
    const float sink = sinks[h], mx = fmaxf(m, sink), keep = expf(m - mx);
    return keep / (l * keep + expf(sink - mx));
}

/* tanh for the MMA path's softcap: 1 - 2 / (1 + e^(2y)) with __expf (two MUFU ops and a divide
 * where tanhf costs ~20 instructions; ~1e-7 absolute error, saturating to +-1 correctly as e^(2y)
 * goes to inf or 0). Not tanh.approx.f32: its relative error of up to 2^-11 moves a capped score
 * x = c tanh(s / c) by up to |x| 2^-11 (0.015 at x = 30), which, modelled on the emulation, took
 * the "softcap, f16" case to 1.8e-3 of its 2e-3 tolerance. The emulation runs this same formula
 * (its __expf is expf). */
__device__ __forceinline__ float tanh_fast(float x)
{
    return 1.0f - 2.0f / (1.0f + __expf(2.0f * x));
}

/* Softcap, then ALiBi, on a scaled score. FAST: the MMA path's tanh_fast; the SIMT path keeps
 * tanhf for its f32 tolerance. */
template <bool FAST>
__device__ __forceinline__ float score_transform(const attn_params &p, float x, float slope,
                                                 int key, int pos)
{
    if (p.softcap > 0.0f)
        x = p.softcap * (FAST ? tanh_fast(x * p.inv_softcap) : tanhf(x * p.inv_softcap));
    if (p.slopes)
        x += slope * (float)(key - pos);
    return x;
}

/* --- tensor-core prefill --------------------------------------------------------------------- */

/* K and V rows [j0, j0 + BN) of the item into one stage; keys at or past j_end read zeros (they
 * are masked, but 0 * NaN from an unwritten cache slot would still poison P V). */
template <int D, int BN>
__device__ __forceinline__ void mma_load_kv(__half *sk, __half *sv, const attn_params &p,
                                            const cuda_attn_item &it, int j0)
{
    constexpr int LD = D + 8, NCH = D / 8;
    for (int e = threadIdx.x; e < BN * NCH; e += kThreads) {
        const int r = e / NCH, c = (e - r * NCH) * 8, j = j0 + r;
        const bool ok = j < it.j_end;
        int64_t ko = 0, vo = 0;
        if (ok)
            cache_rows(p, it.seq, j, it.kv_head, &ko, &vo);
        const __half *gk = reinterpret_cast<const __half *>(p.k) + ko + c;
        const __half *gv = reinterpret_cast<const __half *>(p.v) + vo + c;
        __half *dk = sk + r * LD + c, *dv = sv + r * LD + c;
        if (p.kv_aligned) {
            cp_async16(dk, gk, ok ? 16 : 0);
            cp_async16(dv, gv, ok ? 16 : 0);
        } else {
            const __half z = __float2half_rn(0.0f);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                dk[i] = ok ? gk[i] : z;
                dv[i] = ok ? gv[i] : z;
            }
        }
    }
}

template <int D> __global__ void __launch_bounds__(kThreads) attn_mma_kernel(const attn_params p)
{
    constexpr int BM = kMmaRows, BN = mma_tile(D), LD = D + 8, NCH = D / 8;
    constexpr bool QREG = mma_q_in_regs(D);
    static_assert(!QREG || BM == BN, "Q borrows the second K stage");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    __half *const sK = reinterpret_cast<__half *>(smem_raw);   /* [2][BN][LD] */
    __half *const sV = sK + 2 * BN * LD;                       /* [2][BN][LD] */
    __half *const sQ = QREG ? sK + BN * LD : sV + 2 * BN * LD; /* [BM][LD] */

    const cuda_attn_item it = p.items[blockIdx.x];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3;
    const int nt = it.n_tok, head = it.head0;

    /* Q rows times the softmax scale as f16 (rows past n_tok are zeros), so S = Q K^T needs no
     * scaling: the product rounds once like q itself, and q may exceed the f16 range by the
     * factor 1 / scale (the limit is |q scale| < 65504). Read once per block: plain loads. */
    for (int e = tid; e < BM * NCH; e += kThreads) {
        const int r = e / NCH, c = (e - r * NCH) * 8;
        uint32_t w[4] = {0u, 0u, 0u, 0u};
        if (r < nt) {
            const int64_t base = (it.tok0 + r) * p.q_s0 + (int64_t)head * p.q_s1 + c;
#pragma unroll
            for (int i = 0; i < 4; i++)
                w[i] = pack_half2(p.scale * ld_elem(p.q, base + 2 * i, p.q_f16),
                                  p.scale * ld_elem(p.q, base + 2 * i + 1, p.q_f16));
        }
        *reinterpret_cast<uint4 *>(sQ + r * LD + c) = make_uint4(w[0], w[1], w[2], w[3]);
    }

    /* This warp's rows and the keys they can see: the tile loop skips what none of them sees. */
    const int wr0 = warp * 16;
    const int wlast = min(wr0 + 15, nt - 1);
    const bool has_rows = wr0 < nt;
    int32_t wlo, whi, lo_first, hi_first, lo_last, hi_last, lo0, hi0, lo1, hi1;
    cuda_attn_key_range(p.causal, p.window, it.kv_len, it.pos0 + wr0, it.pos0 + wlast, it.j_begin,
                        it.j_end, &wlo, &whi);
    cuda_attn_key_range(p.causal, p.window, it.kv_len, it.pos0 + wr0, it.pos0 + wr0, it.j_begin,
                        it.j_end, &lo_first, &hi_first);
    cuda_attn_key_range(p.causal, p.window, it.kv_len, it.pos0 + wlast, it.pos0 + wlast, it.j_begin,
                        it.j_end, &lo_last, &hi_last);
    const int r0 = wr0 + g, r1 = r0 + 8, pos0 = it.pos0 + r0, pos1 = it.pos0 + r1;
    cuda_attn_key_range(p.causal, p.window, it.kv_len, pos0, pos0, it.j_begin, it.j_end, &lo0,
                        &hi0);
    cuda_attn_key_range(p.causal, p.window, it.kv_len, pos1, pos1, it.j_begin, it.j_end, &lo1,
                        &hi1);
    const float slope = p.slopes ? p.slopes[head] : 0.0f;

    float o[D / 8][4];
#pragma unroll
    for (int i = 0; i < D / 8; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

    const int ntiles = it.j_end > it.j_begin ? (it.j_end - it.j_begin + BN - 1) / BN : 0;
    if (ntiles > 0)
        mma_load_kv<D, BN>(sK, sV, p, it, it.j_begin);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();

    /* A fragments of this warp's 16 rows: matrices (rows 0-7 | 8-15) x (cols 0-7 | 8-15) in the
     * order a0..a3 needs, so lane l addresses row (l & 7) + 8 ((l >> 3) & 1), column 8 (l >> 4). */
    const int a_row = wr0 + (lane & 7) + ((lane >> 3) & 1) * 8, a_col = (lane >> 4) * 8;
    uint32_t qf[QREG ? D / 16 : 1][4];
    if constexpr (QREG) {
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
            ldmatrix_x4(qf[kk], sQ + a_row * LD + kk * 16 + a_col);
    }
    __syncthreads(); /* sQ may be the second K stage, which the first prefetch overwrites */

    /* B fragments of K (row-major [key][d] is B = K^T column-major): for keys n0..n0+15, lane l
     * addresses key n0 + (l & 7) + 8 (l >> 4), dim k0 + 8 ((l >> 3) & 1): registers 0, 1 are
     * b0, b1 of keys n0..n0+7 and 2, 3 those of keys n0+8..n0+15. */
    const int kb_row = (lane & 7) + (lane >> 4) * 8, kb_col = ((lane >> 3) & 1) * 8;
    /* B fragments of V ([key][d] = B row-major, so .trans): for keys k0..k0+15 and dims
     * n0..n0+15, lane l addresses key k0 + (l & 7) + 8 ((l >> 3) & 1), dim n0 + 8 (l >> 4):
     * registers 0, 1 are b0, b1 of dims n0..n0+7 and 2, 3 those of n0+8..n0+15. */
    const int vb_row = (lane & 7) + ((lane >> 3) & 1) * 8, vb_col = (lane >> 4) * 8;

    for (int t = 0; t < ntiles; t++) {
        const int j0 = it.j_begin + t * BN, st = t & 1;
        if (t + 1 < ntiles)
            mma_load_kv<D, BN>(sK + (st ^ 1) * BN * LD, sV + (st ^ 1) * BN * LD, p, it, j0 + BN);
        cp_async_commit();
        cp_async_wait<1>(); /* this tile's group is done; the next one may still fly */
        __syncthreads();
        if (has_rows && cuda_attn_tile_needed(wlo, whi, j0, BN)) {
            const __half *ks = sK + st * BN * LD, *vs = sV + st * BN * LD;
            float s[BN / 8][4];
#pragma unroll
            for (int n = 0; n < BN / 8; n++)
                s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                uint32_t a[4];
                if constexpr (QREG) {
                    a[0] = qf[kk][0];
                    a[1] = qf[kk][1];
                    a[2] = qf[kk][2];
                    a[3] = qf[kk][3];
                } else {
                    ldmatrix_x4(a, sQ + a_row * LD + kk * 16 + a_col);
                }
#pragma unroll
                for (int nn = 0; nn < BN / 16; nn++) {
                    uint32_t b[4];
                    ldmatrix_x4(b, ks + (nn * 16 + kb_row) * LD + kk * 16 + kb_col);
                    mma_16816(s[2 * nn], a, b[0], b[1]);
                    mma_16816(s[2 * nn + 1], a, b[2], b[3]);
                }
            }

            /* Scores: element e of n-tile n is row (e < 2 ? r0 : r1), key j0 + 8n + 2 tig + e%2. */
            const bool unmasked = cuda_attn_tile_unmasked(lo_last, hi_first, j0, BN);
            float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
            for (int n = 0; n < BN / 8; n++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = j0 + n * 8 + 2 * tig + (e & 1);
                    const bool top = e < 2;
                    float x = score_transform<true>(p, s[n][e], slope, key, top ? pos0 : pos1);
                    if (!unmasked && (key < (top ? lo0 : lo1) || key >= (top ? hi0 : hi1)))
                        x = -INFINITY;
                    s[n][e] = x;
                }
                mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
                mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
            }
            /* A row's 8 n-tile columns are spread over the 4 lanes of a quad. */
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
            const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
            /* A row that has seen nothing yet keeps max -inf: subtract 0 so -inf - -inf never
             * makes a NaN (its weights and alpha are all exp(-inf) = 0). */
            const float ref0 = mn0 == -INFINITY ? 0.0f : mn0, ref1 = mn1 == -INFINITY ? 0.0f : mn1;
            const float al0 = __expf(m0 - ref0), al1 = __expf(m1 - ref1);
            m0 = mn0;
            m1 = mn1;
            float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
            for (int n = 0; n < BN / 8; n++) {
                s[n][0] = __expf(s[n][0] - ref0);
                s[n][1] = __expf(s[n][1] - ref0);
                s[n][2] = __expf(s[n][2] - ref1);
                s[n][3] = __expf(s[n][3] - ref1);
                sum0 += s[n][0] + s[n][1];
                sum1 += s[n][2] + s[n][3];
            }
            /* l stays a per-lane partial sum (alpha is the same on the quad); reduced at the end.
             */
            l0 = l0 * al0 + sum0;
            l1 = l1 * al1 + sum1;
#pragma unroll
            for (int i = 0; i < D / 8; i++) {
                o[i][0] *= al0;
                o[i][1] *= al0;
                o[i][2] *= al1;
                o[i][3] *= al1;
            }

            /* O += P V: the S accumulators of n-tiles 2kk, 2kk+1 are exactly the A fragment of
             * keys 16kk..16kk+15 (a0 = tile 2kk rows g, a1 = rows g+8, a2/a3 = tile 2kk+1). */
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++) {
                uint32_t a[4];
                a[0] = pack_half2(s[2 * kk][0], s[2 * kk][1]);
                a[1] = pack_half2(s[2 * kk][2], s[2 * kk][3]);
                a[2] = pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
                a[3] = pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
                for (int dd = 0; dd < D / 16; dd++) {
                    uint32_t b[4];
                    ldmatrix_x4_trans(b, vs + (kk * 16 + vb_row) * LD + dd * 16 + vb_col);
                    mma_16816(o[2 * dd], a, b[0], b[1]);
                    mma_16816(o[2 * dd + 1], a, b[2], b[3]);
                }
            }
        }
        __syncthreads(); /* the next iteration's prefetch overwrites this stage */
    }

    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);

    /* Element e of o[i] is row (e < 2 ? r0 : r1), dim 8i + 2 tig + e%2. */
#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int r = half ? r1 : r0;
        if (r >= nt)
            continue;
        const float m = half ? m1 : m0, l = half ? l1 : l0;
        if (it.partial < 0) {
            const float mul = finish_mul(p.sinks, head, m, l);
            const int64_t base = (it.tok0 + r) * p.o_s0 + (int64_t)head * p.o_s1;
#pragma unroll
            for (int i = 0; i < D / 8; i++) {
                const int x = i * 8 + 2 * tig;
                st_elem(p.out, base + x, p.o_f16, o[i][2 * half] * mul);
                st_elem(p.out, base + x + 1, p.o_f16, o[i][2 * half + 1] * mul);
            }
        } else {
            float *dst = p.partials + it.partial;
#pragma unroll
            for (int i = 0; i < D / 8; i++) {
                const int x = i * 8 + 2 * tig;
                dst[(int64_t)r * D + x] = o[i][2 * half];
                dst[(int64_t)r * D + x + 1] = o[i][2 * half + 1];
            }
            if (tig == 0) {
                dst[(int64_t)nt * D + r] = m;
                dst[(int64_t)nt * D + nt + r] = l;
            }
        }
    }
}

/* --- SIMT split-KV kernel (decode, short queries, f32 caches) ------------------------------- */

template <typename T> __device__ __forceinline__ T zero_elem();
template <> __device__ __forceinline__ float zero_elem<float>()
{
    return 0.0f;
}
template <> __device__ __forceinline__ __half zero_elem<__half>()
{
    return __float2half_rn(0.0f);
}

/* 16 bytes of shared memory as floats. */
__device__ __forceinline__ void chunk_to_float(const float *src, float *dst)
{
    const float4 v = *reinterpret_cast<const float4 *>(src);
    dst[0] = v.x;
    dst[1] = v.y;
    dst[2] = v.z;
    dst[3] = v.w;
}

__device__ __forceinline__ void chunk_to_float(const __half *src, float *dst)
{
    const uint4 v = *reinterpret_cast<const uint4 *>(src);
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        half2_bits b;
        b.u = w[i];
        const float2 f = __half22float2(b.h);
        dst[2 * i] = f.x;
        dst[2 * i + 1] = f.y;
    }
}

__device__ __forceinline__ float2 pair_to_float(const float *src)
{
    return *reinterpret_cast<const float2 *>(src);
}

__device__ __forceinline__ float2 pair_to_float(const __half *src)
{
    return __half22float2(*reinterpret_cast<const __half2 *>(src));
}

template <typename T, int D, int BN>
__device__ __forceinline__ void simt_load_kv(T *sk, T *sv, const attn_params &p,
                                             const cuda_attn_item &it, int j0)
{
    constexpr int ES = (int)sizeof(T), CH = 16 / ES, NCH = D / CH, LDK = simt_ldk(D, ES),
                  LDV = simt_ldv(D, ES);
    for (int e = threadIdx.x; e < BN * NCH; e += kThreads) {
        const int r = e / NCH, c = (e - r * NCH) * CH, j = j0 + r;
        const bool ok = j < it.j_end;
        int64_t ko = 0, vo = 0;
        if (ok)
            cache_rows(p, it.seq, j, it.kv_head, &ko, &vo);
        const T *gk = reinterpret_cast<const T *>(p.k) + ko + c;
        const T *gv = reinterpret_cast<const T *>(p.v) + vo + c;
        T *dk = sk + r * LDK + simt_kchunk<D, ES>(r, c / CH) * CH, *dv = sv + r * LDV + c;
        if (p.kv_aligned) {
            cp_async16(dk, gk, ok ? 16 : 0);
            cp_async16(dv, gv, ok ? 16 : 0);
        } else {
#pragma unroll
            for (int i = 0; i < CH; i++) {
                dk[i] = ok ? gk[i] : zero_elem<T>();
                dv[i] = ok ? gv[i] : zero_elem<T>();
            }
        }
    }
}

template <int D, typename T>
__global__ void __launch_bounds__(kThreads, 4) attn_simt_kernel(const attn_params p)
{
    constexpr int ES = (int)sizeof(T), CH = 16 / ES, LDK = simt_ldk(D, ES), LDV = simt_ldv(D, ES);
    constexpr int LDQ = D + 4;
    constexpr int BN = simt_tile(D, ES), RMAX = simt_rows(D);
    constexpr int KPW = BN / 4;   /* keys per warp in the score step */
    constexpr int LPK = 32 / KPW; /* lanes per key (4 or 8), each a part of the row */
    constexpr int NCH = D / CH;   /* 16-byte chunks per K row */
    constexpr int NPAIR = RMAX * D / (2 * kThreads); /* output dim pairs per thread */
    static_assert(LPK * KPW == 32 && NPAIR * 2 * kThreads == RMAX * D, "tile shape");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *const sK = reinterpret_cast<T *>(smem_raw);                  /* [2][BN][LDK] */
    T *const sV = sK + 2 * BN * LDK;                                /* [2][BN][LDV] */
    float *const sQ = reinterpret_cast<float *>(sV + 2 * BN * LDV); /* [RMAX][LDQ], scaled */
    float *const sS = sQ + RMAX * LDQ; /* [RMAX][BN] scores, then weights */
    float *const sM = sS + RMAX * BN, *const sL = sM + RMAX, *const sA = sL + RMAX;
    int *const sLo = reinterpret_cast<int *>(sA + RMAX), *const sHi = sLo + RMAX;

    const cuda_attn_item it = p.items[blockIdx.x];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int nh = it.n_heads, rows = nh * it.n_tok;

    /* Folding the scale into q costs one rounding of q, far inside the f32 tolerance. */
    for (int e = tid; e < RMAX * D; e += kThreads) {
        const int r = e / D, x = e - r * D;
        float v = 0.0f;
        if (r < rows) {
            const int t = r / nh, h = it.head0 + r - t * nh;
            v = p.scale * ld_elem(p.q, (it.tok0 + t) * p.q_s0 + (int64_t)h * p.q_s1 + x, p.q_f16);
        }
        sQ[r * LDQ + x] = v;
    }
    if (tid < RMAX) {
        int32_t lo = 0, hi = 0;
        if (tid < rows) {
            const int pos = it.pos0 + tid / nh;
            cuda_attn_key_range(p.causal, p.window, it.kv_len, pos, pos, it.j_begin, it.j_end, &lo,
                                &hi);
        }
        sLo[tid] = lo;
        sHi[tid] = hi;
        sM[tid] = -INFINITY;
        sL[tid] = 0.0f;
    }

    float o[NPAIR][2];
#pragma unroll
    for (int k = 0; k < NPAIR; k++)
        o[k][0] = o[k][1] = 0.0f;

    const int ntiles = it.j_end > it.j_begin ? (it.j_end - it.j_begin + BN - 1) / BN : 0;
    if (ntiles > 0)
        simt_load_kv<T, D, BN>(sK, sV, p, it, it.j_begin);
    cp_async_commit();

    const int part = lane % LPK, key_c = warp * KPW + lane / LPK;
    for (int t = 0; t < ntiles; t++) {
        const int j0 = it.j_begin + t * BN, st = t & 1;
        if (t + 1 < ntiles)
            simt_load_kv<T, D, BN>(sK + (st ^ 1) * BN * LDK, sV + (st ^ 1) * BN * LDV, p, it,
                                   j0 + BN);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const T *ks = sK + st * BN * LDK, *vs = sV + st * BN * LDV;

        /* Scores: the LPK lanes of key w*KPW + lane/LPK split its row into 16-byte chunks
         * (part, part + LPK, ...), widen each chunk once and use it for every query row, then sum
         * their partial dots with shuffles. A quarter warp reads LPK neighbouring chunks of
         * 8 / LPK keys, which the K layout (simt_ldk, simt_kchunk) puts in distinct banks, and of q
         * the same dims for every key (a broadcast): no bank conflicts, except a 2-way one on q for
         * f16 caches with D = 256, where 8 parts read f32 q 32 bytes apart. */
        {
            float acc[RMAX];
#pragma unroll
            for (int r = 0; r < RMAX; r++)
                acc[r] = 0.0f;
            const T *krow = ks + key_c * LDK;
#pragma unroll 1
            for (int i = 0; i < (NCH + LPK - 1) / LPK; i++) {
                const int ci = part + LPK * i, x = ci * CH;
                if (NCH % LPK == 0 || x < D) {
                    float kf[CH];
                    chunk_to_float(krow + simt_kchunk<D, ES>(key_c, ci) * CH, kf);
#pragma unroll
                    for (int r = 0; r < RMAX; r++) {
                        if (r < rows) {
                            const float *qr = sQ + r * LDQ + x;
#pragma unroll
                            for (int u = 0; u < CH; u += 4) {
                                const float4 q4 = *reinterpret_cast<const float4 *>(qr + u);
                                acc[r] = fmaf(q4.x, kf[u], acc[r]);
                                acc[r] = fmaf(q4.y, kf[u + 1], acc[r]);
                                acc[r] = fmaf(q4.z, kf[u + 2], acc[r]);
                                acc[r] = fmaf(q4.w, kf[u + 3], acc[r]);
                            }
                        }
                    }
                }
            }
            const int key = j0 + key_c;
#pragma unroll
            for (int r = 0; r < RMAX; r++) {
                if (r < rows) {
#pragma unroll
                    for (int o2 = LPK / 2; o2 > 0; o2 >>= 1)
                        acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o2);
                    if (r % LPK == part) {
                        const int tr = r / nh, h = it.head0 + r - tr * nh;
                        float x = score_transform<false>(p, acc[r], p.slopes ? p.slopes[h] : 0.0f,
                                                         key, it.pos0 + tr);
                        if (key < sLo[r] || key >= sHi[r])
                            x = -INFINITY;
                        sS[r * BN + key_c] = x;
                    }
                }
            }
        }
        __syncthreads();

        /* One online-softmax step per row, one warp per row, one lane per key. */
        for (int r = warp; r < rows; r += kThreads / 32) {
            const float x = lane < BN ? sS[r * BN + lane] : -INFINITY;
            float mx = x;
#pragma unroll
            for (int o2 = 16; o2 > 0; o2 >>= 1)
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o2));
            const float m_old = sM[r], m_new = fmaxf(m_old, mx);
            const float ref = m_new == -INFINITY ? 0.0f : m_new;
            const float w = expf(x - ref);
            float sum = w;
#pragma unroll
            for (int o2 = 16; o2 > 0; o2 >>= 1)
                sum += __shfl_xor_sync(0xffffffffu, sum, o2);
            if (lane < BN)
                sS[r * BN + lane] = w;
            if (lane == 0) {
                const float alpha = expf(m_old - ref);
                sA[r] = alpha;
                sL[r] = sL[r] * alpha + sum;
                sM[r] = m_new;
            }
        }
        __syncthreads();

        /* o = alpha o + P V: thread owns dim pairs e = tid + 128 k (row e / (D/2)). */
#pragma unroll
        for (int k = 0; k < NPAIR; k++) {
            const int e = tid + kThreads * k, r = e / (D / 2), x = 2 * (e - r * (D / 2));
            if (r < rows) {
                const float alpha = sA[r];
                float a0 = o[k][0] * alpha, a1 = o[k][1] * alpha;
                const float *pr = sS + r * BN;
#pragma unroll 8
                for (int c = 0; c < BN; c++) {
                    const float w = pr[c];
                    const float2 v = pair_to_float(vs + c * LDV + x);
                    a0 = fmaf(w, v.x, a0);
                    a1 = fmaf(w, v.y, a1);
                }
                o[k][0] = a0;
                o[k][1] = a1;
            }
        }
        __syncthreads();
    }
    __syncthreads(); /* with no tile, sM / sL were written by other threads just above */

    float *dst = it.partial >= 0 ? p.partials + it.partial : nullptr;
#pragma unroll
    for (int k = 0; k < NPAIR; k++) {
        const int e = tid + kThreads * k, r = e / (D / 2), x = 2 * (e - r * (D / 2));
        if (r >= rows)
            continue;
        if (dst) {
            dst[(int64_t)r * D + x] = o[k][0];
            dst[(int64_t)r * D + x + 1] = o[k][1];
        } else {
            const int tr = r / nh, h = it.head0 + r - tr * nh;
            const float mul = finish_mul(p.sinks, h, sM[r], sL[r]);
            const int64_t base = (it.tok0 + tr) * p.o_s0 + (int64_t)h * p.o_s1 + x;
            st_elem(p.out, base, p.o_f16, o[k][0] * mul);
            st_elem(p.out, base + 1, p.o_f16, o[k][1] * mul);
        }
    }
    if (dst && tid < rows) {
        dst[(int64_t)rows * D + tid] = sM[tid];
        dst[(int64_t)rows * D + rows + tid] = sL[tid];
    }
}

/* --- combine --------------------------------------------------------------------------------- */

/* Merges the splits of each group: out = sum_k w_k o_k, w_k = e^(m_k - M) / (sum_j e^(m_j - M)
 * l_j + e^(sink - M)), M the largest m_k of the splits that saw a key (and the sink); splits
 * with l_k = 0 weigh 0, a row no split saw is 0. Block b takes group b / combine_chunks and its
 * output elements [c chunk, (c + 1) chunk) of rows * D, c = b % combine_chunks (chunk 0: all).
 * Phase 1: a team of lanes per row that run touches walks the splits' (m, l), reduces M and the
 * denominator by shuffles and leaves the weights w[row][split] in shared memory (an expf per
 * row and split, not per element). Phase 2: a thread per output element sums the splits' o with
 * loads that do not depend on each other (coalesced across the warp) and no branch. */
__global__ void __launch_bounds__(kThreads) attn_combine_kernel(const attn_params p)
{
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float *const s_w = reinterpret_cast<float *>(smem_raw); /* [rows of this run][n_splits] */
    const int chunks = p.combine_chunks > 0 ? p.combine_chunks : 1;
    const cuda_attn_group gr = p.groups[blockIdx.x / chunks];
    const int d = p.head_dim, nh = gr.n_heads, rows = nh * gr.n_tok, ns = gr.n_splits;
    const int n = rows * d;
    const int e0 = p.combine_chunk > 0 ? (int)(blockIdx.x % chunks) * p.combine_chunk : 0;
    const int e1 = p.combine_chunk > 0 ? min(e0 + p.combine_chunk, n) : n;
    if (e0 >= n)
        return; /* a group with fewer rows than the largest: the whole block leaves */
    const int r_lo = e0 / d, nr = (e1 - 1) / d - r_lo + 1;
    const float *const base = p.partials + gr.partial;
    const int64_t stride = (int64_t)rows * (d + 2);
    const float *const ml = base + (int64_t)rows * d; /* split k: m at [k stride + r], l + rows */

    /* Teams of a power of two lanes (at most a warp, so the shuffles stay inside it), as many
     * as fit the rows; every thread runs every shuffle. */
    const int nthr = (int)blockDim.x;
    int team = 32;
    while (team > 1 && team * nr > nthr)
        team >>= 1;
    const int teams = nthr / team, lt = (int)threadIdx.x % team;
    for (int rb = 0; rb < nr; rb += teams) {
        const int rr = rb + (int)threadIdx.x / team, r = r_lo + rr;
        const bool live = rr < nr;
        float mx = -INFINITY;
        if (live)
            for (int k = lt; k < ns; k += team)
                if (ml[k * stride + rows + r] > 0.0f)
                    mx = fmaxf(mx, ml[k * stride + r]);
        for (int o = team / 2; o > 0; o >>= 1)
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        float ref = mx, den = 0.0f, sink_w = 0.0f;
        if (live && mx != -INFINITY && p.sinks) {
            const float sink = p.sinks[gr.head0 + r % nh];
            ref = fmaxf(mx, sink);
            sink_w = expf(sink - ref);
        }
        if (live)
            for (int k = lt; k < ns; k += team) {
                const float l = ml[k * stride + rows + r];
                const float w = l > 0.0f ? expf(ml[k * stride + r] - ref) : 0.0f;
                s_w[rr * ns + k] = w;
                den = fmaf(w, l, den);
            }
        for (int o = team / 2; o > 0; o >>= 1)
            den += __shfl_xor_sync(0xffffffffu, den, o);
        den += sink_w;
        const float inv = den > 0.0f ? 1.0f / den : 0.0f;
        if (live)
            for (int k = lt; k < ns; k += team)
                s_w[rr * ns + k] *= inv;
    }
    __syncthreads();

    for (int e = e0 + (int)threadIdx.x; e < e1; e += nthr) {
        const int r = e / d, x = e - r * d, t = r / nh, h = gr.head0 + r - t * nh;
        const float *const w = s_w + (r - r_lo) * ns;
        const float *const o = base + e;
        float acc = 0.0f;
#pragma unroll 8
        for (int k = 0; k < ns; k++)
            acc = fmaf(w[k], o[k * stride], acc);
        st_elem(p.out, (gr.tok0 + t) * p.o_s0 + (int64_t)h * p.o_s1 + x, p.o_f16, acc);
    }
}

} // namespace cuda_attn

#endif /* TRIT_CUDA_ATTENTION_KERNELS_H */

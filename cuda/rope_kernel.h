/*
 * rope_kernel.h — the device side of the CUDA RoPE + KV append (rope.cu explains the tiling and
 * the precision choices): the kernel and its parameters. Kept apart from the host code so that
 * the CPU emulation in tests/test_cuda_attention_plan.cpp can run the same kernel source; only
 * rope.cu includes it in the plugin.
 */
#ifndef TRIT_CUDA_ROPE_KERNEL_H
#define TRIT_CUDA_ROPE_KERNEL_H

#include <math.h>
#include <stdint.h>

#ifndef TRIT_CUDA_ATTENTION_EMULATE
#include <cuda_fp16.h>
#endif

#include "kernel_elem.h"

namespace cuda_rope {

constexpr int kThreads = 128;
constexpr int kMaxHalf = 128; /* rot_dims <= D <= 256 */
constexpr size_t kSmemBytes = 2 * kMaxHalf * sizeof(float);

struct rope_params {
    char *q;
    int64_t q_s0, q_s1;
    int q_f16, has_q;
    const char *kn, *vn;
    int64_t kn_s0, kn_s1, vn_s0, vn_s1;
    int kn_f16, vn_f16;
    char *kc, *vc;
    int64_t k_s0, k_s1, k_s2, v_s0, v_s1, v_s2;
    int k_f16, v_f16;
    int block_size, max_blocks; /* 0: contiguous cache */
    const int32_t *table;
    const int64_t *q_starts; /* n_seqs + 1 */
    const int32_t *start_pos;
    const double *inv_freq; /* rot_dims / 2 */
    uint32_t n_seqs;
    int n_heads, n_kv_heads, d, rot, neox;
};

using cuda_elem::ld_elem;
using cuda_elem::st_elem;

__global__ void __launch_bounds__(kThreads) rope_append_kernel(const rope_params p)
{
    /* Dynamic shared memory (kSmemBytes), so the CPU emulation can give every thread one copy. */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float *const s_cos = reinterpret_cast<float *>(smem_raw), *const s_sin = s_cos + kMaxHalf;
    const int64_t tok = blockIdx.x;
    /* The sequence of this token: the last s with q_starts[s] <= tok (skips empty ones). */
    uint32_t lo = 0, hi = p.n_seqs - 1;
    while (lo < hi) {
        const uint32_t mid = (lo + hi + 1) / 2;
        if (p.q_starts[mid] <= tok)
            lo = mid;
        else
            hi = mid - 1;
    }
    const uint32_t seq = lo;
    const int64_t pos = (int64_t)p.start_pos[seq] + (tok - p.q_starts[seq]);
    const int half = p.rot / 2;
    for (int i = threadIdx.x; i < half; i += kThreads) {
        double sv, cv;
        sincos((double)pos * p.inv_freq[i], &sv, &cv);
        s_cos[i] = (float)cv;
        s_sin[i] = (float)sv;
    }
    __syncthreads();

    if (p.has_q) {
        const int64_t row0 = tok * p.q_s0;
        for (int e = threadIdx.x; e < p.n_heads * half; e += kThreads) {
            const int h = e / half, i = e - h * half;
            const int64_t a = row0 + (int64_t)h * p.q_s1 + (p.neox ? i : 2 * i);
            const int64_t b = a + (p.neox ? half : 1);
            const float x0 = ld_elem(p.q, a, p.q_f16), x1 = ld_elem(p.q, b, p.q_f16);
            st_elem(p.q, a, p.q_f16, x0 * s_cos[i] - x1 * s_sin[i]);
            st_elem(p.q, b, p.q_f16, x0 * s_sin[i] + x1 * s_cos[i]);
        }
    }

    int64_t blk = seq, row = pos;
    if (p.block_size) {
        blk = p.table[(int64_t)seq * p.max_blocks + pos / p.block_size];
        row = pos % p.block_size;
    }
    for (int e = threadIdx.x; e < p.n_kv_heads * p.d; e += kThreads) {
        const int g = e / p.d, x = e - g * p.d;
        const int64_t src = tok * p.kn_s0 + (int64_t)g * p.kn_s1;
        float val;
        if (x < p.rot) {
            /* This element's pair (a, b) = (x[2i], x[2i+1]) or (x[i], x[i + rot/2]). */
            const int i = p.neox ? (x < half ? x : x - half) : x / 2;
            const int second = p.neox ? x >= half : x & 1;
            const int a = p.neox ? i : 2 * i, b = p.neox ? i + half : 2 * i + 1;
            const float x0 = ld_elem(p.kn, src + a, p.kn_f16),
                        x1 = ld_elem(p.kn, src + b, p.kn_f16);
            val = second ? x0 * s_sin[i] + x1 * s_cos[i] : x0 * s_cos[i] - x1 * s_sin[i];
        } else {
            val = ld_elem(p.kn, src + x, p.kn_f16);
        }
        st_elem(p.kc, blk * p.k_s0 + row * p.k_s1 + (int64_t)g * p.k_s2 + x, p.k_f16, val);

        const int64_t vsrc = tok * p.vn_s0 + (int64_t)g * p.vn_s1 + x;
        const int64_t vdst = blk * p.v_s0 + row * p.v_s1 + (int64_t)g * p.v_s2 + x;
        if (p.vn_f16 && p.v_f16)
            reinterpret_cast<__half *>(p.vc)[vdst] = reinterpret_cast<const __half *>(p.vn)[vsrc];
        else
            st_elem(p.vc, vdst, p.v_f16, ld_elem(p.vn, vsrc, p.vn_f16)); /* f32 copy is exact */
    }
}

} // namespace cuda_rope

#endif /* TRIT_CUDA_ROPE_KERNEL_H */

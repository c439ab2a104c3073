/*
 * rope.cl - RoPE on q and the new keys, and the append of keys and values to the KV cache, in
 * one pass over the new tokens, OpenCL C 1.2.
 *
 * Tiling. One work-group of 64 work-items per new token: it alone writes that token's q rows
 * and its cache slot (position p of its sequence, contiguous or through the block table). The
 * token's rot_dims/2 (cos, sin) pairs are computed once into local memory and serve all H query
 * heads and Hkv key heads; then a work-item owns one rotated pair of q (rotated in place, so
 * one owner reads and writes both halves) and one element of each K and V cache row.
 *
 * Accuracy. theta = p * base^(-2i/rot_dims) reaches 1e5 radians for long contexts, where an f32
 * product would be off by ~4e-3 rad. With cl_khr_fp64 (and -DROPE_FP64=1, which rope.c passes
 * unless the option opencl.rope_fp64=off) the angle and its sin/cos are computed in double from
 * a double inverse frequency. Otherwise the host's double inverse frequency arrives as an f32
 * pair hi + lo, the product p * (hi + lo) is formed exactly enough with fma as a float pair, and
 * reduced by 2 pi split in three f32 parts (the first step is exact): the reduced angle is
 * within ~3e-7 rad, so f32 sin/cos of it stay far inside the f32 tolerance for any p < 2^24.
 *
 * Floor: (2 H + 2 Hkv) D element reads/writes of q and k_new/v_new plus 2 Hkv D cache writes per
 * token, 30 KB per decode token for 20/5 heads, D = 128, all f32: ~10 ns of an H100's bandwidth,
 * so decode RoPE is launch-bound; prefill streams at memory speed.
 */
#if ROPE_FP64 && defined(cl_khr_fp64)
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#define ROPE_USE_FP64 1
#else
#define ROPE_USE_FP64 0
#endif

#define WG 64
#define MAX_HALF 128

inline float ld(__global const uchar *base, long i, int f16)
{
    return f16 ? vload_half((size_t)i, (__global const half *)base)
               : ((__global const float *)base)[i];
}

inline void st(__global uchar *base, long i, int f16, float v)
{
    if (f16)
        vstore_half_rte(v, (size_t)i, (__global half *)base);
    else
        ((__global float *)base)[i] = v;
}

inline long cache_row(long off, long s0, long s1, long s2, int block_size, int max_blocks,
                      __global const int *table, int seq, int pos, int g)
{
    long blk = seq, row = pos;
    if (block_size > 0) {
        blk = table[(long)seq * max_blocks + pos / block_size];
        row = pos % block_size;
    }
    return off + blk * s0 + row * s1 + g * s2;
}

/* meta: tok_seq[T], tok_pos[T], then at freq_at the inverse frequencies (per pair four ints: a
 * double, then the f32 pair hi, lo), then at table_at the block table. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void
rope_append(__global uchar *q, long q_off, long q_s0, long q_s1, int q_f16, int has_q,
            __global const uchar *kn, long kn_off, long kn_s0, long kn_s1, int kn_f16,
            __global const uchar *vn, long vn_off, long vn_s0, long vn_s1, int vn_f16,
            __global uchar *kc, long k_off, long k_s0, long k_s1, long k_s2, int k_f16,
            __global uchar *vc, long v_off, long v_s0, long v_s1, long v_s2, int v_f16,
            int block_size, int max_blocks, __global const int *meta, int n_tokens, int freq_at,
            int table_at, int n_heads, int n_kv_heads, int d, int rot, int neox)
{
    __local float cs_l[MAX_HALF], sn_l[MAX_HALF];
    const int lid = get_local_id(0);
    const int tok = get_group_id(0);
    const int seq = meta[tok], pos = meta[n_tokens + tok];
    const int half_rot = rot / 2;

    for (int i = lid; i < half_rot; i += WG) {
#if ROPE_USE_FP64
        double th = (double)pos * *(__global const double *)(meta + freq_at + 4 * i);
        cs_l[i] = (float)cos(th);
        sn_l[i] = (float)sin(th);
#else
        __global const float *f = (__global const float *)(meta + freq_at + 4 * i + 2);
        const float p = (float)pos; /* exact: positions are below 2^24 */
        float hi = p * f[0];
        float lo = fma(p, f[0], -hi) + p * f[1];
        float n = rint(hi * 0x1.45f306p-3f);   /* hi / (2 pi) */
        float r = fma(-n, 0x1.921fb6p+2f, hi); /* exact: both are multiples of ulp(hi) */
        r = fma(-n, -0x1.777a5cp-23f, r);
        r = r + lo;
        r = fma(-n, -0x1.ee59dap-48f, r);
        cs_l[i] = cos(r);
        sn_l[i] = sin(r);
#endif
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    if (has_q) {
        const long qrow0 = q_off + (long)tok * q_s0;
        for (int e = lid; e < n_heads * half_rot; e += WG) {
            int h = e / half_rot, i = e - h * half_rot;
            long a = qrow0 + (long)h * q_s1 + (neox ? i : 2 * i);
            long b = a + (neox ? half_rot : 1);
            float x0 = ld(q, a, q_f16), x1 = ld(q, b, q_f16);
            st(q, a, q_f16, x0 * cs_l[i] - x1 * sn_l[i]);
            st(q, b, q_f16, x0 * sn_l[i] + x1 * cs_l[i]);
        }
    }

    __global const int *table = meta + table_at;
    for (int e = lid; e < n_kv_heads * d; e += WG) {
        int g = e / d, x = e - g * d;
        long src = kn_off + (long)tok * kn_s0 + (long)g * kn_s1;
        float val;
        if (x < rot) {
            /* This element's pair: (a, b) = (x[2i], x[2i+1]) or (x[i], x[i + rot/2]). */
            int i = neox ? (x < half_rot ? x : x - half_rot) : x / 2;
            int second = neox ? x >= half_rot : x & 1;
            int a = neox ? i : 2 * i, b = neox ? i + half_rot : 2 * i + 1;
            float x0 = ld(kn, src + a, kn_f16), x1 = ld(kn, src + b, kn_f16);
            val = second ? x0 * sn_l[i] + x1 * cs_l[i] : x0 * cs_l[i] - x1 * sn_l[i];
        } else {
            val = ld(kn, src + x, kn_f16);
        }
        st(kc, cache_row(k_off, k_s0, k_s1, k_s2, block_size, max_blocks, table, seq, pos, g) + x,
           k_f16, val);

        long vsrc = vn_off + (long)tok * vn_s0 + (long)g * vn_s1 + x;
        long vdst =
            cache_row(v_off, v_s0, v_s1, v_s2, block_size, max_blocks, table, seq, pos, g) + x;
        if (vn_f16 == v_f16 && v_f16)
            ((__global ushort *)vc)[vdst] = ((__global const ushort *)vn)[vsrc];
        else
            st(vc, vdst, v_f16, ld(vn, vsrc, vn_f16));
    }
}

/*
 * attention.cl - tiled attention with online softmax (prefill and split-KV decode), OpenCL C 1.2.
 *
 * Tiling. One work-group of 64 work-items runs one work item planned by attention.c: KV head g
 * of one sequence, a block of ROWS query rows (the H/Hkv query heads that read g, times as many
 * consecutive query tokens as fit; row r is token r / nh, head r % nh) against a key range
 * [j_begin, j_end). The group walks that range in tiles of TILE keys: the tile's K rows are
 * widened to f32 in local memory, every (row, key) score is one work-item's dot product, one
 * work-item per row takes the online-softmax step, then V replaces K in the same local buffer
 * and each work-item accumulates its ROWS * D / 64 output elements (element e = lid + 64 k) in
 * registers. So each K/V element is read from global memory once per KV-head group, not once
 * per query head, and no score block larger than ROWS x TILE ever exists. Split items write
 * (o, m, l) partials that attn_combine merges, one work-group per split group.
 *
 * Local memory: ROWS*D (q, scale folded in) + TILE*(D+1) (K, then V; the +1 keeps the score
 * loop's column reads on distinct banks) + ROWS*TILE (scores) floats: at most ~27 KB, under
 * the 32 KB every OpenCL 1.2 GPU offers.
 *
 * Floor. Decode must stream K and V once: 2 * kv_len * Hkv * D * sizeof(kv) bytes, 10.5 MB for
 * 20/5 heads, D = 128 and 4096 f16 tokens: ~3.5 us on an H100 (3 TB/s), which needs at least a
 * few hundred work-groups in flight: hence split-KV. Prefill is compute-bound at 4 H D flops per
 * visible (query, key) pair; this kernel uses no matrix units, so on GPUs it runs at a fraction
 * of their fp32 peak, and on PoCL (work-items vectorised into loops on the CPU) at CPU speed.
 *
 * Built with -DHEAD_DIM, -DROWS and -DTILE (attention.c picks them per head dim); f16 tensors
 * are read and written with vload_half / vstore_half_rte, so no cl_khr_fp16 is needed.
 */
#define WG 64
#define D HEAD_DIM
#define LDK (D + 1)
#define NO ((ROWS * D + WG - 1) / WG) /* output elements per work-item */

/* Work item records (ints) as attention.c writes them. */
#define IT_SEQ 0
#define IT_KV_HEAD 1
#define IT_HEAD0 2
#define IT_NHEADS 3
#define IT_NTOK 4
#define IT_POS0 5
#define IT_JBEGIN 6
#define IT_JEND 7
#define IT_TOK0 8
#define IT_PARTIAL 9 /* float offset of this split's partial, -1: write the output */
#define IT_KVLEN 10
#define IT_STRIDE 12

/* Split groups: the rows of one (sequence, token block, head block) whose keys were split. */
#define GR_HEAD0 0
#define GR_NHEADS 1
#define GR_NTOK 2
#define GR_NSPLITS 3
#define GR_TOK0 4
#define GR_PARTIAL 5
#define GR_STRIDE 8

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

/* Element offset of row (seq, key j, KV head g) of a cache: contiguous when block_size == 0. */
inline long cache_row(long off, long s0, long s1, long s2, int block_size, int max_blocks,
                      __global const int *table, int seq, int j, int g)
{
    long blk = seq, row = j;
    if (block_size > 0) {
        blk = table[(long)seq * max_blocks + j / block_size];
        row = j % block_size;
    }
    return off + blk * s0 + row * s1 + g * s2;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void
attn_tiles(__global const uchar *q, long q_off, long q_s0, long q_s1, int q_f16,
           __global uchar *out, long o_off, long o_s0, long o_s1, int o_f16,
           __global const uchar *kc, long k_off, long k_s0, long k_s1, long k_s2, int k_f16,
           __global const uchar *vc, long v_off, long v_s0, long v_s1, long v_s2, int v_f16,
           int block_size, int max_blocks, __global const int *meta, int table_at,
           int slopes_at, int sinks_at, float scale, int causal, int window, float softcap,
           __global float *partials)
{
    __local float q_l[ROWS * D];
    __local float kv_l[TILE * LDK];
    __local float s_l[ROWS * TILE];
    __local float m_l[ROWS], l_l[ROWS], a_l[ROWS];
    __local long off_l[TILE];

    const int lid = get_local_id(0);
    __global const int *it = meta + (long)get_group_id(0) * IT_STRIDE;
    const int seq = it[IT_SEQ], g = it[IT_KV_HEAD], head0 = it[IT_HEAD0], nh = it[IT_NHEADS];
    const int pos0 = it[IT_POS0], jb = it[IT_JBEGIN], je = it[IT_JEND], tok0 = it[IT_TOK0];
    const int part = it[IT_PARTIAL], kv_len = it[IT_KVLEN];
    const int rows = nh * it[IT_NTOK];
    __global const int *table = meta + table_at;
    __global const float *slopes = slopes_at >= 0 ? (__global const float *)(meta + slopes_at) : 0;
    __global const float *sinks = sinks_at >= 0 ? (__global const float *)(meta + sinks_at) : 0;
    const float inv_cap = softcap > 0.0f ? 1.0f / softcap : 0.0f;

    /* Folding the scale into q costs one rounding of q, far inside the f32 tolerance. */
    for (int e = lid; e < rows * D; e += WG) {
        int r = e / D, x = e - r * D, t = r / nh, h = head0 + r - t * nh;
        q_l[e] = scale * ld(q, q_off + (long)(tok0 + t) * q_s0 + (long)h * q_s1 + x, q_f16);
    }
    if (lid < ROWS) {
        m_l[lid] = -INFINITY;
        l_l[lid] = 0.0f;
    }
    float o[NO];
    for (int k = 0; k < NO; k++)
        o[k] = 0.0f;
    barrier(CLK_LOCAL_MEM_FENCE);

    for (int j0 = jb; j0 < je; j0 += TILE) {
        const int n = min(TILE, je - j0);
        if (lid < n)
            off_l[lid] = cache_row(k_off, k_s0, k_s1, k_s2, block_size, max_blocks, table, seq,
                                   j0 + lid, g);
        barrier(CLK_LOCAL_MEM_FENCE);
        /* Keys past the range read zeros: they are masked, but 0 * garbage could be NaN. */
        for (int e = lid; e < TILE * D; e += WG) {
            int c = e / D, x = e - c * D;
            kv_l[c * LDK + x] = c < n ? ld(kc, off_l[c] + x, k_f16) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        for (int e = lid; e < rows * TILE; e += WG) {
            int r = e / TILE, c = e - r * TILE, t = r / nh, p = pos0 + t, j = j0 + c;
            int lo = window > 0 ? max(jb, p - window + 1) : jb;
            int hi = causal ? min(je, p + 1) : je;
            float sv = -INFINITY;
            if (j >= lo && j < hi && j < kv_len) {
                __local const float *qr = q_l + r * D, *kr = kv_l + c * LDK;
                float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
                for (int i = 0; i < D; i += 4) {
                    a0 = fma(qr[i], kr[i], a0);
                    a1 = fma(qr[i + 1], kr[i + 1], a1);
                    a2 = fma(qr[i + 2], kr[i + 2], a2);
                    a3 = fma(qr[i + 3], kr[i + 3], a3);
                }
                sv = (a0 + a1) + (a2 + a3);
                if (softcap > 0.0f)
                    sv = softcap * tanh(sv * inv_cap);
                if (slopes)
                    sv += slopes[head0 + r - t * nh] * (float)(j - p);
            }
            s_l[e] = sv;
        }
        if (lid < n)
            off_l[lid] = cache_row(v_off, v_s0, v_s1, v_s2, block_size, max_blocks, table, seq,
                                   j0 + lid, g);
        barrier(CLK_LOCAL_MEM_FENCE);

        /* One online-softmax step per row: scores become weights exp(s - m_new) and a_l holds
         * the factor by which the row's earlier output shrinks. */
        if (lid < rows) {
            __local float *sr = s_l + lid * TILE;
            float mx = -INFINITY;
            for (int c = 0; c < n; c++)
                mx = fmax(mx, sr[c]);
            float m_old = m_l[lid], m_new = fmax(m_old, mx);
            if (m_new == -INFINITY) {
                for (int c = 0; c < n; c++)
                    sr[c] = 0.0f;
                a_l[lid] = 1.0f;
            } else {
                float sum = 0.0f;
                for (int c = 0; c < n; c++) {
                    float w = sr[c] == -INFINITY ? 0.0f : exp(sr[c] - m_new);
                    sr[c] = w;
                    sum += w;
                }
                float alpha = m_old == -INFINITY ? 0.0f : exp(m_old - m_new);
                a_l[lid] = alpha;
                l_l[lid] = l_l[lid] * alpha + sum;
                m_l[lid] = m_new;
            }
        }
        /* Not needed by the memory model (the V load touches nothing the softmax does), but
         * PoCL 3.1 miscompiles the softmax block when it shares a barrier region with this
         * loop (rows lose their m and l updates); one barrier per tile is cheap. */
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int e = lid; e < TILE * D; e += WG) {
            int c = e / D, x = e - c * D;
            kv_l[c * LDK + x] = c < n ? ld(vc, off_l[c] + x, v_f16) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        for (int k = 0; k < NO; k++) {
            int e = lid + k * WG;
            if (e < rows * D) {
                int r = e / D, x = e - r * D;
                __local const float *pr = s_l + r * TILE;
                float acc = o[k] * a_l[r];
                for (int c = 0; c < n; c++)
                    acc = fma(pr[c], kv_l[c * LDK + x], acc);
                o[k] = acc;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    if (part < 0) {
        for (int k = 0; k < NO; k++) {
            int e = lid + k * WG;
            if (e < rows * D) {
                int r = e / D, x = e - r * D, t = r / nh, h = head0 + r - t * nh;
                float l = l_l[r], mul = 0.0f;
                if (l > 0.0f) {
                    if (sinks) {
                        float m = m_l[r], sink = sinks[h], mx = fmax(m, sink);
                        float keep = exp(m - mx);
                        mul = keep / (l * keep + exp(sink - mx));
                    } else {
                        mul = 1.0f / l;
                    }
                }
                st(out, o_off + (long)(tok0 + t) * o_s0 + (long)h * o_s1 + x, o_f16,
                   l > 0.0f ? o[k] * mul : 0.0f);
            }
        }
    } else {
        __global float *dst = partials + part;
        for (int k = 0; k < NO; k++) {
            int e = lid + k * WG;
            if (e < rows * D)
                dst[e] = o[k];
        }
        if (lid < rows) {
            dst[rows * D + lid] = m_l[lid];
            dst[rows * D + rows + lid] = l_l[lid];
        }
    }
}

/* Merges the splits of one group: out = sum_k e^(m_k - M) o_k / (sum_k e^(m_k - M) l_k + sink).
 * One work-group per group; a work-item per row finds M and the denominator first. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1))) void
attn_combine(__global uchar *out, long o_off, long o_s0, long o_s1, int o_f16,
             __global const int *meta, int groups_at, int sinks_at,
             __global const float *partials)
{
    __local float mx_l[ROWS], den_l[ROWS];
    const int lid = get_local_id(0);
    __global const int *gr = meta + groups_at + (long)get_group_id(0) * GR_STRIDE;
    const int head0 = gr[GR_HEAD0], nh = gr[GR_NHEADS], ns = gr[GR_NSPLITS];
    const int tok0 = gr[GR_TOK0], rows = nh * gr[GR_NTOK];
    __global const float *base = partials + gr[GR_PARTIAL];
    __global const float *sinks = sinks_at >= 0 ? (__global const float *)(meta + sinks_at) : 0;
    const long stride = (long)rows * (D + 2);

    if (lid < rows) {
        const int h = head0 + lid % nh;
        float mx = -INFINITY;
        for (int k = 0; k < ns; k++) {
            __global const float *ml = base + k * stride + rows * D;
            if (ml[rows + lid] > 0.0f)
                mx = fmax(mx, ml[lid]);
        }
        float den = 0.0f;
        if (mx != -INFINITY) {
            if (sinks)
                mx = fmax(mx, sinks[h]);
            den = sinks ? exp(sinks[h] - mx) : 0.0f;
            for (int k = 0; k < ns; k++) {
                __global const float *ml = base + k * stride + rows * D;
                float l = ml[rows + lid];
                if (l > 0.0f)
                    den += exp(ml[lid] - mx) * l;
            }
        }
        mx_l[lid] = mx;
        den_l[lid] = den;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    for (int e = lid; e < rows * D; e += WG) {
        int r = e / D, x = e - r * D, t = r / nh, h = head0 + r - t * nh;
        float mx = mx_l[r], acc = 0.0f;
        if (mx != -INFINITY) {
            for (int k = 0; k < ns; k++) {
                __global const float *part = base + k * stride;
                float l = part[rows * D + rows + r];
                if (l > 0.0f)
                    acc = fma(exp(part[rows * D + r] - mx), part[e], acc);
            }
            acc /= den_l[r];
        }
        st(out, o_off + (long)(tok0 + t) * o_s0 + (long)h * o_s1 + x, o_f16, acc);
    }
}

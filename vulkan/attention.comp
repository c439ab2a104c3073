#version 450
//! variant -
//! variant f16 -DSTORAGE16=1
//! variant sg -DSUBGROUPS=1
//! variant f16_sg -DSTORAGE16=1 -DSUBGROUPS=1
//
// attention.comp — tiled attention with online softmax: one workgroup per work item.
//
// Tiling. attention.c plans work items like the CPU plugin: one KV head g of one sequence, up to
// RMAX query rows that read g (the H/Hkv query heads of g times consecutive query tokens, so each
// K/V element is fetched once per KV-head group, not once per query head) and a key range
// [j_begin, j_end) (the whole visible range, or one split of it for split-KV decode). The
// workgroup walks its keys in tiles of TK. Shared memory holds q (times scale), the K tile and
// then the V tile in the same array, and the tile's scores, all as vec4 (K/V rows padded by one
// vec4, so the 16-byte reads of invocations at consecutive keys fall in different banks).
// Scores: invocation tid owns key c = tid % TK and the rows r = tid / TK + k * (WG / TK) (register
// tiling: each K vec4 read serves all its rows; a q vec4 read is the same address across the
// subgroup, a broadcast). One online-softmax step per row then turns the scores into weights in
// place while the V rows replace the K rows. P·V: each invocation owns output vec4s
// e = tid + k * WG of the rows x D/4 block, in registers, and reads 4 weights as one vec4 per 4
// V rows. Per tile that is 4 barriers; K and V addresses (block table included) are computed by
// the invocation that loads them. The score matrix never exists beyond one RMAX x TK block. A
// split item writes (o, m, l) to the partial buffer; attention_combine.comp merges the splits.
//
// Floor. Decode streams K and V once: 2 * kv_len * Hkv * D * sizeof(kv) bytes; for 32/8 heads,
// D = 128, 4096 f16 tokens that is 16.8 MB, 5 us at the ~3.3 TB/s of an H100 once split-KV puts
// enough workgroups on the SMs. Shared-memory reads per FMA: scores (1 + R) / (4 R) with R rows
// per invocation (0.5 for decode, 0.31 for 16-row prefill), P·V 5 / 16; prefill stays bound by
// shared memory and FMA issue, not DRAM. attention_coop.comp takes f16 prefill past that on
// devices with cooperative matrices (attention.c chooses).
//
// Masking. Row r is token t = r / nh at position p = pos0 + t; it sees keys j with
// max(0, p - window + 1) <= j (window > 0), j <= p (causal) and j < kv_len. A masked score is
// -inf and gets weight 0; a row that has seen no key keeps m = -inf, l = 0 and outputs zeros.
#extension GL_EXT_control_flow_attributes : enable
#ifdef STORAGE16
#extension GL_EXT_shader_16bit_storage : require
#endif
#ifdef SUBGROUPS
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif

#include "attention_io.glsl"

layout(constant_id = 0) const uint D = 128;    // head dim
layout(constant_id = 1) const uint TK = 32;    // keys per tile
layout(constant_id = 2) const uint RMAX = 16;  // query rows per workgroup
layout(constant_id = 3) const bool Q16 = false;
layout(constant_id = 4) const bool KV16 = false;
layout(constant_id = 5) const bool O16 = false;
layout(local_size_x_id = 6) in;                // WG invocations (spec constant 6), a multiple of TK
// Every K/V row starts at a multiple of 4 elements and both bindings at a multiple of 16 bytes:
// 4 elements are then one 8-byte (f16) or 16-byte (f32) load.
layout(constant_id = 7) const bool KV_VEC = false;

const uint WG = gl_WorkGroupSize.x;
const uint D4 = D / 4u;  // D is a multiple of 16
const uint DS4 = D4 + 1u; // vec4 row stride of the K/V tile
const uint TK4 = TK / 4u;
const uint RG = WG / TK;                        // row groups of the score phase
const uint RPI = (RMAX + RG - 1u) / RG;         // score rows per invocation
const uint EPT = (RMAX * D4 + WG - 1u) / WG;    // output vec4s per invocation
const uint ITEM_WORDS = 12u;
const uint NO_PARTIAL = 0xFFFFFFFFu;

TENSOR_RO(0, q)
TENSOR_RO(1, k)
TENSOR_RO(2, v)
layout(std430, set = 0, binding = 1) readonly buffer KPairs { uvec2 k_w2[]; };
layout(std430, set = 0, binding = 1) readonly buffer KQuads { uvec4 k_w4[]; };
layout(std430, set = 0, binding = 2) readonly buffer VPairs { uvec2 v_w2[]; };
layout(std430, set = 0, binding = 2) readonly buffer VQuads { uvec4 v_w4[]; };

// Elements b .. b + 3 of K or V as f32.
#define LOAD4(name, b)                                                                              \
    (KV_VEC ? (KV16 ? vec4(unpackHalf2x16(name##_w2[(b) >> 2u].x),                                  \
                           unpackHalf2x16(name##_w2[(b) >> 2u].y))                                  \
                    : uintBitsToFloat(name##_w4[(b) >> 2u]))                                        \
            : vec4(LOAD(name, KV16, b), LOAD(name, KV16, (b) + 1u), LOAD(name, KV16, (b) + 2u),     \
                   LOAD(name, KV16, (b) + 3u)))
TENSOR_RW(3, o)
layout(std430, set = 0, binding = 4) readonly buffer Meta { uint meta[]; };
layout(std430, set = 0, binding = 5) writeonly buffer Partials { float partials[]; };

layout(push_constant) uniform Push {
    uint q_off, q_s0, q_s1;         // element index of q[0,0,0]; token and head strides
    uint o_off, o_s0, o_s1;
    uint k_off, k_s0, k_s1, k_s2;   // cache: block-or-sequence, row, KV-head strides
    uint v_off, v_s0, v_s1, v_s2;
    uint block;                     // paged block size P; 0: contiguous cache
    uint max_blocks;                // block-table entries per sequence
    uint table_off;                 // word offset of the block table in meta
    uint alibi_off;                 // word offset of the ALiBi slopes (f32) in meta; 0: none
    uint sinks_off;                 // word offset of the sinks (f32) in meta; 0: none
    uint n_items;                   // items start at word 0 of meta
    int window;                     // 0: none
    uint causal;
    float scale;
    float softcap;                  // 0: none
} pc;

shared vec4 kv_sh[TK * DS4];  // the K tile, then the V tile (rows past the tile's keys: zero)
shared vec4 q_sh[RMAX * D4];  // the item's query rows, times scale
shared vec4 s_sh[RMAX * TK4]; // scores, then weights: row r, key c at [r * TK4 + c / 4][c % 4]
shared float m_sh[RMAX], l_sh[RMAX], a_sh[RMAX];

#define S(r, c) s_sh[(r)*TK4 + ((c) >> 2u)][(c)&3u]

// Element index of (key j, dim 0) of KV head g of sequence seq in a cache with the given strides.
uint cache_row(uint seq, uint j, uint g, uint off, uint s0, uint s1, uint s2)
{
    uint blk = seq, row = j;
    if (pc.block != 0u) {
        blk = meta[pc.table_off + seq * pc.max_blocks + j / pc.block];
        row = j % pc.block;
    }
    return off + blk * s0 + row * s1 + g * s2;
}

void main()
{
    const uint item = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (item >= pc.n_items)
        return; // the whole workgroup leaves together
    const uint tid = gl_LocalInvocationID.x;
    const uint ib = item * ITEM_WORDS;
    const uint seq = meta[ib + 0u], g = meta[ib + 1u], head0 = meta[ib + 2u];
    const uint nh = meta[ib + 3u], nt = meta[ib + 4u];
    const int pos0 = int(meta[ib + 5u]);
    const uint tok0 = meta[ib + 6u];
    const int j_begin = int(meta[ib + 7u]), j_end = int(meta[ib + 8u]);
    const int kv_len = int(meta[ib + 9u]);
    const uint partial = meta[ib + 10u];
    const uint rows = nh * nt;

    for (uint e = tid; e < rows * D4; e += WG) {
        const uint r = e / D4, i = (e - r * D4) * 4u;
        const uint t = r / nh, h = head0 + (r - t * nh);
        const uint b = pc.q_off + (tok0 + t) * pc.q_s0 + h * pc.q_s1 + i;
        q_sh[e] = vec4(LOAD(q, Q16, b), LOAD(q, Q16, b + 1u), LOAD(q, Q16, b + 2u),
                       LOAD(q, Q16, b + 3u)) *
                  pc.scale;
    }
    if (tid < rows) {
        m_sh[tid] = NEG_INF;
        l_sh[tid] = 0.0;
    }
    vec4 acc[EPT];
    [[unroll]] for (uint k = 0u; k < EPT; k++)
        acc[k] = vec4(0.0);

    for (int j0 = j_begin; j0 < j_end; j0 += int(TK)) {
        const uint n = uint(min(int(TK), j_end - j0));
        barrier(); // the previous tile's V and weights are consumed
        for (uint e = tid; e < TK * D4; e += WG) {
            const uint c = e / D4, i4 = e - c * D4;
            vec4 x = vec4(0.0);
            if (c < n) {
                const uint b =
                    cache_row(seq, uint(j0) + c, g, pc.k_off, pc.k_s0, pc.k_s1, pc.k_s2) + i4 * 4u;
                x = LOAD4(k, b);
            }
            kv_sh[c * DS4 + i4] = x;
        }
        barrier();

        {
            const uint c = tid % TK, rg = tid / TK;
            const int j = j0 + int(c);
            float dots[RPI];
            [[unroll]] for (uint k = 0u; k < RPI; k++)
                dots[k] = 0.0;
            if (c < n) {
                for (uint i4 = 0u; i4 < D4; i4++) {
                    const vec4 kv = kv_sh[c * DS4 + i4];
                    [[unroll]] for (uint k = 0u; k < RPI; k++) {
                        const uint r = rg + k * RG;
                        if (r < rows)
                            dots[k] += dot(q_sh[r * D4 + i4], kv);
                    }
                }
            }
            [[unroll]] for (uint k = 0u; k < RPI; k++) {
                const uint r = rg + k * RG;
                if (r < rows) {
                    const uint t = r / nh;
                    const int p = pos0 + int(t);
                    const int lo = pc.window > 0 ? p - pc.window + 1 : 0;
                    const int hi = pc.causal != 0u ? min(p + 1, kv_len) : kv_len;
                    float s = NEG_INF;
                    if (c < n && j >= lo && j < hi) {
                        s = dots[k];
                        if (pc.softcap > 0.0)
                            s = pc.softcap * tanh(s / pc.softcap);
                        if (pc.alibi_off != 0u)
                            s += uintBitsToFloat(meta[pc.alibi_off + head0 + (r - t * nh)]) *
                                 float(j - p);
                    }
                    S(r, c) = s;
                }
            }
        }
        barrier();

        // One online-softmax step per row; the V tile loads meanwhile (the scores are done).
#ifdef SUBGROUPS
        for (uint r = gl_SubgroupID; r < rows; r += gl_NumSubgroups) {
            float mx = NEG_INF;
            for (uint c = gl_SubgroupInvocationID; c < TK; c += gl_SubgroupSize)
                mx = max(mx, S(r, c));
            mx = subgroupMax(mx);
            const float m_old = m_sh[r], m_new = max(m_old, mx);
            float alpha = 1.0, sum = 0.0;
            if (m_new != NEG_INF) {
                alpha = m_old == NEG_INF ? 0.0 : exp(m_old - m_new);
                for (uint c = gl_SubgroupInvocationID; c < TK; c += gl_SubgroupSize) {
                    float x = S(r, c);
                    float w = x == NEG_INF ? 0.0 : exp(x - m_new);
                    S(r, c) = w;
                    sum += w;
                }
            } else {
                for (uint c = gl_SubgroupInvocationID; c < TK; c += gl_SubgroupSize)
                    S(r, c) = 0.0;
            }
            sum = subgroupAdd(sum);
            if (subgroupElect()) {
                a_sh[r] = alpha;
                if (m_new != NEG_INF) {
                    l_sh[r] = l_sh[r] * alpha + sum;
                    m_sh[r] = m_new;
                }
            }
        }
#else
        if (tid < rows) {
            const uint r = tid;
            float mx = NEG_INF;
            for (uint c = 0u; c < TK; c++)
                mx = max(mx, S(r, c));
            const float m_old = m_sh[r], m_new = max(m_old, mx);
            float alpha = 1.0;
            if (m_new != NEG_INF) {
                alpha = m_old == NEG_INF ? 0.0 : exp(m_old - m_new);
                float sum = 0.0;
                for (uint c = 0u; c < TK; c++) {
                    float x = S(r, c);
                    float w = x == NEG_INF ? 0.0 : exp(x - m_new);
                    S(r, c) = w;
                    sum += w;
                }
                l_sh[r] = l_sh[r] * alpha + sum;
                m_sh[r] = m_new;
            } else {
                for (uint c = 0u; c < TK; c++)
                    S(r, c) = 0.0;
            }
            a_sh[r] = alpha;
        }
#endif
        for (uint e = tid; e < TK * D4; e += WG) {
            const uint c = e / D4, i4 = e - c * D4;
            vec4 x = vec4(0.0);
            if (c < n) {
                const uint b =
                    cache_row(seq, uint(j0) + c, g, pc.v_off, pc.v_s0, pc.v_s1, pc.v_s2) + i4 * 4u;
                x = LOAD4(v, b);
            }
            kv_sh[c * DS4 + i4] = x;
        }
        barrier();

        // Weights past n are 0 and V rows past n are zero, so whole groups of 4 keys are safe.
        const uint n4 = (n + 3u) / 4u;
        [[unroll]] for (uint k = 0u; k < EPT; k++) {
            const uint e = tid + k * WG;
            if (e < rows * D4) {
                const uint r = e / D4, i4 = e - r * D4;
                vec4 a = acc[k] * a_sh[r];
                for (uint c4 = 0u; c4 < n4; c4++) {
                    const vec4 w = s_sh[r * TK4 + c4];
                    const uint vb = c4 * 4u * DS4 + i4;
                    a += w.x * kv_sh[vb] + w.y * kv_sh[vb + DS4] + w.z * kv_sh[vb + 2u * DS4] +
                         w.w * kv_sh[vb + 3u * DS4];
                }
                acc[k] = a;
            }
        }
    }
    barrier(); // m_sh / l_sh of the last tile are visible to every invocation

    if (partial != NO_PARTIAL) {
        [[unroll]] for (uint k = 0u; k < EPT; k++) {
            const uint e = tid + k * WG;
            if (e < rows * D4)
                for (uint x = 0u; x < 4u; x++)
                    partials[partial + e * 4u + x] = acc[k][x];
        }
        if (tid < rows) {
            partials[partial + rows * D + tid] = m_sh[tid];
            partials[partial + rows * D + rows + tid] = l_sh[tid];
        }
        return;
    }
    [[unroll]] for (uint k = 0u; k < EPT; k++) {
        const uint e = tid + k * WG;
        if (e < rows * D4) {
            const uint r = e / D4, i = (e - r * D4) * 4u;
            const uint t = r / nh, h = head0 + (r - t * nh);
            const float m = m_sh[r], l = l_sh[r];
            float mul = 0.0;
            if (l > 0.0) {
                if (pc.sinks_off != 0u) {
                    // The sink joins the denominator: o / (l + e^(sink - m)), kept in range.
                    float sink = uintBitsToFloat(meta[pc.sinks_off + h]);
                    float mx = max(m, sink), keep = exp(m - mx);
                    mul = keep / (l * keep + exp(sink - mx));
                } else {
                    mul = 1.0 / l;
                }
            }
            const vec4 val = l > 0.0 ? acc[k] * mul : vec4(0.0);
            const uint b = pc.o_off + (tok0 + t) * pc.o_s0 + h * pc.o_s1 + i;
            STORE(o, O16, b, val.x);
            STORE(o, O16, b + 1u, val.y);
            STORE(o, O16, b + 2u, val.z);
            STORE(o, O16, b + 3u, val.w);
        }
    }
}

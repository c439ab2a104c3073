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
// workgroup walks its keys in tiles of TK: the tile's K rows are staged in shared memory as f32
// (row stride D + 1, so invocations reading different keys hit different banks), every
// (row, key) score of the tile is computed (one invocation per pair, q from shared memory), one
// online-softmax step runs per row while the V rows replace the K rows in the same shared array,
// and each invocation accumulates the output elements it owns (element e = tid + k * WG of the
// rows x D block, in registers) from P and the V tile. The score matrix never exists beyond one
// RMAX x TK block. A split item writes (o, m, l) to the partial buffer; attention_combine.comp
// merges the splits.
//
// Floor. Decode streams K and V once: 2 * kv_len * Hkv * D * sizeof(kv) bytes; for 32/8 heads,
// D = 128, 4096 f16 tokens that is 16.8 MB, 5 us at the ~3.3 TB/s of an H100 once split-KV puts
// enough workgroups on the SMs. This scalar path does 2 shared-memory loads per FMA in the score
// loop, so prefill is bound by shared-memory bandwidth, not by DRAM; cooperative matrices are
// the way past that (not written: lavapipe, the CI device, has none to test it on).
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
layout(local_size_x_id = 6) in;                // WG invocations (spec constant 6)

const uint WG = gl_WorkGroupSize.x;
const uint DS = D + 1u;
const uint EPT = (RMAX * D + WG - 1u) / WG; // output elements per invocation
const uint ITEM_WORDS = 12u;
const uint NO_PARTIAL = 0xFFFFFFFFu;

TENSOR_RO(0, q)
TENSOR_RO(1, k)
TENSOR_RO(2, v)
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

shared float kv_sh[TK * DS]; // the K tile, then the V tile
shared float q_sh[RMAX * D]; // the item's query rows, times scale
shared float s_sh[RMAX * TK]; // scores, then weights
shared float m_sh[RMAX], l_sh[RMAX], a_sh[RMAX];
shared uint krow_sh[TK], vrow_sh[TK]; // element index of key j0 + c, dim 0, in K and V

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

    for (uint e = tid; e < rows * D; e += WG) {
        uint r = e / D, i = e - r * D;
        uint t = r / nh, h = head0 + (r - t * nh);
        q_sh[e] = LOAD(q, Q16, pc.q_off + (tok0 + t) * pc.q_s0 + h * pc.q_s1 + i) * pc.scale;
    }
    if (tid < rows) {
        m_sh[tid] = NEG_INF;
        l_sh[tid] = 0.0;
    }
    float acc[EPT];
    [[unroll]] for (uint k = 0u; k < EPT; k++)
        acc[k] = 0.0;

    for (int j0 = j_begin; j0 < j_end; j0 += int(TK)) {
        const uint n = uint(min(int(TK), j_end - j0));
        barrier(); // the previous tile's V and weights are consumed
        if (tid < n) {
            krow_sh[tid] = cache_row(seq, uint(j0) + tid, g, pc.k_off, pc.k_s0, pc.k_s1, pc.k_s2);
            vrow_sh[tid] = cache_row(seq, uint(j0) + tid, g, pc.v_off, pc.v_s0, pc.v_s1, pc.v_s2);
        }
        barrier();
        for (uint e = tid; e < n * D; e += WG) {
            uint c = e / D, i = e - c * D;
            kv_sh[c * DS + i] = LOAD(k, KV16, krow_sh[c] + i);
        }
        barrier();

        for (uint pr = tid; pr < rows * TK; pr += WG) {
            uint r = pr / TK, c = pr - r * TK;
            uint t = r / nh;
            int p = pos0 + int(t), j = j0 + int(c);
            int lo = pc.window > 0 ? p - pc.window + 1 : 0;
            int hi = pc.causal != 0u ? min(p + 1, kv_len) : kv_len;
            float s = NEG_INF;
            if (c < n && j >= lo && j < hi) {
                float d0 = 0.0, d1 = 0.0;
                const uint qb = r * D, kb = c * DS;
                // Two chains: D is a multiple of 16.
                for (uint i = 0u; i < D; i += 2u) {
                    d0 += q_sh[qb + i] * kv_sh[kb + i];
                    d1 += q_sh[qb + i + 1u] * kv_sh[kb + i + 1u];
                }
                s = d0 + d1;
                if (pc.softcap > 0.0)
                    s = pc.softcap * tanh(s / pc.softcap);
                if (pc.alibi_off != 0u)
                    s += uintBitsToFloat(meta[pc.alibi_off + head0 + (r - t * nh)]) * float(j - p);
            }
            s_sh[pr] = s;
        }
        barrier();

        // One online-softmax step per row; the V tile loads meanwhile (the scores are done).
#ifdef SUBGROUPS
        for (uint r = gl_SubgroupID; r < rows; r += gl_NumSubgroups) {
            float mx = NEG_INF;
            for (uint c = gl_SubgroupInvocationID; c < TK; c += gl_SubgroupSize)
                mx = max(mx, s_sh[r * TK + c]);
            mx = subgroupMax(mx);
            const float m_old = m_sh[r], m_new = max(m_old, mx);
            float alpha = 1.0, sum = 0.0;
            if (m_new != NEG_INF) {
                alpha = m_old == NEG_INF ? 0.0 : exp(m_old - m_new);
                for (uint c = gl_SubgroupInvocationID; c < TK; c += gl_SubgroupSize) {
                    float x = s_sh[r * TK + c];
                    float w = x == NEG_INF ? 0.0 : exp(x - m_new);
                    s_sh[r * TK + c] = w;
                    sum += w;
                }
            } else {
                for (uint c = gl_SubgroupInvocationID; c < TK; c += gl_SubgroupSize)
                    s_sh[r * TK + c] = 0.0;
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
                mx = max(mx, s_sh[r * TK + c]);
            const float m_old = m_sh[r], m_new = max(m_old, mx);
            float alpha = 1.0;
            if (m_new != NEG_INF) {
                alpha = m_old == NEG_INF ? 0.0 : exp(m_old - m_new);
                float sum = 0.0;
                for (uint c = 0u; c < TK; c++) {
                    float x = s_sh[r * TK + c];
                    float w = x == NEG_INF ? 0.0 : exp(x - m_new);
                    s_sh[r * TK + c] = w;
                    sum += w;
                }
                l_sh[r] = l_sh[r] * alpha + sum;
                m_sh[r] = m_new;
            } else {
                for (uint c = 0u; c < TK; c++)
                    s_sh[r * TK + c] = 0.0;
            }
            a_sh[r] = alpha;
        }
#endif
        for (uint e = tid; e < n * D; e += WG) {
            uint c = e / D, i = e - c * D;
            kv_sh[c * DS + i] = LOAD(v, KV16, vrow_sh[c] + i);
        }
        barrier();

        [[unroll]] for (uint k = 0u; k < EPT; k++) {
            const uint e = tid + k * WG;
            if (e < rows * D) {
                const uint r = e / D, i = e - r * D;
                float a = acc[k] * a_sh[r];
                for (uint c = 0u; c < n; c++)
                    a += s_sh[r * TK + c] * kv_sh[c * DS + i];
                acc[k] = a;
            }
        }
    }
    barrier(); // m_sh / l_sh of the last tile are visible to every invocation

    if (partial != NO_PARTIAL) {
        [[unroll]] for (uint k = 0u; k < EPT; k++) {
            const uint e = tid + k * WG;
            if (e < rows * D)
                partials[partial + e] = acc[k];
        }
        if (tid < rows) {
            partials[partial + rows * D + tid] = m_sh[tid];
            partials[partial + rows * D + rows + tid] = l_sh[tid];
        }
        return;
    }
    [[unroll]] for (uint k = 0u; k < EPT; k++) {
        const uint e = tid + k * WG;
        if (e < rows * D) {
            const uint r = e / D, i = e - r * D;
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
            const float val = l > 0.0 ? acc[k] * mul : 0.0;
            STORE(o, O16, pc.o_off + (tok0 + t) * pc.o_s0 + h * pc.o_s1 + i, val);
        }
    }
}

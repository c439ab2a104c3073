#version 450
//! variant f32acc -DACC32=1
//! variant f16acc
//! variant emu_f32acc -DEMULATE=1 -DACC32=1
//! variant emu_f16acc -DEMULATE=1
//
// attention_coop.comp — prefill attention with cooperative matrices (GL_NV_cooperative_matrix,
// subgroup scope): S = Q·Kᵀ and O += P·V on f16 tiles with f32 accumulators (f16 on devices that
// offer only those: variant f16acc), the online softmax between the two in shared memory.
//
// Tiling. Work items are attention.comp's (one KV head, up to RMAX query rows that read it, a key
// range); RMAX is a multiple of 16. The workgroup is NSG = 4 subgroups of SG invocations (SG
// pinned by the host, the size the device runs cooperative matrices at). Per item: the query rows
// are staged once as f16 (row stride QS = D + 8 halves, so every row starts 16-byte aligned and
// consecutive rows start in different banks); the output block O (RMAX x D, f32) lives in shared
// memory. Per tile of TK keys: the K rows are staged as f16 (16-byte global loads where the
// views' rows are 8-half aligned, as attention.comp's KV_VEC; Q likewise); each subgroup
// computes 16 x CN score tiles (D/16 multiply-adds of 16x16 Q by 16xCN Kᵀ fragments, Kᵀ read
// column-major from the K rows) and stores them to s_sh (row stride PS = TK + 8 elements, as
// p_sh: with a stride of TK the 16 rows of one fragment store would start in the same bank; + 8
// keeps every fragment offset and stride a multiple of 16 bytes, as coopMatStoreNV wants, for
// f32 and f16 accumulators alike); one subgroup per row applies scale, masks, softcap and ALiBi
// and the online-softmax step in f32, writing the weights P as f16; the V rows replace the K rows;
// each subgroup then owns 16 x CN tiles of O: it multiplies P (16 x TK) by V (TK x CN) into a
// fresh accumulator, stores it to its slice of s_sh (dead between the softmax and the next
// tile's scores, so the P·V fragments reuse it) and adds it into O with the row's rescale
// factor (a fragment's element-to-invocation map is opaque, so per-row scaling goes through
// shared memory). Masked keys and keys past the tile's end get weight 0 and zeroed V rows, and
// query rows past the item's rows are zero, so every fragment is a full 16 x 16 / 16 x CN block.
//
// Floor. Per tile the tensor cores do 4 * RMAX * TK * D flops for 2 * TK * D * 2 bytes of K/V
// staged, so prefill with RMAX = 32 should be bound by staging and the scalar softmax rather
// than by FMA issue as attention.comp is; K/V bytes from DRAM are the same as attention.comp's
// (each read once per item). Expected, not measured: this path has not run on a device yet.
//
// Variants emu_*: the same kernel with the fragment products written as scalar loops over the
// same shared tiles (f32 sums of exact f16 products; emu_f16acc rounds the accumulator to f16
// after each 16-deep step). They let a device without cooperative matrices (lavapipe, in CI) run
// everything else of this kernel — staging, tiling, masks, softmax, rescaling, split output —
// when forced with vulkan.coop_matrix=emulate; only the coopMat* calls themselves are then not
// exercised.
//
// Masking is attention.comp's: row r is token t = r / nh at position p = pos0 + t and sees keys
// j with max(0, p - window + 1) <= j (window > 0), j <= p (causal), j < kv_len.
#extension GL_EXT_control_flow_attributes : enable
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#ifndef EMULATE
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#endif

#define STORAGE16 1
#include "attention_io.glsl"

layout(constant_id = 0) const uint D = 128;   // head dim, a multiple of 16
layout(constant_id = 1) const uint TK = 32;   // keys per tile, a multiple of 16
layout(constant_id = 2) const uint RMAX = 16; // query rows per workgroup, a multiple of 16
layout(constant_id = 3) const bool O16 = false;
layout(constant_id = 4) const uint CN = 16; // N of the fragment shape 16 x CN x 16: 16 or 8
layout(constant_id = 5) const uint SG = 32; // the pinned subgroup size
layout(local_size_x_id = 6) in;             // 4 * SG invocations
// Rows of q (Q_VEC), and of K and V (KV_VEC), start at multiples of 8 halves in bindings that
// start 16-byte aligned: staging then reads 16 bytes at a time, else one half at a time.
layout(constant_id = 7) const bool Q_VEC = false;
layout(constant_id = 8) const bool KV_VEC = false;

#ifdef ACC32
#define ACC_T float
#define ACC_BITS 32
#else
#define ACC_T float16_t
#define ACC_BITS 16
#endif

const uint WG = gl_WorkGroupSize.x;
const uint NSG = WG / SG;
const uint FM = 16u; // fragment rows (M)
const uint FK = 16u; // fragment depth (K)
const uint QS = D + 8u;
const uint D8 = D / 8u; // 16-byte groups of a row
const uint PS = TK + 8u; // row stride of p_sh and s_sh (see the header)
const uint CPL = (TK + SG - 1u) / SG; // scores of one row per invocation in the softmax
const uint ITEM_WORDS = 12u;
const uint NO_PARTIAL = 0xFFFFFFFFu;

// q, k and v are f16 here (the host takes this path only then), read as float16_t directly.
layout(std430, set = 0, binding = 0) readonly buffer QHalves { float16_t q_f[]; };
layout(std430, set = 0, binding = 1) readonly buffer KHalves { float16_t k_f[]; };
layout(std430, set = 0, binding = 2) readonly buffer VHalves { float16_t v_f[]; };
layout(std430, set = 0, binding = 0) readonly buffer QOcts { uvec4 q_w8[]; };
layout(std430, set = 0, binding = 1) readonly buffer KOcts { uvec4 k_w8[]; };
layout(std430, set = 0, binding = 2) readonly buffer VOcts { uvec4 v_w8[]; };
TENSOR_RW(3, o)
layout(std430, set = 0, binding = 4) readonly buffer Meta { uint meta[]; };
layout(std430, set = 0, binding = 5) writeonly buffer Partials { float partials[]; };

// attention.comp's push constants, the same struct on the host (att_push).
layout(push_constant) uniform Push {
    uint q_off, q_s0, q_s1;
    uint o_off, o_s0, o_s1;
    uint k_off, k_s0, k_s1, k_s2;
    uint v_off, v_s0, v_s1, v_s2;
    uint block, max_blocks, table_off, alibi_off, sinks_off, n_items;
    int window;
    uint causal;
    float scale;
    float softcap;
} pc;

shared float16_t q_sh[RMAX * QS];  // the item's query rows (zero past its rows)
shared float16_t kv_sh[TK * QS];   // the K tile, then the V tile (zero past the tile's keys)
// Raw scores Q·Kᵀ of the tile (row stride PS); during P·V, one fragment per subgroup (at
// sg * FM * CN, row stride CN): at least NSG * FM * CN elements.
const uint SN = RMAX * PS > NSG * FM * CN ? RMAX * PS : NSG * FM * CN;
shared ACC_T s_sh[SN];
shared float16_t p_sh[RMAX * PS];  // softmax weights of the tile
shared float o_sh[RMAX * D];       // the output accumulators
shared float m_sh[RMAX], l_sh[RMAX], a_sh[RMAX];
shared uint krow_sh[TK], vrow_sh[TK];

// Stores the 8 halves of w (lowest address first) at sh[o .. o + 7].
#define STORE8(sh, o, w)                                                                            \
    {                                                                                               \
        const uint o_ = (o);                                                                        \
        [[unroll]] for (uint k_ = 0u; k_ < 4u; k_++) {                                              \
            const f16vec2 h_ = unpackFloat2x16((w)[k_]);                                            \
            sh[o_ + 2u * k_] = h_.x;                                                                \
            sh[o_ + 2u * k_ + 1u] = h_.y;                                                           \
        }                                                                                           \
    }

// Stages the tile's K or V rows (`name` k or v, row offsets in rows_sh) into kv_sh, zero past
// the n keys of the tile.
#define STAGE_KV(name, rows_sh)                                                                     \
    if (KV_VEC) {                                                                                   \
        for (uint e = tid; e < TK * D8; e += WG) {                                                  \
            const uint c = e / D8, i = (e - c * D8) * 8u;                                           \
            const uvec4 w = c < n ? name##_w8[(rows_sh[c] + i) >> 3u] : uvec4(0u);                  \
            STORE8(kv_sh, c * QS + i, w);                                                           \
        }                                                                                           \
    } else {                                                                                        \
        for (uint e = tid; e < TK * D; e += WG) {                                                   \
            const uint c = e / D, i = e - c * D;                                                    \
            kv_sh[c * QS + i] = c < n ? name##_f[rows_sh[c] + i] : float16_t(0.0);                  \
        }                                                                                           \
    }

uint cache_row(uint seq, uint j, uint g, uint off, uint s0, uint s1, uint s2)
{
    uint blk = seq, row = j;
    if (pc.block != 0u) {
        blk = meta[pc.table_off + seq * pc.max_blocks + j / pc.block];
        row = j % pc.block;
    }
    return off + blk * s0 + row * s1 + g * s2;
}

#ifndef EMULATE
#define FRAG_A fcoopmatNV<16, gl_ScopeSubgroup, FM, FK>
#define FRAG_B fcoopmatNV<16, gl_ScopeSubgroup, FK, CN>
#define FRAG_C fcoopmatNV<ACC_BITS, gl_ScopeSubgroup, FM, CN>

// Score tile (rt, ct): rows rt*16.., keys ct*CN.., into s_sh.
void tile_scores(uint rt, uint ct)
{
    FRAG_C acc = FRAG_C(0.0);
    for (uint kk = 0u; kk < D; kk += FK) {
        FRAG_A a;
        FRAG_B b;
        coopMatLoadNV(a, q_sh, rt * FM * QS + kk, QS, false);
        coopMatLoadNV(b, kv_sh, ct * CN * QS + kk, QS, true); // Kᵀ: column c is key row c
        acc = coopMatMulAddNV(a, b, acc);
    }
    coopMatStoreNV(acc, s_sh, rt * FM * PS + ct * CN, PS, false);
}

// P·V fragment (rt, dt): rows rt*16.., dims dt*CN.., into s_sh[dst..] (row stride CN).
void tile_pv(uint rt, uint dt, uint dst)
{
    FRAG_C acc = FRAG_C(0.0);
    for (uint kk = 0u; kk < TK; kk += FK) {
        FRAG_A a;
        FRAG_B b;
        coopMatLoadNV(a, p_sh, rt * FM * PS + kk, PS, false);
        coopMatLoadNV(b, kv_sh, kk * QS + dt * CN, QS, false);
        acc = coopMatMulAddNV(a, b, acc);
    }
    coopMatStoreNV(acc, s_sh, dst, CN, false);
}
#else
// The same products as scalar loops, split over the subgroup's invocations.
void tile_scores(uint rt, uint ct)
{
    for (uint e = gl_SubgroupInvocationID; e < FM * CN; e += gl_SubgroupSize) {
        const uint r = e / CN, c = e - r * CN;
        const uint qa = (rt * FM + r) * QS, ka = (ct * CN + c) * QS;
        float acc = 0.0;
        for (uint kk = 0u; kk < D; kk += FK) {
            float part = 0.0;
            for (uint i = 0u; i < FK; i++)
                part += float(q_sh[qa + kk + i]) * float(kv_sh[ka + kk + i]);
            acc = float(ACC_T(acc + part));
        }
        s_sh[(rt * FM + r) * PS + ct * CN + c] = ACC_T(acc);
    }
}

void tile_pv(uint rt, uint dt, uint dst)
{
    for (uint e = gl_SubgroupInvocationID; e < FM * CN; e += gl_SubgroupSize) {
        const uint r = e / CN, c = e - r * CN;
        const uint pa = (rt * FM + r) * PS, va = dt * CN + c;
        float acc = 0.0;
        for (uint kk = 0u; kk < TK; kk += FK) {
            float part = 0.0;
            for (uint i = 0u; i < FK; i++)
                part += float(p_sh[pa + kk + i]) * float(kv_sh[(kk + i) * QS + va]);
            acc = float(ACC_T(acc + part));
        }
        s_sh[dst + e] = ACC_T(acc);
    }
}
#endif

void main()
{
    const uint item = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (item >= pc.n_items)
        return; // the whole workgroup leaves together
    const uint tid = gl_LocalInvocationID.x;
    const uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    const uint ib = item * ITEM_WORDS;
    const uint seq = meta[ib + 0u], g = meta[ib + 1u], head0 = meta[ib + 2u];
    const uint nh = meta[ib + 3u], nt = meta[ib + 4u];
    const int pos0 = int(meta[ib + 5u]);
    const uint tok0 = meta[ib + 6u];
    const int j_begin = int(meta[ib + 7u]), j_end = int(meta[ib + 8u]);
    const int kv_len = int(meta[ib + 9u]);
    const uint partial = meta[ib + 10u];
    const uint rows = nh * nt;

    if (Q_VEC) {
        for (uint e = tid; e < RMAX * D8; e += WG) {
            const uint r = e / D8, i = (e - r * D8) * 8u;
            uvec4 w = uvec4(0u);
            if (r < rows) {
                const uint t = r / nh, h = head0 + (r - t * nh);
                w = q_w8[(pc.q_off + (tok0 + t) * pc.q_s0 + h * pc.q_s1 + i) >> 3u];
            }
            STORE8(q_sh, r * QS + i, w);
        }
    } else {
        for (uint e = tid; e < RMAX * D; e += WG) {
            const uint r = e / D, i = e - r * D;
            float16_t x = float16_t(0.0);
            if (r < rows) {
                const uint t = r / nh, h = head0 + (r - t * nh);
                x = q_f[pc.q_off + (tok0 + t) * pc.q_s0 + h * pc.q_s1 + i];
            }
            q_sh[r * QS + i] = x;
        }
    }
    for (uint e = tid; e < RMAX * D; e += WG)
        o_sh[e] = 0.0;
    for (uint e = tid; e < RMAX * PS; e += WG)
        p_sh[e] = float16_t(0.0);
    // (WG may be smaller than RMAX or TK: 32 invocations where subgroups are 8 wide.)
    for (uint r = tid; r < RMAX; r += WG) {
        m_sh[r] = NEG_INF;
        l_sh[r] = 0.0;
        a_sh[r] = 1.0;
    }

    for (int j0 = j_begin; j0 < j_end; j0 += int(TK)) {
        const uint n = uint(min(int(TK), j_end - j0));
        barrier(); // the previous tile's V, weights and factors are consumed
        for (uint c = tid; c < n; c += WG) {
            krow_sh[c] = cache_row(seq, uint(j0) + c, g, pc.k_off, pc.k_s0, pc.k_s1, pc.k_s2);
            vrow_sh[c] = cache_row(seq, uint(j0) + c, g, pc.v_off, pc.v_s0, pc.v_s1, pc.v_s2);
        }
        barrier();
        STAGE_KV(k, krow_sh)
        barrier();

        for (uint t = sg; t < (RMAX / FM) * (TK / CN); t += NSG)
            tile_scores(t / (TK / CN), t % (TK / CN));
        barrier();

        // One online-softmax step per row, a subgroup per row, in f32.
        for (uint r = sg; r < rows; r += NSG) {
            const uint t = r / nh;
            const int p = pos0 + int(t);
            const int lo = pc.window > 0 ? p - pc.window + 1 : 0;
            const int hi = pc.causal != 0u ? min(p + 1, kv_len) : kv_len;
            const float slope =
                pc.alibi_off != 0u ? uintBitsToFloat(meta[pc.alibi_off + head0 + (r - t * nh)])
                                   : 0.0;
            float sv[CPL];
            float mx = NEG_INF;
            [[unroll]] for (uint k = 0u; k < CPL; k++) {
                const uint c = lane + k * SG;
                const int j = j0 + int(c);
                float s = NEG_INF;
                if (c < n && j >= lo && j < hi) {
                    s = float(s_sh[r * PS + c]) * pc.scale;
                    if (pc.softcap > 0.0)
                        s = pc.softcap * tanh(s / pc.softcap);
                    s += slope * float(j - p);
                }
                sv[k] = s;
                mx = max(mx, s);
            }
            mx = subgroupMax(mx);
            const float m_old = m_sh[r], m_new = max(m_old, mx);
            float alpha = 1.0, sum = 0.0;
            [[unroll]] for (uint k = 0u; k < CPL; k++) {
                const uint c = lane + k * SG;
                if (c < TK) {
                    // The f16 weight is what P·V uses, so l sums the same rounded values.
                    const float16_t w = float16_t(sv[k] == NEG_INF ? 0.0 : exp(sv[k] - m_new));
                    p_sh[r * PS + c] = w;
                    sum += float(w);
                }
            }
            sum = subgroupAdd(sum);
            if (m_new != NEG_INF)
                alpha = m_old == NEG_INF ? 0.0 : exp(m_old - m_new);
            if (subgroupElect()) {
                a_sh[r] = alpha;
                if (m_new != NEG_INF) {
                    l_sh[r] = l_sh[r] * alpha + sum;
                    m_sh[r] = m_new;
                }
            }
        }
        // The V tile replaces the K tile (the scores are done).
        STAGE_KV(v, vrow_sh)
        barrier();

        const uint mine = sg * FM * CN;
        for (uint t = sg; t < (RMAX / FM) * (D / CN); t += NSG) {
            const uint rt = t / (D / CN), dt = t - rt * (D / CN);
            tile_pv(rt, dt, mine);
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            for (uint e = lane; e < FM * CN; e += SG) {
                const uint r = rt * FM + e / CN, i = dt * CN + (e % CN);
                o_sh[r * D + i] = o_sh[r * D + i] * a_sh[r] + float(s_sh[mine + e]);
            }
            subgroupMemoryBarrierShared();
            subgroupBarrier();
        }
    }
    barrier(); // O, m and l of the last tile are visible to every invocation

    if (partial != NO_PARTIAL) {
        for (uint e = tid; e < rows * D; e += WG)
            partials[partial + e] = o_sh[e];
        for (uint r = tid; r < rows; r += WG) {
            partials[partial + rows * D + r] = m_sh[r];
            partials[partial + rows * D + rows + r] = l_sh[r];
        }
        return;
    }
    for (uint e = tid; e < rows * D; e += WG) {
        const uint r = e / D, i = e - r * D;
        const uint t = r / nh, h = head0 + (r - t * nh);
        const float m = m_sh[r], l = l_sh[r];
        float val = 0.0;
        if (l > 0.0) {
            float mul = 1.0 / l;
            if (pc.sinks_off != 0u) {
                // The sink joins the denominator: o / (l + e^(sink - m)), kept in range.
                const float sink = uintBitsToFloat(meta[pc.sinks_off + h]);
                const float mx = max(m, sink), keep = exp(m - mx);
                mul = keep / (l * keep + exp(sink - mx));
            }
            val = o_sh[e] * mul;
        }
        STORE(o, O16, pc.o_off + (tok0 + t) * pc.o_s0 + h * pc.o_s1 + i, val);
    }
}

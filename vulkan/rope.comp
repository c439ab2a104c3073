#version 450
//! variant -
//! variant f16 -DSTORAGE16=1
//
// rope.comp — RoPE on q (in place) and on the new keys, and the append of keys and values to
// the KV cache, one workgroup per new token.
//
// The token's rot_dims/2 (cos, sin) pairs are computed once into shared memory and serve its H
// query heads and Hkv key heads. An invocation owns one (head, pair) of q, so it reads both
// elements of its pair before writing them back, and single elements of the cache slot (K
// rotated or copied past rot_dims, V converted), which no other workgroup writes: rope.c resolved
// each token's slot (position p of its sequence, contiguous or through the block table) on the
// host.
//
// Angles. theta_i = p * w_i reaches 1e5 radians for long contexts, where an f32 product is off
// by ~4e-3 rad, and Vulkan promises little for sin/cos outside [-pi, pi] (and shaderFloat64 is
// optional, and slow where it exists on consumer GPUs). So the host gives w_i / (2 pi) as a
// 64-bit fixed-point fraction of a turn, and p * W mod 2^64 is computed exactly in 32-bit
// integers: the top two bits are the quadrant, the next 32 the angle inside it (error 2^-33 turns
// at p = 2^31, 1e-9 rad). sin and cos of the remaining |r| <= pi/4 come from Taylor polynomials to
// degree 11 / 12 (truncation below 1e-10), so the result is the same on every device and f32
// accurate to ~1e-7.
//
// Floor: (2 H + 2 Hkv) D elements of q and new K/V plus 2 Hkv D cache elements per token, 30 KB
// for 20/5 heads, D = 128, f32: a decode token is one small workgroup, launch-bound.
#ifdef STORAGE16
#extension GL_EXT_shader_16bit_storage : require
#endif

#include "attention_io.glsl"

layout(constant_id = 0) const uint D = 128;
layout(constant_id = 1) const bool NEOX = false;
layout(constant_id = 2) const bool Q16 = false;
layout(constant_id = 3) const bool KN16 = false;
layout(constant_id = 4) const bool VN16 = false;
layout(constant_id = 5) const bool C16 = false;
layout(local_size_x_id = 6) in;

const uint WG = gl_WorkGroupSize.x;
const uint TOKEN_WORDS = 3u;

TENSOR_RW(0, q)
TENSOR_RO(1, kn)
TENSOR_RO(2, vn)
TENSOR_RW(3, kc)
TENSOR_RW(4, vc)
layout(std430, set = 0, binding = 5) readonly buffer Meta { uint meta[]; };

layout(push_constant) uniform Push {
    uint q_off, q_s0, q_s1; // element index of q[0,0,0]; token and head strides
    uint kn_off, kn_s0, kn_s1;
    uint vn_off, vn_s0, vn_s1;
    uint kc_s2, vc_s2; // KV-head stride of the cache
    uint n_heads;      // 0: no q
    uint n_kv_heads;
    uint half_rot;   // rot_dims / 2; the frequencies are words [0, 2 * half_rot) of meta
    uint tokens_off; // word offset of (position, K slot, V slot) per token in meta
    uint n_tokens;
} pc;

shared float cs_sh[128], sn_sh[128];

const float HALF_PI = 1.57079632679489661923;

// cos and sin of the angle p * W (W: turns in 64-bit fixed point, as lo, hi words).
vec2 cos_sin_turns(uint p, uint w_lo, uint w_hi)
{
    uint c_hi, c_lo;
    umulExtended(p, w_lo, c_hi, c_lo);
    const uint f_hi = c_hi + p * w_hi; // (p * W) mod 2^64 = f_hi:c_lo
    uint quadrant = f_hi >> 30u;
    const int x = int((f_hi << 2u) | (c_lo >> 30u)); // inside the quadrant, 2^-32 quarter turns
    if (x < 0)
        quadrant++; // nearer the next quadrant: x is then the (negative) way back from it
    const float r = float(x) * (HALF_PI / 4294967296.0);
    const float r2 = r * r;
    const float s =
        r + r * r2 *
                (-1.0 / 6.0 +
                 r2 * (1.0 / 120.0 +
                       r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0 + r2 * (-1.0 / 39916800.0)))));
    const float c =
        1.0 +
        r2 * (-0.5 +
              r2 * (1.0 / 24.0 +
                    r2 * (-1.0 / 720.0 +
                          r2 * (1.0 / 40320.0 + r2 * (-1.0 / 3628800.0 + r2 * (1.0 / 479001600.0))))));
    switch (quadrant & 3u) {
    case 0u: return vec2(c, s);
    case 1u: return vec2(-s, c);
    case 2u: return vec2(-c, -s);
    default: return vec2(s, -c);
    }
}

void main()
{
    const uint tok = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (tok >= pc.n_tokens)
        return;
    const uint tid = gl_LocalInvocationID.x;
    const uint tb = pc.tokens_off + tok * TOKEN_WORDS;
    const uint pos = meta[tb + 0u], kslot = meta[tb + 1u], vslot = meta[tb + 2u];
    const uint half_rot = pc.half_rot, rot = 2u * half_rot;

    for (uint i = tid; i < half_rot; i += WG) {
        vec2 cs = cos_sin_turns(pos, meta[2u * i], meta[2u * i + 1u]);
        cs_sh[i] = cs.x;
        sn_sh[i] = cs.y;
    }
    barrier();

    // q in place: one invocation per (head, pair); dims past rot_dims are not touched.
    for (uint e = tid; e < pc.n_heads * half_rot; e += WG) {
        const uint h = e / half_rot, i = e - h * half_rot;
        const uint base = pc.q_off + tok * pc.q_s0 + h * pc.q_s1;
        const uint i0 = base + (NEOX ? i : 2u * i), i1 = base + (NEOX ? i + half_rot : 2u * i + 1u);
        const float x0 = LOAD(q, Q16, i0), x1 = LOAD(q, Q16, i1);
        const float c = cs_sh[i], s = sn_sh[i];
        STORE(q, Q16, i0, x0 * c - x1 * s);
        STORE(q, Q16, i1, x0 * s + x1 * c);
    }

    // The cache slot: K rotated (copied past rot_dims), V converted. One element each.
    for (uint e = tid; e < pc.n_kv_heads * D; e += WG) {
        const uint g = e / D, x = e - g * D;
        const uint src = pc.kn_off + tok * pc.kn_s0 + g * pc.kn_s1;
        float val;
        if (x < rot) {
            uint i, x0i, x1i;
            if (NEOX) {
                i = x < half_rot ? x : x - half_rot;
                x0i = i;
                x1i = i + half_rot;
            } else {
                i = x >> 1u;
                x0i = 2u * i;
                x1i = 2u * i + 1u;
            }
            const float x0 = LOAD(kn, KN16, src + x0i), x1 = LOAD(kn, KN16, src + x1i);
            const float c = cs_sh[i], s = sn_sh[i];
            val = x == x0i ? x0 * c - x1 * s : x0 * s + x1 * c;
        } else {
            val = LOAD(kn, KN16, src + x);
        }
        STORE(kc, C16, kslot + g * pc.kc_s2 + x, val);

        const uint vsrc = pc.vn_off + tok * pc.vn_s0 + g * pc.vn_s1 + x;
        const uint vdst = vslot + g * pc.vc_s2 + x;
        if (VN16 && C16) {
            STORE_HALF(vc, vdst, LOAD_HALF_BITS(vn, vsrc));
        } else if (!VN16 && !C16) {
            vc_w[vdst] = vn_w[vsrc];
        } else {
            STORE(vc, C16, vdst, LOAD(vn, VN16, vsrc));
        }
    }
}

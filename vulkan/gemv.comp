// gemv.comp — fused ternary GEMV. A workgroup of 64 invocations owns ROWS = 64 / LANES output
// rows; the LANES contiguous invocations of a row split its K into 64-weight chunks (chunk c goes
// to lane c % LANES) and produce all N tokens at once, so each weight load serves N (<= 16) dot
// products. Partial sums of a row meet by subgroupShuffleXor within the subgroup (variants "sg*",
// LANES <= the pinned subgroup size) or by a shared-memory tree; after the butterfly every lane
// holds the row's totals and lane t % LANES runs the epilogue of token t.
//
// Layout (chosen at ternary_create, vulkan/gemv.c): row-major 2-bit codes (code = w + 1), each row
// padded with code 1 (w = 0) to whole 64-weight chunks, read as one uvec4 (16 B) per lane per
// step: the LANES lanes of a row read LANES * 16 contiguous bytes (256 B for LANES = 16), so every
// load is a full coalesced transaction. Weight k of a row: word k / 16, bits 2 (k % 16).
// Activations come from gemv_prep.comp: INT8 q as bytes (4 per word, 64 per chunk = four uvec4),
// FLOAT x' as f32 (sixteen vec4 per chunk); both stay L1/L2-resident (N K bytes or 4 N K bytes).
// INT8: sum w q in int32, exact (wraps mod 2^32 like the CPU), four products per instruction
// with OpSDotKHR on packed 4x8 (variants "*dot": VK_KHR_shader_integer_dot_product; Debian 12's
// glslang lacks GL_EXT_integer_dot_product, so the instruction is declared with
// GL_EXT_spirv_intrinsics); the codes of a byte are spread to four signed bytes by a few
// shifts and masks. Without it, the same sum by byte extraction. FLOAT sums w x' in f32.
// y and an f16 residual are read/written as float16_t with 16-bit storage (variants "*h");
// without, as halves of 32-bit words (y through atomicAnd/atomicOr, two rows share a word).
//
// Bytes: M K / 4 of codes + scales (+ N K activations from cache, N M of y): the floor is
// M K / 4 / DRAM bandwidth, e.g. a 2560 x 6912 matrix (4.4 MB) at 1 TB/s is 4.4 us; on
// lavapipe (CPU threads, ~30 GB/s here) about 150 us, but lavapipe is compute bound long before.
//! variant - 
//! variant sg -DUSE_SG=1
//! variant h -DUSE_S16=1
//! variant sg_h -DUSE_SG=1 -DUSE_S16=1
//! variant dot -DUSE_DOT=1
//! variant sg_dot -DUSE_SG=1 -DUSE_DOT=1
//! variant h_dot -DUSE_S16=1 -DUSE_DOT=1
//! variant sg_h_dot -DUSE_SG=1 -DUSE_S16=1 -DUSE_DOT=1
#version 450
#extension GL_EXT_control_flow_attributes : enable
#if USE_SG
#extension GL_KHR_shader_subgroup_shuffle : enable
#endif
#if USE_S16
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#endif
#if USE_DOT
#extension GL_EXT_spirv_intrinsics : require
// OpSDotKHR (4450), PackedVectorFormat4x8Bit (0); capabilities DotProduct (6019) and
// DotProductInput4x8BitPacked (6018).
spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018],
                  id = 4450) int sdot4x8(uint a, uint b, spirv_literal int fmt);
#endif
layout(local_size_x = 64) in;
layout(constant_id = 0) const uint NT = 16;   // tokens the accumulator arrays hold
layout(constant_id = 1) const uint LANES = 16; // invocations per row (power of two, <= 64)
const uint ROWS = 64 / LANES;

layout(std430, set = 0, binding = 0) readonly buffer W0 { uvec4 wg_codes[]; };
layout(std430, set = 0, binding = 1) readonly buffer W1 { uvec4 wu_codes[]; };
layout(std430, set = 0, binding = 2) readonly buffer S0 { float sg_scales[]; };
layout(std430, set = 0, binding = 3) readonly buffer S1 { float su_scales[]; };
layout(std430, set = 0, binding = 4) readonly buffer XQ { uvec4 xq[]; };  // INT8 q bytes
layout(std430, set = 0, binding = 4) readonly buffer XF { vec4 xf[]; };   // FLOAT x'
layout(std430, set = 0, binding = 5) readonly buffer CF { float colf[]; };
layout(std430, set = 0, binding = 6) buffer Y { uint y_words[]; };
#if USE_S16
layout(std430, set = 0, binding = 6) writeonly buffer Y16 { float16_t y16[]; };
layout(std430, set = 0, binding = 8) readonly buffer R16 { float16_t res16[]; };
#endif
layout(std430, set = 0, binding = 7) readonly buffer B { float bias[]; };
layout(std430, set = 0, binding = 8) readonly buffer R { uint res_words[]; };
layout(std430, set = 0, binding = 9) writeonly buffer A { int acc_out[]; };

layout(push_constant) uniform P {
    uint rows;   // rows of this part
    uint row0;   // global index of its first row
    uint chunks; // 64-weight chunks per row (uvec4 of codes)
    uint kp;     // chunks * 64: a token's stride in the activations, in elements
    uint n;
    uint flags;  // 1 int8, 2 gated, 4 bias, 8 residual, 16 accumulators, 32 y f16, 64 res f16
    uint act;
    uint scale_kind; // 0 tensor, 1 row, 2 block
    float ts_g, ts_u;  // tensor scales
    uint y_first, y_stride;
    uint res_first, res_stride;
    uint bias_first;
    uint acc_first, acc_stride;
} pc;

#if !USE_SG
shared uint red[2][NT * 64];
#endif

float act_fn(float v)
{
    if (pc.act == 1)
        return v > 0.0 ? v * v : 0.0;
    if (pc.act == 2)
        return v / (1.0 + exp(-v));
    if (pc.act == 3) {
        float u2 = 1.5957691216057308 * (v + 0.044715 * v * v * v);
        return v / (1.0 + exp(-u2));
    }
    return v;
}

float load_res(uint e)
{
    if ((pc.flags & 64) != 0) {
#if USE_S16
        return float(res16[e]);
#else
        return unpackHalf2x16(res_words[e >> 1])[e & 1];
#endif
    }
    return uintBitsToFloat(res_words[e]);
}

void store_y(uint e, float v)
{
    if ((pc.flags & 32) != 0) {
#if USE_S16
        y16[e] = float16_t(v);
#else
        // Two rows share a word and may belong to different workgroups: touch only our half.
        uint h = packHalf2x16(vec2(v, 0.0)) & 0xffffu;
        uint sh = (e & 1) * 16;
        atomicAnd(y_words[e >> 1], ~(0xffffu << sh));
        atomicOr(y_words[e >> 1], h << sh);
#endif
    } else {
        y_words[e] = floatBitsToUint(v);
    }
}

// The four codes of byte `b` of `w` as four signed bytes (w = code - 1, two's complement).
uint spread(uint w, uint b)
{
    uint x = (w >> (8 * b)) & 0xffu;
    x = (x | (x << 12)) & 0x000f000fu;
    x = (x | (x << 6)) & 0x03030303u;
    const uint lo = x & 0x01010101u, hi = (x >> 1) & 0x01010101u;
    // code 0 -> 0xff, 1 -> 0x00, 2 -> 0x01: bit 0 is !lo, bits 1..7 are (code == 0).
    return (~lo & 0x01010101u) | ((~(lo | hi) & 0x01010101u) * 0xfeu);
}

// sum over the 64 weights of one chunk (codes c) times the 64 q bytes in q[0..3].
int dot_chunk(uvec4 c, uvec4 q0, uvec4 q1, uvec4 q2, uvec4 q3)
{
    uint qw[16] = uint[16](q0.x, q0.y, q0.z, q0.w, q1.x, q1.y, q1.z, q1.w, q2.x, q2.y, q2.z,
                           q2.w, q3.x, q3.y, q3.z, q3.w);
    int s = 0;
    [[unroll]] for (uint i = 0; i < 16; i++) {
        const uint cw = c[i / 4];
        const uint b = i % 4;
#if USE_DOT
        s += sdot4x8(spread(cw, b), qw[i], 0);
#else
        const int wb = int(spread(cw, b));
        const int qi = int(qw[i]);
        [[unroll]] for (int j = 0; j < 32; j += 8)
            s += bitfieldExtract(wb, j, 8) * bitfieldExtract(qi, j, 8);
#endif
    }
    return s;
}

float dotf_chunk(uvec4 c, uint xb)
{
    float s = 0.0;
    [[unroll]] for (uint i = 0; i < 16; i++) {
        const vec4 x = xf[xb + i];
        const uint cw = c[i / 4] >> (8 * (i % 4));
        s += float(int(cw & 3u) - 1) * x.x + float(int((cw >> 2) & 3u) - 1) * x.y +
             float(int((cw >> 4) & 3u) - 1) * x.z + float(int((cw >> 6) & 3u) - 1) * x.w;
    }
    return s;
}

// Sum over the LANES lanes of a row; every lane of the row gets the total.
#if USE_SG
uint reduce(uint v, bool is_int)
{
    [[unroll]] for (uint m = LANES / 2; m > 0; m >>= 1) {
        const uint o = subgroupShuffleXor(v, m);
        v = is_int ? uint(int(v) + int(o)) : floatBitsToUint(uintBitsToFloat(v) + uintBitsToFloat(o));
    }
    return v;
}
#endif

void main()
{
    const uint tid = gl_LocalInvocationID.x;
    const uint lane = tid % LANES, rl = tid / LANES;
    const uint group = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    const uint row = group * ROWS + rl;
    const bool live = row < pc.rows; // no early return: barriers below
    const bool int8 = (pc.flags & 1) != 0, gated = (pc.flags & 2) != 0;
    const bool block = pc.scale_kind == 2;
    const uint blocks = (pc.chunks + 3) / 4; // 256-weight scale blocks per row

    int ig[NT], iu[NT];
    float fg[NT], fu[NT];
    [[unroll]] for (uint t = 0; t < NT; t++) {
        ig[t] = 0;
        iu[t] = 0;
        fg[t] = 0.0;
        fu[t] = 0.0;
    }
    if (live) {
        const uint base = row * pc.chunks;
        for (uint c = lane; c < pc.chunks; c += LANES) {
            const uvec4 cg = wg_codes[base + c];
            const uvec4 cu = gated ? wu_codes[base + c] : uvec4(0x55555555u);
            const float bg = block ? sg_scales[row * blocks + c / 4] : 1.0;
            const float bu = block && gated ? su_scales[row * blocks + c / 4] : 1.0;
            [[unroll]] for (uint t = 0; t < NT; t++) {
                if (t < pc.n) {
                    if (int8) {
                        const uint qb = (t * pc.kp + c * 64) / 16;
                        const uvec4 q0 = xq[qb], q1 = xq[qb + 1], q2 = xq[qb + 2], q3 = xq[qb + 3];
                        const int sg = dot_chunk(cg, q0, q1, q2, q3);
                        const int su = gated ? dot_chunk(cu, q0, q1, q2, q3) : 0;
                        if (block) {
                            fg[t] += float(sg) * bg;
                            fu[t] += float(su) * bu;
                        } else {
                            ig[t] += sg;
                            iu[t] += su;
                        }
                    } else {
                        const uint xb = (t * pc.kp + c * 64) / 4;
                        fg[t] += dotf_chunk(cg, xb) * bg;
                        if (gated)
                            fu[t] += dotf_chunk(cu, xb) * bu;
                    }
                }
            }
        }
    }

    // Reduce: as uint bit patterns, integers (INT8, row/tensor scales) or floats.
    const bool is_int = int8 && !block;
    uint vg[NT], vu[NT];
    [[unroll]] for (uint t = 0; t < NT; t++) {
        vg[t] = is_int ? uint(ig[t]) : floatBitsToUint(fg[t]);
        vu[t] = is_int ? uint(iu[t]) : floatBitsToUint(fu[t]);
    }
#if USE_SG
    [[unroll]] for (uint t = 0; t < NT; t++) {
        if (t < pc.n) {
            vg[t] = reduce(vg[t], is_int);
            if (gated)
                vu[t] = reduce(vu[t], is_int);
        }
    }
#else
    [[unroll]] for (uint t = 0; t < NT; t++) {
        red[0][t * 64 + tid] = vg[t];
        red[1][t * 64 + tid] = vu[t];
    }
    barrier();
    [[unroll]] for (uint s = LANES / 2; s > 0; s >>= 1) {
        if (lane < s) {
            [[unroll]] for (uint t = 0; t < NT; t++) {
                if (t < pc.n) {
                    [[unroll]] for (uint m = 0; m < 2; m++) {
                        const uint a = red[m][t * 64 + tid], b = red[m][t * 64 + tid + s];
                        red[m][t * 64 + tid] = is_int ? uint(int(a) + int(b))
                                                      : floatBitsToUint(uintBitsToFloat(a) +
                                                                        uintBitsToFloat(b));
                    }
                }
            }
        }
        barrier();
    }
    const uint head = rl * LANES;
    [[unroll]] for (uint t = 0; t < NT; t++) {
        vg[t] = red[0][t * 64 + head];
        vu[t] = red[1][t * 64 + head];
    }
#endif
    if (!live)
        return;

    const uint grow = pc.row0 + row;
    const float rs_g = pc.scale_kind == 1 ? sg_scales[row] : pc.ts_g;
    const float rs_u = pc.scale_kind == 1 && gated ? su_scales[row] : pc.ts_u;
    [[unroll]] for (uint t = 0; t < NT; t++) {
        if (t < pc.n && t % LANES == lane) {
            float tg, tu = 1.0;
            if (is_int) {
                const int a = int(vg[t]);
                if ((pc.flags & 16) != 0)
                    acc_out[pc.acc_first + t * pc.acc_stride + grow] = a;
                tg = float(a) * colf[t] * rs_g;
                if (gated)
                    tu = float(int(vu[t])) * colf[t] * rs_u;
            } else if (int8) {
                tg = uintBitsToFloat(vg[t]) * colf[t];
                if (gated)
                    tu = uintBitsToFloat(vu[t]) * colf[t];
            } else {
                tg = uintBitsToFloat(vg[t]) * (block ? 1.0 : rs_g);
                if (gated)
                    tu = uintBitsToFloat(vu[t]) * (block ? 1.0 : rs_u);
            }
            if ((pc.flags & 4) != 0)
                tg += bias[pc.bias_first + grow];
            tg = act_fn(tg);
            if (gated)
                tg *= tu;
            if ((pc.flags & 8) != 0)
                tg += load_res(pc.res_first + t * pc.res_stride + grow);
            store_y(pc.y_first + t * pc.y_stride + grow, tg);
        }
    }
}

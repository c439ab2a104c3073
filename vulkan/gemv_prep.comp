// gemv_prep.comp — the GEMV prologue, one workgroup of 256 invocations per token, each taking
// groups of 4 consecutive elements: x (f32, or f16 as float16_t with 16-bit storage — variants
// "*h" — else as halves of 32-bit words), RMSNorm, then for the INT8 path the absmax
// quantization exactly as trit.h writes it. Writes into a [N][KP] scratch (KP = K padded to 64,
// the padding 0): FLOAT x' as f32; INT8 q as bytes (int8_t stores with 8-bit storage, variants
// "*i8"; else four q packed into a word by the invocation that owns them), and a / 127 per token.
//
// Exactness (the integer accumulators must match the reference bit for bit):
//  - RMSNorm must give the correctly rounded f32 of x / sqrt(mean(x^2) + eps) * g, as the CPU and
//    the fp64 reference do. Variants "f64*" compute it in fp64. Without fp64 it runs in
//    float-float arithmetic (a value is an unevaluated sum hi + lo of two f32, about 46 bits),
//    built only from f32 add and multiply, which Vulkan requires to be correctly rounded:
//    exact two-sums and Dekker two-products (no fma: Vulkan lets it round twice), divisions and
//    the square root corrected by Newton steps on exact residuals. The final hi + lo is rounded
//    once to f32, so x' differs from the exact rounding only when the exact value lies within
//    ~2^-44 relative of a rounding midpoint (probability ~2^-20 per element, and then a q changes
//    only if x' s also lies next to a half-integer), as rare as the fp64 path's double roundings.
//    Limits: |x| < 2^60 (the squares, hi and lo, stay normal f32); denormal lo parts may be
//    flushed, which matters only for x' below ~2^-100.
//  - GLSL division is not correctly rounded, so s = 127 / a is corrected: of the f32 values
//    next to the approximate quotient, the one whose exact residual |127 - c a| (a two-product
//    from Dekker's splitting) is smallest.
//  - q = clamp(roundEven(x' * s)): one correctly rounded f32 multiply, then exact rounding.
//  `precise` keeps the compiler from fusing or reordering any of it.
// Bytes: reads N K x, writes N KP bytes (INT8) or words (FLOAT); negligible next to the weights.
//! variant - 
//! variant h -DUSE_S16=1
//! variant i8 -DUSE_I8=1
//! variant h_i8 -DUSE_S16=1 -DUSE_I8=1
//! variant f64 -DHAS_F64=1
//! variant f64_h -DHAS_F64=1 -DUSE_S16=1
//! variant f64_i8 -DHAS_F64=1 -DUSE_I8=1
//! variant f64_h_i8 -DHAS_F64=1 -DUSE_S16=1 -DUSE_I8=1
#version 450
#extension GL_EXT_control_flow_attributes : enable
#if HAS_F64
#extension GL_ARB_gpu_shader_fp64 : enable
#endif
#if USE_S16
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#endif
#if USE_I8
#extension GL_EXT_shader_8bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int8 : require
#endif
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer X { uint x_words[]; };
#if USE_S16
layout(std430, set = 0, binding = 0) readonly buffer X16 { float16_t x16[]; };
#endif
layout(std430, set = 0, binding = 1) readonly buffer G { float g[]; };
layout(std430, set = 0, binding = 2) writeonly buffer XS { uint xs[]; };
#if USE_I8
layout(std430, set = 0, binding = 2) writeonly buffer XS8 { int8_t xs8[]; };
#endif
layout(std430, set = 0, binding = 3) writeonly buffer CF { float colf[]; };

layout(push_constant) uniform P {
    uint k, kp, n;
    uint x_first, x_stride; // elements
    uint x_f16;
    uint has_rms;
    float eps;
    uint g_first;
    uint int8;
} pc;

#if HAS_F64
shared double red_d[256];
#else
shared float red_h[256], red_l[256];
#endif
shared uint red_u[256];

float load_x(uint tok, uint i)
{
    if (i >= pc.k)
        return 0.0;
    uint e = pc.x_first + tok * pc.x_stride + i;
    if (pc.x_f16 != 0) {
#if USE_S16
        return float(x16[e]);
#else
        return unpackHalf2x16(x_words[e >> 1])[e & 1];
#endif
    }
    return uintBitsToFloat(x_words[e]);
}

// --- float-float arithmetic (only f32 add and multiply, each correctly rounded) ---------------
#if !HAS_F64
vec2 two_sum(float a, float b)
{
    precise float s = a + b;
    precise float bb = s - a;
    precise float e = (a - (s - bb)) + (b - bb);
    return vec2(s, e);
}

vec2 two_prod(float a, float b)
{
    precise float p = a * b;
    precise float t1 = a * 4097.0;
    precise float ah = t1 - (t1 - a);
    precise float al = a - ah;
    precise float t2 = b * 4097.0;
    precise float bh = t2 - (t2 - b);
    precise float bl = b - bh;
    precise float e = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
    return vec2(p, e);
}

vec2 ff_add(vec2 a, vec2 b)
{
    vec2 s = two_sum(a.x, b.x);
    vec2 t = two_sum(a.y, b.y);
    precise float e = s.y + t.x;
    vec2 u = two_sum(s.x, e);
    precise float e2 = t.y + u.y;
    return two_sum(u.x, e2);
}

vec2 ff_mul(vec2 a, vec2 b)
{
    vec2 p = two_prod(a.x, b.x);
    precise float e = p.y + (a.x * b.y + a.y * b.x);
    return two_sum(p.x, e);
}

vec2 ff_neg(vec2 a) { return vec2(-a.x, -a.y); }

// a / b: the approximate quotient, then two corrections from exact residuals.
vec2 ff_div(vec2 a, vec2 b)
{
    precise float q1 = a.x / b.x;
    vec2 r = ff_add(a, ff_neg(ff_mul(vec2(q1, 0.0), b)));
    precise float q2 = r.x / b.x;
    r = ff_add(r, ff_neg(ff_mul(vec2(q2, 0.0), b)));
    precise float q3 = r.x / b.x;
    return ff_add(two_sum(q1, q2), vec2(q3, 0.0));
}

vec2 ff_sqrt(vec2 a)
{
    precise float s1 = sqrt(a.x);
    vec2 s = vec2(s1, 0.0);
    [[unroll]] for (int it = 0; it < 2; it++) {
        vec2 r = ff_add(a, ff_neg(ff_mul(s, s)));
        precise float d = r.x / (2.0 * s.x);
        s = ff_add(s, vec2(d, 0.0));
    }
    return s;
}
#endif

// x' for element i; `inv` is 1 / sqrt(mean(x^2) + eps).
#if HAS_F64
float xprime(uint tok, uint i, double inv)
{
    precise double v = double(load_x(tok, i));
    if (pc.has_rms != 0 && i < pc.k) {
        precise double r = v * inv * double(g[pc.g_first + i]);
        return float(r);
    }
    return float(v);
}
#else
float xprime(uint tok, uint i, vec2 inv)
{
    const float v = load_x(tok, i);
    if (pc.has_rms != 0 && i < pc.k) {
        vec2 r = ff_mul(ff_mul(inv, vec2(v, 0.0)), vec2(g[pc.g_first + i], 0.0));
        precise float o = r.x + r.y;
        return o;
    }
    return v;
}
#endif

// |127 - c a| evaluated from an exact two-product (Dekker).
float residual(float c, float a)
{
    precise float p = c * a;
    precise float t1 = c * 4097.0;
    precise float ch = t1 - (t1 - c);
    precise float cl = c - ch;
    precise float t2 = a * 4097.0;
    precise float ah = t2 - (t2 - a);
    precise float al = a - ah;
    precise float err = ((ch * ah - p) + ch * al + cl * ah) + cl * al;
    precise float d = 127.0 - p; // exact: p is within a factor 2 of 127
    precise float r = d - err;
    return abs(r);
}

void main()
{
    const uint tok = gl_WorkGroupID.x;
    const uint tid = gl_LocalInvocationID.x;
    const uint groups = pc.kp / 4; // 4 elements per invocation and step

#if HAS_F64
    double inv = 1.0;
#else
    vec2 inv = vec2(1.0, 0.0);
#endif
    if (pc.has_rms != 0) {
#if HAS_F64
        double ss = 0.0;
        for (uint i = tid; i < pc.k; i += 256) {
            precise double v = double(load_x(tok, i));
            precise double v2 = v * v;
            ss += v2;
        }
        red_d[tid] = ss;
        barrier();
        [[unroll]] for (uint s = 128; s > 0; s >>= 1) {
            if (tid < s)
                red_d[tid] += red_d[tid + s];
            barrier();
        }
        precise double mean = red_d[0] / double(pc.k) + double(pc.eps);
        inv = 1.0 / sqrt(mean);
#else
        vec2 ss = vec2(0.0);
        for (uint i = tid; i < pc.k; i += 256) {
            const float v = load_x(tok, i);
            ss = ff_add(ss, two_prod(v, v));
        }
        red_h[tid] = ss.x;
        red_l[tid] = ss.y;
        barrier();
        [[unroll]] for (uint s = 128; s > 0; s >>= 1) {
            if (tid < s) {
                vec2 o = ff_add(vec2(red_h[tid], red_l[tid]), vec2(red_h[tid + s], red_l[tid + s]));
                red_h[tid] = o.x;
                red_l[tid] = o.y;
            }
            barrier();
        }
        // pc.k < 2^24 (host limit), so float(k) is exact.
        vec2 mean = ff_add(ff_div(vec2(red_h[0], red_l[0]), vec2(float(pc.k), 0.0)),
                           vec2(pc.eps, 0.0));
        inv = ff_div(vec2(1.0, 0.0), ff_sqrt(mean));
#endif
        barrier();
    }

    if (pc.int8 == 0) {
        for (uint i = tid; i < pc.kp; i += 256)
            xs[tok * pc.kp + i] = floatBitsToUint(xprime(tok, i, inv));
        return;
    }

    // absmax over the bits of |x'| (monotonic for non-negative floats; NaN sorts above inf).
    uint m = 0;
    for (uint i = tid; i < pc.k; i += 256)
        m = max(m, floatBitsToUint(xprime(tok, i, inv)) & 0x7fffffffu);
    red_u[tid] = m;
    barrier();
    [[unroll]] for (uint s = 128; s > 0; s >>= 1) {
        if (tid < s)
            red_u[tid] = max(red_u[tid], red_u[tid + s]);
        barrier();
    }
    const float a = uintBitsToFloat(red_u[0]);
    const bool finite = red_u[0] < 0x7f800000u;
    float s = 0.0;
    if (finite && a != 0.0) {
        s = 127.0 / a;
        float best = s, rb = residual(s, a);
        float lo = uintBitsToFloat(floatBitsToUint(s) - 1), hi = uintBitsToFloat(floatBitsToUint(s) + 1);
        float rl = residual(lo, a), rh = residual(hi, a);
        if (rl < rb) { best = lo; rb = rl; }
        if (rh < rb) { best = hi; }
        s = best;
    }
    // s == 0 (a zero or non-finite absmax) writes q = 0.
    for (uint gi = tid; gi < groups; gi += 256) {
        uint packed = 0;
        [[unroll]] for (uint j = 0; j < 4; j++) {
            const uint i = gi * 4 + j;
            int q = 0;
            if (i < pc.k && s != 0.0) {
                precise float prod = xprime(tok, i, inv) * s;
                q = int(clamp(roundEven(prod), -127.0, 127.0));
            }
#if USE_I8
            xs8[tok * pc.kp + i] = int8_t(q);
#else
            packed |= (uint(q) & 0xffu) << (8 * j);
#endif
        }
#if !USE_I8
        xs[(tok * pc.kp) / 4 + gi] = packed;
#endif
    }
    if (tid == 0)
        colf[tok] = !finite ? uintBitsToFloat(0x7fc00000u) : a == 0.0 ? 0.0 : a / 127.0;
}

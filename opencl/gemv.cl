/*
 * gemv.cl — fused ternary GEMV: y = epilogue(scale * (W . prologue(x))), N = 1..16 columns.
 *
 * Two kernels per call. gemv_prep: one work-group per token column runs the prologue (RMSNorm,
 * then for the INT8 path absmax + quantization) and writes x' (f32) or q (int8) to the stream's
 * scratch, padded with zeros to the padded row length kp. gemv_main: a work-group of LANES x
 * ROWS work-items owns ROWS output rows; the LANES lanes of a row walk its 16-byte chunks (64
 * weights) with stride LANES, so neighbouring lanes read neighbouring 16 bytes (coalesced), and
 * each chunk, once decoded, is used for every one of the NT columns. Partial sums are reduced
 * across the lanes with subgroup reductions when the device has them, else in local memory;
 * lane j then runs the epilogue of column j.
 *
 * Bytes per call: M * K / 4 of codes (+ scales, + N * K * (4 or 1) of x' read per row group from
 * cache, + N * M of y), so the floor is M * K / 4 / bandwidth: 1.6 MB for 2560 x 2560, 0.5 us at
 * 3.35 TB/s (H100), 4.4 us at 360 GB/s (a mid-range GPU).
 *
 * Exactness of the INT8 path: q must be bit-identical to the host's, so 127 / a and the RMSNorm
 * follow trit.h and the fp64 reference: RMSNorm in fp64 when the device has it (else in
 * float-float, ~48 bits), 127 / a correctly rounded (-cl-fp32-correctly-rounded-divide-sqrt, or
 * fp64, or a residual-checked correction), rint ties to even. Integer dot products are exact.
 *
 * Build options: NT (max columns, 1/2/4/8/16), INT8 (path), GATED (pair), LANES, ROWS, plus the
 * capability macros of ocl.h.
 */
#if TRIT_HAS_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif
#if TRIT_HAS_FP16
#pragma OPENCL EXTENSION cl_khr_fp16 : enable
#endif
#if TRIT_HAS_SUBGROUPS
#pragma OPENCL EXTENSION cl_khr_subgroups : enable
#endif

#ifndef NT
#define NT 1
#endif
#ifndef INT8
#define INT8 0
#endif
#ifndef GATED
#define GATED 0
#endif
#ifndef LANES
#define LANES 32
#endif
#ifndef ROWS
#define ROWS 4
#endif
#define PREP_WG_MAX 256

#define SCALE_TENSOR 0
#define SCALE_ROW 1
#define SCALE_BLOCK 2

/* ---------------------------------------------------------------------------------------------
 * f16 storage: vload_half / vstore_half are core OpenCL, so f16 tensors work without
 * cl_khr_fp16; with it, plain half loads (same rounding: round to nearest even).
 * ------------------------------------------------------------------------------------------- */
static float load_elem(__global const uchar *base, ulong i, int f16)
{
    if (f16) {
#if TRIT_HAS_FP16
        return (float)((__global const half *)base)[i];
#else
        return vload_half(i, (__global const half *)base);
#endif
    }
    return ((__global const float *)base)[i];
}

static void store_elem(__global uchar *base, ulong i, int f16, float v)
{
    if (f16) {
#if TRIT_HAS_FP16
        ((__global half *)base)[i] = (half)v;
#else
        vstore_half_rte(v, i, (__global half *)base);
#endif
        return;
    }
    ((__global float *)base)[i] = v;
}

/* ---------------------------------------------------------------------------------------------
 * Float-float arithmetic (value = hi + lo, ~48 bits) for devices without fp64.
 * ------------------------------------------------------------------------------------------- */
#if !TRIT_HAS_FP64
typedef float2 ff; /* .x = hi, .y = lo */
static ff ff_fast_sum(float a, float b)
{
    float s = a + b;
    return (ff)(s, b - (s - a));
}
static ff ff_two_sum(float a, float b)
{
    float s = a + b, bb = s - a;
    return (ff)(s, (a - (s - bb)) + (b - bb));
}
static ff ff_add(ff a, ff b)
{
    ff s = ff_two_sum(a.x, b.x);
    return ff_fast_sum(s.x, s.y + a.y + b.y);
}
static ff ff_sq(float x)
{
    float p = x * x;
    return (ff)(p, fma(x, x, -p));
}
static ff ff_mul_f(ff a, float f)
{
    float p = a.x * f;
    return ff_fast_sum(p, fma(a.x, f, -p) + a.y * f);
}
static ff ff_mul(ff a, ff b)
{
    float p = a.x * b.x;
    return ff_fast_sum(p, fma(a.x, b.x, -p) + (a.x * b.y + a.y * b.x));
}
static ff ff_div(ff a, ff b)
{
    float q1 = a.x / b.x;
    ff r = ff_add(a, -ff_mul_f(b, q1));
    float q2 = r.x / b.x;
    r = ff_add(r, -ff_mul_f(b, q2));
    float q3 = r.x / b.x;
    ff q = ff_fast_sum(q1, q2);
    return ff_add(q, (ff)(q3, 0.0f));
}
static ff ff_sqrt(ff a)
{
    float s = sqrt(a.x);
    ff r = ff_add(a, -ff_sq(s)); /* a - s^2 */
    return ff_fast_sum(s, r.x / (2.0f * s));
}
#endif

/* 127 / a correctly rounded, as the host's f32 division. */
static float div127(float a)
{
#if TRIT_CORRECT_DIV
    return 127.0f / a;
#elif TRIT_HAS_FP64
    return (float)(127.0 / (double)a); /* double rounding is harmless for a quotient of floats */
#else
    /* The estimate is within a few ulp; the candidate with the smallest exact residual
     * |127 - q * a| (fma is exact here) is the correctly rounded quotient. */
    float q = 127.0f / a, best = q, best_r = fabs(fma(-q, a, 127.0f));
    float lo = q, hi = q;
    for (int i = 0; i < 3; i++) {
        lo = nextafter(lo, -INFINITY);
        hi = nextafter(hi, INFINITY);
        float rl = fabs(fma(-lo, a, 127.0f)), rh = fabs(fma(-hi, a, 127.0f));
        if (rl < best_r) {
            best = lo;
            best_r = rl;
        }
        if (rh < best_r) {
            best = hi;
            best_r = rh;
        }
    }
    return best;
#endif
}

#if TRIT_HAS_FP64
static float xprime(__global const uchar *xb, int i, int x_f16, int has_rms,
                    __global const float *g, double rms)
{
    float v = load_elem(xb, i, x_f16);
    return has_rms ? (float)((double)v / rms * (double)g[i]) : v;
}
#else
static float xprime(__global const uchar *xb, int i, int x_f16, int has_rms,
                    __global const float *g, ff rms)
{
    float v = load_elem(xb, i, x_f16);
    return has_rms ? ff_mul_f(ff_div((ff)(v, 0.0f), rms), g[i]).x : v;
}
#endif

/* ---------------------------------------------------------------------------------------------
 * gemv_prep: one work-group (size P, a power of two <= 256) per column n.
 * Writes x' (FLOAT) as f32 at out + n * kp * 4, or q (INT8) as int8 at out + n * kp, zero-padded
 * to kp, and (INT8) the f32 colscale[n] = a / 127 at out + cs_off (NaN when x' is not finite).
 * ------------------------------------------------------------------------------------------- */
__kernel void gemv_prep(__global const uchar *x, ulong x_off, ulong x_stride, int x_f16, int k,
                        int kp, int has_rms, __global const float *g, ulong g_off, float eps,
                        __global uchar *out, ulong cs_off)
{
    __global float *colscale = (__global float *)(out + cs_off);
    const int n = get_group_id(0), lid = get_local_id(0), P = get_local_size(0);
    __global const uchar *xb = x + (x_off + (ulong)n * x_stride) * (x_f16 ? 2 : 4);
#if TRIT_HAS_FP64
    __local double red[PREP_WG_MAX];
    double rms_d = 1.0;
#else
    __local float2 red[PREP_WG_MAX];
    ff rms = (ff)(1.0f, 0.0f);
#endif
    __local float redm[PREP_WG_MAX];

    if (has_rms) {
        /* Fixed order (strided partials, then a tree): the same x' on every run. */
#if TRIT_HAS_FP64
        double part = 0.0;
        for (int i = lid; i < k; i += P) {
            double v = (double)load_elem(xb, i, x_f16);
            part += v * v;
        }
        red[lid] = part;
#else
        ff part = (ff)(0.0f, 0.0f);
        for (int i = lid; i < k; i += P)
            part = ff_add(part, ff_sq(load_elem(xb, i, x_f16)));
        red[lid] = part;
#endif
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int s = P / 2; s > 0; s >>= 1) {
            if (lid < s) {
#if TRIT_HAS_FP64
                red[lid] += red[lid + s];
#else
                red[lid] = ff_add(red[lid], red[lid + s]);
#endif
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
#if TRIT_HAS_FP64
        rms_d = sqrt(red[0] / (double)k + (double)eps);
#else
        ff mean = ff_div(red[0], (ff)((float)k, 0.0f)); /* k < 2^24: exact in f32 */
        rms = ff_sqrt(ff_add(mean, (ff)(eps, 0.0f)));
#endif
    }

    /* x' for element i: x / rms * g, rounded to f32 once, as the reference does. */
#if TRIT_HAS_FP64
#define XPRIME(i) xprime(xb, (i), x_f16, has_rms, g + g_off, rms_d)
#else
#define XPRIME(i) xprime(xb, (i), x_f16, has_rms, g + g_off, rms)
#endif

#if INT8
    float m = 0.0f;
    for (int i = lid; i < k; i += P) {
        float v = fabs(XPRIME(i));
        m = isnan(v) || isnan(m) ? NAN : fmax(m, v);
    }
    redm[lid] = m;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = P / 2; s > 0; s >>= 1) {
        if (lid < s) {
            float a2 = redm[lid], b2 = redm[lid + s];
            redm[lid] = isnan(a2) || isnan(b2) ? NAN : fmax(a2, b2);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float a = redm[0];
    const int finite = isfinite(a);
    __global char *q = (__global char *)out + (ulong)n * kp;
    if (!finite || a == 0.0f) {
        for (int i = lid; i < kp; i += P)
            q[i] = 0;
        if (lid == 0)
            colscale[n] = finite ? 0.0f : NAN;
        return;
    }
    const float s = div127(a);
    for (int i = lid; i < kp; i += P) {
        float r = 0.0f;
        if (i < k)
            r = clamp(rint(XPRIME(i) * s), -127.0f, 127.0f);
        q[i] = (char)(int)r;
    }
    if (lid == 0)
        colscale[n] = a / 127.0f;
#else
    (void)redm;
    __global float *xs = (__global float *)out + (ulong)n * kp;
    for (int i = lid; i < kp; i += P)
        xs[i] = i < k ? XPRIME(i) : 0.0f;
#endif
}

/* ---------------------------------------------------------------------------------------------
 * gemv_main
 * ------------------------------------------------------------------------------------------- */

/* The packed int8 dot builtins exist when the compiler declares the feature (OpenCL C 3.0 with
 * cl_khr_integer_dot_product); otherwise the portable form below is used. */
#if TRIT_HAS_INT_DOT && defined(__opencl_c_integer_dot_product_input_4x8bit_packed)
/* Four 2-bit codes (one byte) -> four signed bytes w = code - 1, without borrows between bytes:
 * (b | 0x80) - 1 stays in its byte, and ^ 0x80 recentres it. */
static uint codes_to_s8x4(uint byte)
{
    uint b = (byte & 3u) | ((byte & 0xcu) << 6) | ((byte & 0x30u) << 12) | ((byte & 0xc0u) << 18);
    return ((b | 0x80808080u) - 0x01010101u) ^ 0x80808080u;
}

/* Sum of w * q over 16 weights (one uint of codes) and 16 q bytes: four packed dot products. */
static int dot16_i8(uint codes, uint4 qv)
{
    return dot_4x8packed_ss_int(codes_to_s8x4(codes & 0xffu), qv.s0) +
           dot_4x8packed_ss_int(codes_to_s8x4((codes >> 8) & 0xffu), qv.s1) +
           dot_4x8packed_ss_int(codes_to_s8x4((codes >> 16) & 0xffu), qv.s2) +
           dot_4x8packed_ss_int(codes_to_s8x4(codes >> 24), qv.s3);
}
#else
/* Without integer dot products: 16 lanes of w * q in 16-bit (|w * q| <= 127), summed in 32-bit.
 * The 16-wide form maps to one vector register on CPUs and to plain scalar ops on GPUs. */
static int dot16_i8(uint codes, uint4 qv)
{
    const uint16 sh = (uint16)(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const short16 w = convert_short16(((uint16)(codes) >> sh) & 3u) - (short)1;
    const short16 p = w * convert_short16(as_char16(qv));
    int8 s8 = convert_int8(p.lo) + convert_int8(p.hi);
    int4 s4 = s8.lo + s8.hi;
    return (s4.x + s4.y) + (s4.z + s4.w);
}
#endif

static float16 codes_to_f16v(uint codes)
{
    const uint16 sh = (uint16)(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return convert_float16(((uint16)(codes) >> sh) & 3u) - 1.0f;
}

static float dot16_f(float16 a, float16 b)
{
    float16 p = a * b;
    float8 s8 = p.lo + p.hi;
    float4 s4 = s8.lo + s8.hi;
    return (s4.x + s4.y) + (s4.z + s4.w);
}

static float row_scale(__global const float *s, int kind, int row)
{
    return kind == SCALE_TENSOR ? s[0] : kind == SCALE_ROW ? s[row] : 1.0f;
}

static float act_apply(int act, float t)
{
    switch (act) {
    case 1: return t > 0.0f ? t * t : 0.0f;
    case 2: return t / (1.0f + exp(-t));
    case 3: {
        const float c = 0.7978845608028654f; /* sqrt(2 / pi) */
        return 0.5f * t * (1.0f + tanh(c * (t + 0.044715f * t * t * t)));
    }
    default: return t;
    }
}

#define NSLOT (NT * (1 + GATED))

__kernel __attribute__((reqd_work_group_size(LANES * ROWS, 1, 1))) void
gemv_main(__global const uint4 *w, __global const float *ws, int wkind, __global const uint4 *wu,
          __global const float *wus, int ukind, int nb, int pitch, int m, int ncols, int kp,
          __global const uchar *xq, ulong cs_off, __global const float *bias, ulong bias_off,
          int has_bias, __global const uchar *res, ulong res_off, ulong res_stride, int has_res,
          int act, __global uchar *y, ulong y_off, ulong y_stride, int y_f16, __global int *accout,
          ulong acc_off, ulong acc_stride, int has_acc)
{
    __local uint red[ROWS][NSLOT][LANES];
    __global const float *colscale = (__global const float *)(xq + cs_off);
    const int lid = get_local_id(0);
    const int lane = lid % LANES, rl = lid / LANES;
    const int row = get_group_id(0) * ROWS + rl;
    const int active = row < m;

    float facc[NT];
#if INT8
    int iacc[NT];
#endif
#if GATED
    float facc_u[NT];
#if INT8
    int iacc_u[NT];
#endif
#endif
#pragma unroll
    for (int j = 0; j < NT; j++) {
        facc[j] = 0.0f;
#if INT8
        iacc[j] = 0;
#endif
#if GATED
        facc_u[j] = 0.0f;
#if INT8
        iacc_u[j] = 0;
#endif
#endif
    }

    if (active) {
        __global const uint4 *wr = w + (ulong)row * pitch;
#if GATED
        __global const uint4 *ur = wu + (ulong)row * pitch;
#endif
        for (int c = lane; c < pitch; c += LANES) {
            const uint4 wv = wr[c];
            /* Block scales (256 weights = 4 chunks) are applied per chunk; others at the end. */
            const float sg = wkind == SCALE_BLOCK ? ws[(ulong)row * nb + c / 4] : 1.0f;
#if GATED
            const uint4 uv = ur[c];
            const float su = ukind == SCALE_BLOCK ? wus[(ulong)row * nb + c / 4] : 1.0f;
#endif
#pragma unroll
            for (int j = 0; j < NT; j++) {
                if (j >= ncols)
                    break;
#if INT8
                __global const uint4 *qp = (__global const uint4 *)(xq + (ulong)j * kp) + c * 4;
                const uint4 q0 = qp[0], q1 = qp[1], q2 = qp[2], q3 = qp[3];
                int d = dot16_i8(wv.s0, q0) + dot16_i8(wv.s1, q1) + dot16_i8(wv.s2, q2) +
                        dot16_i8(wv.s3, q3);
                if (wkind == SCALE_BLOCK)
                    facc[j] += (float)d * sg;
                else
                    iacc[j] += d;
#if GATED
                int du = dot16_i8(uv.s0, q0) + dot16_i8(uv.s1, q1) + dot16_i8(uv.s2, q2) +
                         dot16_i8(uv.s3, q3);
                if (ukind == SCALE_BLOCK)
                    facc_u[j] += (float)du * su;
                else
                    iacc_u[j] += du;
#endif
#else
                __global const float *xp = (__global const float *)xq + (ulong)j * kp + c * 64;
                const float16 x0 = vload16(0, xp), x1 = vload16(1, xp), x2 = vload16(2, xp),
                              x3 = vload16(3, xp);
                float d = (dot16_f(codes_to_f16v(wv.s0), x0) + dot16_f(codes_to_f16v(wv.s1), x1)) +
                          (dot16_f(codes_to_f16v(wv.s2), x2) + dot16_f(codes_to_f16v(wv.s3), x3));
                facc[j] = fma(d, sg, facc[j]);
#if GATED
                float du = (dot16_f(codes_to_f16v(uv.s0), x0) + dot16_f(codes_to_f16v(uv.s1), x1)) +
                           (dot16_f(codes_to_f16v(uv.s2), x2) + dot16_f(codes_to_f16v(uv.s3), x3));
                facc_u[j] = fma(du, su, facc_u[j]);
#endif
#endif
            }
        }
    }

    /* Reduce across the LANES lanes of each row. Integer partials travel as their bits. */
#if INT8
#define GATE_BITS(j) (wkind == SCALE_BLOCK ? as_uint(facc[j]) : as_uint(iacc[j]))
#define UP_BITS(j) (ukind == SCALE_BLOCK ? as_uint(facc_u[j]) : as_uint(iacc_u[j]))
#else
#define GATE_BITS(j) as_uint(facc[j])
#define UP_BITS(j) as_uint(facc_u[j])
#endif
    int nparts = LANES;
#if TRIT_HAS_SUBGROUPS
    const uint sg_size = get_max_sub_group_size();
    /* Subgroups must not straddle two rows, and must all be full. */
    const int use_sg = (LANES % sg_size) == 0 && get_sub_group_size() == sg_size;
    if (sub_group_all(use_sg)) {
        const uint sl = get_sub_group_local_id();
        const int part = lane / (int)sg_size;
        nparts = LANES / (int)sg_size;
#pragma unroll
        for (int j = 0; j < NT; j++) {
#if INT8
            if (wkind == SCALE_BLOCK) {
                float v = sub_group_reduce_add(facc[j]);
                if (sl == 0)
                    red[rl][j][part] = as_uint(v);
            } else {
                int v = sub_group_reduce_add(iacc[j]);
                if (sl == 0)
                    red[rl][j][part] = as_uint(v);
            }
#if GATED
            if (ukind == SCALE_BLOCK) {
                float v = sub_group_reduce_add(facc_u[j]);
                if (sl == 0)
                    red[rl][NT + j][part] = as_uint(v);
            } else {
                int v = sub_group_reduce_add(iacc_u[j]);
                if (sl == 0)
                    red[rl][NT + j][part] = as_uint(v);
            }
#endif
#else
            float v = sub_group_reduce_add(facc[j]);
            if (sl == 0)
                red[rl][j][part] = as_uint(v);
#if GATED
            v = sub_group_reduce_add(facc_u[j]);
            if (sl == 0)
                red[rl][NT + j][part] = as_uint(v);
#endif
#endif
        }
    } else
#endif
    {
#pragma unroll
        for (int j = 0; j < NT; j++) {
            red[rl][j][lane] = GATE_BITS(j);
#if GATED
            red[rl][NT + j][lane] = UP_BITS(j);
#endif
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    if (!active || lane >= ncols || lane >= NT)
        return;

    /* Lane j: the epilogue of column j for this row. */
    const int j = lane;
    const float cs = INT8 ? colscale[j] : 1.0f;
    float t;
#if INT8
    if (wkind == SCALE_BLOCK) {
        float f = 0.0f;
        for (int p = 0; p < nparts; p++)
            f += as_float(red[rl][j][p]);
        t = f * cs;
    } else {
        int s = 0;
        for (int p = 0; p < nparts; p++)
            s += as_int(red[rl][j][p]);
        if (has_acc)
            accout[acc_off + (ulong)j * acc_stride + row] = s;
        t = (float)s * row_scale(ws, wkind, row) * cs;
    }
#else
    {
        float f = 0.0f;
        for (int p = 0; p < nparts; p++)
            f += as_float(red[rl][j][p]);
        t = f * row_scale(ws, wkind, row);
    }
#endif
    if (has_bias)
        t += bias[bias_off + row];
    t = act_apply(act, t);
#if GATED
    float tu;
#if INT8
    if (ukind == SCALE_BLOCK) {
        float f = 0.0f;
        for (int p = 0; p < nparts; p++)
            f += as_float(red[rl][NT + j][p]);
        tu = f * cs;
    } else {
        int s = 0;
        for (int p = 0; p < nparts; p++)
            s += as_int(red[rl][NT + j][p]);
        tu = (float)s * row_scale(wus, ukind, row) * cs;
    }
#else
    {
        float f = 0.0f;
        for (int p = 0; p < nparts; p++)
            f += as_float(red[rl][NT + j][p]);
        tu = f * row_scale(wus, ukind, row);
    }
#endif
    t *= tu;
#endif
    if (has_res)
        t += load_elem(res, res_off + (ulong)j * res_stride + row, y_f16);
    store_elem(y, y_off + (ulong)j * y_stride + row, y_f16, t);
}

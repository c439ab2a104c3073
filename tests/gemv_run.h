// gemv_run.h — what every GEMV suite shares (conformance, the OpenCL / Vulkan fallback tests, the
// CUDA emulation): GemvSpec and make_gemv_problem, which turn a case's shape, options and seed
// into the same ref::GemvProblem everywhere, and run_gemv, which runs one problem on a device
// through the public API: upload, poisoned outputs, the op (gated when the problem has an up
// matrix), download.
#pragma once

#include <cstring>
#include <vector>

#include "common.h"
#include "reference/ref_gemv.h"

namespace tt {

// A GEMV case's shape, options and seed; suites derive their Case from it. The optional
// vectors replace the generated data.
struct GemvSpec {
    int64_t m = 37, k = 129, n = 1;
    trit_gemv_path path = TRIT_GEMV_FLOAT;
    trit_dtype x_dtype = TRIT_DTYPE_F32, y_dtype = TRIT_DTYPE_F32;
    trit_scale_kind scale = TRIT_SCALE_ROW;
    bool rmsnorm = false, bias = false, residual = false, gated = false, accumulators = false;
    trit_activation act = TRIT_ACT_NONE;
    uint64_t seed = 1;
    std::vector<float> x;
    std::vector<int8_t> w;
    std::vector<float> scales;
};

inline std::vector<float> gemv_scales(trit_scale_kind kind, int64_t m, int64_t k, uint64_t seed)
{
    const int64_t blocks = (k + TRIT_SCALE_BLOCK_K - 1) / TRIT_SCALE_BLOCK_K;
    switch (kind) {
    case TRIT_SCALE_TENSOR: return {0.8125f};
    case TRIT_SCALE_ROW: return random_floats((size_t)m, seed, 0.5f, 1.5f);
    case TRIT_SCALE_BLOCK: return random_floats((size_t)(m * blocks), seed, 0.5f, 1.5f);
    }
    return {};
}

// The problem a spec describes, its data drawn from the seed (x and residual rounded to their
// dtypes, so the reference sees what the device sees).
inline ref::GemvProblem make_gemv_problem(const GemvSpec &c)
{
    ref::GemvProblem p;
    p.m = c.m;
    p.k = c.k;
    p.n = c.n;
    p.path = c.path;
    p.act = c.act;
    p.scale_kind = c.scale;
    p.w = c.w.empty() ? random_ternary((size_t)(c.m * c.k), c.seed * 31 + 1) : c.w;
    p.scales = c.scales.empty() ? gemv_scales(c.scale, c.m, c.k, c.seed * 31 + 2) : c.scales;
    if (c.gated) {
        p.w_up = random_ternary((size_t)(c.m * c.k), c.seed * 31 + 3);
        p.scales_up = gemv_scales(c.scale, c.m, c.k, c.seed * 31 + 4);
    }
    p.x = c.x.empty() ? random_floats((size_t)(c.n * c.k), c.seed * 31 + 5, -2.f, 2.f) : c.x;
    round_all(c.x_dtype, p.x);
    if (c.rmsnorm) {
        p.rmsnorm_weight = random_floats((size_t)c.k, c.seed * 31 + 6, 0.5f, 1.5f);
        p.rmsnorm_eps = 1e-5f;
    }
    if (c.bias)
        p.bias = random_floats((size_t)c.m, c.seed * 31 + 7, -1.f, 1.f);
    if (c.residual) {
        p.residual = random_floats((size_t)(c.n * c.m), c.seed * 31 + 8, -1.f, 1.f);
        round_all(c.y_dtype, p.residual);
    }
    return p;
}

struct GemvRun {
    trit_status status = TRIT_ERROR_INTERNAL;
    std::vector<float> y;     // n x m, converted from y_dtype
    std::vector<int64_t> acc; // n x m int32 accumulators, when asked for
};

inline GemvRun run_gemv(trit_device *dev, const ref::GemvProblem &p, trit_dtype x_dtype,
                        trit_dtype y_dtype, bool accumulators)
{
    GemvRun out;
    const bool gated = !p.w_up.empty();
    Stream s(dev);
    Ternary w = upload_ternary(dev, p.w, p.m, p.k, p.scale_kind, p.scales);
    Ternary wu =
        gated ? upload_ternary(dev, p.w_up, p.m, p.k, p.scale_kind, p.scales_up) : Ternary();
    if (!w.t || (gated && !wu.t))
        return out;
    DeviceTensor x = upload(dev, s, x_dtype, {p.n, p.k}, p.x);
    DeviceTensor y = poisoned(dev, s, y_dtype, {p.n, p.m});
    DeviceTensor g, bias, res, acc;
    trit_gemv_params params;
    trit_gemv_params_init(&params);
    params.path = p.path;
    params.act = p.act;
    if (!p.rmsnorm_weight.empty()) {
        g = upload(dev, s, TRIT_DTYPE_F32, {p.k}, p.rmsnorm_weight);
        params.rmsnorm_weight = &g.t;
        params.rmsnorm_eps = p.rmsnorm_eps;
    }
    if (!p.bias.empty()) {
        bias = upload(dev, s, TRIT_DTYPE_F32, {p.m}, p.bias);
        params.bias = &bias.t;
    }
    if (!p.residual.empty()) {
        res = upload(dev, s, y_dtype, {p.n, p.m}, p.residual);
        params.residual = &res.t;
    }
    if (accumulators) {
        acc = poisoned(dev, s, TRIT_DTYPE_I32, {p.n, p.m});
        params.accumulators = &acc.t;
    }
    out.status = gated ? trit_ternary_gemv_gated(s, w, wu, &x.t, &y.t, &params)
                       : trit_ternary_gemv(s, w, &x.t, &y.t, &params);
    if (out.status == TRIT_OK)
        out.status = trit_stream_sync(s);
    if (out.status != TRIT_OK)
        return out;
    out.y = download(s, y.t);
    if (accumulators) {
        std::vector<uint8_t> bytes = download_bytes(s, acc.buf);
        out.acc.resize((size_t)(p.n * p.m));
        for (size_t i = 0; i < out.acc.size(); i++) {
            int32_t v;
            std::memcpy(&v, &bytes[i * 4], 4);
            out.acc[i] = v;
        }
    }
    return out;
}

} // namespace tt

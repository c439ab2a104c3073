// gemv_run.h — runs one ref::GemvProblem on a device through the public API, the way every GEMV
// suite needs it (conformance, and the OpenCL / Vulkan fallback tests): upload, poisoned
// outputs, the op (gated when the problem has an up matrix), download.
#pragma once

#include <cstring>
#include <vector>

#include "common.h"
#include "reference/ref_gemv.h"

namespace tt {

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

// ref_gemv.cpp — fp64 reference for the fused ternary GEMV; see ref_gemv.h.
#include "reference/ref_gemv.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace ref {
namespace {

double scale_of(const GemvProblem &p, const std::vector<float> &scales, int64_t row, int64_t block)
{
    if (scales.empty())
        return 1.0;
    switch (p.scale_kind) {
    case TRIT_SCALE_TENSOR: return scales[0];
    case TRIT_SCALE_ROW: return scales[(size_t)row];
    case TRIT_SCALE_BLOCK: {
        int64_t nb = (p.k + TRIT_SCALE_BLOCK_K - 1) / TRIT_SCALE_BLOCK_K;
        return scales[(size_t)(row * nb + block)];
    }
    }
    std::abort();
}

// t[m] for one matrix and token, before the epilogue. Fills acc (int64) on the INT8 path.
double matrix_row(const GemvProblem &p, const std::vector<int8_t> &w,
                  const std::vector<float> &scales, int64_t row, const std::vector<double> &xd,
                  const std::vector<int8_t> &q, float a, int64_t *acc_out)
{
    const int64_t nb = (p.k + TRIT_SCALE_BLOCK_K - 1) / TRIT_SCALE_BLOCK_K;
    double t = 0;
    int64_t acc_total = 0;
    for (int64_t b = 0; b < nb; b++) {
        const int64_t k0 = b * TRIT_SCALE_BLOCK_K;
        const int64_t k1 = std::min<int64_t>(p.k, k0 + TRIT_SCALE_BLOCK_K);
        const double s = scale_of(p, scales, row, b);
        if (p.path == TRIT_GEMV_INT8) {
            int64_t acc = 0;
            for (int64_t k = k0; k < k1; k++)
                acc += (int64_t)w[(size_t)(row * p.k + k)] * q[(size_t)k];
            acc_total += acc;
            t += (double)acc * s;
        } else {
            double d = 0;
            for (int64_t k = k0; k < k1; k++)
                d += (double)w[(size_t)(row * p.k + k)] * xd[(size_t)k];
            t += d * s;
        }
    }
    if (p.path == TRIT_GEMV_INT8) {
        t *= (double)a / 127.0;
        if (acc_out)
            *acc_out = acc_total;
    }
    return t;
}

} // namespace

std::vector<double> gemv_prologue(const GemvProblem &p, int64_t t)
{
    std::vector<double> xd((size_t)p.k);
    for (int64_t k = 0; k < p.k; k++)
        xd[(size_t)k] = p.x[(size_t)(t * p.k + k)];
    if (!p.rmsnorm_weight.empty()) {
        double ss = 0;
        for (double v : xd)
            ss += v * v;
        const double rms = std::sqrt(ss / (double)p.k + (double)p.rmsnorm_eps);
        for (int64_t k = 0; k < p.k; k++)
            xd[(size_t)k] = xd[(size_t)k] / rms * (double)p.rmsnorm_weight[(size_t)k];
    }
    return xd;
}

float quantize_absmax(const std::vector<float> &xf, std::vector<int8_t> &q)
{
    q.assign(xf.size(), 0);
    float a = 0.0f;
    for (float v : xf)
        a = std::max(a, std::fabs(v));
    if (a == 0.0f)
        return a;
    const float s = 127.0f / a; // f32 division
    for (size_t i = 0; i < xf.size(); i++) {
        const float prod = xf[i] * s;   // f32 product
        float r = std::nearbyint(prod); // default rounding mode: nearest, ties to even
        r = std::min(127.0f, std::max(-127.0f, r));
        q[i] = (int8_t)r;
    }
    return a;
}

double activation(trit_activation act, double v)
{
    switch (act) {
    case TRIT_ACT_NONE: return v;
    case TRIT_ACT_RELU2: return v > 0 ? v * v : 0.0;
    case TRIT_ACT_SILU: return v / (1.0 + std::exp(-v));
    case TRIT_ACT_GELU: {
        const double c = std::sqrt(2.0 / M_PI);
        return 0.5 * v * (1.0 + std::tanh(c * (v + 0.044715 * v * v * v)));
    }
    }
    std::abort();
}

GemvResult gemv(const GemvProblem &p)
{
    GemvResult r;
    r.y.assign((size_t)(p.n * p.m), 0.0);
    const bool gated = !p.w_up.empty();
    if (p.path == TRIT_GEMV_INT8) {
        r.acc.assign((size_t)(p.n * p.m), 0);
        r.q.assign((size_t)(p.n * p.k), 0);
        r.absmax.assign((size_t)p.n, 0.0f);
    }
    for (int64_t t = 0; t < p.n; t++) {
        std::vector<double> xd = gemv_prologue(p, t);
        std::vector<int8_t> q;
        float a = 0;
        if (p.path == TRIT_GEMV_INT8) {
            std::vector<float> xf(xd.begin(), xd.end()); // x' as the f32 values trit.h quantizes
            a = quantize_absmax(xf, q);
            r.absmax[(size_t)t] = a;
            std::copy(q.begin(), q.end(), r.q.begin() + t * p.k);
        }
        for (int64_t m = 0; m < p.m; m++) {
            int64_t acc = 0;
            double v = matrix_row(p, p.w, p.scales, m, xd, q, a, &acc);
            if (p.path == TRIT_GEMV_INT8)
                r.acc[(size_t)(t * p.m + m)] = acc;
            if (!p.bias.empty())
                v += p.bias[(size_t)m];
            v = activation(p.act, v);
            if (gated)
                v *= matrix_row(p, p.w_up, p.scales_up, m, xd, q, a, nullptr);
            if (!p.residual.empty())
                v += p.residual[(size_t)(t * p.m + m)];
            r.y[(size_t)(t * p.m + m)] = v;
        }
    }
    return r;
}

} // namespace ref

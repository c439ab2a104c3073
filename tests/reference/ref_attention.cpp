// ref_attention.cpp — see ref_attention.h. Two passes per query in fp64: scores of the visible
// keys, then the softmax-weighted sum of values. Nothing is tiled or fused, on purpose.
#include "reference/ref_attention.h"

#include <algorithm>
#include <cmath>

namespace ref {

std::vector<double> attention(const AttentionProblem &p)
{
    const int H = p.n_heads, Hkv = p.n_kv_heads, D = p.head_dim;
    const int group = H / Hkv;
    const double scale = p.scale != 0 ? p.scale : 1.0 / std::sqrt((double)D);
    int64_t total = 0;
    for (int32_t n : p.q_lens)
        total += n;
    std::vector<double> out((size_t)(total * H * D), 0.0);
    int64_t tok = 0;
    for (size_t s = 0; s < p.q_lens.size(); s++) {
        const int32_t q_len = p.q_lens[s], kv_len = p.kv_lens[s];
        for (int32_t i = 0; i < q_len; i++, tok++) {
            const int64_t pos = (int64_t)kv_len - q_len + i;
            for (int h = 0; h < H; h++) {
                const int g = h / group;
                const float *q = &p.q[(size_t)((tok * H + h) * D)];
                std::vector<double> score((size_t)kv_len);
                std::vector<char> visible((size_t)kv_len, 0);
                double mx = -INFINITY;
                for (int64_t j = 0; j < kv_len; j++) {
                    if (p.causal && j > pos)
                        continue;
                    if (p.window > 0 && pos - j >= p.window)
                        continue;
                    const float *k = &p.k[(size_t)((((int64_t)s * p.capacity + j) * Hkv + g) * D)];
                    double dot = 0;
                    for (int x = 0; x < D; x++)
                        dot += (double)q[x] * (double)k[x];
                    double sc = scale * dot;
                    if (p.softcap > 0)
                        sc = p.softcap * std::tanh(sc / p.softcap);
                    if (!p.alibi_slopes.empty())
                        sc += (double)p.alibi_slopes[(size_t)h] * (double)(j - pos);
                    score[(size_t)j] = sc;
                    visible[(size_t)j] = 1;
                    mx = std::max(mx, sc);
                }
                double *o = &out[(size_t)((tok * H + h) * D)];
                if (mx == -INFINITY)
                    continue; // no visible key: zeros
                if (!p.sinks.empty())
                    mx = std::max(mx, (double)p.sinks[(size_t)h]);
                double denom = p.sinks.empty() ? 0.0 : std::exp((double)p.sinks[(size_t)h] - mx);
                for (int64_t j = 0; j < kv_len; j++) {
                    if (!visible[(size_t)j])
                        continue;
                    double w = std::exp(score[(size_t)j] - mx);
                    denom += w;
                    const float *v = &p.v[(size_t)((((int64_t)s * p.capacity + j) * Hkv + g) * D)];
                    for (int x = 0; x < D; x++)
                        o[x] += w * (double)v[x];
                }
                for (int x = 0; x < D; x++)
                    o[x] /= denom;
            }
        }
    }
    return out;
}

} // namespace ref

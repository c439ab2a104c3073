// ref_rope.cpp — see ref_rope.h. Angles in long double so that positions near 1e5 keep ~1e-14
// relative accuracy, well past what the f32 tolerance needs.
#include "reference/ref_rope.h"

#include <cmath>

namespace ref {

std::vector<double> rope_row(const float *x, int d, int64_t pos, bool neox, double base,
                             int rot_dims)
{
    std::vector<double> out(x, x + d);
    const int half = rot_dims / 2;
    for (int i = 0; i < half; i++) {
        long double theta =
            (long double)pos * std::pow((long double)base, -2.0L * i / (long double)rot_dims);
        double c = (double)std::cos(theta), s = (double)std::sin(theta);
        int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        double x0 = x[a], x1 = x[b];
        out[(size_t)a] = x0 * c - x1 * s;
        out[(size_t)b] = x0 * s + x1 * c;
    }
    return out;
}

std::vector<double> rope(const std::vector<float> &x, int64_t tokens, int heads, int d,
                         const std::vector<int64_t> &positions, bool neox, double base,
                         int rot_dims)
{
    std::vector<double> out;
    out.reserve((size_t)(tokens * heads * d));
    for (int64_t t = 0; t < tokens; t++)
        for (int h = 0; h < heads; h++) {
            std::vector<double> r = rope_row(&x[(size_t)((t * heads + h) * d)], d,
                                             positions[(size_t)t], neox, base, rot_dims);
            out.insert(out.end(), r.begin(), r.end());
        }
    return out;
}

} // namespace ref

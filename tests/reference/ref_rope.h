// ref_rope.h — fp64 reference for the rotation in trit_rope_kv_append, from trit.h:
// theta_i = p * base^(-2i / rot_dims); NORMAL rotates pairs (x[2i], x[2i+1]), NEOX pairs
// (x[i], x[i + rot_dims/2]); dims past rot_dims are unchanged.
#pragma once

#include <cstdint>
#include <vector>

namespace ref {

// Rotates one row of `d` values at position `pos`.
std::vector<double> rope_row(const float *x, int d, int64_t pos, bool neox, double base,
                             int rot_dims);

// Rotates rows x[t][h][:] (tokens x heads x d) with the position of each token.
std::vector<double> rope(const std::vector<float> &x, int64_t tokens, int heads, int d,
                         const std::vector<int64_t> &positions, bool neox, double base,
                         int rot_dims);

} // namespace ref

// ref_gemv.h — fp64 reference for the fused ternary GEMV (trit_ternary_gemv / _gated), written
// from the op's definition in trit.h and nothing else, for the conformance suite to compare with.
#pragma once

#include <cstdint>
#include <vector>

#include "trit/trit.h"

namespace ref {

// One GEMV problem in host form. Values are what the device sees: callers round x and the
// residual through their dtypes first (tt::round_all).
struct GemvProblem {
    int64_t m = 0, k = 0, n = 0;
    std::vector<int8_t> w;    // m x k in {-1, 0, 1}
    std::vector<int8_t> w_up; // gated pair: the up matrix (w is the gate); empty otherwise
    trit_scale_kind scale_kind = TRIT_SCALE_TENSOR;
    std::vector<float> scales;    // 1, m, or m * ceil(k / 256) values; empty: one scale of 1
    std::vector<float> scales_up; // same kind as `scales`
    std::vector<float> x;         // n x k
    trit_gemv_path path = TRIT_GEMV_FLOAT;
    std::vector<float> rmsnorm_weight; // k values, or empty for no RMSNorm
    float rmsnorm_eps = 1e-6f;
    std::vector<float> bias;     // m values or empty
    std::vector<float> residual; // n x m or empty
    trit_activation act = TRIT_ACT_NONE;
};

struct GemvResult {
    std::vector<double> y; // n x m
    // INT8 path: the exact accumulators sum_k W[m,k] q[k] (of the gate for a gated pair), n x m,
    // computed in int64. For block scales: the sum over all blocks (the device cannot output
    // these, but tests may still look at them).
    std::vector<int64_t> acc;
    // INT8 path: the quantized activations, n x k, and a = max|x'| per token.
    std::vector<int8_t> q;
    std::vector<float> absmax;
};

// x' for token `t`: RMSNorm in fp64 when the problem has a weight, else x. Rounded to f32 for the
// INT8 path's quantization, kept in fp64 for the FLOAT path's sums.
std::vector<double> gemv_prologue(const GemvProblem &p, int64_t t);

// The documented BitNet quantization, in f32 exactly as trit.h writes it: a = max|x'|,
// s = 127 / a, q = clamp(rint(x' * s), -127, 127) ties to even. Returns a.
float quantize_absmax(const std::vector<float> &xf, std::vector<int8_t> &q);

double activation(trit_activation act, double v);

GemvResult gemv(const GemvProblem &p);

} // namespace ref

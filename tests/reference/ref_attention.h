// ref_attention.h — fp64 reference for trit_attention, written from the op's definition in trit.h
// (positions, causal and window masks, softcap, ALiBi, sinks, GQA head mapping) and nothing else.
// It works on the logical cache [S][C][Hkv][D]; tests map that to contiguous or paged layouts.
#pragma once

#include <cstdint>
#include <vector>

namespace ref {

struct AttentionProblem {
    int n_heads = 1, n_kv_heads = 1, head_dim = 64;
    std::vector<int32_t> q_lens, kv_lens; // one entry per sequence
    int64_t capacity = 0;                 // C: tokens per sequence in k and v
    // Values exactly as the device sees them (already rounded through their dtypes).
    std::vector<float> q; // [T][H][D], T = sum(q_lens), sequence 0 first
    std::vector<float> k; // [S][C][Hkv][D]
    std::vector<float> v; // [S][C][Hkv][D]
    double scale = 0;     // 0: 1/sqrt(D)
    bool causal = false;
    int32_t window = 0;
    double softcap = 0;
    std::vector<float> alibi_slopes; // H values or empty
    std::vector<float> sinks;        // H values or empty
};

// Returns out [T][H][D].
std::vector<double> attention(const AttentionProblem &p);

} // namespace ref

#version 450
//! variant -
//! variant f16 -DSTORAGE16=1
//
// attention_combine.comp — merges the split-KV partial results of attention.comp.
//
// One workgroup per group of splits (the rows of one item cut into n_splits key ranges); an
// invocation owns output elements e = tid + k * WG of the group's rows x D block and computes
//   out = sum_k e^(m_k - M) o_k / (sum_k e^(m_k - M) l_k + e^(sink - M)),  M = max(m_k, sink)
// over the splits that saw a key (l_k > 0); a row no split saw outputs zeros.
//
// Floor. Reads n_splits * rows * (D + 2) floats and writes rows * D outputs per group, a few
// percent of the K/V bytes the splits read, so the pass costs about one launch.
#ifdef STORAGE16
#extension GL_EXT_shader_16bit_storage : require
#endif

#include "attention_io.glsl"

layout(constant_id = 0) const uint D = 128;
layout(constant_id = 1) const bool O16 = false;
layout(local_size_x_id = 2) in;

const uint WG = gl_WorkGroupSize.x;
const uint GROUP_WORDS = 8u;

TENSOR_RW(0, o)
layout(std430, set = 0, binding = 1) readonly buffer Meta { uint meta[]; };
layout(std430, set = 0, binding = 2) readonly buffer Partials { float partials[]; };

layout(push_constant) uniform Push {
    uint o_off, o_s0, o_s1;
    uint groups_off; // word offset of the groups in meta
    uint n_groups;
    uint sinks_off; // word offset of the sinks (f32) in meta; 0: none
} pc;

void main()
{
    const uint grp = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (grp >= pc.n_groups)
        return;
    const uint gb = pc.groups_off + grp * GROUP_WORDS;
    const uint head0 = meta[gb + 0u], nh = meta[gb + 1u], nt = meta[gb + 2u];
    const uint n_splits = meta[gb + 3u], tok0 = meta[gb + 4u], base = meta[gb + 5u];
    const uint rows = nh * nt, stride = rows * (D + 2u);

    for (uint e = gl_LocalInvocationID.x; e < rows * D; e += WG) {
        const uint r = e / D, i = e - r * D;
        const uint t = r / nh, h = head0 + (r - t * nh);
        const uint dst = pc.o_off + (tok0 + t) * pc.o_s0 + h * pc.o_s1 + i;
        float mx = NEG_INF;
        for (uint k = 0u; k < n_splits; k++) {
            const uint pb = base + k * stride + rows * D;
            float m = partials[pb + r], l = partials[pb + rows + r];
            if (l > 0.0 && m > mx)
                mx = m;
        }
        if (mx == NEG_INF) {
            STORE(o, O16, dst, 0.0);
            continue;
        }
        float denom = 0.0;
        if (pc.sinks_off != 0u) {
            const float sink = uintBitsToFloat(meta[pc.sinks_off + h]);
            mx = max(mx, sink);
            denom = exp(sink - mx);
        }
        float acc = 0.0;
        for (uint k = 0u; k < n_splits; k++) {
            const uint pb = base + k * stride;
            float m = partials[pb + rows * D + r], l = partials[pb + rows * D + rows + r];
            if (!(l > 0.0))
                continue;
            float w = exp(m - mx);
            denom += w * l;
            acc += w * partials[pb + e];
        }
        STORE(o, O16, dst, acc * (1.0 / denom));
    }
}

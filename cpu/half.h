/*
 * half.h — IEEE binary16 <-> binary32 for the CPU plugin's portable paths (round to nearest
 * even; NaN stays NaN, infinities and subnormals exact). The plugin does not link libtrit, so it
 * keeps its own copy of what host/formats/half.c exports; the tests check both against every
 * half bit pattern through the ops.
 */
#ifndef TRIT_CPU_HALF_H
#define TRIT_CPU_HALF_H

#include <stdint.h>
#include <string.h>

/* IEEE binary16 <-> binary32, round to nearest even, NaN and infinities kept. Branch-free so
 * that loops over rows vectorise in the portable kernels. */
static inline float cpu_half_to_float(uint16_t h)
{
    /* Exponent and mantissa moved into f32 position, then rebiased by one exact multiply by
     * 2^112, which also normalises subnormal halves. */
    union {
        uint32_t u;
        float f;
    } x, y;
    uint32_t em = h & 0x7fffu;
    x.u = em << 13;
    y.f = x.f * 0x1p112f;
    uint32_t special = 0u - (uint32_t)(em >= 0x7c00u); /* all ones for infinity or NaN */
    uint32_t bits = (special & (0x7f800000u | (em << 13))) | (~special & y.u);
    x.u = bits | (uint32_t)(h & 0x8000u) << 16;
    return x.f;
}

static inline uint16_t cpu_float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf, NaN (kept quiet) */
        return sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u);
    if (ax >= 0x477ff000u) /* rounds to >= 65520: inf */
        return sign | 0x7c00u;
    if (ax < 0x38800000u) {
        /* Subnormal half: adding 0.5 puts the half's ulp (2^-24) at the float's ulp, so the
         * float addition does the rounding. */
        float v;
        memcpy(&v, &ax, 4);
        v += 0.5f;
        uint32_t b;
        memcpy(&b, &v, 4);
        return sign | (uint16_t)(b - 0x3f000000u);
    }
    const uint32_t odd = (ax >> 13) & 1u;
    ax += 0xc8000000u + 0xfffu + odd; /* rebias exponent (-112 << 23, mod 2^32) and round */
    return sign | (uint16_t)(ax >> 13);
}

#endif /* TRIT_CPU_HALF_H */

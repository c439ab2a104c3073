/*
 * half.c — IEEE binary16 and bfloat16 <-> binary32, bit-exact and portable.
 *
 * Done with integer operations rather than F16C or _Float16 so that every build (any compiler, any
 * CPU, the sanitizer build) rounds identically: references in tests and the fp16 scales inside
 * GGUF blocks must not depend on which machine converted them. Rounding is to nearest, ties to
 * even; overflow gives infinity; subnormals are produced and consumed exactly; a NaN stays a NaN
 * (its payload is kept where it fits and the sign is kept).
 */
#include <stdint.h>
#include <string.h>

#include "trit/trit_formats.h"

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

static float bits_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

float trit_half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;

    if (exp == 0x1f) /* infinity, or NaN with its payload in the top mantissa bits */
        return bits_float(sign | 0x7f800000u | (mant << 13));
    if (exp != 0) /* normal: rebias 15 -> 127 */
        return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
    if (mant == 0)
        return bits_float(sign);
    /* Subnormal m * 2^-24: shift the leading one up to the implicit bit; every half subnormal is
     * a normal float, so the result is exact. */
    uint32_t e = 113; /* biased exponent of 2^-14, the scale of the implicit bit once normalized */
    while (!(mant & 0x400u)) {
        mant <<= 1;
        e--;
    }
    return bits_float(sign | (e << 23) | ((mant & 0x3ffu) << 13));
}

uint16_t trit_float_to_half(float f)
{
    uint32_t x = float_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;

    if (x > 0x7f800000u) {
        /* NaN: keep the top 10 payload bits; if they are all zero, set the quiet bit so the
         * result is not mistaken for infinity. */
        uint16_t payload = (uint16_t)((x >> 13) & 0x3ffu);
        return (uint16_t)(sign | 0x7c00u | (payload ? payload : 0x200u));
    }
    /* 65520 is the midpoint between 65504 (largest half, odd mantissa) and 65536: it and
     * everything above rounds to infinity. */
    if (x >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u);
    if (x >= 0x38800000u) {
        /* Normal half. Dropping 13 mantissa bits; a carry out of the mantissa correctly bumps
         * the exponent (and cannot reach infinity, excluded above). */
        uint32_t h = (x >> 13) - (112u << 10);
        uint32_t rem = x & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
            h++;
        return (uint16_t)(sign | h);
    }
    /* Below 2^-25 (or exactly 2^-25, a tie with zero whose even neighbour is zero): zero. */
    if (x <= 0x33000000u)
        return sign;
    /* Subnormal half: value = mant * 2^(e - 150) in units of 2^-24 is mant >> (126 - e). */
    uint32_t e = x >> 23;
    uint32_t mant = (x & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14..24 for e in 102..112 */
    uint32_t h = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1u);
    uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (h & 1u)))
        h++; /* may carry into 0x400, the smallest normal: still the right bits */
    return (uint16_t)(sign | h);
}

float trit_bf16_to_float(uint16_t h)
{
    return bits_float((uint32_t)h << 16);
}

uint16_t trit_float_to_bf16(float f)
{
    uint32_t x = float_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncate and force quiet so it stays NaN */
        return (uint16_t)((x >> 16) | 0x40u);
    /* Round to nearest even on the 16 dropped bits; the carry handles exponent bumps, overflow
     * to infinity, and subnormals alike. */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

// test_cpu_half.cpp — the CPU plugin's own f16 conversions (it does not link libtrit) agree
// bit for bit with libtrit's on every half and on a wide sample of floats.
#include <cmath>
#include <random>

#include "common.h"
#include "cpu/half.h"

TEST(CpuHalf, HalfToFloatMatchesLibtritForEveryBitPattern)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float a = cpu_half_to_float((uint16_t)h), b = trit_half_to_float((uint16_t)h);
        if (std::isnan(b)) {
            ASSERT_TRUE(std::isnan(a)) << h;
            continue;
        }
        uint32_t ua, ub;
        memcpy(&ua, &a, 4);
        memcpy(&ub, &b, 4);
        ASSERT_EQ(ub, ua) << "half 0x" << std::hex << h;
    }
}

TEST(CpuHalf, FloatToHalfMatchesLibtritOnTiesSubnormalsAndRandomBits)
{
    auto check = [](uint32_t bits) {
        float f;
        memcpy(&f, &bits, 4);
        uint16_t a = cpu_float_to_half(f), b = trit_float_to_half(f);
        if (std::isnan(f))
            return ((a & 0x7c00) == 0x7c00 && (a & 0x3ff))
                       ? ::testing::AssertionSuccess()
                       : ::testing::AssertionFailure() << "NaN lost";
        if (a == b)
            return ::testing::AssertionSuccess();
        return ::testing::AssertionFailure()
               << "float bits 0x" << std::hex << bits << ": 0x" << a << " vs 0x" << b;
    };
    // Every half value, the midpoints between neighbours, and one ulp either side of them.
    for (uint32_t h = 0; h < 0x7c00; h++) {
        float lo = trit_half_to_float((uint16_t)h), hi = trit_half_to_float((uint16_t)(h + 1));
        float mid = (float)(((double)lo + (double)hi) / 2);
        for (float f : {lo, mid, std::nextafter(mid, 0.f), std::nextafter(mid, 1e9f)}) {
            uint32_t bits;
            memcpy(&bits, &f, 4);
            ASSERT_TRUE(check(bits));
            ASSERT_TRUE(check(bits | 0x80000000u));
        }
    }
    std::mt19937 rng(3);
    for (int i = 0; i < 2000000; i++)
        ASSERT_TRUE(check((uint32_t)rng()));
}

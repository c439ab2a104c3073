// common.h — helpers shared by the test suites: one context for the whole binary, the list of
// devices the conformance suites are parameterized over, RAII wrappers, data generators, and
// tensor upload/download with dtype conversion.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "trit/trit.h"
#include "trit/trit_formats.h"

#define TRIT_ASSERT_OK(expr)                                                                       \
    do {                                                                                           \
        trit_status trit_assert_status_ = (expr);                                                  \
        ASSERT_EQ(TRIT_OK, trit_assert_status_)                                                    \
            << #expr << " -> " << trit_status_string(trit_assert_status_) << ": "                  \
            << trit_last_error();                                                                  \
    } while (0)

#define TRIT_EXPECT_OK(expr)                                                                       \
    do {                                                                                           \
        trit_status trit_expect_status_ = (expr);                                                  \
        EXPECT_EQ(TRIT_OK, trit_expect_status_)                                                    \
            << #expr << " -> " << trit_status_string(trit_expect_status_) << ": "                  \
            << trit_last_error();                                                                  \
    } while (0)

namespace tt {

// The context shared by every test in the binary (created on first use, destroyed by a gtest
// Environment at exit so the sanitizer run sees no leak).
trit_context *context();
// Indices (into trit_device_get) of every device found: what conformance suites run over.
std::vector<uint32_t> device_indices();
trit_device *device(uint32_t index);
// Test-name suffix for a device parameter: "cpu0", "opencl1", ...
std::string device_param_name(const ::testing::TestParamInfo<uint32_t> &info);

struct Stream {
    trit_stream *s = nullptr;
    explicit Stream(trit_device *dev) { EXPECT_EQ(TRIT_OK, trit_stream_create(dev, &s)); }
    ~Stream() { trit_stream_destroy(s); }
    Stream(const Stream &) = delete;
    Stream &operator=(const Stream &) = delete;
    operator trit_stream *() const { return s; }
};

struct Buffer {
    trit_buffer *b = nullptr;
    Buffer() = default;
    Buffer(trit_device *dev, uint64_t bytes)
    {
        EXPECT_EQ(TRIT_OK, trit_buffer_alloc(dev, bytes, &b));
    }
    ~Buffer() { trit_buffer_free(b); }
    Buffer(Buffer &&o) noexcept : b(o.b) { o.b = nullptr; }
    Buffer &operator=(Buffer &&o) noexcept
    {
        std::swap(b, o.b);
        return *this;
    }
    Buffer(const Buffer &) = delete;
    operator trit_buffer *() const { return b; }
};

struct Ternary {
    trit_ternary *t = nullptr;
    Ternary() = default;
    ~Ternary() { trit_ternary_free(t); }
    Ternary(Ternary &&o) noexcept : t(o.t) { o.t = nullptr; }
    Ternary(const Ternary &) = delete;
    operator trit_ternary *() const { return t; }
};

// A buffer holding one contiguous tensor.
struct DeviceTensor {
    Buffer buf;
    trit_tensor t{};
    trit_tensor *operator&() { return &t; }
};

inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f)
{
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto &x : v)
        x = d(rng);
    return v;
}

// Ternary weights with roughly a third of each value (never all zeros).
inline std::vector<int8_t> random_ternary(size_t n, uint64_t seed)
{
    std::mt19937_64 rng(seed);
    std::vector<int8_t> v(n);
    for (auto &x : v)
        x = (int8_t)((int)(rng() % 3) - 1);
    return v;
}

// Rounds values through a dtype (so references see exactly what the device sees).
inline float round_to(trit_dtype dt, float x)
{
    if (dt == TRIT_DTYPE_F16)
        return trit_half_to_float(trit_float_to_half(x));
    if (dt == TRIT_DTYPE_BF16)
        return trit_bf16_to_float(trit_float_to_bf16(x));
    return x;
}
inline void round_all(trit_dtype dt, std::vector<float> &v)
{
    for (auto &x : v)
        x = round_to(dt, x);
}

// ||out - ref|| / ||ref|| (ref in fp64). Returns +inf if any output is not finite.
inline double rel_error(const std::vector<float> &out, const std::vector<double> &ref)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < out.size() && i < ref.size(); i++) {
        if (!std::isfinite(out[i]))
            return INFINITY;
        double d = (double)out[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    if (out.size() != ref.size())
        return INFINITY;
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Tolerance for an output dtype per DESIGN.md: f32 paths 1e-5, f16 paths 2e-3.
inline double tolerance(trit_dtype dt)
{
    return dt == TRIT_DTYPE_F32 ? 1e-5 : 2e-3;
}

// Converts floats to the bytes of `dt` (f32, f16, bf16; i8/i32 by rounding).
std::vector<uint8_t> to_bytes(trit_dtype dt, const std::vector<float> &v);
std::vector<float> from_bytes(trit_dtype dt, const std::vector<uint8_t> &bytes);

// Allocates a contiguous tensor of `shape` on `dev` and uploads `data` converted to `dt`.
DeviceTensor upload(trit_device *dev, trit_stream *s, trit_dtype dt, std::vector<int64_t> shape,
                    const std::vector<float> &data);
// Allocates a contiguous tensor filled with the poison byte 0xFF (NaN for floats, -1 ints).
DeviceTensor poisoned(trit_device *dev, trit_stream *s, trit_dtype dt, std::vector<int64_t> shape);
// Downloads a contiguous tensor (syncs the stream) and converts it to floats.
std::vector<float> download(trit_stream *s, const trit_tensor &t);
// Downloads raw bytes of a whole buffer (syncs the stream).
std::vector<uint8_t> download_bytes(trit_stream *s, trit_buffer *b);

// Uploads a ternary matrix given as int8 {-1,0,1} with optional scales.
Ternary upload_ternary(trit_device *dev, const std::vector<int8_t> &w, int64_t rows, int64_t cols,
                       trit_scale_kind kind = TRIT_SCALE_TENSOR,
                       const std::vector<float> &scales = {});

} // namespace tt

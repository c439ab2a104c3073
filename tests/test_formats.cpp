// test_formats.cpp — weight formats (trit_formats.h): byte counts, pack/unpack round trips on odd
// shapes, hand-built blocks for every layout, conversion of every format to the canonical host
// form, rejection of hostile input, and the half / bf16 conversions.
//
// Expected bytes come from two independent places: blocks spelled out by hand from the layouts in
// trit_formats.h (and ggml's / BitNet's reference quantizers they were checked against), and
// per-weight encoders below that follow the documented formula weight by weight.
#include "common.h"

#include <cfloat>
#include <climits>
#include <initializer_list>
#include <limits>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#define TEST_HAVE_F16C_ORACLE 1
#endif

namespace {

// Checks a failure's status and that trit_last_error() names what went wrong.
void expect_failure(trit_status got, trit_status want, std::initializer_list<const char *> words)
{
    EXPECT_EQ(want, got) << trit_status_string(got) << ": " << trit_last_error();
    std::string msg = trit_last_error();
    for (const char *w : words)
        EXPECT_NE(std::string::npos, msg.find(w))
            << "message \"" << msg << "\" lacks \"" << w << "\"";
}

float bits_to_float(uint32_t u)
{
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

uint32_t float_to_bits(float f)
{
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

uint8_t code_of(int8_t w)
{
    return (uint8_t)(w + 1);
}

uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

// ----- Per-weight reference encoders, straight from the header's layout description -----------

std::vector<uint8_t> ref_packed2(const std::vector<int8_t> &w, int64_t rows, int64_t cols)
{
    uint64_t rb = ceil_div(cols, 4);
    std::vector<uint8_t> out(rows * rb, 0x55); // padding codes are 1
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < cols; k++) {
            uint8_t &b = out[r * rb + k / 4];
            int s = 2 * (k % 4);
            b = (uint8_t)((b & ~(3 << s)) | (code_of(w[r * cols + k]) << s));
        }
    return out;
}

std::vector<uint8_t> ref_base3(const std::vector<int8_t> &w, int64_t rows, int64_t cols)
{
    uint64_t rb = ceil_div(cols, 5);
    std::vector<uint8_t> out(rows * rb);
    for (int64_t r = 0; r < rows; r++)
        for (uint64_t j = 0; j < rb; j++) {
            int v = 0, p = 1;
            for (int i = 0; i < 5; i++, p *= 3) {
                int64_t k = 5 * j + i;
                v += (k < cols ? code_of(w[r * cols + k]) : 1) * p;
            }
            out[r * rb + j] = (uint8_t)v;
        }
    return out;
}

std::vector<uint8_t> ref_tq2_0(const std::vector<int8_t> &w, const std::vector<uint16_t> &d,
                               int64_t rows, int64_t cols)
{
    int64_t nb = cols / 256;
    std::vector<uint8_t> out(rows * nb * 66, 0);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = &out[(r * nb + b) * 66];
            for (int i = 0; i < 256; i++)
                blk[32 * (i / 128) + i % 32] |=
                    (uint8_t)(code_of(w[r * cols + b * 256 + i]) << (2 * ((i % 128) / 32)));
            blk[64] = (uint8_t)(d[r * nb + b] & 0xff);
            blk[65] = (uint8_t)(d[r * nb + b] >> 8);
        }
    return out;
}

// 5 codes (most significant first) -> ceil(v * 256 / 243).
uint8_t tq1_byte(const int *codes, int n)
{
    int v = 0;
    for (int i = 0; i < 5; i++)
        v = 3 * v + (i < n ? codes[i] : 0);
    return (uint8_t)((v * 256 + 242) / 243);
}

std::vector<uint8_t> ref_tq1_0(const std::vector<int8_t> &w, const std::vector<uint16_t> &d,
                               int64_t rows, int64_t cols)
{
    int64_t nb = cols / 256;
    std::vector<uint8_t> out(rows * nb * 54, 0);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < nb; b++) {
            const int8_t *x = &w[r * cols + b * 256];
            uint8_t *blk = &out[(r * nb + b) * 54];
            int c[5];
            for (int m = 0; m < 32; m++) {
                for (int n = 0; n < 5; n++)
                    c[n] = code_of(x[m + 32 * n]);
                blk[m] = tq1_byte(c, 5);
            }
            for (int m = 0; m < 16; m++) {
                for (int n = 0; n < 5; n++)
                    c[n] = code_of(x[160 + m + 16 * n]);
                blk[32 + m] = tq1_byte(c, 5);
            }
            for (int j = 0; j < 4; j++) {
                for (int n = 0; n < 4; n++)
                    c[n] = code_of(x[240 + j + 4 * n]);
                blk[48 + j] = tq1_byte(c, 4);
            }
            blk[52] = (uint8_t)(d[r * nb + b] & 0xff);
            blk[53] = (uint8_t)(d[r * nb + b] >> 8);
        }
    return out;
}

std::vector<uint8_t> ref_i2_s(const std::vector<int8_t> &w, float scale)
{
    std::vector<uint8_t> out(w.size() / 4 + 4, 0);
    for (size_t t = 0; t < w.size(); t++) {
        size_t g = t / 128, j = t % 128;
        out[g * 32 + j % 32] |= (uint8_t)(code_of(w[t]) << (6 - 2 * (j / 32)));
    }
    std::memcpy(&out[w.size() / 4], &scale, 4); // little-endian host assumed by this test
    return out;
}

// Random scales that are exactly representable in fp16 (so round trips compare exactly).
std::vector<float> half_exact_scales(size_t n, uint64_t seed, std::vector<uint16_t> *bits)
{
    std::vector<float> s = tt::random_floats(n, seed, -4.f, 4.f);
    bits->resize(n);
    for (size_t i = 0; i < n; i++) {
        (*bits)[i] = trit_float_to_half(s[i]);
        s[i] = trit_half_to_float((*bits)[i]);
    }
    return s;
}

trit_ternary_desc make_desc(trit_weight_format fmt, int64_t rows, int64_t cols,
                            const std::vector<uint8_t> &data)
{
    trit_ternary_desc d{};
    d.size = sizeof(d);
    d.rows = rows;
    d.cols = cols;
    d.format = fmt;
    d.data = data.data();
    d.data_bytes = data.size();
    d.scale_kind = TRIT_SCALE_TENSOR;
    d.scales = nullptr;
    return d;
}

std::vector<uint8_t> as_bytes(const std::vector<int8_t> &w)
{
    return std::vector<uint8_t>(w.begin(), w.end());
}

// RAII for trit_ternary_host.
struct Host {
    trit_ternary_host h{};
    ~Host() { trit_ternary_host_release(&h); }
};

const int64_t kOddCols[] = {1, 3, 5, 7, 255, 257, 1000};
const int64_t kRows[] = {1, 5};

// ================================================================================================
// Byte and scale counts
// ================================================================================================

TEST(Formats, ByteCountsFollowTheLayouts)
{
    struct Case {
        trit_weight_format f;
        int64_t rows, cols;
        uint64_t bytes;
    } cases[] = {
        {TRIT_WEIGHTS_I8, 3, 5, 15},       {TRIT_WEIGHTS_PACKED2, 3, 5, 6},
        {TRIT_WEIGHTS_PACKED2, 2, 8, 4},   {TRIT_WEIGHTS_BASE3, 3, 5, 3},
        {TRIT_WEIGHTS_BASE3, 3, 6, 6},     {TRIT_WEIGHTS_TQ2_0, 2, 512, 264},
        {TRIT_WEIGHTS_TQ1_0, 2, 512, 216}, {TRIT_WEIGHTS_I2_S, 2, 128, 68},
        {TRIT_WEIGHTS_I2_S, 3, 384, 292},  {TRIT_WEIGHTS_PACKED2, 1, 1, 1},
    };
    for (const Case &c : cases) {
        uint64_t bytes = 0;
        TRIT_EXPECT_OK(trit_format_bytes(c.f, c.rows, c.cols, &bytes));
        EXPECT_EQ(c.bytes, bytes) << "format " << c.f << " " << c.rows << " x " << c.cols;
    }
}

TEST(Formats, ByteCountsRejectBadShapes)
{
    uint64_t bytes = 12345;
    expect_failure(trit_format_bytes(TRIT_WEIGHTS_I8, 0, 5, &bytes), TRIT_ERROR_INVALID_ARGUMENT,
                   {"0 x 5"});
    expect_failure(trit_format_bytes(TRIT_WEIGHTS_PACKED2, 2, -1, &bytes),
                   TRIT_ERROR_INVALID_ARGUMENT, {"2 x -1"});
    expect_failure(trit_format_bytes(TRIT_WEIGHTS_TQ2_0, 1, 255, &bytes), TRIT_ERROR_UNSUPPORTED,
                   {"TQ2_0", "256", "255"});
    expect_failure(trit_format_bytes(TRIT_WEIGHTS_TQ1_0, 1, 300, &bytes), TRIT_ERROR_UNSUPPORTED,
                   {"TQ1_0", "300"});
    expect_failure(trit_format_bytes(TRIT_WEIGHTS_I2_S, 1, 100, &bytes), TRIT_ERROR_UNSUPPORTED,
                   {"I2_S", "128", "100"});
    expect_failure(trit_format_bytes((trit_weight_format)42, 1, 1, &bytes),
                   TRIT_ERROR_INVALID_ARGUMENT, {"unknown weight format 42"});
    expect_failure(trit_format_bytes(TRIT_WEIGHTS_I8, INT64_MAX, 3, &bytes), TRIT_ERROR_OVERFLOW,
                   {"I8"});
    expect_failure(trit_format_bytes(TRIT_WEIGHTS_TQ2_0, INT64_MAX, 256, &bytes),
                   TRIT_ERROR_OVERFLOW, {"TQ2_0"});
    // rows * cols / 4 = 2^64.
    expect_failure(trit_format_bytes(TRIT_WEIGHTS_I2_S, (int64_t)1 << 56, 1024, &bytes),
                   TRIT_ERROR_OVERFLOW, {"I2_S"});
    expect_failure(trit_format_bytes(TRIT_WEIGHTS_I8, 1, 1, nullptr), TRIT_ERROR_INVALID_ARGUMENT,
                   {"out_bytes"});
    EXPECT_EQ(12345u, bytes) << "a failed call wrote its output";
}

TEST(Formats, ScaleCountsPerTensorRowAndBlock)
{
    uint64_t n = 0;
    TRIT_EXPECT_OK(trit_scale_count(TRIT_SCALE_TENSOR, 7, 300, &n));
    EXPECT_EQ(1u, n);
    TRIT_EXPECT_OK(trit_scale_count(TRIT_SCALE_ROW, 7, 300, &n));
    EXPECT_EQ(7u, n);
    TRIT_EXPECT_OK(trit_scale_count(TRIT_SCALE_BLOCK, 7, 300, &n));
    EXPECT_EQ(14u, n);
    TRIT_EXPECT_OK(trit_scale_count(TRIT_SCALE_BLOCK, 3, 256, &n));
    EXPECT_EQ(3u, n);
    TRIT_EXPECT_OK(trit_scale_count(TRIT_SCALE_BLOCK, 3, 257, &n));
    EXPECT_EQ(6u, n);
    expect_failure(trit_scale_count((trit_scale_kind)9, 1, 1, &n), TRIT_ERROR_INVALID_ARGUMENT,
                   {"unknown scale kind 9"});
    expect_failure(trit_scale_count(TRIT_SCALE_ROW, 0, 1, &n), TRIT_ERROR_INVALID_ARGUMENT,
                   {"0 x 1"});
    expect_failure(trit_scale_count(TRIT_SCALE_BLOCK, INT64_MAX, INT64_MAX, &n),
                   TRIT_ERROR_OVERFLOW, {"blocks"});
    expect_failure(trit_scale_count(TRIT_SCALE_ROW, 1, 1, nullptr), TRIT_ERROR_INVALID_ARGUMENT,
                   {"out_count"});
}

// ================================================================================================
// PACKED2 and BASE3
// ================================================================================================

TEST(Packed2, RoundTripsOddShapes)
{
    for (int64_t rows : kRows)
        for (int64_t cols : kOddCols) {
            SCOPED_TRACE(::testing::Message() << rows << " x " << cols);
            auto w = tt::random_ternary(rows * cols, 100 + rows * 7919 + cols);
            uint64_t need = 0;
            TRIT_ASSERT_OK(trit_format_bytes(TRIT_WEIGHTS_PACKED2, rows, cols, &need));
            std::vector<uint8_t> packed(need + 8, 0xAB);
            TRIT_ASSERT_OK(trit_pack_packed2(w.data(), rows, cols, packed.data(), need));
            std::vector<uint8_t> expect = ref_packed2(w, rows, cols);
            EXPECT_EQ(expect, std::vector<uint8_t>(packed.begin(), packed.begin() + need));
            for (size_t i = need; i < packed.size(); i++)
                ASSERT_EQ(0xAB, packed[i]) << "wrote past out_bytes at " << i;
            std::vector<int8_t> back(rows * cols, 99);
            TRIT_ASSERT_OK(trit_unpack_packed2(packed.data(), need, rows, cols, back.data()));
            EXPECT_EQ(w, back);
        }
}

TEST(Packed2, HandCheckedBytes)
{
    // Row {-1, 0, +1, +1, 0}: codes 0,1,2,2 -> 0b10'10'01'00 = 0xA4; code 1 then three padding
    // codes of 1 -> 0x55. Second row {+1, +1, +1, +1, -1}: 0xAA, then 0b01'01'01'00 = 0x54.
    const std::vector<int8_t> w = {-1, 0, 1, 1, 0, 1, 1, 1, 1, -1};
    const std::vector<uint8_t> bytes = {0xA4, 0x55, 0xAA, 0x54};
    std::vector<uint8_t> out(4);
    TRIT_ASSERT_OK(trit_pack_packed2(w.data(), 2, 5, out.data(), out.size()));
    EXPECT_EQ(bytes, out);
    std::vector<int8_t> back(10);
    TRIT_ASSERT_OK(trit_unpack_packed2(bytes.data(), bytes.size(), 2, 5, back.data()));
    EXPECT_EQ(w, back);
}

TEST(Packed2, RejectsCode3AndNamesRowByteColumn)
{
    auto w = tt::random_ternary(3 * 7, 5);
    std::vector<uint8_t> p = ref_packed2(w, 3, 7); // 2 bytes per row
    p[2 + 1] |= 3u << 4;                           // row 1, byte 1, column 6
    std::vector<int8_t> out(21, 42);
    expect_failure(trit_unpack_packed2(p.data(), p.size(), 3, 7, out.data()), TRIT_ERROR_BAD_FORMAT,
                   {"row 1", "byte 1", "code 3", "column 6"});
    for (int8_t v : out)
        ASSERT_EQ(42, v) << "a failed unpack wrote its output";
    Host host;
    trit_ternary_desc d = make_desc(TRIT_WEIGHTS_PACKED2, 3, 7, p);
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_BAD_FORMAT,
                   {"ternary", "PACKED2 row 1", "byte 1", "code 3"});
    EXPECT_EQ(nullptr, host.h.codes);
}

TEST(Packed2, RejectsPaddingThatIsNotZero)
{
    // cols 5: byte 1 holds column 4 and three padding codes, which must be 1 (w = 0).
    std::vector<uint8_t> p = {0x55, 0x15}; // position 7 holds code 0
    std::vector<int8_t> out(5);
    expect_failure(trit_unpack_packed2(p.data(), p.size(), 1, 5, out.data()), TRIT_ERROR_BAD_FORMAT,
                   {"row 0", "byte 1", "padding", "code 0"});
}

TEST(Base3, RoundTripsOddShapes)
{
    for (int64_t rows : kRows)
        for (int64_t cols : kOddCols) {
            SCOPED_TRACE(::testing::Message() << rows << " x " << cols);
            auto w = tt::random_ternary(rows * cols, 200 + rows * 7919 + cols);
            uint64_t need = 0;
            TRIT_ASSERT_OK(trit_format_bytes(TRIT_WEIGHTS_BASE3, rows, cols, &need));
            std::vector<uint8_t> packed(need);
            TRIT_ASSERT_OK(trit_pack_base3(w.data(), rows, cols, packed.data(), need));
            EXPECT_EQ(ref_base3(w, rows, cols), packed);
            std::vector<int8_t> back(rows * cols, 99);
            TRIT_ASSERT_OK(trit_unpack_base3(packed.data(), need, rows, cols, back.data()));
            EXPECT_EQ(w, back);
        }
}

TEST(Base3, HandCheckedBytes)
{
    // {+1, -1, 0, 0, +1}: codes 2,0,1,1,2 -> 2 + 0*3 + 1*9 + 1*27 + 2*81 = 200.
    // {-1} then four padding trits of code 1 -> 0 + 3 + 9 + 27 + 81 = 120.
    const std::vector<int8_t> w = {1, -1, 0, 0, 1, -1};
    const std::vector<uint8_t> bytes = {200, 120};
    std::vector<uint8_t> out(2);
    TRIT_ASSERT_OK(trit_pack_base3(w.data(), 1, 6, out.data(), out.size()));
    EXPECT_EQ(bytes, out);
    std::vector<int8_t> back(6);
    TRIT_ASSERT_OK(trit_unpack_base3(bytes.data(), bytes.size(), 1, 6, back.data()));
    EXPECT_EQ(w, back);
}

TEST(Base3, RejectsByte243)
{
    std::vector<uint8_t> p = {121, 121, 121, 243}; // 2 rows of 2 bytes; row 1 byte 1 is bad
    std::vector<int8_t> out(20, 7);
    expect_failure(trit_unpack_base3(p.data(), p.size(), 2, 10, out.data()), TRIT_ERROR_BAD_FORMAT,
                   {"row 1", "byte 1", "243", "242"});
    for (int8_t v : out)
        ASSERT_EQ(7, v);
    Host host;
    trit_ternary_desc d = make_desc(TRIT_WEIGHTS_BASE3, 2, 10, p);
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_BAD_FORMAT,
                   {"BASE3 row 1", "byte 1", "243"});
}

TEST(Base3, RejectsPaddingThatIsNotZero)
{
    // cols 3: trits 3 and 4 are padding; byte 121 + 81 has trit 4 = 2.
    std::vector<uint8_t> p = {121 + 81};
    std::vector<int8_t> out(3);
    expect_failure(trit_unpack_base3(p.data(), p.size(), 1, 3, out.data()), TRIT_ERROR_BAD_FORMAT,
                   {"row 0", "byte 0", "padding trit 4"});
}

// ================================================================================================
// TQ2_0
// ================================================================================================

TEST(Tq2_0, RoundTripsBlocks)
{
    for (int64_t rows : {1, 3})
        for (int64_t cols : {256, 768}) {
            SCOPED_TRACE(::testing::Message() << rows << " x " << cols);
            auto w = tt::random_ternary(rows * cols, 300 + rows * 31 + cols);
            std::vector<uint16_t> dbits;
            auto scales = half_exact_scales(rows * cols / 256, 7 + cols, &dbits);
            uint64_t need = 0;
            TRIT_ASSERT_OK(trit_format_bytes(TRIT_WEIGHTS_TQ2_0, rows, cols, &need));
            ASSERT_EQ((uint64_t)rows * cols / 256 * 66, need);
            std::vector<uint8_t> packed(need);
            TRIT_ASSERT_OK(
                trit_pack_tq2_0(w.data(), scales.data(), rows, cols, packed.data(), need));
            EXPECT_EQ(ref_tq2_0(w, dbits, rows, cols), packed);
            std::vector<int8_t> back(rows * cols, 99);
            std::vector<float> sback(scales.size(), -1.f);
            TRIT_ASSERT_OK(
                trit_unpack_tq2_0(packed.data(), need, rows, cols, back.data(), sback.data()));
            EXPECT_EQ(w, back);
            EXPECT_EQ(scales, sback);
        }
}

TEST(Tq2_0, HandCheckedBlock)
{
    // All weights 0 (code 1: every qs byte 0x55) except w0 = +1, w1 = -1, w32 = -1, w127 = +1,
    // w128 = +1, w255 = -1; d = 0.5 = fp16 0x3800.
    // qs[0]  = weights 0, 32, 64, 96 at shifts 0, 2, 4, 6: codes 2,0,1,1 -> 0x52
    // qs[1]  = weights 1, 33, 65, 97:                      codes 0,1,1,1 -> 0x54
    // qs[31] = weights 31, 63, 95, 127:                    codes 1,1,1,2 -> 0x95
    // qs[32] = weights 128, 160, 192, 224:                 codes 2,1,1,1 -> 0x56
    // qs[63] = weights 159, 191, 223, 255:                 codes 1,1,1,0 -> 0x15
    std::vector<int8_t> w(256, 0);
    w[0] = 1, w[1] = -1, w[32] = -1, w[127] = 1, w[128] = 1, w[255] = -1;
    std::vector<uint8_t> block(66, 0x55);
    block[0] = 0x52, block[1] = 0x54, block[31] = 0x95, block[32] = 0x56, block[63] = 0x15;
    block[64] = 0x00, block[65] = 0x38;
    const float d = 0.5f;
    std::vector<uint8_t> out(66);
    TRIT_ASSERT_OK(trit_pack_tq2_0(w.data(), &d, 1, 256, out.data(), out.size()));
    EXPECT_EQ(block, out);
    std::vector<int8_t> back(256);
    float dback = 0;
    TRIT_ASSERT_OK(trit_unpack_tq2_0(block.data(), block.size(), 1, 256, back.data(), &dback));
    EXPECT_EQ(w, back);
    EXPECT_EQ(0.5f, dback);
}

TEST(Tq2_0, RejectsCode3AndNonFiniteScale)
{
    auto w = tt::random_ternary(2 * 512, 11);
    std::vector<uint16_t> dbits;
    auto scales = half_exact_scales(4, 12, &dbits);
    std::vector<uint8_t> good = ref_tq2_0(w, dbits, 2, 512);

    std::vector<uint8_t> bad = good;
    bad[3 * 66 + 33] |= 3u << 6; // row 1 block 1, qs byte 33: weight 128 + 96 + 1 = 225
    std::vector<int8_t> out(1024, 5);
    std::vector<float> s(4, 5.f);
    expect_failure(trit_unpack_tq2_0(bad.data(), bad.size(), 2, 512, out.data(), s.data()),
                   TRIT_ERROR_BAD_FORMAT, {"row 1 block 1", "qs byte 33", "code 3", "weight 225"});
    for (int8_t v : out)
        ASSERT_EQ(5, v);
    for (float v : s)
        ASSERT_EQ(5.f, v);

    bad = good;
    bad[2 * 66 + 65] = 0x7c; // row 1 block 0: d = 0x7c.. is infinity or NaN
    bad[2 * 66 + 64] = 0x01;
    expect_failure(trit_unpack_tq2_0(bad.data(), bad.size(), 2, 512, out.data(), s.data()),
                   TRIT_ERROR_BAD_FORMAT, {"row 1 block 0", "0x7c01", "not finite"});
    Host host;
    trit_ternary_desc d = make_desc(TRIT_WEIGHTS_TQ2_0, 2, 512, bad);
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_BAD_FORMAT,
                   {"ternary", "TQ2_0 row 1 block 0"});
}

TEST(Tq2_0, RejectsColsNotMultipleOf256)
{
    std::vector<int8_t> w(300, 0);
    std::vector<float> s(2, 1.f);
    std::vector<uint8_t> out(1000);
    expect_failure(trit_pack_tq2_0(w.data(), s.data(), 1, 300, out.data(), out.size()),
                   TRIT_ERROR_UNSUPPORTED, {"TQ2_0", "300"});
    trit_ternary_desc d = make_desc(TRIT_WEIGHTS_TQ2_0, 1, 300, out);
    Host host;
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_UNSUPPORTED,
                   {"TQ2_0", "256", "300"});
}

// ================================================================================================
// TQ1_0
// ================================================================================================

TEST(Tq1_0, RoundTripsBlocks)
{
    for (int64_t rows : {1, 3})
        for (int64_t cols : {256, 768}) {
            SCOPED_TRACE(::testing::Message() << rows << " x " << cols);
            auto w = tt::random_ternary(rows * cols, 400 + rows * 31 + cols);
            std::vector<uint16_t> dbits;
            auto scales = half_exact_scales(rows * cols / 256, 9 + cols, &dbits);
            uint64_t need = 0;
            TRIT_ASSERT_OK(trit_format_bytes(TRIT_WEIGHTS_TQ1_0, rows, cols, &need));
            ASSERT_EQ((uint64_t)rows * cols / 256 * 54, need);
            std::vector<uint8_t> packed(need);
            TRIT_ASSERT_OK(
                trit_pack_tq1_0(w.data(), scales.data(), rows, cols, packed.data(), need));
            EXPECT_EQ(ref_tq1_0(w, dbits, rows, cols), packed);
            std::vector<int8_t> back(rows * cols, 99);
            std::vector<float> sback(scales.size(), -1.f);
            TRIT_ASSERT_OK(
                trit_unpack_tq1_0(packed.data(), need, rows, cols, back.data(), sback.data()));
            EXPECT_EQ(w, back);
            EXPECT_EQ(scales, sback);
        }
}

TEST(Tq1_0, HandCheckedBlock)
{
    // All weights 0 except the ones below; d = -2 = fp16 0xC000.
    // A qs byte of five zero weights: codes 1,1,1,1,1 -> v = 121 -> ceil(121*256/243) = 128.
    // A qh byte of four zero weights: v = 40 * 3 = 120 -> ceil(30720/243) = 127.
    // qs[0] = weights 0, 32, 64, 96, 128 (most significant first) = +1,-1,0,+1,-1:
    //   codes 2,0,1,2,0 -> v = 162 + 0 + 9 + 6 + 0 = 177 -> ceil(45312/243) = 187.
    // qs[32] = weights 160, 176, 192, 208, 224, all -1: v = 0 -> 0.
    // qs[47] = weights 175, 191, 207, 223, 239 = 0,0,0,0,+1: v = 122 -> ceil(31232/243) = 129.
    // qh[1] = weights 241, 245, 249, 253, all +1: v = 80 * 3 = 240 -> ceil(61440/243) = 253.
    std::vector<int8_t> w(256, 0);
    w[0] = 1, w[32] = -1, w[96] = 1, w[128] = -1;
    for (int k : {160, 176, 192, 208, 224})
        w[k] = -1;
    w[239] = 1;
    for (int k : {241, 245, 249, 253})
        w[k] = 1;
    std::vector<uint8_t> block(54, 128);
    block[0] = 187, block[32] = 0, block[47] = 129;
    block[48] = 127, block[49] = 253, block[50] = 127, block[51] = 127;
    block[52] = 0x00, block[53] = 0xC0;
    const float d = -2.f;
    std::vector<uint8_t> out(54);
    TRIT_ASSERT_OK(trit_pack_tq1_0(w.data(), &d, 1, 256, out.data(), out.size()));
    EXPECT_EQ(block, out);
    std::vector<int8_t> back(256);
    float dback = 0;
    TRIT_ASSERT_OK(trit_unpack_tq1_0(block.data(), block.size(), 1, 256, back.data(), &dback));
    EXPECT_EQ(w, back);
    EXPECT_EQ(-2.f, dback);
}

// Trit n of a byte q is ((uint8_t)(q * 3^n) * 3) >> 8, which is at most (255 * 3) >> 8 = 2: every
// byte value decodes to valid trits, so TQ1_0 has no invalid byte and none may be rejected (ggml
// decodes them all). It is the base-3 expansion of q / 256, i.e. the 5 trits of
// floor(243 q / 256); the 13 byte values the encoder never produces read as their neighbour's.
TEST(Tq1_0, EveryByteValueDecodesAsGgmlDoes)
{
    int produced[256] = {0};
    for (int v = 0; v < 243; v++)
        produced[(v * 256 + 242) / 243]++;
    int unused = 0;
    for (int q = 0; q < 256; q++) {
        EXPECT_LE(produced[q], 1) << "two 5-trit values encode to byte " << q;
        unused += produced[q] == 0;
    }
    EXPECT_EQ(13, unused);

    for (int q = 0; q < 256; q++) {
        SCOPED_TRACE(::testing::Message() << "byte " << q);
        std::vector<uint8_t> block(54, (uint8_t)q);
        block[52] = 0x00, block[53] = 0x3c; // d = 1
        std::vector<int8_t> w(256, 99);
        float d = 0;
        TRIT_ASSERT_OK(trit_unpack_tq1_0(block.data(), block.size(), 1, 256, w.data(), &d));
        int v = 243 * q / 256; // the 5 trits the byte stands for
        int t[5];
        for (int n = 4, x = v; n >= 0; n--, x /= 3)
            t[n] = x % 3;
        for (int m = 0; m < 32; m++)
            for (int n = 0; n < 5; n++)
                ASSERT_EQ(t[n] - 1, w[m + 32 * n]) << "qs weight " << m + 32 * n;
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 5; n++)
                ASSERT_EQ(t[n] - 1, w[160 + m + 16 * n]);
        for (int j = 0; j < 4; j++)
            for (int n = 0; n < 4; n++)
                ASSERT_EQ(t[n] - 1, w[240 + j + 4 * n]) << "qh weight " << 240 + j + 4 * n;
        Host host;
        trit_ternary_desc desc = make_desc(TRIT_WEIGHTS_TQ1_0, 1, 256, block);
        TRIT_ASSERT_OK(trit_ternary_host_from_desc(&desc, nullptr, &host.h));
        std::vector<int8_t> canon(256);
        TRIT_ASSERT_OK(trit_unpack_packed2(host.h.codes, host.h.row_bytes, 1, 256, canon.data()));
        EXPECT_EQ(w, canon);
    }
}

TEST(Tq1_0, RejectsNonFiniteScale)
{
    std::vector<uint8_t> block(54 * 2, 128);
    block[52] = 0x00, block[53] = 0x3c;
    block[54 + 52] = 0x00, block[54 + 53] = 0xfc; // row 0 block 1: d = -inf
    std::vector<int8_t> w(512, 3);
    std::vector<float> s(2, 3.f);
    expect_failure(trit_unpack_tq1_0(block.data(), block.size(), 1, 512, w.data(), s.data()),
                   TRIT_ERROR_BAD_FORMAT, {"TQ1_0 row 0 block 1", "0xfc00", "not finite"});
    for (int8_t v : w)
        ASSERT_EQ(3, v);
    EXPECT_EQ(3.f, s[0]);
}

// ================================================================================================
// I2_S
// ================================================================================================

TEST(I2S, RoundTripsGroups)
{
    for (int64_t rows : {1, 3})
        for (int64_t cols : {128, 384}) {
            SCOPED_TRACE(::testing::Message() << rows << " x " << cols);
            auto w = tt::random_ternary(rows * cols, 500 + rows * 31 + cols);
            const float scale = 0.0371f;
            uint64_t need = 0;
            TRIT_ASSERT_OK(trit_format_bytes(TRIT_WEIGHTS_I2_S, rows, cols, &need));
            ASSERT_EQ((uint64_t)rows * cols / 4 + 4, need);
            std::vector<uint8_t> packed(need + 28, 0xEE); // files pad to 32 bytes
            TRIT_ASSERT_OK(trit_pack_i2_s(w.data(), scale, rows, cols, packed.data(), need));
            EXPECT_EQ(ref_i2_s(w, scale),
                      std::vector<uint8_t>(packed.begin(), packed.begin() + need));
            for (size_t i = need; i < packed.size(); i++)
                ASSERT_EQ(0xEE, packed[i]);
            std::vector<int8_t> back(rows * cols, 99);
            float sback = 0;
            TRIT_ASSERT_OK(
                trit_unpack_i2_s(packed.data(), packed.size(), rows, cols, back.data(), &sback));
            EXPECT_EQ(w, back);
            EXPECT_EQ(scale, sback);
        }
}

TEST(I2S, HandCheckedGroup)
{
    // One group of 128; byte p holds weights p, p+32, p+64, p+96 at shifts 6, 4, 2, 0.
    // All weights 0 (byte 0x55) except w0 = +1, w32 = -1, w96 = +1, w31 = -1, w127 = -1:
    // byte 0  = codes 2,0,1,2 -> 0x80 | 0x00 | 0x04 | 0x02 = 0x86
    // byte 31 = codes 0,1,1,0 -> 0x00 | 0x10 | 0x04 | 0x00 = 0x14
    // then the f32 scale 0.25 = 0x3E800000, little-endian.
    std::vector<int8_t> w(128, 0);
    w[0] = 1, w[32] = -1, w[96] = 1, w[31] = -1, w[127] = -1;
    std::vector<uint8_t> bytes(36, 0x55);
    bytes[0] = 0x86, bytes[31] = 0x14;
    bytes[32] = 0x00, bytes[33] = 0x00, bytes[34] = 0x80, bytes[35] = 0x3E;
    std::vector<uint8_t> out(36);
    TRIT_ASSERT_OK(trit_pack_i2_s(w.data(), 0.25f, 1, 128, out.data(), out.size()));
    EXPECT_EQ(bytes, out);
    std::vector<int8_t> back(128);
    float s = 0;
    TRIT_ASSERT_OK(trit_unpack_i2_s(bytes.data(), bytes.size(), 1, 128, back.data(), &s));
    EXPECT_EQ(w, back);
    EXPECT_EQ(0.25f, s);
}

TEST(I2S, RejectsCode3NaNScaleAndBadCols)
{
    auto w = tt::random_ternary(2 * 256, 21);
    std::vector<uint8_t> good = ref_i2_s(w, 1.5f);
    std::vector<uint8_t> bad = good;
    bad[64 + 32 + 5] |= 3u << 4; // row 1 (64 bytes a row), group 1, byte 5: column 128+32+5
    std::vector<int8_t> out(512, 9);
    float s = 9.f;
    expect_failure(trit_unpack_i2_s(bad.data(), bad.size(), 2, 256, out.data(), &s),
                   TRIT_ERROR_BAD_FORMAT, {"I2_S row 1", "byte 37", "code 3", "column 165"});
    for (int8_t v : out)
        ASSERT_EQ(9, v);
    EXPECT_EQ(9.f, s);

    bad = good;
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(&bad[128], &nan, 4);
    expect_failure(trit_unpack_i2_s(bad.data(), bad.size(), 2, 256, out.data(), &s),
                   TRIT_ERROR_BAD_FORMAT, {"scale", "byte 128", "not finite"});
    Host host;
    trit_ternary_desc d = make_desc(TRIT_WEIGHTS_I2_S, 2, 256, bad);
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_BAD_FORMAT,
                   {"ternary", "I2_S", "not finite"});

    std::vector<uint8_t> buf(1000);
    expect_failure(trit_pack_i2_s(out.data(), 1.f, 1, 200, buf.data(), buf.size()),
                   TRIT_ERROR_UNSUPPORTED, {"I2_S", "128", "200"});
    std::vector<int8_t> ok(256, 0);
    expect_failure(trit_pack_i2_s(ok.data(), INFINITY, 1, 256, buf.data(), buf.size()),
                   TRIT_ERROR_BAD_FORMAT, {"scale inf"});
}

// ================================================================================================
// Conversion to the canonical host form
// ================================================================================================

// Packs `w` in every format and checks that each converts to the same canonical codes, with the
// scales each format carries.
TEST(Formats, HostFormFromEveryFormatHasTheSameCodes)
{
    const int64_t rows = 3, cols = 768;
    auto w = tt::random_ternary(rows * cols, 77);
    const std::vector<uint8_t> canon = ref_packed2(w, rows, cols);
    std::vector<uint16_t> dbits;
    const auto bscales = half_exact_scales(rows * cols / 256, 78, &dbits);
    const auto rscales = tt::random_floats(rows, 79, 0.5f, 2.f);

    std::vector<uint8_t> bytes[6];
    bytes[TRIT_WEIGHTS_I8] = as_bytes(w);
    bytes[TRIT_WEIGHTS_PACKED2] = canon;
    bytes[TRIT_WEIGHTS_BASE3] = ref_base3(w, rows, cols);
    bytes[TRIT_WEIGHTS_TQ2_0] = ref_tq2_0(w, dbits, rows, cols);
    bytes[TRIT_WEIGHTS_TQ1_0] = ref_tq1_0(w, dbits, rows, cols);
    bytes[TRIT_WEIGHTS_I2_S] = ref_i2_s(w, 0.125f);

    for (int f = 0; f < 6; f++) {
        SCOPED_TRACE(::testing::Message() << "format " << f);
        trit_ternary_desc d = make_desc((trit_weight_format)f, rows, cols, bytes[f]);
        d.scale_kind = TRIT_SCALE_ROW;
        d.scales = rscales.data(); // ignored by the formats that carry scales
        Host host;
        TRIT_ASSERT_OK(trit_ternary_host_from_desc(&d, nullptr, &host.h));
        EXPECT_EQ(sizeof(trit_ternary_host), host.h.size);
        EXPECT_EQ(rows, host.h.rows);
        EXPECT_EQ(cols, host.h.cols);
        ASSERT_EQ((uint64_t)cols / 4, host.h.row_bytes);
        EXPECT_EQ(canon, std::vector<uint8_t>(host.h.codes, host.h.codes + rows * cols / 4));
        std::vector<float> got(host.h.scales, host.h.scales + host.h.scale_count);
        if (f == TRIT_WEIGHTS_TQ2_0 || f == TRIT_WEIGHTS_TQ1_0) {
            EXPECT_EQ(TRIT_SCALE_BLOCK, host.h.scale_kind);
            EXPECT_EQ(bscales, got);
        } else if (f == TRIT_WEIGHTS_I2_S) {
            EXPECT_EQ(TRIT_SCALE_TENSOR, host.h.scale_kind);
            EXPECT_EQ(std::vector<float>{0.125f}, got);
        } else {
            EXPECT_EQ(TRIT_SCALE_ROW, host.h.scale_kind);
            EXPECT_EQ(rscales, got);
        }
    }
}

TEST(Formats, HostFormFromOddShapesPadsWithZeroCodes)
{
    for (int64_t rows : kRows)
        for (int64_t cols : kOddCols) {
            SCOPED_TRACE(::testing::Message() << rows << " x " << cols);
            auto w = tt::random_ternary(rows * cols, 600 + rows * 13 + cols);
            const std::vector<uint8_t> canon = ref_packed2(w, rows, cols);
            uint64_t nblocks = ceil_div(cols, 256);
            auto sc = tt::random_floats(rows * nblocks, 3, -2.f, 2.f);
            for (auto f : {TRIT_WEIGHTS_I8, TRIT_WEIGHTS_PACKED2, TRIT_WEIGHTS_BASE3}) {
                std::vector<uint8_t> data = f == TRIT_WEIGHTS_I8        ? as_bytes(w)
                                            : f == TRIT_WEIGHTS_PACKED2 ? canon
                                                                        : ref_base3(w, rows, cols);
                trit_ternary_desc d = make_desc(f, rows, cols, data);
                d.scale_kind = TRIT_SCALE_BLOCK;
                d.scales = sc.data();
                Host host;
                TRIT_ASSERT_OK(trit_ternary_host_from_desc(&d, nullptr, &host.h));
                EXPECT_EQ(canon, std::vector<uint8_t>(host.h.codes,
                                                      host.h.codes + rows * host.h.row_bytes));
                EXPECT_EQ(rows * nblocks, host.h.scale_count);
                EXPECT_EQ(sc, std::vector<float>(host.h.scales, host.h.scales + sc.size()));
            }
        }
}

TEST(Formats, HostFormWithoutScalesHasOneScaleOfOne)
{
    std::vector<int8_t> w = {1, 0, -1};
    auto data = as_bytes(w);
    trit_ternary_desc d = make_desc(TRIT_WEIGHTS_I8, 1, 3, data);
    d.scale_kind = TRIT_SCALE_ROW; // no scales given: the kind does not apply
    Host host;
    TRIT_ASSERT_OK(trit_ternary_host_from_desc(&d, nullptr, &host.h));
    EXPECT_EQ(TRIT_SCALE_TENSOR, host.h.scale_kind);
    ASSERT_EQ(1u, host.h.scale_count);
    EXPECT_EQ(1.f, host.h.scales[0]);
    EXPECT_EQ(0x46, host.h.codes[0]); // codes 2,1,0 then padding 1: 0b01'00'01'10
}

struct CountingAllocator {
    int allocs = 0, frees = 0, fail_at = -1; // fail the fail_at-th allocation (0-based)
    static void *alloc(void *user, size_t bytes)
    {
        auto *self = static_cast<CountingAllocator *>(user);
        if (self->allocs == self->fail_at) {
            self->fail_at = -1;
            return nullptr;
        }
        self->allocs++;
        return std::malloc(bytes);
    }
    static void free(void *user, void *p)
    {
        static_cast<CountingAllocator *>(user)->frees++;
        std::free(p);
    }
    trit_allocator get() { return trit_allocator{this, &alloc, &free}; }
};

TEST(Formats, HostFormUsesTheGivenAllocator)
{
    auto w = tt::random_ternary(4 * 512, 8);
    std::vector<uint16_t> dbits;
    half_exact_scales(8, 9, &dbits);
    auto data = ref_tq1_0(w, dbits, 4, 512);
    trit_ternary_desc d = make_desc(TRIT_WEIGHTS_TQ1_0, 4, 512, data);

    CountingAllocator counter;
    trit_allocator a = counter.get();
    trit_ternary_host h{};
    TRIT_ASSERT_OK(trit_ternary_host_from_desc(&d, &a, &h));
    EXPECT_EQ(&counter, h.allocator.user);
    EXPECT_GE(counter.allocs, 2);
    trit_ternary_host_release(&h);
    EXPECT_EQ(counter.allocs, counter.frees);
    EXPECT_EQ(nullptr, h.codes);
    trit_ternary_host_release(&h); // a released struct may be released again
    trit_ternary_host_release(nullptr);
    EXPECT_EQ(counter.allocs, counter.frees);

    // An allocator with a NULL member means malloc / free.
    trit_allocator half_set{&counter, &CountingAllocator::alloc, nullptr};
    int before = counter.allocs;
    Host host;
    TRIT_ASSERT_OK(trit_ternary_host_from_desc(&d, &half_set, &host.h));
    EXPECT_EQ(before, counter.allocs);
    EXPECT_EQ(nullptr, host.h.allocator.alloc);
}

TEST(Formats, HostFormReportsOutOfMemoryWithoutLeaking)
{
    auto w = tt::random_ternary(2 * 7, 8);
    auto data = ref_base3(w, 2, 7);
    trit_ternary_desc d = make_desc(TRIT_WEIGHTS_BASE3, 2, 7, data);
    for (int fail_at = 0; fail_at < 3; fail_at++) {
        CountingAllocator counter;
        counter.fail_at = fail_at;
        trit_allocator a = counter.get();
        trit_ternary_host h;
        std::memset(&h, 0xCD, sizeof(h));
        expect_failure(trit_ternary_host_from_desc(&d, &a, &h), TRIT_ERROR_OUT_OF_MEMORY,
                       {"allocate"});
        EXPECT_EQ(counter.allocs, counter.frees) << "leak when allocation " << fail_at << " fails";
        const unsigned char *raw = reinterpret_cast<const unsigned char *>(&h);
        for (size_t i = 0; i < sizeof(h); i++)
            ASSERT_EQ(0xCD, raw[i]) << "a failed call wrote out_host";
    }
}

// ================================================================================================
// Hostile input
// ================================================================================================

TEST(Formats, RejectsShortDataInEveryFormat)
{
    const int64_t rows = 2, cols = 256;
    for (int f = 0; f < 6; f++) {
        SCOPED_TRACE(::testing::Message() << "format " << f);
        uint64_t need = 0;
        TRIT_ASSERT_OK(trit_format_bytes((trit_weight_format)f, rows, cols, &need));
        std::vector<uint8_t> data(need - 1, 0x55);
        trit_ternary_desc d = make_desc((trit_weight_format)f, rows, cols, data);
        Host host;
        expect_failure(
            trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_BAD_FORMAT,
            {"too short", std::to_string(need).c_str(), std::to_string(need - 1).c_str()});
    }
    std::vector<uint8_t> in(10);
    std::vector<int8_t> out(256);
    float s;
    expect_failure(trit_unpack_tq2_0(in.data(), in.size(), 1, 256, out.data(), &s),
                   TRIT_ERROR_BAD_FORMAT, {"66", "10"});
    expect_failure(trit_unpack_i2_s(in.data(), 64, 1, 256, out.data(), &s), TRIT_ERROR_BAD_FORMAT,
                   {"68", "64"});
}

TEST(Formats, RejectsTooSmallOutputWithoutWriting)
{
    std::vector<int8_t> w(256, 1);
    float s = 1.f;
    std::vector<uint8_t> out(100, 0x11);
    expect_failure(trit_pack_packed2(w.data(), 1, 256, out.data(), 63), TRIT_ERROR_OUT_OF_BOUNDS,
                   {"64", "63"});
    expect_failure(trit_pack_base3(w.data(), 1, 256, out.data(), 51), TRIT_ERROR_OUT_OF_BOUNDS,
                   {"52", "51"});
    expect_failure(trit_pack_tq2_0(w.data(), &s, 1, 256, out.data(), 65), TRIT_ERROR_OUT_OF_BOUNDS,
                   {"66", "65"});
    expect_failure(trit_pack_tq1_0(w.data(), &s, 1, 256, out.data(), 53), TRIT_ERROR_OUT_OF_BOUNDS,
                   {"54", "53"});
    expect_failure(trit_pack_i2_s(w.data(), s, 1, 256, out.data(), 67), TRIT_ERROR_OUT_OF_BOUNDS,
                   {"68", "67"});
    for (uint8_t b : out)
        ASSERT_EQ(0x11, b);
}

TEST(Formats, RejectsWeightsOutsideMinusOneToOne)
{
    std::vector<int8_t> w(2 * 256, 0);
    w[256 + 9] = 2;
    float s[2] = {1.f, 1.f};
    std::vector<uint8_t> out(1000, 0x22);
    expect_failure(trit_pack_packed2(w.data(), 2, 256, out.data(), out.size()),
                   TRIT_ERROR_BAD_FORMAT, {"row 1", "column 9", "weight 2"});
    expect_failure(trit_pack_tq1_0(w.data(), s, 2, 256, out.data(), out.size()),
                   TRIT_ERROR_BAD_FORMAT, {"row 1", "column 9"});
    w[256 + 9] = -128;
    expect_failure(trit_pack_i2_s(w.data(), 1.f, 2, 256, out.data(), out.size()),
                   TRIT_ERROR_BAD_FORMAT, {"weight -128"});
    for (uint8_t b : out)
        ASSERT_EQ(0x22, b);
    std::vector<uint8_t> data = as_bytes(w);
    trit_ternary_desc d = make_desc(TRIT_WEIGHTS_I8, 2, 256, data);
    Host host;
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_BAD_FORMAT,
                   {"ternary", "row 1", "column 9", "-128"});
}

TEST(Formats, RejectsNonFiniteOrUnrepresentableScales)
{
    std::vector<int8_t> w(512, 1);
    std::vector<uint8_t> out(200, 0x33);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    float s[2] = {1.f, nan};
    expect_failure(trit_pack_tq2_0(w.data(), s, 1, 512, out.data(), out.size()),
                   TRIT_ERROR_BAD_FORMAT, {"row 0 block 1", "nan", "fp16"});
    s[1] = 65520.f; // rounds to fp16 infinity
    expect_failure(trit_pack_tq1_0(w.data(), s, 1, 512, out.data(), out.size()),
                   TRIT_ERROR_BAD_FORMAT, {"row 0 block 1", "65520", "fp16"});
    s[1] = 1e-9f; // below half the smallest fp16 subnormal: would become 0
    expect_failure(trit_pack_tq2_0(w.data(), s, 1, 512, out.data(), out.size()),
                   TRIT_ERROR_BAD_FORMAT, {"row 0 block 1", "underflows"});
    for (uint8_t b : out)
        ASSERT_EQ(0x33, b);
    s[1] = 65504.f; // the largest finite fp16 is fine
    TRIT_EXPECT_OK(trit_pack_tq2_0(w.data(), s, 1, 512, out.data(), out.size()));

    // Caller's scales in the descriptor.
    auto data = as_bytes(std::vector<int8_t>(3 * 5, 0));
    trit_ternary_desc d = make_desc(TRIT_WEIGHTS_I8, 3, 5, data);
    float rs[3] = {1.f, 2.f, nan};
    d.scale_kind = TRIT_SCALE_ROW;
    d.scales = rs;
    Host host;
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_BAD_FORMAT,
                   {"scale 2", "nan"});
    rs[2] = -INFINITY;
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_BAD_FORMAT,
                   {"scale 2", "inf"});
}

TEST(Formats, RejectsOverflowingShapes)
{
    std::vector<uint8_t> buf(64);
    std::vector<int8_t> w(64);
    Host host;
    // rows * cols overflows 64 bits, though the PACKED2 byte count (rows * cols / 4) does not.
    trit_ternary_desc d = make_desc(TRIT_WEIGHTS_PACKED2, (int64_t)1 << 62, 8, buf);
    d.data_bytes = UINT64_MAX;
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_OVERFLOW,
                   {"overflow"});
    d = make_desc(TRIT_WEIGHTS_I8, INT64_MAX, INT64_MAX, buf);
    d.data_bytes = UINT64_MAX;
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_OVERFLOW, {"I8"});
    expect_failure(
        trit_pack_packed2(w.data(), (int64_t)1 << 40, (int64_t)1 << 30, buf.data(), UINT64_MAX),
        TRIT_ERROR_OVERFLOW, {"overflow"});
    // The BASE3 byte count fits; the int8 output of rows * cols does not.
    expect_failure(trit_unpack_base3(buf.data(), UINT64_MAX, INT64_MAX, 5, w.data()),
                   TRIT_ERROR_OVERFLOW, {"overflow"});
    float s = 1.f;
    expect_failure(trit_unpack_i2_s(buf.data(), UINT64_MAX, INT64_MAX / 2, 128, w.data(), &s),
                   TRIT_ERROR_OVERFLOW, {"I2_S"});
    EXPECT_EQ(nullptr, host.h.codes);
}

TEST(Formats, RejectsNullPointersAndBadDescriptors)
{
    std::vector<int8_t> w(256, 0);
    std::vector<uint8_t> buf(256, 0x55);
    float s = 1.f;
    Host host;
    trit_ternary_desc d = make_desc(TRIT_WEIGHTS_PACKED2, 1, 256, buf);
    expect_failure(trit_ternary_host_from_desc(nullptr, nullptr, &host.h),
                   TRIT_ERROR_INVALID_ARGUMENT, {"desc"});
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, nullptr), TRIT_ERROR_INVALID_ARGUMENT,
                   {"out_host"});
    d.data = nullptr;
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_INVALID_ARGUMENT,
                   {"data"});
    d = make_desc(TRIT_WEIGHTS_PACKED2, 1, 256, buf);
    d.size = 8;
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_INVALID_ARGUMENT,
                   {"size"});
    d = make_desc((trit_weight_format)-1, 1, 256, buf);
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_INVALID_ARGUMENT,
                   {"unknown weight format -1"});
    d = make_desc(TRIT_WEIGHTS_PACKED2, 1, 256, buf);
    d.scales = &s;
    d.scale_kind = (trit_scale_kind)3;
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_INVALID_ARGUMENT,
                   {"unknown scale kind 3"});
    d = make_desc(TRIT_WEIGHTS_PACKED2, 0, 256, buf);
    expect_failure(trit_ternary_host_from_desc(&d, nullptr, &host.h), TRIT_ERROR_INVALID_ARGUMENT,
                   {"0 x 256"});
    EXPECT_EQ(nullptr, host.h.codes);

    expect_failure(trit_pack_packed2(nullptr, 1, 4, buf.data(), 1), TRIT_ERROR_INVALID_ARGUMENT,
                   {"w is NULL"});
    expect_failure(trit_pack_base3(w.data(), 1, 4, nullptr, 1), TRIT_ERROR_INVALID_ARGUMENT,
                   {"out is NULL"});
    expect_failure(trit_pack_tq2_0(w.data(), nullptr, 1, 256, buf.data(), 66),
                   TRIT_ERROR_INVALID_ARGUMENT, {"block_scales"});
    expect_failure(trit_unpack_packed2(nullptr, 1, 1, 4, w.data()), TRIT_ERROR_INVALID_ARGUMENT,
                   {"in is NULL"});
    expect_failure(trit_unpack_base3(buf.data(), 1, 1, 4, nullptr), TRIT_ERROR_INVALID_ARGUMENT,
                   {"out_w"});
    expect_failure(trit_unpack_tq1_0(buf.data(), 54, 1, 256, w.data(), nullptr),
                   TRIT_ERROR_INVALID_ARGUMENT, {"out_block_scales"});
    expect_failure(trit_unpack_i2_s(buf.data(), 68, 1, 128, w.data(), nullptr),
                   TRIT_ERROR_INVALID_ARGUMENT, {"out_scale"});
    expect_failure(trit_pack_i2_s(w.data(), 1.f, -5, 128, buf.data(), buf.size()),
                   TRIT_ERROR_INVALID_ARGUMENT, {"-5 x 128"});
}

TEST(Formats, SuccessClearsTheLastError)
{
    uint64_t n;
    EXPECT_NE(TRIT_OK, trit_format_bytes(TRIT_WEIGHTS_I8, 0, 0, &n));
    EXPECT_STRNE("", trit_last_error());
    std::vector<int8_t> w = {1, -1};
    uint8_t out = 0;
    TRIT_EXPECT_OK(trit_pack_packed2(w.data(), 1, 2, &out, 1));
    EXPECT_STREQ("", trit_last_error());
}

// ================================================================================================
// Half and bf16
// ================================================================================================

bool half_is_nan(uint16_t h)
{
    return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
}

TEST(Half, EveryBitPatternRoundTripsThroughFloat)
{
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = trit_half_to_float(h);
        uint16_t back = trit_float_to_half(f);
        int exp = (h >> 10) & 31, mant = h & 1023;
        double sign = (h & 0x8000) ? -1.0 : 1.0;
        if (half_is_nan(h)) {
            ASSERT_TRUE(std::isnan(f)) << std::hex << h;
            ASSERT_TRUE(half_is_nan(back)) << std::hex << h << " -> " << back;
            ASSERT_EQ(h & 0x8000, back & 0x8000) << "NaN sign lost for " << std::hex << h;
            continue;
        }
        // Value from the definition of binary16, independent of the implementation.
        double expect = exp == 31  ? sign * INFINITY
                        : exp == 0 ? sign * std::ldexp((double)mant, -24)
                                   : sign * std::ldexp(1024.0 + mant, exp - 25);
        ASSERT_EQ(expect, (double)f) << "half 0x" << std::hex << h;
        ASSERT_EQ(std::signbit(expect), std::signbit(f)) << "half 0x" << std::hex << h;
        ASSERT_EQ(h, back) << "half 0x" << std::hex << h;
    }
}

TEST(Half, RoundsHandPickedFloatsToNearestEven)
{
    const float t24 = std::ldexp(1.f, -24), t25 = std::ldexp(1.f, -25);
    struct Case {
        float f;
        uint16_t h;
        const char *why;
    } cases[] = {
        {1.f, 0x3c00, "one"},
        {-0.f, 0x8000, "negative zero"},
        {0.1f, 0x2e66, "0.1: mantissa 614.4 rounds down"},
        {1.f + std::ldexp(1.f, -11), 0x3c00, "tie between 1 and 1+2^-10 goes to even 1"},
        {1.f + 3 * std::ldexp(1.f, -11), 0x3c02, "tie between 0x3c01 and 0x3c02 goes to even"},
        {1.f + std::ldexp(1.f, -11) + std::ldexp(1.f, -20), 0x3c01, "just above a tie"},
        {65504.f, 0x7bff, "largest finite"},
        {65519.99f, 0x7bff, "below the midpoint to 65536"},
        {65520.f, 0x7c00, "midpoint ties to even, which is infinity"},
        {-1e6f, 0xfc00, "overflow to -inf"},
        {INFINITY, 0x7c00, "inf"},
        {t24, 0x0001, "smallest subnormal"},
        {t25, 0x0000, "half the smallest subnormal: tie to even zero"},
        {std::nextafter(t25, 1.f), 0x0001, "just above that tie"},
        {-3 * t25, 0x8002, "1.5 subnormal units: tie to even 2"},
        {5 * t25, 0x0002, "2.5 subnormal units: tie to even 2"},
        {1023 * t24, 0x03ff, "largest subnormal"},
        {std::ldexp(1.f, -14) - t25, 0x0400, "tie between largest subnormal and smallest normal"},
        {std::ldexp(1.f, -14), 0x0400, "smallest normal"},
        {1e-10f, 0x0000, "far below the subnormals"},
        {std::numeric_limits<float>::denorm_min(), 0x0000, "float subnormal"},
    };
    for (const Case &c : cases)
        EXPECT_EQ(c.h, trit_float_to_half(c.f))
            << c.why << ": " << c.f << " gave 0x" << std::hex << trit_float_to_half(c.f);
    EXPECT_TRUE(half_is_nan(trit_float_to_half(std::numeric_limits<float>::quiet_NaN())));
    EXPECT_TRUE(half_is_nan(trit_float_to_half(bits_to_float(0x7f800001u)))) // payload below fp16
        << std::hex << trit_float_to_half(bits_to_float(0x7f800001u));
    EXPECT_TRUE(half_is_nan(trit_float_to_half(bits_to_float(0xff800001u))));
}

#if TEST_HAVE_F16C_ORACLE
__attribute__((target("f16c"))) uint16_t f16c_float_to_half(float f)
{
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
#endif

// The hardware converter is an independent oracle for the rounding of every float class.
TEST(Half, MatchesF16cOnRandomAndBoundaryFloats)
{
#if TEST_HAVE_F16C_ORACLE
    if (!__builtin_cpu_supports("f16c"))
        GTEST_SKIP() << "this CPU has no F16C";
    std::mt19937 rng(1234);
    auto check = [](uint32_t bits) {
        float f = bits_to_float(bits);
        uint16_t got = trit_float_to_half(f), want = f16c_float_to_half(f);
        if (std::isnan(f))
            ASSERT_TRUE(half_is_nan(got)) << std::hex << bits;
        else
            ASSERT_EQ(want, got) << "float bits 0x" << std::hex << bits;
    };
    for (int i = 0; i < (1 << 22); i++)
        check(rng());
    // Every float within 2^16 ulps around each half-precision boundary region: zero,
    // subnormal/normal, overflow, and around every half value's rounding midpoints in [1, 2).
    for (uint32_t base : {0x00000000u, 0x33000000u, 0x33800000u, 0x387fc000u, 0x38800000u,
                          0x477fe000u, 0x477ff000u, 0x3f800000u, 0x7f800000u})
        for (uint32_t d = 0; d < (1u << 16); d++) {
            check(base + d);
            check((base - d) | 0x80000000u);
        }
#else
    GTEST_SKIP() << "no x86 F16C oracle on this platform";
#endif
}

TEST(Bf16, EveryBitPatternRoundTripsAndRoundsToNearestEven)
{
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = trit_bf16_to_float(h);
        ASSERT_EQ((uint32_t)h << 16, float_to_bits(f));
        uint16_t back = trit_float_to_bf16(f);
        if (std::isnan(f))
            ASSERT_TRUE(std::isnan(trit_bf16_to_float(back))) << std::hex << h;
        else
            ASSERT_EQ(h, back) << std::hex << h;
    }
    struct Case {
        uint32_t f;
        uint16_t h;
        const char *why;
    } cases[] = {
        {0x3f800000u, 0x3f80, "one"},
        {0x3f808000u, 0x3f80, "tie between 0x3f80 and 0x3f81 goes to even"},
        {0x3f818000u, 0x3f82, "tie between 0x3f81 and 0x3f82 goes to even"},
        {0x3f808001u, 0x3f81, "just above a tie"},
        {0x7f7fffffu, 0x7f80, "FLT_MAX rounds up to infinity"},
        {0x7f7f7fffu, 0x7f7f, "just below the overflow midpoint"},
        {0x00000001u, 0x0000, "smallest float subnormal rounds to zero"},
        {0x00008000u, 0x0000, "subnormal tie goes to even zero"},
        {0x00018000u, 0x0002, "subnormal tie goes to even 2"},
        {0x80000000u, 0x8000, "negative zero"},
        {0xff800000u, 0xff80, "-inf"},
    };
    for (const Case &c : cases)
        EXPECT_EQ(c.h, trit_float_to_bf16(bits_to_float(c.f)))
            << c.why << std::hex << ": got 0x" << trit_float_to_bf16(bits_to_float(c.f));
    uint16_t nan = trit_float_to_bf16(bits_to_float(0x7f800001u)); // payload only in low bits
    EXPECT_TRUE(std::isnan(trit_bf16_to_float(nan))) << std::hex << nan;
}

} // namespace

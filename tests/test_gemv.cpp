// test_gemv.cpp — conformance of the fused ternary GEMV on every device found, against the fp64
// reference in reference/ref_gemv.cpp: odd sizes, every epilogue, the RMSNorm prologue, the gated
// pair, f32/f16 activations and outputs, every scale kind, exact INT8 accumulators, and bad input
// through the public API (a clear status and message, and the output left untouched). The CPU
// plugin's ISA levels (cpu.isa=portable/avx2/avx512) are also run side by side.
#include "common.h"
#include "gemv_run.h"

#include <algorithm>
#include <functional>
#include <sstream>

#include "reference/ref_gemv.h"

namespace {

struct Case : tt::GemvSpec {
    std::string describe() const
    {
        std::ostringstream os;
        os << "M=" << m << " K=" << k << " N=" << n << (path == TRIT_GEMV_INT8 ? " int8" : " float")
           << " x=" << trit_dtype_name(x_dtype) << " y=" << trit_dtype_name(y_dtype)
           << " scale=" << (int)scale << (rmsnorm ? " rmsnorm" : "") << (bias ? " bias" : "")
           << (residual ? " residual" : "") << (gated ? " gated" : "") << " act=" << (int)act
           << " seed=" << seed;
        return os.str();
    }
};

struct Outcome {
    std::vector<float> y;
    std::vector<int32_t> acc;
    ref::GemvResult ref;
    double error = INFINITY;
};

int64_t blocks_of(int64_t k)
{
    return (k + TRIT_SCALE_BLOCK_K - 1) / TRIT_SCALE_BLOCK_K;
}

// Runs one case on `dev` and compares it with the reference.
Outcome run_case(trit_device *dev, const Case &c)
{
    Outcome o;
    ref::GemvProblem p = tt::make_gemv_problem(c);
    o.ref = ref::gemv(p);

    tt::GemvRun r = tt::run_gemv(dev, p, c.x_dtype, c.y_dtype, c.accumulators);
    EXPECT_EQ(TRIT_OK, r.status) << c.describe() << ": " << trit_last_error();
    if (r.status != TRIT_OK)
        return o;
    o.y = std::move(r.y);
    o.acc.assign(r.acc.begin(), r.acc.end());
    o.error = tt::rel_error(o.y, o.ref.y);
    return o;
}

// Checks a case against the reference: the output's tolerance, and exact accumulators.
void check_case(trit_device *dev, const Case &c)
{
    SCOPED_TRACE(c.describe());
    Outcome o = run_case(dev, c);
    EXPECT_LT(o.error, tt::tolerance(c.y_dtype));
    if (c.accumulators) {
        ASSERT_EQ(o.ref.acc.size(), o.acc.size());
        size_t bad = 0;
        for (size_t i = 0; i < o.acc.size(); i++) {
            ASSERT_LE(std::llabs(o.ref.acc[i]), (long long)INT32_MAX);
            if ((int64_t)o.acc[i] != o.ref.acc[i] && bad++ < 5)
                ADD_FAILURE() << "accumulator " << i << " (token " << i / c.m << ", row " << i % c.m
                              << "): device " << o.acc[i] << ", reference " << o.ref.acc[i];
        }
        EXPECT_EQ(0u, bad);
    }
}

class GemvTernary : public ::testing::TestWithParam<uint32_t> {
  protected:
    trit_device *dev() { return tt::device(GetParam()); }
};

const int64_t kOddK[] = {1, 3, 5, 7, 33, 129, 257, 1000};

TEST_P(GemvTernary, MatchesReferenceForOddK)
{
    for (int64_t k : kOddK)
        for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8})
            for (int64_t n : {1, 3}) {
                Case c;
                c.m = 19;
                c.k = k;
                c.n = n;
                c.path = path;
                c.seed = (uint64_t)(k * 10 + n);
                check_case(dev(), c);
            }
}

TEST_P(GemvTernary, MatchesReferenceForOneRow)
{
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8})
        for (int64_t n : {1, 2, 16}) {
            Case c;
            c.m = 1;
            c.k = 301;
            c.n = n;
            c.path = path;
            c.seed = 7 + (uint64_t)n;
            check_case(dev(), c);
        }
}

TEST_P(GemvTernary, MatchesReferenceForEveryTokenCount)
{
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8})
        for (int64_t n = 1; n <= TRIT_GEMV_MAX_N; n++) {
            Case c;
            c.m = 45;
            c.k = 259;
            c.n = n;
            c.path = path;
            c.seed = 100 + (uint64_t)n;
            check_case(dev(), c);
        }
}

// Big enough that the work is split across threads and tiles (and past the L2 on the CPU).
TEST_P(GemvTernary, MatchesReferenceAtModelShapes)
{
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8}) {
        Case c;
        c.m = 1001;
        c.k = 2560;
        c.n = 2;
        c.path = path;
        c.scale = TRIT_SCALE_TENSOR;
        c.accumulators = path == TRIT_GEMV_INT8;
        c.seed = 5;
        check_case(dev(), c);
    }
}

TEST_P(GemvTernary, Int8AccumulatorsAreExact)
{
    for (int64_t k : kOddK)
        for (int64_t n : {1, 2, 3, 7, 16}) {
            Case c;
            c.m = 23;
            c.k = k;
            c.n = n;
            c.path = TRIT_GEMV_INT8;
            c.accumulators = true;
            c.scale = n % 2 ? TRIT_SCALE_ROW : TRIT_SCALE_TENSOR;
            c.x_dtype = n == 3 ? TRIT_DTYPE_F16 : TRIT_DTYPE_F32;
            c.seed = (uint64_t)(k * 100 + n);
            check_case(dev(), c);
        }
}

TEST_P(GemvTernary, Int8AccumulatorsAreExactWithRmsNorm)
{
    for (int64_t k : {5, 257, 2560})
        for (int64_t n : {1, 4}) {
            Case c;
            c.m = 29;
            c.k = k;
            c.n = n;
            c.path = TRIT_GEMV_INT8;
            c.rmsnorm = true;
            c.accumulators = true;
            c.seed = (uint64_t)(k + n);
            check_case(dev(), c);
        }
}

// K past 2^21 weights per row: long accumulations stay exact (int32 lanes fold before they
// could overflow).
TEST_P(GemvTernary, Int8AccumulatorsAreExactForLongRows)
{
    Case c;
    c.m = 3;
    c.k = (1 << 21) + 77;
    c.n = 2;
    c.path = TRIT_GEMV_INT8;
    c.accumulators = true;
    c.seed = 3;
    check_case(dev(), c);
}

// x * s landing exactly halfway between integers rounds to even, as trit.h specifies.
TEST_P(GemvTernary, Int8QuantizationRoundsTiesToEven)
{
    const std::vector<float> xs = {127.f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.5f, 100.5f};
    const int64_t k = (int64_t)xs.size();
    Case c;
    c.m = k;
    c.k = k;
    c.path = TRIT_GEMV_INT8;
    c.scale = TRIT_SCALE_TENSOR;
    c.accumulators = true;
    c.x = xs; // a = 127, so s = 1 and q = rint(x)
    c.w.assign((size_t)(k * k), 0);
    for (int64_t i = 0; i < k; i++)
        c.w[(size_t)(i * k + i)] = 1; // row i reads q[i]
    Outcome o = run_case(dev(), c);
    const std::vector<int32_t> want = {127, 0, 2, 2, 0, -2, -2, 4, 100};
    EXPECT_EQ(want, o.acc);
}

TEST_P(GemvTernary, EveryEpilogueMatchesReference)
{
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8})
        for (trit_activation act : {TRIT_ACT_NONE, TRIT_ACT_RELU2, TRIT_ACT_SILU, TRIT_ACT_GELU})
            for (int extras = 0; extras < 4; extras++) {
                Case c;
                c.m = 70;
                c.k = 333;
                c.n = 3;
                c.path = path;
                c.act = act;
                c.bias = extras & 1;
                c.residual = extras & 2;
                c.seed = 40 + (uint64_t)act * 4 + (uint64_t)extras;
                check_case(dev(), c);
            }
}

TEST_P(GemvTernary, RmsNormPrologueMatchesReference)
{
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8})
        for (int64_t n : {1, 5})
            for (trit_dtype xdt : {TRIT_DTYPE_F32, TRIT_DTYPE_F16}) {
                Case c;
                c.m = 33;
                c.k = 517;
                c.n = n;
                c.path = path;
                c.x_dtype = xdt;
                c.rmsnorm = true;
                c.bias = true;
                c.act = TRIT_ACT_SILU;
                c.seed = 60 + (uint64_t)n;
                // Large, uneven activations: the normalisation must matter.
                c.x = tt::random_floats((size_t)(n * c.k), c.seed, -40.f, 40.f);
                check_case(dev(), c);
            }
}

TEST_P(GemvTernary, GatedPairMatchesReference)
{
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8})
        for (trit_activation act : {TRIT_ACT_NONE, TRIT_ACT_RELU2, TRIT_ACT_SILU, TRIT_ACT_GELU})
            for (int64_t n : {1, 4}) {
                Case c;
                c.m = 67;
                c.k = 700;
                c.n = n;
                c.path = path;
                c.act = act;
                c.gated = true;
                c.residual = n == 4;
                c.rmsnorm = act == TRIT_ACT_SILU;
                c.seed = 80 + (uint64_t)act * 8 + (uint64_t)n;
                check_case(dev(), c);
            }
}

TEST_P(GemvTernary, F16ActivationsAndOutputsMatchReference)
{
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8})
        for (trit_dtype xdt : {TRIT_DTYPE_F32, TRIT_DTYPE_F16})
            for (trit_dtype ydt : {TRIT_DTYPE_F32, TRIT_DTYPE_F16}) {
                Case c;
                c.m = 41;
                c.k = 389;
                c.n = 7;
                c.path = path;
                c.x_dtype = xdt;
                c.y_dtype = ydt;
                c.residual = true;
                c.act = TRIT_ACT_GELU;
                c.seed = 120 + (uint64_t)xdt * 2 + (uint64_t)ydt;
                check_case(dev(), c);
            }
}

TEST_P(GemvTernary, EveryScaleKindMatchesReference)
{
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8})
        for (trit_scale_kind kind : {TRIT_SCALE_TENSOR, TRIT_SCALE_ROW, TRIT_SCALE_BLOCK})
            for (int64_t k : {200, 700})
                for (int64_t n : {1, 3}) {
                    Case c;
                    c.m = 25;
                    c.k = k;
                    c.n = n;
                    c.path = path;
                    c.scale = kind;
                    c.seed = 140 + (uint64_t)kind * 10 + (uint64_t)k + (uint64_t)n;
                    check_case(dev(), c);
                }
}

// Block scales that repeat along each row, and row scales that are all equal, are legal input a
// device may store more cheaply; the products must not change.
TEST_P(GemvTernary, RepeatedScalesMatchReference)
{
    const int64_t m = 31, k = 600;
    std::vector<float> per_row = tt::random_floats((size_t)m, 9, 0.5f, 1.5f);
    std::vector<float> block_rows((size_t)(m * blocks_of(k)));
    for (int64_t r = 0; r < m; r++)
        for (int64_t b = 0; b < blocks_of(k); b++)
            block_rows[(size_t)(r * blocks_of(k) + b)] = per_row[(size_t)r];
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8}) {
        Case c;
        c.m = m;
        c.k = k;
        c.n = 2;
        c.path = path;
        c.scale = TRIT_SCALE_BLOCK;
        c.scales = block_rows;
        check_case(dev(), c);
        c.scale = TRIT_SCALE_ROW;
        c.scales.assign((size_t)m, 1.25f);
        c.accumulators = path == TRIT_GEMV_INT8;
        check_case(dev(), c);
    }
}

// Activations spanning six orders of magnitude: the float path must keep f32-level accuracy
// whatever the device's internal representation of x.
TEST_P(GemvTernary, FloatPathKeepsAccuracyWithOutliers)
{
    const int64_t k = 3000, n = 2;
    std::mt19937_64 rng(17);
    std::uniform_real_distribution<float> e(-3.f, 3.f);
    std::vector<float> x((size_t)(n * k));
    for (auto &v : x)
        v = std::pow(10.f, e(rng)) * ((rng() & 1) ? 1.f : -1.f);
    x[5] = 3000.f; // one massive activation
    Case c;
    c.m = 50;
    c.k = k;
    c.n = n;
    c.x = x;
    for (trit_scale_kind kind : {TRIT_SCALE_ROW, TRIT_SCALE_BLOCK}) {
        c.scale = kind;
        check_case(dev(), c);
    }
}

// trit.h: a = 0 gives t = 0, so a token of zeros yields act(bias) + residual on the INT8 path.
TEST_P(GemvTernary, ZeroTokenGivesEpilogueOfZero)
{
    Case c;
    c.m = 20;
    c.k = 100;
    c.n = 2;
    c.path = TRIT_GEMV_INT8;
    c.bias = true;
    c.residual = true;
    c.act = TRIT_ACT_SILU;
    c.x = tt::random_floats((size_t)(c.n * c.k), 4, -1.f, 1.f);
    std::fill(c.x.begin() + c.k, c.x.end(), 0.0f); // token 1 is all zeros
    Outcome o = run_case(dev(), c);
    EXPECT_LT(o.error, 1e-5);
    ref::GemvProblem p = tt::make_gemv_problem(c);
    for (int64_t m = 0; m < c.m; m++)
        EXPECT_NEAR(ref::activation(c.act, p.bias[(size_t)m]) + p.residual[(size_t)(c.m + m)],
                    o.y[(size_t)(c.m + m)], 1e-6);
}

// The residual may be y itself: y = t + y, in place.
TEST_P(GemvTernary, ResidualMayAliasOutput)
{
    for (trit_dtype ydt : {TRIT_DTYPE_F32, TRIT_DTYPE_F16}) {
        Case c;
        c.m = 90;
        c.k = 260;
        c.n = 3;
        c.y_dtype = ydt;
        c.residual = true;
        c.bias = true;
        c.seed = 11;
        ref::GemvProblem p = tt::make_gemv_problem(c);
        ref::GemvResult want = ref::gemv(p);
        trit_device *d = dev();
        tt::Stream s(d);
        tt::Ternary w = tt::upload_ternary(d, p.w, c.m, c.k, c.scale, p.scales);
        tt::DeviceTensor x = tt::upload(d, s, c.x_dtype, {c.n, c.k}, p.x);
        tt::DeviceTensor y = tt::upload(d, s, ydt, {c.n, c.m}, p.residual);
        tt::DeviceTensor bias = tt::upload(d, s, TRIT_DTYPE_F32, {c.m}, p.bias);
        trit_gemv_params params;
        trit_gemv_params_init(&params);
        params.bias = &bias.t;
        params.residual = &y.t;
        TRIT_ASSERT_OK(trit_ternary_gemv(s, w, &x.t, &y.t, &params));
        EXPECT_LT(tt::rel_error(tt::download(s, y.t), want.y), tt::tolerance(ydt));
    }
}

// x and y as views with padded rows: only the views' elements are read and written.
TEST_P(GemvTernary, StridedTokensAreReadAndWrittenInPlace)
{
    const int64_t m = 21, k = 140, n = 3, xs = k + 9, ys = m + 5;
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8}) {
        Case c;
        c.m = m;
        c.k = k;
        c.n = n;
        c.path = path;
        ref::GemvProblem p = tt::make_gemv_problem(c);
        ref::GemvResult want = ref::gemv(p);
        trit_device *d = dev();
        tt::Stream s(d);
        tt::Ternary w = tt::upload_ternary(d, p.w, m, k, c.scale, p.scales);
        std::vector<float> xpad((size_t)(n * xs), 1e30f); // huge junk between the rows
        for (int64_t t = 0; t < n; t++)
            std::copy(p.x.begin() + t * k, p.x.begin() + (t + 1) * k, xpad.begin() + t * xs);
        tt::DeviceTensor xb = tt::upload(d, s, TRIT_DTYPE_F32, {n * xs}, xpad);
        tt::DeviceTensor yb = tt::poisoned(d, s, TRIT_DTYPE_F32, {n * ys});
        trit_tensor x{}, y{};
        const int64_t xshape[2] = {n, k}, xstr[2] = {xs, 1}, yshape[2] = {n, m}, ystr[2] = {ys, 1};
        TRIT_ASSERT_OK(trit_tensor_make(xb.buf, 0, TRIT_DTYPE_F32, 2, xshape, xstr, &x));
        TRIT_ASSERT_OK(trit_tensor_make(yb.buf, 0, TRIT_DTYPE_F32, 2, yshape, ystr, &y));
        trit_gemv_params params;
        trit_gemv_params_init(&params);
        params.path = path;
        TRIT_ASSERT_OK(trit_ternary_gemv(s, w, &x, &y, &params));
        std::vector<uint8_t> raw = tt::download_bytes(s, yb.buf);
        std::vector<float> got;
        for (int64_t t = 0; t < n; t++)
            for (int64_t i = 0; i < ys; i++) {
                float v;
                std::memcpy(&v, &raw[(size_t)((t * ys + i) * 4)], 4);
                if (i < m) {
                    got.push_back(v);
                } else {
                    uint32_t bits;
                    std::memcpy(&bits, &v, 4);
                    EXPECT_EQ(0xFFFFFFFFu, bits) << "padding of row " << t << " was written";
                }
            }
        EXPECT_LT(tt::rel_error(got, want.y), 1e-5);
    }
}

// ---- bad input ---------------------------------------------------------------------------------

// A valid call's pieces, for the bad-input tests to break one at a time.
struct Valid {
    static constexpr int64_t m = 16, k = 64, n = 2;
    trit_device *dev;
    tt::Stream s;
    tt::Ternary w, wu;
    tt::DeviceTensor x, y, bias, res, acc;
    trit_gemv_params params;
    explicit Valid(trit_device *d)
        : dev(d), s(d), w(tt::upload_ternary(d, tt::random_ternary(m * k, 1), m, k)),
          wu(tt::upload_ternary(d, tt::random_ternary(m * k, 2), m, k))
    {
        x = tt::upload(d, s, TRIT_DTYPE_F32, {n, k}, tt::random_floats(n * k, 3));
        y = tt::poisoned(d, s, TRIT_DTYPE_F32, {n, m});
        bias = tt::upload(d, s, TRIT_DTYPE_F32, {m}, tt::random_floats(m, 4));
        res = tt::upload(d, s, TRIT_DTYPE_F32, {n, m}, tt::random_floats(n * m, 5));
        acc = tt::poisoned(d, s, TRIT_DTYPE_I32, {n, m});
        trit_gemv_params_init(&params);
    }
    trit_status gemv() { return trit_ternary_gemv(s, w, &x.t, &y.t, &params); }
    trit_status gated() { return trit_ternary_gemv_gated(s, w, wu, &x.t, &y.t, &params); }
    // y and the accumulators still hold the poison.
    void expect_untouched()
    {
        for (trit_buffer *b : {y.buf.b, acc.buf.b}) {
            std::vector<uint8_t> raw = tt::download_bytes(s, b);
            EXPECT_TRUE(std::all_of(raw.begin(), raw.end(), [](uint8_t v) { return v == 0xFF; }))
                << "an output was written by a call that failed";
        }
    }
};

void expect_rejected(Valid &v, trit_status want, const std::function<trit_status()> &call,
                     const char *what)
{
    SCOPED_TRACE(what);
    EXPECT_EQ(want, call()) << trit_last_error();
    EXPECT_STRNE("", trit_last_error());
    v.expect_untouched();
}

TEST_P(GemvTernary, RejectsNullArguments)
{
    Valid v(dev());
    expect_rejected(
        v, TRIT_ERROR_INVALID_ARGUMENT,
        [&] { return trit_ternary_gemv(nullptr, v.w, &v.x.t, &v.y.t, nullptr); }, "stream");
    expect_rejected(
        v, TRIT_ERROR_INVALID_ARGUMENT,
        [&] { return trit_ternary_gemv(v.s, nullptr, &v.x.t, &v.y.t, nullptr); }, "matrix");
    expect_rejected(
        v, TRIT_ERROR_INVALID_ARGUMENT,
        [&] { return trit_ternary_gemv(v.s, v.w, nullptr, &v.y.t, nullptr); }, "x");
    expect_rejected(
        v, TRIT_ERROR_INVALID_ARGUMENT,
        [&] { return trit_ternary_gemv(v.s, v.w, &v.x.t, nullptr, nullptr); }, "y");
    expect_rejected(
        v, TRIT_ERROR_INVALID_ARGUMENT,
        [&] { return trit_ternary_gemv_gated(v.s, v.w, nullptr, &v.x.t, &v.y.t, nullptr); },
        "up matrix");
    trit_tensor nobuf = v.x.t;
    nobuf.buffer = nullptr;
    expect_rejected(
        v, TRIT_ERROR_INVALID_ARGUMENT,
        [&] { return trit_ternary_gemv(v.s, v.w, &nobuf, &v.y.t, nullptr); }, "x without a buffer");
}

TEST_P(GemvTernary, RejectsXWithWrongK)
{
    Valid v(dev());
    tt::DeviceTensor x = tt::upload(v.dev, v.s, TRIT_DTYPE_F32, {Valid::n, Valid::k - 1},
                                    tt::random_floats(Valid::n * (Valid::k - 1), 6));
    expect_rejected(
        v, TRIT_ERROR_SHAPE_MISMATCH,
        [&] { return trit_ternary_gemv(v.s, v.w, &x.t, &v.y.t, nullptr); }, "x");
}

TEST_P(GemvTernary, RejectsYWithWrongM)
{
    Valid v(dev());
    tt::DeviceTensor y = tt::poisoned(v.dev, v.s, TRIT_DTYPE_F32, {Valid::n, Valid::m + 1});
    expect_rejected(
        v, TRIT_ERROR_SHAPE_MISMATCH,
        [&] { return trit_ternary_gemv(v.s, v.w, &v.x.t, &y.t, nullptr); }, "y");
    tt::DeviceTensor y3 = tt::poisoned(v.dev, v.s, TRIT_DTYPE_F32, {Valid::n + 1, Valid::m});
    expect_rejected(
        v, TRIT_ERROR_SHAPE_MISMATCH,
        [&] { return trit_ternary_gemv(v.s, v.w, &v.x.t, &y3.t, nullptr); },
        "y with another token count");
}

TEST_P(GemvTernary, RejectsZeroOrSeventeenTokens)
{
    Valid v(dev());
    trit_tensor x0 = v.x.t, y0 = v.y.t; // N = 0: not a valid view
    x0.shape[0] = 0;
    y0.shape[0] = 0;
    trit_status st = trit_ternary_gemv(v.s, v.w, &x0, &y0, nullptr);
    EXPECT_TRUE(st == TRIT_ERROR_INVALID_ARGUMENT || st == TRIT_ERROR_SHAPE_MISMATCH)
        << trit_status_string(st) << ": " << trit_last_error();
    EXPECT_STRNE("", trit_last_error());
    v.expect_untouched();
    const int64_t n = TRIT_GEMV_MAX_N + 1;
    tt::DeviceTensor x =
        tt::upload(v.dev, v.s, TRIT_DTYPE_F32, {n, Valid::k}, tt::random_floats(n * Valid::k, 7));
    tt::DeviceTensor y = tt::poisoned(v.dev, v.s, TRIT_DTYPE_F32, {n, Valid::m});
    EXPECT_EQ(TRIT_ERROR_UNSUPPORTED, trit_ternary_gemv(v.s, v.w, &x.t, &y.t, nullptr));
    EXPECT_STRNE("", trit_last_error());
    std::vector<uint8_t> raw = tt::download_bytes(v.s, y.buf);
    EXPECT_TRUE(std::all_of(raw.begin(), raw.end(), [](uint8_t b) { return b == 0xFF; }));
}

TEST_P(GemvTernary, RejectsUnsupportedDtypes)
{
    Valid v(dev());
    for (trit_dtype dt : {TRIT_DTYPE_BF16, TRIT_DTYPE_I8, TRIT_DTYPE_I32}) {
        tt::DeviceTensor x = tt::upload(v.dev, v.s, dt, {Valid::n, Valid::k},
                                        tt::random_floats(Valid::n * Valid::k, 8));
        expect_rejected(
            v, TRIT_ERROR_UNSUPPORTED,
            [&] { return trit_ternary_gemv(v.s, v.w, &x.t, &v.y.t, nullptr); },
            trit_dtype_name(dt));
    }
    tt::DeviceTensor yb = tt::poisoned(v.dev, v.s, TRIT_DTYPE_BF16, {Valid::n, Valid::m});
    EXPECT_EQ(TRIT_ERROR_UNSUPPORTED, trit_ternary_gemv(v.s, v.w, &v.x.t, &yb.t, nullptr));
    EXPECT_STRNE("", trit_last_error());
}

TEST_P(GemvTernary, RejectsResidualOfWrongDtypeOrShape)
{
    Valid v(dev());
    tt::DeviceTensor r16 = tt::upload(v.dev, v.s, TRIT_DTYPE_F16, {Valid::n, Valid::m},
                                      tt::random_floats(Valid::n * Valid::m, 9));
    v.params.residual = &r16.t;
    expect_rejected(
        v, TRIT_ERROR_UNSUPPORTED, [&] { return v.gemv(); }, "f16 residual");
    tt::DeviceTensor rs = tt::upload(v.dev, v.s, TRIT_DTYPE_F32, {Valid::n, Valid::m - 1},
                                     tt::random_floats(Valid::n * (Valid::m - 1), 9));
    v.params.residual = &rs.t;
    expect_rejected(
        v, TRIT_ERROR_SHAPE_MISMATCH, [&] { return v.gemv(); }, "short residual");
    tt::DeviceTensor rn = tt::upload(v.dev, v.s, TRIT_DTYPE_F32, {Valid::n + 1, Valid::m},
                                     tt::random_floats((Valid::n + 1) * Valid::m, 9));
    v.params.residual = &rn.t;
    expect_rejected(
        v, TRIT_ERROR_SHAPE_MISMATCH, [&] { return v.gemv(); }, "tall residual");
}

TEST_P(GemvTernary, RejectsBiasOfWrongLength)
{
    Valid v(dev());
    tt::DeviceTensor b =
        tt::upload(v.dev, v.s, TRIT_DTYPE_F32, {Valid::m + 3}, tt::random_floats(Valid::m + 3, 10));
    v.params.bias = &b.t;
    expect_rejected(
        v, TRIT_ERROR_SHAPE_MISMATCH, [&] { return v.gemv(); }, "bias");
}

TEST_P(GemvTernary, RejectsGatedPairWithMismatchedShapesOrBias)
{
    Valid v(dev());
    tt::Ternary other = tt::upload_ternary(v.dev, tt::random_ternary((Valid::m + 2) * Valid::k, 11),
                                           Valid::m + 2, Valid::k);
    expect_rejected(
        v, TRIT_ERROR_SHAPE_MISMATCH,
        [&] { return trit_ternary_gemv_gated(v.s, v.w, other, &v.x.t, &v.y.t, nullptr); },
        "gate and up of different shapes");
    v.params.bias = &v.bias.t;
    expect_rejected(
        v, TRIT_ERROR_INVALID_ARGUMENT, [&] { return v.gated(); }, "gated with bias");
}

TEST_P(GemvTernary, RejectsAccumulatorsOnFloatPathOrWithBlockScales)
{
    Valid v(dev());
    v.params.accumulators = &v.acc.t;
    v.params.path = TRIT_GEMV_FLOAT;
    expect_rejected(
        v, TRIT_ERROR_INVALID_ARGUMENT, [&] { return v.gemv(); }, "float path");
    v.params.path = TRIT_GEMV_INT8;
    tt::Ternary blocks = tt::upload_ternary(
        v.dev, tt::random_ternary(Valid::m * Valid::k, 12), Valid::m, Valid::k, TRIT_SCALE_BLOCK,
        tt::random_floats((size_t)(Valid::m * blocks_of(Valid::k)), 13, 0.5f, 1.f));
    expect_rejected(
        v, TRIT_ERROR_UNSUPPORTED,
        [&] { return trit_ternary_gemv(v.s, blocks, &v.x.t, &v.y.t, &v.params); }, "block scales");
}

TEST_P(GemvTernary, RejectsTensorsFromAnotherDevice)
{
    Valid v(dev());
    // A second context's device is another device, even of the same backend.
    trit_context_options o{};
    o.size = sizeof(o);
    trit_context *ctx2 = nullptr;
    TRIT_ASSERT_OK(trit_context_create(&o, &ctx2));
    struct Guard {
        trit_context *c;
        ~Guard() { trit_context_destroy(c); }
    } guard{ctx2};
    ASSERT_GT(trit_device_count(ctx2), GetParam());
    trit_device *other = nullptr;
    TRIT_ASSERT_OK(trit_device_get(ctx2, GetParam(), &other));
    tt::Stream s2(other);
    tt::DeviceTensor x2 = tt::upload(other, s2, TRIT_DTYPE_F32, {Valid::n, Valid::k},
                                     tt::random_floats(Valid::n * Valid::k, 14));
    expect_rejected(
        v, TRIT_ERROR_WRONG_DEVICE,
        [&] { return trit_ternary_gemv(v.s, v.w, &x2.t, &v.y.t, nullptr); }, "x");
    tt::Ternary w2 =
        tt::upload_ternary(other, tt::random_ternary(Valid::m * Valid::k, 15), Valid::m, Valid::k);
    expect_rejected(
        v, TRIT_ERROR_WRONG_DEVICE,
        [&] { return trit_ternary_gemv(v.s, w2, &v.x.t, &v.y.t, nullptr); }, "matrix");
    expect_rejected(
        v, TRIT_ERROR_WRONG_DEVICE,
        [&] { return trit_ternary_gemv_gated(v.s, v.w, w2, &v.x.t, &v.y.t, nullptr); }, "up");
    tt::DeviceTensor b2 =
        tt::upload(other, s2, TRIT_DTYPE_F32, {Valid::m}, tt::random_floats(Valid::m, 16));
    v.params.bias = &b2.t;
    expect_rejected(
        v, TRIT_ERROR_WRONG_DEVICE, [&] { return v.gemv(); }, "bias");
}

TEST_P(GemvTernary, RejectsOutputOverlappingInput)
{
    Valid v(dev());
    // One buffer holding x, with y a view over its first M floats of each token.
    const int64_t n = Valid::n, k = Valid::k, m = Valid::m;
    tt::DeviceTensor xb =
        tt::upload(v.dev, v.s, TRIT_DTYPE_F32, {n, k}, tt::random_floats(n * k, 17));
    std::vector<uint8_t> before = tt::download_bytes(v.s, xb.buf);
    trit_tensor y{};
    const int64_t shape[2] = {n, m}, strides[2] = {k, 1};
    TRIT_ASSERT_OK(trit_tensor_make(xb.buf, 0, TRIT_DTYPE_F32, 2, shape, strides, &y));
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_ternary_gemv(v.s, v.w, &xb.t, &y, nullptr));
    EXPECT_STRNE("", trit_last_error());
    EXPECT_EQ(before, tt::download_bytes(v.s, xb.buf));
    // y overlapping the bias is as bad.
    v.params.bias = &v.bias.t;
    trit_tensor yb{};
    const int64_t shape1[2] = {1, m};
    TRIT_ASSERT_OK(trit_tensor_make(v.bias.buf, 0, TRIT_DTYPE_F32, 2, shape1, nullptr, &yb));
    tt::DeviceTensor x1 = tt::upload(v.dev, v.s, TRIT_DTYPE_F32, {1, k}, tt::random_floats(k, 18));
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_ternary_gemv(v.s, v.w, &x1.t, &yb, &v.params));
    EXPECT_STRNE("", trit_last_error());
}

INSTANTIATE_TEST_SUITE_P(AllDevices, GemvTernary, ::testing::ValuesIn(tt::device_indices()),
                         tt::device_param_name);

// ---- the CPU plugin's ISA levels ---------------------------------------------------------------

struct IsaContext {
    trit_context *ctx = nullptr;
    trit_device *dev = nullptr;
    explicit IsaContext(const char *isa, const char *threads)
    {
        std::string o1 = std::string("cpu.isa=") + isa, o2 = std::string("cpu.threads=") + threads;
        const char *opts[] = {o1.c_str(), o2.c_str(), nullptr};
        trit_context_options o{};
        o.size = sizeof(o);
        o.plugins = "cpu";
        o.backend_options = opts;
        EXPECT_EQ(TRIT_OK, trit_context_create(&o, &ctx)) << trit_last_error();
        if (ctx && trit_device_count(ctx) > 0)
            trit_device_get(ctx, 0, &dev);
    }
    ~IsaContext() { trit_context_destroy(ctx); }
};

// Every kernel level computes the same thing: exact accumulators equal bit for bit, and every
// level meets the reference's tolerance on the cases that exercise its code paths.
TEST(GemvTernaryCpu, IsaLevelsAgree)
{
    std::vector<Case> cases;
    for (int64_t n : {1, 2, 5, 16}) {
        Case c;
        c.m = 77;
        c.k = 1000;
        c.n = n;
        c.path = TRIT_GEMV_INT8;
        c.accumulators = true;
        c.rmsnorm = n == 5;
        c.seed = 200 + (uint64_t)n;
        cases.push_back(c);
        c.path = TRIT_GEMV_FLOAT;
        c.accumulators = false;
        c.act = TRIT_ACT_GELU;
        c.bias = true;
        cases.push_back(c);
    }
    {
        Case c;
        c.m = 30;
        c.k = 513;
        c.n = 3;
        c.scale = TRIT_SCALE_BLOCK;
        c.gated = true;
        c.act = TRIT_ACT_SILU;
        c.x_dtype = c.y_dtype = TRIT_DTYPE_F16;
        c.residual = true;
        for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8}) {
            c.path = path;
            cases.push_back(c);
        }
    }
    const char *levels[][2] = {
        {"portable", "2"}, {"avx2", "2"}, {"avx512", "2"}, {"avx512", "1"}, {"avx2", "3"}};
    std::vector<std::vector<Outcome>> results;
    for (auto &lv : levels) {
        SCOPED_TRACE(std::string("cpu.isa=") + lv[0] + " cpu.threads=" + lv[1]);
        IsaContext ic(lv[0], lv[1]);
        ASSERT_NE(nullptr, ic.dev) << "no CPU device";
        results.emplace_back();
        for (const Case &c : cases) {
            SCOPED_TRACE(c.describe());
            results.back().push_back(run_case(ic.dev, c));
            EXPECT_LT(results.back().back().error, tt::tolerance(c.y_dtype));
        }
    }
    for (size_t l = 1; l < results.size(); l++)
        for (size_t i = 0; i < cases.size(); i++) {
            SCOPED_TRACE(std::string(levels[l][0]) + " vs portable: " + cases[i].describe());
            EXPECT_EQ(results[0][i].acc, results[l][i].acc);
        }
}

} // namespace

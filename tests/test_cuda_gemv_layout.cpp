// test_cuda_gemv_layout.cpp — the CUDA GEMV's weight layout and integer arithmetic, checked on
// the CPU so that machines without a GPU (CI) cover them: cuda/gemv_layout.h is plain C shared
// with the kernels. Repack + decode must give back every weight for odd shapes, and a scalar
// emulation of the kernels (prologue quantization, dp4a over decoded chunks, lanes, split-K in
// the kernels' order) must reproduce the CPU plugin's INT8 accumulators exactly and its FLOAT
// outputs bit for bit.
#include "common.h"
#include "gemv_run.h"

#include <cmath>

#include "cuda/gemv_layout.h"
#include "reference/ref_gemv.h"

namespace {

// Rows of a matrix in the CUDA resident layout, from int8 weights via the canonical PACKED2.
std::vector<uint8_t> repack(const std::vector<int8_t> &w, int64_t rows, int64_t cols)
{
    const int64_t row_bytes = (cols + 3) / 4, pitch = cu_gemv_pitch(cols);
    std::vector<uint8_t> canon((size_t)(rows * row_bytes));
    EXPECT_EQ(TRIT_OK, trit_pack_packed2(w.data(), rows, cols, canon.data(), canon.size()));
    std::vector<uint8_t> out((size_t)(rows * pitch * CU_GEMV_CHUNK_BYTES), 0xee);
    for (int64_t r = 0; r < rows; r++)
        cu_gemv_repack_row(canon.data() + r * row_bytes, cols,
                           out.data() + r * pitch * CU_GEMV_CHUNK_BYTES);
    return out;
}

uint32_t word_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

trit_device *cpu_device()
{
    for (uint32_t i : tt::device_indices()) {
        trit_device_info info{};
        info.size = sizeof(info);
        if (trit_device_get_info(tt::device(i), &info) == TRIT_OK &&
            info.backend == TRIT_BACKEND_CPU)
            return tt::device(i);
    }
    return nullptr;
}

// The prologue's x' for one token, in the kernel's order (see CU_GEMV_PRO_THREADS).
std::vector<float> emulate_xprime(const ref::GemvProblem &p, int64_t t)
{
    const float *x = p.x.data() + t * p.k;
    std::vector<float> xp(x, x + p.k);
    if (p.rmsnorm_weight.empty())
        return xp;
    const int nthr = CU_GEMV_PRO_THREADS, nwarps = nthr / 32;
    std::vector<double> part((size_t)nthr, 0.0);
    for (int i = 0; i < nthr; i++)
        for (int64_t e = i; e < p.k; e += nthr)
            part[(size_t)i] = std::fma((double)x[e], (double)x[e], part[(size_t)i]);
    double total = 0.0;
    for (int w = 0; w < nwarps; w++) {
        double v[32];
        for (int l = 0; l < 32; l++)
            v[l] = part[(size_t)(w * 32 + l)];
        for (int o = 16; o > 0; o >>= 1) {
            double n[32];
            for (int l = 0; l < 32; l++)
                n[l] = v[l] + v[l ^ o];
            std::copy(n, n + 32, v);
        }
        total = w == 0 ? v[0] : total + v[0];
    }
    const double inv = 1.0 / std::sqrt(total / (double)p.k + (double)p.rmsnorm_eps);
    for (int64_t e = 0; e < p.k; e++)
        xp[(size_t)e] = (float)((double)x[e] * inv * (double)p.rmsnorm_weight[(size_t)e]);
    return xp;
}

float absmax(const std::vector<float> &v)
{
    uint32_t m = 0;
    for (float f : v) {
        uint32_t b;
        std::memcpy(&b, &f, 4);
        m = std::max(m, b & 0x7fffffffu);
    }
    float a;
    std::memcpy(&a, &m, 4);
    return a;
}

// sum over a row of code * q for one pseudo-column q (kp bytes, zero padded), in the order of
// gemv_main (lanes stride 32 over a split's chunks, lanes meet by an xor butterfly) and
// gemv_finish (splits in index order). Mod 2^32.
uint32_t emulate_row(const uint8_t *row, int64_t pitch, const std::vector<int8_t> &q, int splits)
{
    uint32_t total = 0;
    for (int s = 0; s < splits; s++) {
        int64_t c0, c1;
        cu_gemv_split_range(pitch, splits, s, &c0, &c1);
        uint32_t lane[32] = {};
        for (int l = 0; l < 32; l++)
            for (int64_t c = c0 + l; c < c1; c += 32) {
                const uint8_t *ch = row + c * CU_GEMV_CHUNK_BYTES;
                uint32_t pl[16], qw[16];
                cu_gemv_decode_chunk(word_at(ch), word_at(ch + 4), word_at(ch + 8),
                                     word_at(ch + 12), pl);
                for (int i = 0; i < 16; i++)
                    qw[i] = word_at((const uint8_t *)q.data() + c * CU_GEMV_CHUNK + 4 * i);
                lane[l] = cu_gemv_dot_chunk(pl, qw, lane[l]);
            }
        for (int o = 16; o > 0; o >>= 1) {
            uint32_t n[32];
            for (int l = 0; l < 32; l++)
                n[l] = lane[l] + lane[l ^ o];
            std::copy(n, n + 32, lane);
        }
        total += lane[0];
    }
    return total;
}

ref::GemvProblem make_problem(int64_t m, int64_t k, int64_t n, trit_gemv_path path, bool rms,
                              uint64_t seed)
{
    ref::GemvProblem p;
    p.m = m;
    p.k = k;
    p.n = n;
    p.path = path;
    p.scale_kind = TRIT_SCALE_ROW;
    p.w = tt::random_ternary((size_t)(m * k), seed * 7 + 1);
    p.scales = tt::random_floats((size_t)m, seed * 7 + 2, 0.5f, 1.5f);
    p.x = tt::random_floats((size_t)(n * k), seed * 7 + 3, -2.f, 2.f);
    if (rms) {
        p.rmsnorm_weight = tt::random_floats((size_t)k, seed * 7 + 4, 0.5f, 1.5f);
        p.rmsnorm_eps = 1e-5f;
    }
    return p;
}

struct Shape {
    int64_t m, k, n;
    bool rms;
};

const Shape kShapes[] = {{19, 1, 1, false},   {23, 129, 3, false},   {5, 64, 2, true},
                         {37, 1000, 1, true}, {11, 4097, 16, false}, {7, 2560, 2, true},
                         {3, 12345, 4, false}};

} // namespace

TEST(CudaGemvLayout, RepackAndDecodeGiveBackEveryWeight)
{
    const int64_t shapes[][2] = {{1, 1},   {3, 5},   {7, 63},   {5, 64},   {2, 65},
                                 {3, 129}, {4, 257}, {2, 1000}, {1, 4097}, {3, 12345}};
    for (const auto &sh : shapes) {
        const int64_t rows = sh[0], cols = sh[1], pitch = cu_gemv_pitch(cols);
        SCOPED_TRACE(std::to_string(rows) + " x " + std::to_string(cols));
        ASSERT_EQ((cols + 63) / 64, pitch);
        std::vector<int8_t> w = tt::random_ternary((size_t)(rows * cols), (uint64_t)(rows * cols));
        std::vector<uint8_t> lay = repack(w, rows, cols);
        size_t bad = 0;
        for (int64_t r = 0; r < rows; r++) {
            const uint8_t *row = lay.data() + r * pitch * CU_GEMV_CHUNK_BYTES;
            for (int64_t k = 0; k < pitch * CU_GEMV_CHUNK; k++) {
                const unsigned want = k < cols ? (unsigned)(w[(size_t)(r * cols + k)] + 1) : 1u;
                if (cu_gemv_code_at(row, k) != want && bad++ < 5)
                    ADD_FAILURE() << "row " << r << " weight " << k << ": code "
                                  << cu_gemv_code_at(row, k) << ", want " << want;
            }
            // What the kernel sees: operand i of chunk c, byte b, is weight 64 c + 4 i + b.
            for (int64_t c = 0; c < pitch; c++) {
                const uint8_t *ch = row + c * CU_GEMV_CHUNK_BYTES;
                uint32_t pl[16];
                cu_gemv_decode_chunk(word_at(ch), word_at(ch + 4), word_at(ch + 8),
                                     word_at(ch + 12), pl);
                for (int i = 0; i < 16; i++)
                    for (int b = 0; b < 4; b++) {
                        const int64_t k = c * CU_GEMV_CHUNK + 4 * i + b;
                        const unsigned want =
                            k < cols ? (unsigned)(w[(size_t)(r * cols + k)] + 1) : 1u;
                        if (((pl[i] >> (8 * b)) & 0xffu) != want && bad++ < 5)
                            ADD_FAILURE()
                                << "row " << r << " chunk " << c << " operand " << i << " byte "
                                << b << ": " << (pl[i] >> (8 * b) & 0xffu) << ", want " << want;
                    }
            }
        }
        EXPECT_EQ(0u, bad);
    }
}

TEST(CudaGemvLayout, TransposeMovesEachFieldAndIsItsOwnInverse)
{
    for (uint32_t seed = 1; seed < 2000; seed++) {
        const uint32_t v = seed * 2654435761u;
        const uint32_t t = cu_gemv_transpose_fields(v);
        for (int j = 0; j < 4; j++)
            for (int f = 0; f < 4; f++)
                ASSERT_EQ((v >> (8 * j + 2 * f)) & 3u, (t >> (8 * f + 2 * j)) & 3u) << v;
        ASSERT_EQ(v, cu_gemv_transpose_fields(t));
    }
}

TEST(CudaGemvLayout, Dp4aEmulationMultipliesSignedBytes)
{
    EXPECT_EQ(7u, cu_gemv_dp4a(0x00000001u, 0x00000002u, 5u));
    EXPECT_EQ((uint32_t)(-128 * 2 + 127 * 2 + 2 * -1 + 1 * 1), // bytes a = 1, 2, 127, -128
              cu_gemv_dp4a(0x807f0201u, 0x0202ff01u, 0u));     // bytes b = 1, -1, 2, 2
    EXPECT_EQ(0xffffffffu, cu_gemv_dp4a(0x01u, 0xffu, 0u));
}

TEST(CudaGemvLayout, DigitsRebuildTheFixedPointValue)
{
    const int32_t vals[] = {0,   1,     -1,     127,       128,        -128,      -129,      255,
                            256, 65535, -65536, (1 << 30), -(1 << 30), 123456789, -987654321};
    for (int32_t v : vals) {
        int8_t d[CU_GEMV_PLANES];
        cu_gemv_digits(v, d);
        const int64_t back =
            (int64_t)d[0] + 256 * (int64_t)d[1] + 65536 * (int64_t)d[2] + 16777216 * (int64_t)d[3];
        EXPECT_EQ((int64_t)v, back);
    }
}

TEST(CudaGemvLayout, SplitRangesCoverEveryChunkOnce)
{
    for (int64_t pitch : {1, 2, 31, 32, 33, 100, 449})
        for (int splits = 1; splits <= 16; splits++) {
            int64_t next = 0;
            for (int s = 0; s < splits; s++) {
                int64_t c0, c1;
                cu_gemv_split_range(pitch, splits, s, &c0, &c1);
                ASSERT_EQ(next, c0);
                ASSERT_LE(c0, c1);
                next = c1;
            }
            ASSERT_EQ(pitch, next);
        }
}

// The interleaved activation layout: every 32-bit word of a pseudo-column has its own place
// inside cu_gemv_q_bytes(pitch), word w sits in uint4 (w % 16) / 4 of chunk w / 16, and for
// 32 consecutive chunks from a multiple of 32 (one warp-wide load) uint4 j is 512 contiguous
// bytes, on 512 bytes.
TEST(CudaGemvLayout, InterleavedActivationsGiveEachWarpLoad512ContiguousBytes)
{
    for (int64_t pitch : {1, 2, 31, 32, 33, 100, 449}) {
        const int64_t bytes = cu_gemv_q_bytes(pitch);
        EXPECT_EQ(0, bytes % 2048);
        EXPECT_GE(bytes, pitch * CU_GEMV_CHUNK);
        EXPECT_LT(bytes, pitch * CU_GEMV_CHUNK + 2048);
        std::vector<int> seen((size_t)(bytes / 4), 0);
        for (int64_t w = 0; w < pitch * 16; w++) {
            const int64_t off = cu_gemv_q_word_offset(w);
            ASSERT_EQ(0, off % 4);
            ASSERT_GE(off, 0);
            ASSERT_LT(off, bytes);
            seen[(size_t)(off / 4)]++;
            EXPECT_EQ(cu_gemv_q_offset(w / 16, (int)(w % 16) / 4) + (w % 4) * 4, off);
        }
        for (size_t i = 0; i < seen.size(); i++)
            ASSERT_LE(seen[i], 1) << "word slot " << i << " taken twice, pitch " << pitch;
        for (int64_t g = 0; g * 32 < pitch; g++)
            for (int j = 0; j < 4; j++) {
                const int64_t first = cu_gemv_q_offset(g * 32, j);
                EXPECT_EQ(0, first % 512);
                for (int lane = 0; lane < 32; lane++)
                    EXPECT_EQ(first + 16 * lane, cu_gemv_q_offset(g * 32 + lane, j));
            }
    }
}

// The K limit is exact: at K = CU_GEMV_MAX_K the worst plane sum (w = -1 against digits of -128,
// which balanced base-256 digits reach) still comes out of the kernels' mod-2^32 arithmetic
// right; one more column and it wraps past 2^31. The sums run as the kernels run them: decoded
// chunks, dp4a, and the digit total subtracted.
TEST(CudaGemvLayout, MaxKKeepsTheWorstPlaneSumExact)
{
    EXPECT_TRUE(cu_gemv_k_supported(CU_GEMV_MAX_K));
    EXPECT_FALSE(cu_gemv_k_supported((int64_t)CU_GEMV_MAX_K + 1));
    EXPECT_FALSE(cu_gemv_k_supported(0));
    for (int64_t k : {(int64_t)CU_GEMV_MAX_K, (int64_t)CU_GEMV_MAX_K + 1}) {
        const int64_t pitch = cu_gemv_pitch(k), row_bytes = (k + 3) / 4;
        std::vector<uint8_t> canon((size_t)row_bytes, 0x00); // code 0: w = -1
        if (k % 4)
            canon.back() = (uint8_t)(0x55u << (2 * (k % 4))); // past K: code 1, as PACKED2 pads
        std::vector<uint8_t> row((size_t)(pitch * CU_GEMV_CHUNK_BYTES));
        cu_gemv_repack_row(canon.data(), k, row.data());
        uint32_t raw = 0, tot = 0;
        for (int64_t c = 0; c < pitch; c++) {
            const uint8_t *ch = row.data() + c * CU_GEMV_CHUNK_BYTES;
            uint32_t pl[16], q[16];
            cu_gemv_decode_chunk(word_at(ch), word_at(ch + 4), word_at(ch + 8), word_at(ch + 12),
                                 pl);
            for (int i = 0; i < 16; i++) {
                q[i] = 0;
                for (int b = 0; b < 4; b++)
                    if (c * CU_GEMV_CHUNK + 4 * i + b < k) {
                        q[i] |= 0x80u << (8 * b); // digit -128
                        tot += (uint32_t)-128;
                    }
            }
            raw = cu_gemv_dot_chunk(pl, q, raw);
        }
        const int64_t want = 128 * k; // sum of (-1) * (-128)
        const int32_t got = cu_gemv_int8_acc(raw, (int32_t)tot);
        if (k <= CU_GEMV_MAX_K)
            EXPECT_EQ(want, (int64_t)got) << "K = " << k;
        else
            EXPECT_NE(want, (int64_t)got) << "K = " << k << " no longer wraps: the limit is loose";
    }
}

// The INT8 path's accumulators, emulated as the kernels compute them, equal the CPU plugin's.
TEST(CudaGemvLayout, Int8EmulationMatchesCpuAccumulators)
{
    trit_device *cpu = cpu_device();
    ASSERT_NE(nullptr, cpu);
    for (const Shape &sh : kShapes) {
        ref::GemvProblem p =
            make_problem(sh.m, sh.k, sh.n, TRIT_GEMV_INT8, sh.rms, (uint64_t)(sh.m * 1000 + sh.k));
        SCOPED_TRACE("M=" + std::to_string(sh.m) + " K=" + std::to_string(sh.k) +
                     " N=" + std::to_string(sh.n) + (sh.rms ? " rmsnorm" : ""));
        tt::GemvRun run = tt::run_gemv(cpu, p, TRIT_DTYPE_F32, TRIT_DTYPE_F32, true);
        ASSERT_EQ(TRIT_OK, run.status) << trit_last_error();

        const int64_t pitch = cu_gemv_pitch(sh.k), kp = pitch * CU_GEMV_CHUNK;
        std::vector<uint8_t> lay = repack(p.w, sh.m, sh.k);
        for (int splits : {1, 3, 16}) {
            size_t bad = 0;
            for (int64_t t = 0; t < sh.n; t++) {
                std::vector<float> xp = emulate_xprime(p, t);
                const float a = absmax(xp);
                std::vector<int8_t> q((size_t)kp, 0);
                int32_t qtot = 0;
                if (a != 0.0f) {
                    const float s = 127.0f / a;
                    for (int64_t e = 0; e < sh.k; e++) {
                        q[(size_t)e] = cu_gemv_quantize(xp[(size_t)e], s);
                        qtot += q[(size_t)e];
                    }
                }
                for (int64_t r = 0; r < sh.m; r++) {
                    const uint32_t sum =
                        emulate_row(lay.data() + r * pitch * CU_GEMV_CHUNK_BYTES, pitch, q, splits);
                    const int32_t acc = cu_gemv_int8_acc(sum, qtot);
                    const int64_t want = run.acc[(size_t)(t * sh.m + r)];
                    if (acc != want && bad++ < 5)
                        ADD_FAILURE() << "splits " << splits << " token " << t << " row " << r
                                      << ": emulated " << acc << ", cpu " << want;
                }
            }
            EXPECT_EQ(0u, bad) << "splits " << splits;
        }
    }
}

// The FLOAT path (four digit planes, exact integer sums, one rescale) gives the CPU plugin's f32
// output bit for bit, with no epilogue and per-row scales.
TEST(CudaGemvLayout, FloatEmulationMatchesCpuBitForBit)
{
    trit_device *cpu = cpu_device();
    ASSERT_NE(nullptr, cpu);
    for (const Shape &sh : kShapes) {
        ref::GemvProblem p = make_problem(sh.m, sh.k, sh.n, TRIT_GEMV_FLOAT, sh.rms,
                                          (uint64_t)(sh.m * 1000 + sh.k + 1));
        SCOPED_TRACE("M=" + std::to_string(sh.m) + " K=" + std::to_string(sh.k) +
                     " N=" + std::to_string(sh.n) + (sh.rms ? " rmsnorm" : ""));
        tt::GemvRun run = tt::run_gemv(cpu, p, TRIT_DTYPE_F32, TRIT_DTYPE_F32, false);
        ASSERT_EQ(TRIT_OK, run.status) << trit_last_error();

        const int64_t pitch = cu_gemv_pitch(sh.k), kp = pitch * CU_GEMV_CHUNK;
        std::vector<uint8_t> lay = repack(p.w, sh.m, sh.k);
        size_t bad = 0;
        for (int64_t t = 0; t < sh.n; t++) {
            std::vector<float> xp = emulate_xprime(p, t);
            const float a = absmax(xp);
            ASSERT_GT(a, 0.0f);
            const double mul = 1073741824.0 / (double)a, unit = (double)a / 1073741824.0;
            std::vector<std::vector<int8_t>> q(CU_GEMV_PLANES, std::vector<int8_t>((size_t)kp, 0));
            int32_t qtot[CU_GEMV_PLANES] = {};
            for (int64_t e = 0; e < sh.k; e++) {
                int8_t d[CU_GEMV_PLANES];
                cu_gemv_digits((int32_t)std::rint((double)xp[(size_t)e] * mul), d);
                for (int pl = 0; pl < CU_GEMV_PLANES; pl++) {
                    q[(size_t)pl][(size_t)e] = d[pl];
                    qtot[pl] += d[pl];
                }
            }
            for (int64_t r = 0; r < sh.m; r++) {
                const uint8_t *row = lay.data() + r * pitch * CU_GEMV_CHUNK_BYTES;
                uint32_t raw[CU_GEMV_PLANES];
                for (int pl = 0; pl < CU_GEMV_PLANES; pl++)
                    raw[pl] = emulate_row(row, pitch, q[(size_t)pl], 2);
                const float y = cu_gemv_float_combine(raw, qtot, unit, p.scales[(size_t)r]);
                const float want = run.y[(size_t)(t * sh.m + r)];
                if (!(y == want) && bad++ < 5)
                    ADD_FAILURE() << "token " << t << " row " << r << ": emulated " << y << ", cpu "
                                  << want;
            }
        }
        EXPECT_EQ(0u, bad);
    }
}

// test_cuda_gemv_emulated.cpp — the CUDA GEMV kernels themselves (cuda/gemv_kernels.h:
// gemv_prologue, every gemv_main variant the host side launches, gemv_finish) compiled as plain
// C++ and run on the CPU emulation of tests/cuda_emu.h, launched as gemv.cu launches them (the
// same plan_launch: template variant, grid, split count, scratch layout, shared memory), and
// compared with the fp64 reference (tolerance per DESIGN.md, INT8 accumulators exactly) and, bit
// for bit, with the CPU plugin through the public API where both compute the same thing (no
// block scales, no exp in the activation).
//
// What the emulation adds for this kernel: ld.global.nc loads (load_stream) must be 16-byte
// aligned and inside a weight matrix, and so must L2 prefetches (prefetch_l2), of which every
// call must issue some before the wait; programmatic dependent launch is modelled by showing the
// main kernel poison instead of the prologue's output, and the split-K finish poison instead of
// all the scratch (partials included), until a thread of the block has executed
// griddepcontrol.wait (pdl_wait), so a read before the wait fails the comparison (checked
// for the first thread that runs: thread 0, or the last with TRIT_TEST_EMULATION_REVERSE=1);
// the prologue runs both with x' kept in shared memory and with x reloaded, on aligned rows
// (four elements a load) and misaligned ones;
// y and the scratch start poisoned and every array has guard bytes on both sides that must stay
// intact; the dynamic shared memory is bounded by the plan's size. The emulation's own limits are
// in cuda_emu.h.
#include "common.h"
#include "gemv_run.h"

#include <cmath>
#include <set>
#include <sstream>

#include "cuda/gemv_layout.h"
#include "reference/ref_gemv.h"

#include "cuda_emu.h"

#ifdef TRIT_TEST_CUDA_EMULATION

namespace cuda_gemv_kernels {
alignas(16) inline unsigned char smem_raw[32768]; // the prologue's x' for K up to 8000

// The weight matrices of the running call (load_stream checks its reads against them).
inline const uint4 *emu_codes[2];
inline int64_t emu_code_count[2];
// PDL: the prologue's output as it wrote it, the copy the main kernel reads, their size, and
// whether this block has passed griddepcontrol.wait.
inline const unsigned char *emu_pdl_done = nullptr;
inline unsigned char *emu_pdl_view = nullptr;
inline size_t emu_pdl_bytes = 0;
inline bool emu_pdl_waited = false;
inline bool emu_thread_waited[emu::MAX_THREADS]; // per thread, for the prefetch count
inline int64_t emu_prefetches_before_wait = 0;
// gemv_main's blocks in launch order (x fastest, as emu::launch runs them): the first row of the
// first matrix each one touched (-1: none), to check that blocks of one row block are adjacent.
inline std::vector<int64_t> emu_block_rows;
inline int64_t emu_pitch = 1;

inline bool inside_weights(const void *p)
{
    const uint4 *u = (const uint4 *)p;
    bool inside = false;
    for (int i = 0; i < 2; i++)
        inside |= emu_codes[i] && u >= emu_codes[i] && u < emu_codes[i] + emu_code_count[i];
    if (inside && !emu_block_rows.empty() && emu_block_rows.back() < 0 && u >= emu_codes[0] &&
        u < emu_codes[0] + emu_code_count[0])
        emu_block_rows.back() = (u - emu_codes[0]) / emu_pitch;
    return inside && (uintptr_t)p % 16 == 0;
}
inline uint4 load_stream(const uint4 *p)
{
    if (!inside_weights(p)) {
        ADD_FAILURE() << "ld.global.nc of a uint4 outside the weights or not on 16 bytes";
        return make_uint4(0, 0, 0, 0);
    }
    return *p;
}
inline void prefetch_l2(const void *p)
{
    if (!inside_weights(p))
        ADD_FAILURE() << "prefetch.global.L2 outside the weights or not on 16 bytes";
    emu_prefetches_before_wait += !emu_thread_waited[emu::cur];
}
inline void pdl_wait()
{
    if (!emu_pdl_waited && emu_pdl_view)
        std::memcpy(emu_pdl_view, emu_pdl_done, emu_pdl_bytes);
    emu_pdl_waited = true;
    emu_thread_waited[emu::cur] = true;
}
inline void pdl_launch_dependents() {}
} // namespace cuda_gemv_kernels

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas" // #pragma unroll
#include "cuda/gemv_kernels.h"
#pragma GCC diagnostic pop

namespace {

using namespace cuda_gemv_kernels;

struct Case : tt::GemvSpec {
    int splits = 0;       // forced split count; 0: as plan_launch chooses for an H100 (132 SMs)
    bool xp_cache = true; // the prologue may keep x' in shared memory (else it reloads x)
    int64_t x_offset = 0; // elements before x (1: token 0's row is not 16-byte aligned)

    std::string describe() const
    {
        std::ostringstream os;
        os << "M=" << m << " K=" << k << " N=" << n << (path == TRIT_GEMV_INT8 ? " int8" : " float")
           << " x=" << trit_dtype_name(x_dtype) << " y=" << trit_dtype_name(y_dtype)
           << " scale=" << (int)scale << (rmsnorm ? " rmsnorm" : "") << (bias ? " bias" : "")
           << (residual ? " residual" : "") << (gated ? " gated" : "")
           << (accumulators ? " acc" : "") << " act=" << (int)act << " splits=" << splits
           << (xp_cache ? " xp-cache" : " xp-reload") << " x_offset=" << x_offset
           << " seed=" << seed;
        return os.str();
    }
};

// Device memory stand-in: `bytes` at a 256-byte aligned address (as cudaMalloc gives), filled
// with `fill`, with 256 guard bytes on each side that must stay untouched.
struct Mem {
    std::vector<unsigned char> raw;
    unsigned char *p = nullptr;
    size_t bytes = 0;
    explicit Mem(size_t n = 0, unsigned char fill = 0xFF) { reset(n, fill); }
    Mem(const Mem &) = delete;
    Mem &operator=(const Mem &) = delete;
    void fill_from(const void *src, size_t n) // n <= bytes
    {
        if (n)
            std::memcpy(p, src, n);
    }
    void reset(size_t n, unsigned char fill = 0xFF)
    {
        raw.assign(n + 768, 0x5A);
        bytes = n;
        p = (unsigned char *)(((uintptr_t)raw.data() + 256 + 255) & ~(uintptr_t)255);
        std::memset(p, fill, n);
    }
    bool guards_intact() const
    {
        for (size_t i = 0; i < raw.size(); i++) {
            const unsigned char *q = raw.data() + i;
            if ((q < p || q >= p + bytes) && *q != 0x5A)
                return false;
        }
        return true;
    }
};

struct Matrix {
    Mem codes, scales;
    int kind = TRIT_SCALE_TENSOR;
    float tscale = 1.0f;
};

// The resident layout of gemv.cu's upload (cu_gemv_repack_row), with the scale kind as given.
void upload(const std::vector<int8_t> &w, const std::vector<float> &scales, const Case &c,
            Matrix *out)
{
    const int64_t pitch = cu_gemv_pitch(c.k), row_bytes = (c.k + 3) / 4;
    std::vector<uint8_t> canon((size_t)(c.m * row_bytes));
    ASSERT_EQ(TRIT_OK, trit_pack_packed2(w.data(), c.m, c.k, canon.data(), canon.size()));
    out->codes.reset((size_t)(c.m * pitch * CU_GEMV_CHUNK_BYTES));
    for (int64_t r = 0; r < c.m; r++)
        cu_gemv_repack_row(canon.data() + r * row_bytes, c.k,
                           out->codes.p + r * pitch * CU_GEMV_CHUNK_BYTES);
    out->kind = c.scale;
    if (c.scale == TRIT_SCALE_TENSOR) {
        out->tscale = scales[0];
    } else {
        out->scales.reset(scales.size() * 4);
        out->scales.fill_from(scales.data(), scales.size() * 4);
    }
}

struct Result {
    std::vector<float> y;
    std::vector<int64_t> acc;
    bool outside_written = false;
    launch_plan plan;
    std::vector<int64_t> block_rows; // see emu_block_rows
};

// One call, launched as gemv.cu launches it.
Result run_emulated(const Case &c, const ref::GemvProblem &p)
{
    Result res;
    const bool int8 = c.path == TRIT_GEMV_INT8, acc_out = c.accumulators && int8 && !c.gated;
    const int mats = c.gated ? 2 : 1;
    const int64_t pitch = cu_gemv_pitch(c.k), kp = pitch * CU_GEMV_CHUNK;
    const size_t xs = c.x_dtype == TRIT_DTYPE_F16 ? 2 : 4, ys = c.y_dtype == TRIT_DTYPE_F16 ? 2 : 4;

    Matrix w[2];
    upload(p.w, p.scales, c, &w[0]);
    if (c.gated)
        upload(p.w_up, p.scales_up, c, &w[1]);
    std::vector<uint8_t> xb = tt::to_bytes(c.x_dtype, p.x);
    Mem x(xb.size() + (size_t)c.x_offset * xs), g(p.rmsnorm_weight.size() * 4),
        bias(p.bias.size() * 4);
    std::memcpy(x.p + c.x_offset * xs, xb.data(), xb.size());
    g.fill_from(p.rmsnorm_weight.data(), g.bytes);
    bias.fill_from(p.bias.data(), bias.bytes);
    std::vector<uint8_t> rb = tt::to_bytes(c.y_dtype, p.residual);
    Mem resid(rb.size()), y((size_t)(c.n * c.m) * ys), acc(acc_out ? (size_t)(c.n * c.m) * 4 : 0);
    resid.fill_from(rb.data(), rb.size());

    // The shared memory the prologue may use: the emulation's array, or too little for x'.
    const launch_plan pl =
        plan_launch(int8, (int)c.n, mats, c.scale == TRIT_SCALE_BLOCK, c.m, pitch, 132, c.splits,
                    c.xp_cache ? sizeof(smem_raw) : kPrologueSmemBytes);
    EXPECT_EQ(c.xp_cache, pl.xp_cache);
    res.plan = pl;
    // The prologue writes into `done`; the main kernel and the finish read `view` (see pdl_wait).
    // The finish sees `view` as gemv_main left it only after its wait (from `main_done`).
    Mem done(pl.scratch_bytes), view(pl.scratch_bytes), main_done(pl.scratch_bytes);

    prologue_args pa;
    std::memset(&pa, 0, sizeof(pa));
    pa.x = x.p + c.x_offset * xs;
    pa.x_stride = c.k;
    pa.x_f16 = c.x_dtype == TRIT_DTYPE_F16;
    pa.k = c.k;
    pa.kp = kp;
    pa.pitch = pitch;
    pa.g = c.rmsnorm ? (const float *)g.p : nullptr;
    pa.eps = p.rmsnorm_eps;
    main_args ma;
    std::memset(&ma, 0, sizeof(ma));
    for (int i = 0; i < mats; i++) {
        ma.codes[i] = (const uint4 *)w[i].codes.p;
        ma.scales[i] = w[i].kind == TRIT_SCALE_TENSOR ? nullptr : (const float *)w[i].scales.p;
        ma.kind[i] = w[i].kind;
        ma.tscale[i] = w[i].tscale;
        emu_codes[i] = ma.codes[i];
        emu_code_count[i] = c.m * pitch;
    }
    if (mats == 1)
        emu_codes[1] = nullptr;
    ma.m = c.m;
    ma.pitch = pitch;
    ma.nb = (c.k + TRIT_SCALE_BLOCK_K - 1) / TRIT_SCALE_BLOCK_K;
    ma.kp = kp;
    ma.n = (int)c.n;
    ma.bias = c.bias ? (const float *)bias.p : nullptr;
    ma.res = c.residual ? resid.p : nullptr;
    ma.res_stride = c.m;
    ma.y = y.p;
    ma.y_stride = c.m;
    ma.y_f16 = c.y_dtype == TRIT_DTYPE_F16;
    ma.act = (int)c.act;
    ma.acc = acc_out ? (int32_t *)acc.p : nullptr;
    ma.acc_stride = c.m;
    prologue_args pa_view = pa;
    main_args ma_done = ma;
    bind_scratch(pl, (char *)done.p, &pa, &ma_done);
    bind_scratch(pl, (char *)view.p, &pa_view, &ma);

    emu::use_smem(smem_raw, sizeof(smem_raw));
    try {
        emu::launch(gemv_prologue, dim3{(unsigned)c.n, 1, 1}, PRO_THREADS, pl.pro_smem, pa);
        emu_pdl_done = done.p;
        emu_pdl_view = view.p;
        emu_pdl_bytes = pl.part_off; // everything but the split-K partials
        emu_prefetches_before_wait = 0;
        emu_pitch = pitch;
        emu_block_rows.clear();
        emu::launch(pl.v.main, dim3{(unsigned)pl.grid_x, (unsigned)pl.splits, (unsigned)pl.grid_z},
                    MAIN_THREADS, pl.v.smem, ma, [&] {
                        emu_block_rows.push_back(-1);
                        std::memset(view.p, 0xFF, pl.part_off);
                        emu_pdl_waited = false;
                        std::fill(std::begin(emu_thread_waited), std::end(emu_thread_waited),
                                  false);
                    });
        EXPECT_GT(emu_prefetches_before_wait, 0) << "no L2 prefetch of weights before the wait";
        res.block_rows = emu_block_rows;
        emu_block_rows.clear();
        if (pl.splits > 1) {
            main_done.fill_from(view.p, pl.scratch_bytes);
            emu_pdl_done = main_done.p;
            emu_pdl_bytes = pl.scratch_bytes;
            emu::launch(pl.v.finish, dim3{(unsigned)pl.finish_blocks, 1, 1}, FIN_THREADS, 0, ma,
                        [&] {
                            std::memset(view.p, 0xFF, pl.scratch_bytes);
                            emu_pdl_waited = false;
                        });
        }
    } catch (const std::exception &e) {
        ADD_FAILURE() << "emulation: " << e.what();
    }
    emu_pdl_view = nullptr;
    emu_codes[0] = emu_codes[1] = nullptr;

    res.y = tt::from_bytes(c.y_dtype, std::vector<uint8_t>(y.p, y.p + y.bytes));
    for (size_t i = 0; acc_out && i < (size_t)(c.n * c.m); i++) {
        int32_t v;
        std::memcpy(&v, acc.p + 4 * i, 4);
        res.acc.push_back(v);
    }
    for (const Mem *mem : {&x, &g, &bias, &resid, &y, &acc, &done, &view, &main_done, &w[0].codes,
                           &w[0].scales, &w[1].codes, &w[1].scales})
        res.outside_written |= !mem->guards_intact();
    return res;
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

// Runs a case on the emulation; checks it against the reference and the CPU plugin. `variants`
// collects the (T, planes, mats, block) variants that ran.
void check_case(const Case &c, std::set<std::string> *variants)
{
    SCOPED_TRACE(c.describe());
    ref::GemvProblem p = tt::make_gemv_problem(c);
    ref::GemvResult want = ref::gemv(p);
    Result got = run_emulated(c, p);
    if (::testing::Test::HasFatalFailure())
        return;
    EXPECT_FALSE(got.outside_written) << "a kernel wrote outside its arrays";
    EXPECT_LT(tt::rel_error(got.y, want.y), tt::tolerance(c.y_dtype));
    if (c.splits)
        EXPECT_EQ(c.splits, got.plan.splits);
    // The token tiles of one row block are consecutive blocks (they share W through L2): each
    // run of `tiles` blocks (per split) starts at the same row, and the runs walk down the rows.
    const int64_t tiles = got.plan.tiles, gx = got.plan.grid_x;
    EXPECT_EQ(got.plan.splits * gx * got.plan.grid_z, (int64_t)got.block_rows.size());
    for (size_t i = 0; i < got.block_rows.size(); i++) {
        const int64_t b = (int64_t)i % gx, first = (int64_t)i - b % tiles;
        const int64_t rb = b / tiles;
        const int64_t want_row = rb * MAIN_WARPS * got.plan.v.rows;
        int64_t c0, c1;
        cu_gemv_split_range(cu_gemv_pitch(c.k), got.plan.splits, (int)((int64_t)i / gx), &c0, &c1);
        if (want_row >= c.m || c0 == c1) // no rows, or a split without chunks: no loads
            continue;
        EXPECT_EQ(want_row, got.block_rows[i]) << "block " << i;
        EXPECT_EQ(got.block_rows[(size_t)first], got.block_rows[i]) << "block " << i;
    }
    variants->insert(std::to_string(got.plan.v.t) + "/" + std::to_string(got.plan.planes) + "/" +
                     (c.gated ? "2" : "1") + "/" + (c.scale == TRIT_SCALE_BLOCK ? "b" : "-"));
    size_t bad = 0;
    if (c.accumulators) {
        ASSERT_EQ(want.acc.size(), got.acc.size());
        for (size_t i = 0; i < got.acc.size(); i++)
            if (got.acc[i] != want.acc[i] && bad++ < 5)
                ADD_FAILURE() << "accumulator (token " << i / c.m << ", row " << i % c.m
                              << "): emulated " << got.acc[i] << ", reference " << want.acc[i];
    }
    // The CPU plugin computes the same exact integer sums and rescales them the same way, so
    // without block scales (which the kernel sums per chunk in f32) and without an exp in the
    // activation (the CPU plugin has its own expf, CUDA and the emulation theirs) the outputs
    // agree bit for bit.
    if (c.scale == TRIT_SCALE_BLOCK || c.act == TRIT_ACT_SILU || c.act == TRIT_ACT_GELU)
        return;
    trit_device *cpu = cpu_device();
    ASSERT_NE(nullptr, cpu);
    tt::GemvRun run = tt::run_gemv(cpu, p, c.x_dtype, c.y_dtype, c.accumulators);
    ASSERT_EQ(TRIT_OK, run.status) << trit_last_error();
    size_t differ = 0;
    for (size_t i = 0; i < got.y.size(); i++)
        differ += std::memcmp(&got.y[i], &run.y[i], 4) != 0;
    if (differ)
        ADD_FAILURE() << differ << " of " << got.y.size() << " outputs differ from the CPU plugin";
}

} // namespace

#endif // TRIT_TEST_CUDA_EMULATION

namespace {

TEST(CudaGemvEmulated, TokenTilesOfOneRowBlockAreConsecutiveBlocksWithinGridLimits)
{
#ifndef TRIT_TEST_CUDA_EMULATION
    GTEST_SKIP() << "needs _Float16 and <ucontext.h>";
#else
    for (int tiles : {1, 2, 4})
        for (int64_t b :
             std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 39, 40, 41, (1ll << 31) - 1, 1ll << 31}) {
            uint32_t rb, tile;
            main_block_coords((uint32_t)b, (uint32_t)tiles, &rb, &tile);
            EXPECT_EQ(b / tiles, (int64_t)rb);
            EXPECT_EQ(b % tiles, (int64_t)tile);
        }
    const int64_t x_max = ((int64_t)1 << 31) - 1;
    // FLOAT N = 16 (4 tiles) on 8192 x 28672 and on the largest M upload takes (2^31 - 1, one row
    // of each matrix of a gated pair per warp: 4 * 2^29 blocks, one more than x allows).
    for (int64_t m : {(int64_t)8192, (int64_t)28672, x_max})
        for (int mats : {1, 2}) {
            SCOPED_TRACE("m " + std::to_string(m) + " mats " + std::to_string(mats));
            const launch_plan pl = plan_launch(false, 16, mats, false, m, 448, 132, 0, 0);
            EXPECT_EQ(4, pl.tiles);
            EXPECT_LE(pl.grid_x, x_max);
            EXPECT_GE(pl.grid_z, 1);
            EXPECT_LE(pl.grid_z, 65535);
            EXPECT_LE(pl.splits, 65535);
            EXPECT_GE(pl.grid_x * pl.grid_z, pl.blocks_x * pl.tiles);
            EXPECT_LT(pl.grid_x * (pl.grid_z - 1), pl.blocks_x * pl.tiles);
            EXPECT_EQ(m == x_max && mats == 2 ? 2 : 1, pl.grid_z);
        }
#endif
}

TEST(CudaGemvEmulated, KernelsMatchTheReferenceOnACpuEmulation)
{
#ifndef TRIT_TEST_CUDA_EMULATION
    GTEST_SKIP() << "needs _Float16 and <ucontext.h>";
#else
    std::vector<Case> cases;
    std::set<std::string> variants;
    // Every variant the host launches: token tiles (N = 1, 2, 3, 4, 8, 16), both paths, one
    // matrix or a gated pair, row or block scales.
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8})
        for (int64_t n : {1, 2, 3, 4, 8, 16})
            for (bool gated : {false, true})
                for (trit_scale_kind sk : {TRIT_SCALE_ROW, TRIT_SCALE_BLOCK}) {
                    Case c;
                    c.path = path;
                    c.n = n;
                    c.gated = gated;
                    c.scale = sk;
                    c.k = 515;
                    c.act = gated ? TRIT_ACT_SILU : TRIT_ACT_NONE;
                    c.accumulators = path == TRIT_GEMV_INT8 && !gated && sk != TRIT_SCALE_BLOCK;
                    c.seed = (uint64_t)(n * 8 + gated * 4 + sk * 2 + path);
                    cases.push_back(c);
                }
    // Every N from 1 to 16 (partial token tiles), odd M and K, forced split-K.
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8})
        for (int64_t n = 1; n <= 16; n++) {
            Case c;
            c.path = path;
            c.n = n;
            c.m = 5 + 2 * n;
            c.k = 63 + 64 * (n % 3);
            c.splits = n % 2 ? 3 : 1;
            c.accumulators = path == TRIT_GEMV_INT8;
            c.rmsnorm = n % 4 == 1;
            c.seed = (uint64_t)(100 + n);
            cases.push_back(c);
        }
    // Odd shapes; K = 4097 (65 chunks) takes 2 splits on its own.
    const int64_t shapes[][2] = {{1, 1}, {3, 5}, {129, 33}, {19, 257}, {7, 1000}, {2, 4097}};
    for (const auto &sh : shapes)
        for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8})
            for (int splits : {0, 1, 3}) {
                Case c;
                c.m = sh[0];
                c.k = sh[1];
                c.n = 2;
                c.path = path;
                c.splits = splits;
                c.accumulators = path == TRIT_GEMV_INT8;
                c.seed = (uint64_t)(sh[0] * 7 + sh[1]);
                cases.push_back(c);
            }
    // Long rows: every prologue thread sums several elements (the fixed order), and a lane walks
    // two or three chunks of a row (through the 2-deep load ring of the N = 1 INT8 variants).
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8})
        for (int64_t k : {4500, 6011})
            for (int64_t n : {1, 3})
                for (bool gated : {false, true}) {
                    Case c;
                    c.path = path;
                    c.m = 9;
                    c.k = k;
                    c.n = n;
                    c.gated = gated;
                    c.rmsnorm = true;
                    c.accumulators = path == TRIT_GEMV_INT8 && !gated;
                    c.seed = (uint64_t)(k + n * 4 + gated * 2 + path);
                    cases.push_back(c);
                }
    // The epilogue and prologue options, f16 in and out, every scale kind, split or not.
    for (trit_gemv_path path : {TRIT_GEMV_FLOAT, TRIT_GEMV_INT8})
        for (trit_activation act : {TRIT_ACT_NONE, TRIT_ACT_RELU2, TRIT_ACT_SILU, TRIT_ACT_GELU})
            for (int v = 0; v < 4; v++) {
                Case c;
                c.path = path;
                c.act = act;
                c.n = 1 + v * 2;
                c.m = 23;
                c.k = 300;
                c.rmsnorm = v != 1;
                c.bias = v != 3;
                c.residual = v != 2;
                c.gated = v == 3;
                c.bias = c.bias && !c.gated;
                c.x_dtype = v & 1 ? TRIT_DTYPE_F16 : TRIT_DTYPE_F32;
                // (ReLU² of the gate times up can pass f16's 65504 here: y in f32 there.)
                c.y_dtype =
                    v & 2 && !(c.gated && act == TRIT_ACT_RELU2) ? TRIT_DTYPE_F16 : TRIT_DTYPE_F32;
                c.scale = (trit_scale_kind)((v + (int)act) % 3);
                c.accumulators = path == TRIT_GEMV_INT8 && !c.gated && c.scale != TRIT_SCALE_BLOCK;
                c.splits = (int)act % 2 ? 3 : 1;
                c.seed = (uint64_t)(1000 + act * 10 + v);
                cases.push_back(c);
            }
    // Half the cases reload x in the prologue's last pass instead of keeping x' in shared
    // memory; every fifth has no 16-byte aligned token row.
    for (size_t i = 0; i < cases.size(); i++) {
        cases[i].xp_cache = i % 2 == 0;
        cases[i].x_offset = i % 5 == 2;
    }
    for (const Case &c : cases) {
        check_case(c, &variants);
        if (HasFailure())
            return;
    }
    // INT8: T = 1, 2, 4, 8, 16; FLOAT: 1, 2, 4; each with 1 or 2 matrices, row or block scales.
    EXPECT_EQ(32u, variants.size());
#endif
}

} // namespace

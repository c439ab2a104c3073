// test_cuda_attention_plan.cpp — the CUDA attention and RoPE checked on the CPU, so they are
// tested on machines without a GPU.
//
// The planning (cuda/attention_plan.h): for many random ragged batches, head layouts, masks and
// split requests, every visible (query, key) pair is covered by exactly one work item, no item
// reaches past kv_len, the per-row and per-warp bounds the kernels use never hide a visible key
// nor skip a tile that holds one, the "unmasked tile" shortcut is only taken where every key is
// visible, and split partials tile their scratch without overlap.
//
// The kernels (cuda/attention_kernels.h, cuda/rope_kernel.h): compiled as plain C++ against a CPU
// emulation of the CUDA features they use (tests/cuda_emu.h) and compared with the fp64 references.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <sstream>
#include <vector>

#include "cuda/attention_plan.h"

namespace {

struct Batch {
    cuda_attn_config cfg{};
    std::vector<int32_t> q_lens, kv_lens;
    std::vector<int64_t> q_starts;
    int32_t kv_splits = 0;

    std::string describe() const
    {
        std::ostringstream os;
        os << "H=" << cfg.n_heads << " Hkv=" << cfg.n_kv_heads << " D=" << cfg.head_dim
           << (cfg.causal ? " causal" : "") << " window=" << cfg.window << " mma=" << cfg.mma
           << " mma_min_q=" << cfg.mma_min_q << " mma_tile=" << cfg.mma_tile
           << " simt_rows=" << cfg.simt_rows << " simt_tile=" << cfg.simt_tile
           << " target=" << cfg.target_items << " splits=" << kv_splits << " q_lens=[";
        for (size_t i = 0; i < q_lens.size(); i++)
            os << (i ? "," : "") << q_lens[i];
        os << "] kv_lens=[";
        for (size_t i = 0; i < kv_lens.size(); i++)
            os << (i ? "," : "") << kv_lens[i];
        os << "]";
        return os.str();
    }
};

// The specification (trit.h): key j is visible to a query at position p.
bool visible(const cuda_attn_config &c, int32_t kv_len, int32_t p, int32_t j)
{
    if (j < 0 || j >= kv_len)
        return false;
    if (c.causal && j > p)
        return false;
    if (c.window > 0 && p - j >= c.window)
        return false;
    return true;
}

struct Planned {
    cuda_attn_plan plan{};
    std::vector<cuda_attn_item> items[2];
    std::vector<cuda_attn_group> groups;
};

Planned make_plan(const Batch &b)
{
    Planned r;
    cuda_attn_plan_splits(&b.cfg, (uint32_t)b.q_lens.size(), b.q_lens.data(), b.kv_lens.data(),
                          b.q_starts.data(), b.kv_splits, &r.plan);
    for (int k = 0; k < 2; k++) {
        r.items[k].resize((size_t)r.plan.n_items[k] + 1);
        r.plan.items[k] = r.items[k].data();
    }
    r.groups.resize((size_t)r.plan.n_groups + 1);
    r.plan.groups = r.groups.data();
    const int64_t n0 = r.plan.n_items[0], n1 = r.plan.n_items[1], ng = r.plan.n_groups;
    const uint64_t pf = r.plan.partial_floats;
    cuda_attn_plan_walk(&b.cfg, (uint32_t)b.q_lens.size(), b.q_lens.data(), b.kv_lens.data(),
                        b.q_starts.data(), &r.plan);
    // Filling walks the same plan the counting walk sized.
    EXPECT_EQ(n0, r.plan.n_items[0]);
    EXPECT_EQ(n1, r.plan.n_items[1]);
    EXPECT_EQ(ng, r.plan.n_groups);
    EXPECT_EQ(pf, r.plan.partial_floats);
    r.items[0].resize((size_t)n0);
    r.items[1].resize((size_t)n1);
    r.groups.resize((size_t)ng);
    return r;
}

// Checks every property on one batch (the first few failures are reported in detail).
void check_batch(const Batch &b)
{
    SCOPED_TRACE(b.describe());
    const cuda_attn_config &c = b.cfg;
    const int32_t ratio = c.n_heads / c.n_kv_heads, d = c.head_dim;
    const size_t S = b.q_lens.size();
    const int64_t T = b.q_starts[S];
    const int32_t max_kv = *std::max_element(b.kv_lens.begin(), b.kv_lens.end());
    Planned pl = make_plan(b);

    // cover[(token * H + head) * max_kv + key]: how many items compute that pair.
    std::vector<uint16_t> cover((size_t)T * c.n_heads * max_kv, 0);
    std::vector<char> partial_used((size_t)pl.plan.partial_floats, 0);
    int failures = 0;
    auto fail = [&](const std::string &what) {
        if (failures++ < 5)
            ADD_FAILURE() << what;
    };

    for (int path = 0; path < 2; path++) {
        for (const cuda_attn_item &it : pl.items[path]) {
            std::ostringstream id;
            id << (path ? "mma" : "simt") << " item seq=" << it.seq << " head0=" << it.head0
               << " nh=" << it.n_heads << " tok0=" << it.tok0 << " nt=" << it.n_tok << " keys=["
               << it.j_begin << "," << it.j_end << ")";
            ASSERT_LT((size_t)it.seq, S);
            const int32_t q_len = b.q_lens[(size_t)it.seq], kv_len = b.kv_lens[(size_t)it.seq];
            if (cuda_attn_path_of(&c, q_len) != path)
                fail(id.str() + ": on the wrong path");
            if (it.kv_len != kv_len || it.j_begin < 0 || it.j_end > kv_len || it.j_end < it.j_begin)
                fail(id.str() + ": key range outside [0, kv_len)");
            const int32_t rows_max = path ? c.mma_rows : c.simt_rows;
            if (it.n_tok < 1 || it.n_heads < 1 || it.n_tok * it.n_heads > rows_max)
                fail(id.str() + ": too many or no rows");
            if (it.head0 / ratio != it.kv_head || it.head0 + it.n_heads > (it.kv_head + 1) * ratio)
                fail(id.str() + ": heads outside the KV head's group");
            const int64_t t_in_seq = it.tok0 - b.q_starts[(size_t)it.seq];
            if (t_in_seq < 0 || t_in_seq + it.n_tok > q_len || it.pos0 != kv_len - q_len + t_in_seq)
                fail(id.str() + ": tokens or positions wrong");
            const int32_t tile = path ? c.mma_tile : c.simt_tile;
            const int32_t rows = it.n_heads * it.n_tok;
            if (it.partial >= 0) {
                const uint64_t n = (uint64_t)rows * (uint64_t)(d + 2);
                if ((uint64_t)it.partial + n > pl.plan.partial_floats) {
                    fail(id.str() + ": partial past the scratch");
                } else {
                    for (uint64_t i = 0; i < n; i++)
                        if (partial_used[(size_t)it.partial + i]++)
                            fail(id.str() + ": partial overlaps another");
                }
            }

            // Per row: the bounds the kernels mask with, against the specification.
            for (int32_t r = 0; r < rows; r++) {
                const int32_t t = r / it.n_heads, h = it.head0 + r % it.n_heads;
                const int32_t p = it.pos0 + t;
                int32_t lo, hi;
                cuda_attn_key_range(c.causal, c.window, kv_len, p, p, it.j_begin, it.j_end, &lo,
                                    &hi);
                for (int32_t j = it.j_begin; j < it.j_end; j++) {
                    const bool vis = visible(c, kv_len, p, j);
                    const bool in_row = j >= lo && j < hi;
                    if (in_row != vis)
                        fail(id.str() + ": row bounds disagree with the mask at key " +
                             std::to_string(j));
                    if (vis)
                        cover[(size_t)(((it.tok0 + t) * c.n_heads + h) * max_kv + j)]++;
                }
            }

            // Tiles: the MMA kernel's warps skip tiles outside their rows' union and skip the
            // mask on tiles every row of the warp fully sees; the SIMT kernel walks every tile.
            for (int32_t j0 = it.j_begin; j0 < it.j_end; j0 += tile) {
                const int32_t warps = path ? (rows + 15) / 16 : 1;
                for (int32_t w = 0; w < warps; w++) {
                    const int32_t r0 = path ? w * 16 : 0;
                    const int32_t r1 = path ? std::min(r0 + 15, rows - 1) : rows - 1;
                    const int32_t p_first = it.pos0 + r0 / it.n_heads;
                    const int32_t p_last = it.pos0 + r1 / it.n_heads;
                    int32_t wlo, whi, lo_f, hi_f, lo_l, hi_l;
                    cuda_attn_key_range(c.causal, c.window, kv_len, p_first, p_last, it.j_begin,
                                        it.j_end, &wlo, &whi);
                    cuda_attn_key_range(c.causal, c.window, kv_len, p_first, p_first, it.j_begin,
                                        it.j_end, &lo_f, &hi_f);
                    cuda_attn_key_range(c.causal, c.window, kv_len, p_last, p_last, it.j_begin,
                                        it.j_end, &lo_l, &hi_l);
                    const bool needed = cuda_attn_tile_needed(wlo, whi, j0, tile);
                    const bool unmasked = cuda_attn_tile_unmasked(lo_l, hi_f, j0, tile);
                    bool any = false, all = true;
                    for (int32_t r = r0; r <= r1; r++)
                        for (int32_t j = j0; j < j0 + tile; j++) {
                            const bool vis =
                                j < it.j_end && visible(c, kv_len, it.pos0 + r / it.n_heads, j);
                            any |= vis;
                            all &= vis;
                        }
                    if (any && !needed)
                        fail(id.str() + ": warp " + std::to_string(w) + " skips tile " +
                             std::to_string(j0) + " that holds a visible key");
                    if (unmasked && !all)
                        fail(id.str() + ": warp " + std::to_string(w) + " skips the mask on tile " +
                             std::to_string(j0) + " that holds a hidden key");
                }
            }
            // Splits start on tile boundaries of the row block's first visible key.
            int32_t jb, je;
            cuda_attn_key_range(c.causal, c.window, kv_len, it.pos0, it.pos0 + it.n_tok - 1, 0,
                                kv_len, &jb, &je);
            if ((it.j_begin - jb) % tile != 0 || it.j_begin < jb || it.j_end > je)
                fail(id.str() + ": split not on a tile boundary of the row block's keys");
        }
    }

    // Every visible pair exactly once.
    for (size_t s = 0; s < S; s++)
        for (int32_t i = 0; i < b.q_lens[s]; i++) {
            const int64_t tok = b.q_starts[s] + i;
            const int32_t p = b.kv_lens[s] - b.q_lens[s] + i;
            for (int32_t h = 0; h < c.n_heads; h++)
                for (int32_t j = 0; j < max_kv; j++) {
                    const int want = visible(c, b.kv_lens[s], p, j) ? 1 : 0;
                    const int got = cover[(size_t)((tok * c.n_heads + h) * max_kv + j)];
                    if (got != want)
                        fail("seq " + std::to_string(s) + " token " + std::to_string(i) + " head " +
                             std::to_string(h) + " key " + std::to_string(j) + " covered " +
                             std::to_string(got) + " times, want " + std::to_string(want));
                }
        }

    // Groups: the n_splits items of a group are its rows' consecutive partials.
    for (const cuda_attn_group &g : pl.groups) {
        const uint64_t rows = (uint64_t)g.n_heads * (uint64_t)g.n_tok;
        int found = 0;
        for (int path = 0; path < 2; path++)
            for (const cuda_attn_item &it : pl.items[path])
                if (it.partial >= 0 && it.tok0 == g.tok0 && it.head0 == g.head0) {
                    const int64_t k = (it.partial - g.partial) / (int64_t)(rows * (d + 2));
                    if (it.n_heads != g.n_heads || it.n_tok != g.n_tok || k < 0 ||
                        k >= g.n_splits ||
                        it.partial != g.partial + k * (int64_t)(rows * (uint64_t)(d + 2)))
                        fail("group tok0=" + std::to_string(g.tok0) +
                             " head0=" + std::to_string(g.head0) + ": item partial does not fit");
                    found++;
                }
        if (found != g.n_splits)
            fail("group tok0=" + std::to_string(g.tok0) + " has " + std::to_string(found) +
                 " split items, want " + std::to_string(g.n_splits));
    }
    for (size_t i = 0; i < partial_used.size(); i++)
        if (!partial_used[i]) {
            fail("partial float " + std::to_string(i) + " belongs to no split");
            break;
        }
    if (pl.plan.splits > 1 && pl.plan.partial_floats * sizeof(float) > c.partial_bytes_max)
        fail("partials exceed the cap although the split count could still shrink");
}

cuda_attn_config base_config(int H, int Hkv, int D)
{
    cuda_attn_config c{};
    c.n_heads = H;
    c.n_kv_heads = Hkv;
    c.head_dim = D;
    c.mma = 1;
    c.mma_min_q = 16;
    c.mma_rows = 64;
    c.mma_tile = D <= 128 ? 64 : 32;
    c.simt_rows = D <= 128 ? 16 : 8;
    c.simt_tile = 32;
    c.target_items = 528;
    c.partial_bytes_max = (uint64_t)64 << 20;
    return c;
}

Batch make_batch(const cuda_attn_config &c, std::vector<int32_t> q, std::vector<int32_t> kv,
                 int32_t splits)
{
    Batch b;
    b.cfg = c;
    b.q_lens = std::move(q);
    b.kv_lens = std::move(kv);
    b.kv_splits = splits;
    b.q_starts.assign(1, 0);
    for (int32_t n : b.q_lens)
        b.q_starts.push_back(b.q_starts.back() + n);
    return b;
}

TEST(CudaAttentionPlan, CoversEveryVisibleKeyOnceForRandomBatches)
{
    std::mt19937_64 rng(12345);
    auto pick = [&](int lo, int hi) {
        return (int)std::uniform_int_distribution<int>(lo, hi)(rng);
    };
    const int heads[][2] = {{1, 1}, {4, 4}, {8, 2}, {12, 3}, {8, 1}, {6, 2}, {32, 8}};
    const int dims[] = {64, 80, 96, 128, 256};
    for (int iter = 0; iter < 400; iter++) {
        const auto &hh = heads[pick(0, 6)];
        const int d = dims[pick(0, 4)];
        cuda_attn_config c = base_config(hh[0], hh[1], d);
        c.causal = pick(0, 3) != 0;
        c.window = pick(0, 2) == 0 ? pick(1, 300) : 0;
        c.mma = pick(0, 1);
        c.mma_min_q = pick(1, 20);
        c.simt_tile = pick(0, 1) ? 32 : 16;
        c.target_items = pick(1, 600);
        if (pick(0, 4) == 0)
            c.partial_bytes_max = (uint64_t)pick(1, 20000) * 4;
        const int n_seqs = pick(1, 4);
        std::vector<int32_t> q, kv;
        for (int s = 0; s < n_seqs; s++) {
            int32_t ql = pick(0, 3) == 0 ? 1 : pick(1, 150);
            q.push_back(ql);
            kv.push_back(ql + (pick(0, 2) == 0 ? 0 : pick(0, 700)));
        }
        const int32_t split_choices[] = {0, 0, 1, 2, 3, 7, 64, 100000};
        check_batch(make_batch(c, q, kv, split_choices[pick(0, 7)]));
        if (HasFailure())
            return;
    }
}

TEST(CudaAttentionPlan, DecodeAtLongContextSplitsToFillTheGpu)
{
    // 32 query heads over 8 KV heads, D = 128, one decode token at 32768: 8 unsplit items, so
    // the automatic split must reach the target (4 blocks per SM on 132 SMs) with >= 2 tiles each.
    cuda_attn_config c = base_config(32, 8, 128);
    c.causal = 1;
    Batch b = make_batch(c, {1}, {32768}, 0);
    check_batch(b);
    Planned pl = make_plan(b);
    EXPECT_EQ(0, pl.plan.n_items[CUDA_ATTN_MMA]);
    EXPECT_GE(pl.plan.n_items[CUDA_ATTN_SIMT], c.target_items);
    EXPECT_EQ(8, pl.plan.n_groups);
    for (const cuda_attn_item &it : pl.items[CUDA_ATTN_SIMT]) {
        EXPECT_EQ(4, it.n_heads); // the whole GQA group in one block: K/V read once
        EXPECT_GE(it.j_end - it.j_begin, 2 * c.simt_tile);
    }
}

TEST(CudaAttentionPlan, ExplicitSplitsAreHonouredAndClamped)
{
    cuda_attn_config c = base_config(8, 2, 128);
    c.causal = 1;
    for (int32_t splits : {1, 2, 5, 64, 100000}) {
        Batch b = make_batch(c, {1}, {4096}, splits);
        check_batch(b);
        Planned pl = make_plan(b);
        const int32_t tiles = 4096 / c.simt_tile;
        const int32_t want = std::min(splits, tiles);
        EXPECT_EQ(2 * want, pl.plan.n_items[CUDA_ATTN_SIMT]) << "kv_splits=" << splits;
        EXPECT_EQ(want > 1 ? 2 : 0, pl.plan.n_groups) << "kv_splits=" << splits;
    }
}

TEST(CudaAttentionPlan, PrefillTakesTheTensorCorePathOnlyWithAnF16Cache)
{
    cuda_attn_config c = base_config(4, 2, 64);
    c.causal = 1;
    Batch b = make_batch(c, {300, 1, 15, 16}, {700, 900, 15, 40}, 1);
    check_batch(b);
    Planned pl = make_plan(b);
    // 300 -> 5 token blocks x 4 heads, 16 -> 1 x 4 on tensor cores; 1 token -> 1 block and 15
    // tokens -> 2 blocks of 8 (2 heads per KV head, 16 rows) for each of the 2 KV heads.
    EXPECT_EQ(24, pl.plan.n_items[CUDA_ATTN_MMA]);
    EXPECT_EQ(2 + 4, pl.plan.n_items[CUDA_ATTN_SIMT]);
    c.mma = 0; // f32 cache
    Batch f = make_batch(c, {300, 1, 15, 16}, {700, 900, 15, 40}, 1);
    check_batch(f);
    EXPECT_EQ(0, make_plan(f).plan.n_items[CUDA_ATTN_MMA]);
}

TEST(CudaAttentionPlan, CausalPrefillSkipsTilesPastTheDiagonal)
{
    // 256 causal queries with no offset: the item of tokens 0..63 must not reach key 64, and its
    // first warp (tokens 0..15) needs only the first tile.
    cuda_attn_config c = base_config(1, 1, 128);
    c.causal = 1;
    Batch b = make_batch(c, {256}, {256}, 1);
    check_batch(b);
    Planned pl = make_plan(b);
    ASSERT_EQ(4, pl.plan.n_items[CUDA_ATTN_MMA]);
    const cuda_attn_item &first = pl.items[CUDA_ATTN_MMA][0];
    EXPECT_EQ(0, first.j_begin);
    EXPECT_EQ(64, first.j_end);
    const cuda_attn_item &last = pl.items[CUDA_ATTN_MMA][3];
    EXPECT_EQ(256, last.j_end);
    int32_t lo, hi;
    cuda_attn_key_range(1, 0, 256, last.pos0, last.pos0 + 15, last.j_begin, last.j_end, &lo, &hi);
    EXPECT_FALSE(cuda_attn_tile_needed(lo, hi, 192 + 64, 64));
    EXPECT_TRUE(cuda_attn_tile_needed(lo, hi, 192, 64));
    EXPECT_TRUE(cuda_attn_tile_needed(lo, hi, 0, 64));
    // A window of 16 behind the first query of that warp: tiles before it are skipped.
    cuda_attn_key_range(1, 16, 256, last.pos0, last.pos0 + 15, last.j_begin, last.j_end, &lo, &hi);
    EXPECT_FALSE(cuda_attn_tile_needed(lo, hi, 64, 64));
}

TEST(CudaAttentionPlan, WindowEdgesOnEveryTileOffset)
{
    // Each warp's first visible key (p - window + 1) lands on every offset inside a tile, the
    // last key of a tile included, for both paths and split counts.
    for (int mma : {1, 0})
        for (int32_t window = 1; window <= 140; window++) {
            cuda_attn_config c = base_config(2, 1, 64);
            c.causal = window % 3 != 0;
            c.window = window;
            c.mma = mma;
            c.simt_tile = 16;
            check_batch(make_batch(c, {130, 3}, {300, 77}, window % 4));
            if (HasFailure())
                return;
        }
}

TEST(CudaAttentionPlan, TileTestsMatchTheirDefinitionForEveryOffset)
{
    // needed: some key of [j0, j0 + tile) lies in [lo, hi); unmasked: all of them do.
    for (int32_t tile : {16, 32, 64})
        for (int32_t lo = 0; lo < 3 * tile; lo++)
            for (int32_t hi = 0; hi < 3 * tile; hi++)
                for (int32_t j0 = 0; j0 < 3 * tile; j0 += 8) {
                    bool any = false, all = true;
                    for (int32_t j = j0; j < j0 + tile; j++) {
                        any |= j >= lo && j < hi;
                        all &= j >= lo && j < hi;
                    }
                    ASSERT_EQ(any, cuda_attn_tile_needed(lo, hi, j0, tile) != 0)
                        << "lo=" << lo << " hi=" << hi << " j0=" << j0 << " tile=" << tile;
                    ASSERT_EQ(all, cuda_attn_tile_unmasked(lo, hi, j0, tile) != 0)
                        << "lo=" << lo << " hi=" << hi << " j0=" << j0 << " tile=" << tile;
                }
}

} // namespace

// ---- the kernels themselves, on a CPU emulation -----------------------------------------------
//
// cuda/attention_kernels.h and cuda/rope_kernel.h compiled as plain C++ against the emulation of
// the CUDA features they use in cuda_emu.h (which says what it models and what it cannot show).
// This runs the kernels' own index math, masking, online softmax, splits and combine against the
// fp64 references. Skipped without _Float16 or ucontext.
#include "cuda_emu.h"
#ifdef TRIT_TEST_CUDA_EMULATION

namespace cuda_rope {
alignas(16) inline unsigned char smem_raw[1024];
}

namespace cuda_attn {
alignas(16) inline unsigned char smem_raw[256 * 1024];
using emu::cp_async16;
using emu::cp_async_commit;
using emu::cp_async_wait;
using emu::ldmatrix_x4;
using emu::ldmatrix_x4_trans;
using emu::mma_16816;
} // namespace cuda_attn

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas" // #pragma unroll
#include "cuda/attention_kernels.h"
#include "cuda/rope_kernel.h"
#pragma GCC diagnostic pop
#include "reference/ref_attention.h"
#include "reference/ref_rope.h"

namespace {

using namespace cuda_attn;

struct EmuCase {
    int H = 4, Hkv = 2, D = 64;
    std::vector<int32_t> q_lens{1}, kv_lens{16};
    bool q16 = false, kv16 = false, o16 = false;
    int block = 0;
    float scale = 0;
    bool causal = true;
    int32_t window = 0;
    float softcap = 0;
    bool alibi = false, sinks = false;
    int32_t kv_splits = 0;
    bool strided = false;
    uint64_t seed = 1;
    std::string name;
};

float rnd16(float x)
{
    return (float)(_Float16)x;
}

struct Buf {
    std::vector<unsigned char> mem;
    size_t es;
    int64_t off;
    std::vector<int64_t> shape, strides;
    unsigned char *base() { return mem.data() + 64 + off * es; } // 64: keeps 16-byte alignment
    Buf(bool f16, std::vector<int64_t> sh, bool strided, int64_t offset, unsigned char fill)
        : es(f16 ? 2 : 4), off(offset), shape(sh)
    {
        strides.resize(sh.size());
        int64_t s = 1;
        for (size_t d = sh.size(); d-- > 0;) {
            strides[d] = s;
            s = s * sh[d] + (strided ? (d + 1 == sh.size() ? 8 : 3) : 0);
        }
        int64_t last = 0;
        for (size_t d = 0; d < sh.size(); d++)
            last += (sh[d] - 1) * strides[d];
        mem.assign((size_t)(64 + (off + last + 1 + 8) * es + 64), fill);
    }
    size_t idx(std::initializer_list<int64_t> ix) const
    {
        int64_t e = 0, d = 0;
        for (auto i : ix)
            e += i * strides[d++];
        return (size_t)e;
    }
    void set(size_t e, float v)
    {
        if (es == 2) {
            _Float16 h = (_Float16)v;
            std::memcpy(base() + e * 2, &h, 2);
        } else
            std::memcpy(base() + e * 4, &v, 4);
    }
    float get(size_t e)
    {
        if (es == 2) {
            _Float16 h;
            std::memcpy(&h, base() + e * 2, 2);
            return (float)h;
        }
        float f;
        std::memcpy(&f, base() + e * 4, 4);
        return f;
    }
};

bool aligned16(Buf &b)
{
    if ((uintptr_t)b.base() % 16)
        return false;
    for (int i = 0; i < 3; i++)
        if ((b.strides[i] * (int64_t)b.es) % 16)
            return false;
    return true;
}

template <int D>
void launch_all(const cuda_attn_plan &plan, attn_params prm, bool kv16,
                std::vector<cuda_attn_item> *items)
{
    if (plan.n_items[1]) {
        prm.items = items[1].data();
        emu::launch(attn_mma_kernel<D>, plan.n_items[1], prm);
    }
    if (plan.n_items[0]) {
        prm.items = items[0].data();
        if (kv16)
            emu::launch(attn_simt_kernel<D, __half>, plan.n_items[0], prm);
        else
            emu::launch(attn_simt_kernel<D, float>, plan.n_items[0], prm);
    }
    if (plan.n_groups) {
        // The host's grid: runs of 32..128 output elements per block (a few SMs: 128 threads,
        // many: 32), with exactly the shared memory the host asks for.
        for (int32_t sms : {1, 100000}) {
            cuda_attn_combine_shape cs;
            cuda_attn_combine_plan(&plan, prm.head_dim, sms, &cs);
            ASSERT_LE(cs.smem_bytes, (uint64_t)kCombineFloatsMax * sizeof(float));
            prm.combine_chunk = cs.chunk;
            prm.combine_chunks = cs.chunks;
            emu::use_smem(smem_raw, sizeof(smem_raw));
            emu::launch(attn_combine_kernel, dim3{(unsigned)cs.blocks, 1, 1}, (unsigned)cs.threads,
                        (size_t)cs.smem_bytes, prm);
            emu::use_smem(nullptr, 0);
        }
    }
}

static double run_emulated(const EmuCase &c, int *paths_used)
{
    const size_t S = c.q_lens.size();
    const int64_t T = std::accumulate(c.q_lens.begin(), c.q_lens.end(), (int64_t)0);
    std::mt19937_64 rng(c.seed);
    std::uniform_real_distribution<float> U(-1, 1);
    ref::AttentionProblem p;
    p.n_heads = c.H;
    p.n_kv_heads = c.Hkv;
    p.head_dim = c.D;
    p.q_lens = c.q_lens;
    p.kv_lens = c.kv_lens;
    int32_t max_kv = *std::max_element(c.kv_lens.begin(), c.kv_lens.end());
    p.capacity = max_kv + 5;
    p.q.resize((size_t)(T * c.H * c.D));
    for (auto &x : p.q) {
        x = 2 * U(rng);
        if (c.q16)
            x = rnd16(x);
    }
    size_t kvn = (size_t)(S * p.capacity * c.Hkv * c.D);
    p.k.resize(kvn);
    p.v.resize(kvn);
    for (auto &x : p.k) {
        x = U(rng);
        if (c.kv16)
            x = rnd16(x);
    }
    for (auto &x : p.v) {
        x = U(rng);
        if (c.kv16)
            x = rnd16(x);
    }
    p.scale = c.scale;
    p.causal = c.causal;
    p.window = c.window;
    p.softcap = c.softcap;
    if (c.alibi)
        for (int h = 0; h < c.H; h++)
            p.alibi_slopes.push_back(0.01f + 0.29f * (U(rng) + 1) / 2);
    if (c.sinks)
        for (int h = 0; h < c.H; h++)
            p.sinks.push_back(-1 + 2 * (U(rng) + 1));
    std::vector<int32_t> table;
    int32_t max_blocks = 0;
    int64_t n_blocks = 0;
    if (c.block) {
        std::vector<int32_t> nb(S);
        int64_t used = 0;
        for (size_t s = 0; s < S; s++) {
            nb[s] = (c.kv_lens[s] + c.block - 1) / c.block;
            max_blocks = std::max(max_blocks, nb[s]);
            used += nb[s];
        }
        max_blocks += 1;
        n_blocks = used + 2;
        std::vector<int32_t> perm((size_t)n_blocks);
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng);
        table.assign(S * (size_t)max_blocks, 1 << 30);
        size_t next = 0;
        for (size_t s = 0; s < S; s++)
            for (int b = 0; b < nb[s]; b++)
                table[s * max_blocks + b] = perm[next++];
    }
    const int64_t off = c.strided ? 13 : 0;
    Buf q(c.q16, {T, c.H, c.D}, c.strided, off, 0);
    for (int64_t t = 0; t < T; t++)
        for (int h = 0; h < c.H; h++)
            for (int x = 0; x < c.D; x++)
                q.set(q.idx({t, h, x}), p.q[(size_t)((t * c.H + h) * c.D + x)]);
    Buf o(c.o16, {T, c.H, c.D}, c.strided, off, 0xFF);
    std::vector<unsigned char> poison = o.mem;
    std::vector<int64_t> cs = c.block ? std::vector<int64_t>{n_blocks, c.block, c.Hkv, c.D}
                                      : std::vector<int64_t>{(int64_t)S, p.capacity, c.Hkv, c.D};
    Buf kc(c.kv16, cs, c.strided, off * 3, 0xFF),
        vc(c.kv16, cs, c.strided, off * 5, 0xFF); // 0xFF..: NaN
    for (size_t s = 0; s < S; s++)
        for (int64_t j = 0; j < c.kv_lens[s]; j++) {
            int64_t blk = s, row = j;
            if (c.block) {
                blk = table[s * max_blocks + j / c.block];
                row = j % c.block;
            }
            for (int g = 0; g < c.Hkv; g++)
                for (int x = 0; x < c.D; x++) {
                    size_t li = (size_t)(((s * p.capacity + j) * c.Hkv + g) * c.D + x);
                    kc.set(kc.idx({blk, row, g, x}), p.k[li]);
                    vc.set(vc.idx({blk, row, g, x}), p.v[li]);
                }
        }
    std::vector<int64_t> starts(S + 1, 0);
    for (size_t s = 0; s < S; s++)
        starts[s + 1] = starts[s] + c.q_lens[s];

    const int d = c.D;
    cuda_attn_config cfg{};
    cfg.n_heads = c.H;
    cfg.n_kv_heads = c.Hkv;
    cfg.head_dim = d;
    cfg.causal = c.causal;
    cfg.window = c.window;
    cfg.mma = c.kv16;
    cfg.mma_min_q = kMmaMinQ;
    cfg.mma_rows = kMmaRows;
    cfg.mma_tile = mma_tile(d);
    cfg.simt_rows = simt_rows(d);
    cfg.simt_tile = simt_tile(d, c.kv16 ? 2 : 4);
    cfg.target_items = 4 * 132;
    cfg.partial_bytes_max = kPartialBytesMax;
    cfg.combine_floats_max = kCombineFloatsMax;
    cuda_attn_plan plan;
    cuda_attn_plan_splits(&cfg, (uint32_t)S, c.q_lens.data(), c.kv_lens.data(), starts.data(),
                          c.kv_splits, &plan);
    std::vector<cuda_attn_item> items[2];
    items[0].resize(plan.n_items[0] + 1);
    items[1].resize(plan.n_items[1] + 1);
    std::vector<cuda_attn_group> groups(plan.n_groups + 1);
    plan.items[0] = items[0].data();
    plan.items[1] = items[1].data();
    plan.groups = groups.data();
    cuda_attn_plan_walk(&cfg, (uint32_t)S, c.q_lens.data(), c.kv_lens.data(), starts.data(), &plan);
    cuda_attn_plan_order(&plan); // as the host launches them
    std::vector<float> partials(plan.partial_floats + 1, NAN);
    paths_used[0] += plan.n_items[0] > 0;
    paths_used[1] += plan.n_items[1] > 0;
    paths_used[2] += plan.n_groups > 0;

    attn_params prm{};
    prm.q = (const char *)q.base();
    prm.q_s0 = q.strides[0];
    prm.q_s1 = q.strides[1];
    prm.q_f16 = c.q16;
    prm.out = (char *)o.base();
    prm.o_s0 = o.strides[0];
    prm.o_s1 = o.strides[1];
    prm.o_f16 = c.o16;
    prm.k = (const char *)kc.base();
    prm.v = (const char *)vc.base();
    prm.k_s0 = kc.strides[0];
    prm.k_s1 = kc.strides[1];
    prm.k_s2 = kc.strides[2];
    prm.v_s0 = vc.strides[0];
    prm.v_s1 = vc.strides[1];
    prm.v_s2 = vc.strides[2];
    prm.block_size = c.block;
    prm.max_blocks = c.block ? max_blocks : 0;
    prm.kv_aligned = aligned16(kc) && aligned16(vc);
    prm.head_dim = d;
    prm.table = c.block ? table.data() : nullptr;
    prm.slopes = c.alibi ? p.alibi_slopes.data() : nullptr;
    prm.sinks = c.sinks ? p.sinks.data() : nullptr;
    prm.groups = groups.data();
    prm.partials = partials.data();
    prm.scale = c.scale != 0 ? c.scale : (float)(1.0 / std::sqrt((double)d));
    prm.softcap = c.softcap;
    prm.inv_softcap = c.softcap > 0 ? 1.0f / c.softcap : 0.0f;
    prm.causal = c.causal;
    prm.window = c.window;
    switch (d) {
    case 64: launch_all<64>(plan, prm, c.kv16, items); break;
    case 80: launch_all<80>(plan, prm, c.kv16, items); break;
    case 96: launch_all<96>(plan, prm, c.kv16, items); break;
    case 128: launch_all<128>(plan, prm, c.kv16, items); break;
    case 256: launch_all<256>(plan, prm, c.kv16, items); break;
    }
    std::vector<double> ref = ref::attention(p);
    double num = 0, den = 0;
    std::vector<char> in_view(o.mem.size(), 0);
    for (int64_t t = 0; t < T; t++)
        for (int h = 0; h < c.H; h++)
            for (int x = 0; x < c.D; x++) {
                size_t e = o.idx({t, h, x});
                double v = o.get(e), r = ref[(size_t)((t * c.H + h) * c.D + x)];
                num += (v - r) * (v - r);
                den += r * r;
                if (!std::isfinite(v))
                    num = INFINITY;
                for (size_t b = 0; b < o.es; b++)
                    in_view[64 + (off + e) * o.es + b] = 1;
            }
    for (size_t i = 0; i < o.mem.size(); i++)
        if (!in_view[i] && o.mem[i] != poison[i]) {
            ADD_FAILURE() << "wrote outside the output view at byte " << i;
            return INFINITY;
        }
    return std::sqrt(num / (den > 0 ? den : 1));
}

struct EmuRopeCase {
    int H = 8, Hkv = 2, D = 128;
    std::vector<int32_t> q_lens{3, 1}, start{0, 37};
    bool q16 = false, kn16 = false, vn16 = false, c16 = false, neox = false, with_q = true;
    float base = 10000.0f;
    int rot = 0; // 0: D
    int block = 0;
    uint64_t seed = 1;
};

double rel_err(const std::vector<float> &got, const std::vector<double> &want)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < got.size(); i++) {
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
        if (!std::isfinite(got[i]))
            return INFINITY;
    }
    return std::sqrt(num / (den > 0 ? den : 1));
}

// Runs rope_append_kernel and checks q, the appended K rows, the appended V rows (bit-exact) and
// that nothing else in the cache changed.
void check_rope_emulated(const EmuRopeCase &c)
{
    const size_t S = c.q_lens.size();
    const int64_t T = std::accumulate(c.q_lens.begin(), c.q_lens.end(), (int64_t)0);
    const int rot = c.rot ? c.rot : c.D, half = rot / 2;
    std::mt19937_64 rng(c.seed);
    std::uniform_real_distribution<float> U(-1, 1);
    auto fill = [&](std::vector<float> &v, size_t n, float amp, bool f16) {
        v.resize(n);
        for (auto &x : v)
            x = f16 ? rnd16(amp * U(rng)) : amp * U(rng);
    };
    std::vector<float> q, kn, vn;
    fill(q, (size_t)(T * c.H * c.D), 2, c.q16);
    fill(kn, (size_t)(T * c.Hkv * c.D), 2, c.kn16);
    fill(vn, (size_t)(T * c.Hkv * c.D), 1, c.vn16);
    std::vector<int64_t> pos, starts(S + 1, 0);
    std::vector<int32_t> seq_of;
    int64_t cap = 0;
    for (size_t s = 0; s < S; s++) {
        for (int32_t i = 0; i < c.q_lens[s]; i++) {
            pos.push_back(c.start[s] + i);
            seq_of.push_back((int32_t)s);
        }
        starts[s + 1] = starts[s] + c.q_lens[s];
        cap = std::max<int64_t>(cap, (int64_t)c.start[s] + c.q_lens[s] + 3);
    }
    std::vector<int32_t> table;
    int32_t max_blocks = 0;
    std::vector<int64_t> cshape{(int64_t)S, cap, c.Hkv, c.D};
    if (c.block) {
        max_blocks = (int32_t)((cap + c.block - 1) / c.block);
        std::vector<int32_t> perm((size_t)(S * max_blocks + 2));
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng);
        table.assign(perm.begin(), perm.begin() + (ptrdiff_t)(S * max_blocks));
        cshape = {(int64_t)perm.size(), c.block, c.Hkv, c.D};
    }
    Buf qb(c.q16, {T, c.H, c.D}, false, 0, 0), knb(c.kn16, {T, c.Hkv, c.D}, false, 0, 0),
        vnb(c.vn16, {T, c.Hkv, c.D}, false, 0, 0);
    for (size_t i = 0; i < q.size(); i++)
        qb.set(i, q[i]);
    for (size_t i = 0; i < kn.size(); i++) {
        knb.set(i, kn[i]);
        vnb.set(i, vn[i]);
    }
    Buf kc(c.c16, cshape, false, 0, 0), vc(c.c16, cshape, false, 0, 0);
    const size_t cache_n = (size_t)(cshape[0] * cshape[1] * cshape[2] * cshape[3]);
    for (size_t i = 0; i < cache_n; i++) {
        kc.set(i, U(rng));
        vc.set(i, U(rng));
    }
    const std::vector<unsigned char> k_before = kc.mem, v_before = vc.mem, q_before = qb.mem;

    std::vector<double> inv_freq((size_t)half);
    for (int i = 0; i < half; i++)
        inv_freq[(size_t)i] = std::exp(-(2.0 * i / rot) * std::log((double)c.base));
    std::vector<int32_t> start_pos(c.start.begin(), c.start.end());
    cuda_rope::rope_params p{};
    p.q = c.with_q ? (char *)qb.base() : nullptr;
    p.q_s0 = (int64_t)c.H * c.D;
    p.q_s1 = c.D;
    p.q_f16 = c.q16;
    p.has_q = c.with_q;
    p.kn = (const char *)knb.base();
    p.vn = (const char *)vnb.base();
    p.kn_s0 = p.vn_s0 = (int64_t)c.Hkv * c.D;
    p.kn_s1 = p.vn_s1 = c.D;
    p.kn_f16 = c.kn16;
    p.vn_f16 = c.vn16;
    p.kc = (char *)kc.base();
    p.vc = (char *)vc.base();
    p.k_s0 = p.v_s0 = kc.strides[0];
    p.k_s1 = p.v_s1 = kc.strides[1];
    p.k_s2 = p.v_s2 = kc.strides[2];
    p.k_f16 = p.v_f16 = c.c16;
    p.block_size = c.block;
    p.max_blocks = max_blocks;
    p.table = c.block ? table.data() : nullptr;
    p.q_starts = starts.data();
    p.start_pos = start_pos.data();
    p.inv_freq = inv_freq.data();
    p.n_seqs = (uint32_t)S;
    p.n_heads = c.H;
    p.n_kv_heads = c.Hkv;
    p.d = c.D;
    p.rot = rot;
    p.neox = c.neox;
    emu::launch(cuda_rope::rope_append_kernel, T, p);

    std::vector<float> q_got(q.size());
    for (size_t i = 0; i < q.size(); i++)
        q_got[i] = qb.get(i);
    if (c.with_q) {
        EXPECT_LT(rel_err(q_got, ref::rope(q, T, c.H, c.D, pos, c.neox, c.base, rot)),
                  c.q16 ? 2e-3 : 1e-5)
            << "q";
        for (int64_t r = 0; r < T * c.H; r++)
            for (int x = rot; x < c.D; x++)
                EXPECT_EQ(0, std::memcmp(&qb.mem[64 + (size_t)(r * c.D + x) * qb.es],
                                         &q_before[64 + (size_t)(r * c.D + x) * qb.es], qb.es))
                    << "q dims past rot_dims changed";
    } else {
        EXPECT_EQ(q_before, qb.mem) << "q changed without q";
    }
    std::vector<char> written(cache_n, 0);
    std::vector<float> k_got;
    std::vector<double> k_want;
    bool v_exact = true;
    for (int64_t t = 0; t < T; t++) {
        const int32_t s = seq_of[(size_t)t];
        int64_t blk = s, row = pos[(size_t)t];
        if (c.block) {
            blk = table[(size_t)(s * max_blocks + row / c.block)];
            row %= c.block;
        }
        for (int g = 0; g < c.Hkv; g++) {
            std::vector<double> kr = ref::rope_row(&kn[(size_t)((t * c.Hkv + g) * c.D)], c.D,
                                                   pos[(size_t)t], c.neox, c.base, rot);
            for (int x = 0; x < c.D; x++) {
                const size_t e = kc.idx({blk, row, g, x});
                written[e] = 1;
                k_got.push_back(kc.get(e));
                k_want.push_back(kr[(size_t)x]);
                float want_v = vn[(size_t)((t * c.Hkv + g) * c.D + x)];
                want_v = c.c16 ? rnd16(want_v) : want_v;
                if (vc.get(e) != want_v)
                    v_exact = false;
            }
        }
    }
    EXPECT_LT(rel_err(k_got, k_want), c.kn16 || c.c16 ? 2e-3 : 1e-5) << "cache k";
    EXPECT_TRUE(v_exact) << "cache v is not v_new converted to the cache dtype";
    for (size_t e = 0; e < cache_n; e++)
        if (!written[e] &&
            (std::memcmp(&kc.mem[64 + e * kc.es], &k_before[64 + e * kc.es], kc.es) != 0 ||
             std::memcmp(&vc.mem[64 + e * vc.es], &v_before[64 + e * vc.es], vc.es) != 0)) {
            ADD_FAILURE() << "cache element " << e << " outside the appended slots changed";
            break;
        }
}

} // namespace
#endif // TRIT_TEST_CUDA_EMULATION

namespace {

TEST(CudaAttentionEmulated, KernelsMatchTheReferenceOnACpuEmulation)
{
#ifndef TRIT_TEST_CUDA_EMULATION
    GTEST_SKIP() << "needs _Float16 and <ucontext.h>";
#else
    std::vector<EmuCase> cases;
    auto add = [&](EmuCase c, const char *n) {
        c.name = n;
        cases.push_back(c);
    };
    for (int d : {64, 80, 96, 128, 256}) {
        EmuCase c;
        c.D = d;
        c.H = 6;
        c.Hkv = 2;
        c.q_lens = {1, 5, 40};
        c.kv_lens = {1, 37, 100};
        c.seed = (uint64_t)d;
        add(c, "every head dim, f32 (SIMT)");
        c.causal = false;
        c.kv16 = true;
        add(c, "every head dim, f16 cache, non-causal (40 queries on tensor cores)");
    }
    {
        EmuCase c;
        c.H = 4;
        c.Hkv = 4;
        c.D = 128;
        c.q_lens = {50};
        c.kv_lens = {130};
        c.kv16 = true;
        add(c, "causal prefill with an offset");
        c.H = 4;
        c.Hkv = 2;
        c.D = 64;
        c.q_lens = {130};
        c.kv_lens = {260};
        add(c, "causal prefill, several query tiles and skipped key tiles");
    }
    {
        EmuCase c;
        c.H = 8;
        c.Hkv = 2;
        c.D = 128;
        c.q_lens = {1};
        c.kv_lens = {1024};
        c.kv16 = true;
        for (int32_t s : {1, 0, 5, 100000}) {
            c.kv_splits = s;
            add(c, "decode, split-KV and combine");
        }
    }
    {
        EmuCase c;
        c.q_lens = {33, 1, 2};
        c.kv_lens = {500, 900, 2};
        c.window = 300;
        c.sinks = true;
        c.kv_splits = 3;
        add(c, "splits in a prefill batch, f32");
        c.kv16 = c.q16 = true;
        add(c, "splits in a prefill batch, tensor cores");
    }
    {
        EmuCase c;
        c.H = 8;
        c.Hkv = 2;
        c.D = 96;
        c.q_lens = {1, 9, 1, 20};
        c.kv_lens = {300, 9, 700, 20};
        c.kv16 = true;
        for (int b : {16, 64, 256}) {
            c.block = b;
            add(c, "paged cache");
        }
    }
    {
        EmuCase c;
        c.q_lens = {40, 1};
        c.kv_lens = {200, 333};
        c.window = 16;
        c.kv16 = true;
        add(c, "window 16");
        c.window = 1;
        add(c, "window 1");
        c.causal = false;
        c.window = 50;
        add(c, "window without causal");
    }
    {
        EmuCase c;
        c.q_lens = {10, 1, 30};
        c.kv_lens = {100, 90, 60};
        c.scale = 1;
        c.softcap = 5;
        add(c, "softcap, f32");
        c.kv16 = true;
        c.softcap = 30;
        add(c, "softcap, f16");
    }
    {
        EmuCase c;
        c.q_lens = {12, 1, 24};
        c.kv_lens = {120, 200, 90};
        c.alibi = true;
        c.kv16 = true;
        add(c, "ALiBi");
        c.causal = false;
        add(c, "ALiBi without causal");
    }
    {
        EmuCase c;
        c.H = 12;
        c.Hkv = 3;
        c.D = 128;
        c.q_lens = {1, 30, 2};
        c.kv_lens = {800, 30, 400};
        c.window = 256;
        c.softcap = 20;
        c.alibi = c.sinks = true;
        c.scale = 0.2f;
        add(c, "all options, f32");
        c.block = 64;
        c.q16 = c.kv16 = c.o16 = true;
        add(c, "all options, f16, paged");
        c.kv_splits = 3;
        add(c, "all options, f16, paged, 3 splits");
    }
    for (bool qd : {false, true})
        for (bool kd : {false, true})
            for (bool od : {false, true}) {
                EmuCase c;
                c.q16 = qd;
                c.kv16 = kd;
                c.o16 = od;
                c.q_lens = {1, 20};
                c.kv_lens = {90, 40};
                add(c, "dtype combination");
            }
    {
        EmuCase c;
        c.strided = true;
        c.q_lens = {1, 25};
        c.kv_lens = {130, 25};
        c.H = 6;
        c.Hkv = 3;
        add(c, "strided views, f32");
        c.q16 = c.o16 = c.kv16 = true;
        c.block = 16;
        add(c, "strided views, f16, paged (rows not 16-byte aligned: no cp.async)");
    }
    {
        EmuCase c;
        c.q_lens = {1};
        c.kv_lens = {1};
        c.q16 = c.kv16 = c.o16 = true;
        c.sinks = true;
        add(c, "one key and a sink");
        c.H = 2;
        c.Hkv = 1;
        c.D = 256;
        c.q_lens = {70};
        c.kv_lens = {150};
        c.alibi = true;
        c.window = 40;
        add(c, "D = 256 on tensor cores (Q re-read from shared memory), window, ALiBi, sinks");
    }
    int paths[3] = {0, 0, 0};
    for (const EmuCase &c : cases) {
        SCOPED_TRACE(c.name + " D=" + std::to_string(c.D));
        const bool all32 = !c.q16 && !c.kv16 && !c.o16;
        EXPECT_LT(run_emulated(c, paths), all32 ? 1e-5 : 2e-3);
    }
    // Every kernel ran.
    EXPECT_GT(paths[0], 0);
    EXPECT_GT(paths[1], 0);
    EXPECT_GT(paths[2], 0);
#endif
}

TEST(CudaRopeEmulated, KernelMatchesTheReferenceOnACpuEmulation)
{
#ifndef TRIT_TEST_CUDA_EMULATION
    GTEST_SKIP() << "needs _Float16 and <ucontext.h>";
#else
    std::vector<EmuRopeCase> cases;
    EmuRopeCase c;
    cases.push_back(c); // NORMAL
    c.neox = true;
    c.base = 500000.0f;
    cases.push_back(c);
    for (bool neox : {false, true}) {
        EmuRopeCase p;
        p.neox = neox;
        p.D = 96;
        p.rot = 32;
        cases.push_back(p); // partial rotary
        p.rot = 2;
        cases.push_back(p);
        EmuRopeCase l;
        l.neox = neox;
        l.H = 4;
        l.Hkv = 1;
        l.D = 64;
        l.q_lens = {3, 2};
        l.start = {99990, 65530};
        cases.push_back(l); // long positions: the double angle
    }
    for (int block : {16, 64}) {
        EmuRopeCase b;
        b.block = block;
        b.q_lens = {40, 1, 0, 30};
        b.start = {5, 70, 3, 0};
        b.H = 4;
        b.D = 64;
        cases.push_back(b); // paged, with an empty sequence
    }
    for (int mask = 0; mask < 16; mask++) {
        EmuRopeCase d;
        d.q16 = mask & 1;
        d.kn16 = mask & 2;
        d.vn16 = mask & 4;
        d.c16 = mask & 8;
        d.D = 80;
        d.neox = d.c16;
        cases.push_back(d);
    }
    EmuRopeCase nq;
    nq.with_q = false;
    nq.D = 256;
    cases.push_back(nq);
    for (size_t i = 0; i < cases.size(); i++) {
        SCOPED_TRACE("rope case " + std::to_string(i));
        check_rope_emulated(cases[i]);
    }
#endif
}

} // namespace

// test_rope.cpp — conformance of trit_rope_kv_append on every device found, against the fp64
// reference in reference/ref_rope.cpp: NORMAL and NEOX pairs, partial rotary dims, positions up to
// 1e5, contiguous and paged caches (shuffled block tables, block sizes 16/64/256), every dtype mix,
// q optional, batches with empty sequences; the cache must change in exactly the appended slots.
// Then RoPE + append feeding attention, and bad input through the public API.
#include "common.h"

#include <algorithm>
#include <numeric>
#include <sstream>

#include "reference/ref_attention.h"
#include "reference/ref_rope.h"

namespace {

struct RopeCase {
    int H = 8, Hkv = 2, D = 128;
    std::vector<int32_t> q_lens{3, 1}, start_pos{0, 37};
    trit_dtype q_dt = TRIT_DTYPE_F32, kn_dt = TRIT_DTYPE_F32, vn_dt = TRIT_DTYPE_F32,
               cache_dt = TRIT_DTYPE_F32;
    trit_rope_mode mode = TRIT_ROPE_NORMAL;
    float base = 10000.0f;
    int32_t rot_dims = 0;
    int block = 0; // paged block size; 0: contiguous
    bool with_q = true;
    uint64_t seed = 1;

    std::string describe() const
    {
        std::ostringstream os;
        os << "H=" << H << " Hkv=" << Hkv << " D=" << D << " q_lens=[";
        for (size_t i = 0; i < q_lens.size(); i++)
            os << (i ? "," : "") << q_lens[i];
        os << "] start=[";
        for (size_t i = 0; i < start_pos.size(); i++)
            os << (i ? "," : "") << start_pos[i];
        os << "] q=" << trit_dtype_name(q_dt) << " k_new=" << trit_dtype_name(kn_dt)
           << " v_new=" << trit_dtype_name(vn_dt) << " cache=" << trit_dtype_name(cache_dt)
           << (mode == TRIT_ROPE_NEOX ? " neox" : " normal") << " base=" << base
           << " rot=" << rot_dims << " block=" << block << (with_q ? "" : " no-q")
           << " seed=" << seed;
        return os.str();
    }
};

struct RopeOutcome {
    double q_error = 0, k_error = INFINITY;
    double q_tol = 1e-5, k_tol = 1e-5;
    bool v_exact = false;          // appended values equal v_new converted to the cache dtype
    bool others_untouched = false; // every cache byte outside the appended slots is unchanged
    bool q_tail_exact = true;      // q dims past rot_dims are bit-identical
};

size_t es_of(trit_dtype dt)
{
    return trit_dtype_size(dt);
}

float read_elem(const std::vector<uint8_t> &img, trit_dtype dt, size_t e)
{
    if (dt == TRIT_DTYPE_F16) {
        uint16_t h;
        std::memcpy(&h, &img[e * 2], 2);
        return trit_half_to_float(h);
    }
    float f;
    std::memcpy(&f, &img[e * 4], 4);
    return f;
}

struct CacheLayout {
    int64_t S = 0, capacity = 0; // logical
    int64_t n_blocks = 0;        // paged
    int32_t max_blocks = 0;
    std::vector<int32_t> table;
    std::vector<int64_t> shape;

    // Element index of (seq, pos, g, 0) in the physical cache, or -1 when not mapped.
    int64_t row(const RopeCase &c, int64_t s, int64_t pos, int g) const
    {
        int64_t blk = s, r = pos;
        if (c.block > 0) {
            if (pos / c.block >= max_blocks)
                return -1;
            blk = table[(size_t)(s * max_blocks + pos / c.block)];
            if (blk < 0)
                return -1;
            r = pos % c.block;
        }
        return ((blk * shape[1] + r) * c.Hkv + g) * c.D;
    }
};

CacheLayout make_layout(const RopeCase &c)
{
    CacheLayout L;
    L.S = (int64_t)c.q_lens.size();
    for (size_t s = 0; s < c.q_lens.size(); s++)
        L.capacity = std::max<int64_t>(L.capacity, (int64_t)c.start_pos[s] + c.q_lens[s] + 3);
    if (c.block == 0) {
        L.shape = {L.S, L.capacity, c.Hkv, c.D};
        return L;
    }
    // Map only the blocks each sequence writes (plus one earlier block when there is one, as
    // if it held older tokens); entries before them are -1 and must not be looked at.
    L.max_blocks = (int32_t)((L.capacity + c.block - 1) / c.block) + 1;
    L.table.assign((size_t)(L.S * L.max_blocks), -1);
    std::vector<std::pair<int64_t, int64_t>> need;
    for (int64_t s = 0; s < L.S; s++) {
        if (c.q_lens[(size_t)s] == 0)
            continue;
        int64_t b0 = c.start_pos[(size_t)s] / c.block;
        int64_t b1 = ((int64_t)c.start_pos[(size_t)s] + c.q_lens[(size_t)s] - 1) / c.block;
        for (int64_t b = std::max<int64_t>(0, b0 - 1); b <= b1; b++)
            need.push_back({s, b});
    }
    L.n_blocks = (int64_t)need.size() + 2;
    std::vector<int32_t> perm((size_t)L.n_blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::mt19937_64 rng(c.seed * 131 + 9);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (size_t i = 0; i < need.size(); i++)
        L.table[(size_t)(need[i].first * L.max_blocks + need[i].second)] = perm[i];
    L.shape = {L.n_blocks, c.block, c.Hkv, c.D};
    return L;
}

RopeOutcome run_rope(trit_device *dev, const RopeCase &c)
{
    RopeOutcome res;
    const int64_t S = (int64_t)c.q_lens.size();
    const int64_t T = std::accumulate(c.q_lens.begin(), c.q_lens.end(), (int64_t)0);
    const int rot = c.rot_dims ? c.rot_dims : c.D;
    const bool neox = c.mode == TRIT_ROPE_NEOX;
    tt::Stream stream(dev);

    std::vector<float> q = tt::random_floats((size_t)(T * c.H * c.D), c.seed * 131 + 1, -2.f, 2.f);
    std::vector<float> kn =
        tt::random_floats((size_t)(T * c.Hkv * c.D), c.seed * 131 + 2, -2.f, 2.f);
    std::vector<float> vn = tt::random_floats((size_t)(T * c.Hkv * c.D), c.seed * 131 + 3);
    tt::round_all(c.q_dt, q);
    tt::round_all(c.kn_dt, kn);
    tt::round_all(c.vn_dt, vn);
    std::vector<int64_t> pos;
    for (int64_t s = 0; s < S; s++)
        for (int32_t i = 0; i < c.q_lens[(size_t)s]; i++)
            pos.push_back(c.start_pos[(size_t)s] + i);

    CacheLayout L = make_layout(c);
    int64_t cache_n = L.shape[0] * L.shape[1] * L.shape[2] * L.shape[3];
    // The cache starts full of other tokens' data: the op must leave it alone.
    std::vector<float> k_old = tt::random_floats((size_t)cache_n, c.seed * 131 + 4);
    std::vector<float> v_old = tt::random_floats((size_t)cache_n, c.seed * 131 + 5);
    tt::DeviceTensor kc = tt::upload(dev, stream, c.cache_dt, L.shape, k_old);
    tt::DeviceTensor vc = tt::upload(dev, stream, c.cache_dt, L.shape, v_old);
    std::vector<uint8_t> k_before = tt::download_bytes(stream, kc.buf);
    std::vector<uint8_t> v_before = tt::download_bytes(stream, vc.buf);
    tt::DeviceTensor qd = tt::upload(dev, stream, c.q_dt, {T, c.H, c.D}, q);
    tt::DeviceTensor knd = tt::upload(dev, stream, c.kn_dt, {T, c.Hkv, c.D}, kn);
    tt::DeviceTensor vnd = tt::upload(dev, stream, c.vn_dt, {T, c.Hkv, c.D}, vn);

    trit_kv_cache cache{};
    cache.size = sizeof(cache);
    cache.k = kc.t;
    cache.v = vc.t;
    if (c.block > 0) {
        cache.block_table = L.table.data();
        cache.max_blocks_per_seq = L.max_blocks;
    }
    trit_rope_params prm;
    trit_rope_params_init(&prm);
    prm.mode = c.mode;
    prm.base = c.base;
    prm.rot_dims = c.rot_dims;
    trit_status st = trit_rope_kv_append(stream, c.with_q ? &qd.t : nullptr, &knd.t, &vnd.t, &cache,
                                         (uint32_t)S, c.q_lens.data(), c.start_pos.data(), &prm);
    EXPECT_EQ(TRIT_OK, st) << trit_status_string(st) << ": " << trit_last_error();
    if (st != TRIT_OK)
        return res;

    auto any_f16 = [](std::initializer_list<trit_dtype> l) {
        for (trit_dtype d : l)
            if (d == TRIT_DTYPE_F16)
                return true;
        return false;
    };
    res.q_tol = any_f16({c.q_dt}) ? 2e-3 : 1e-5;
    res.k_tol = any_f16({c.kn_dt, c.cache_dt}) ? 2e-3 : 1e-5;

    std::vector<float> q_after = tt::download(stream, qd.t);
    if (c.with_q) {
        res.q_error = tt::rel_error(q_after, ref::rope(q, T, c.H, c.D, pos, neox, c.base, rot));
        for (int64_t r = 0; r < T * c.H; r++)
            for (int x = rot; x < c.D; x++)
                if (q_after[(size_t)(r * c.D + x)] != q[(size_t)(r * c.D + x)])
                    res.q_tail_exact = false;
    } else {
        res.q_error = tt::rel_error(q_after, std::vector<double>(q.begin(), q.end()));
    }

    std::vector<uint8_t> k_after = tt::download_bytes(stream, kc.buf);
    std::vector<uint8_t> v_after = tt::download_bytes(stream, vc.buf);
    const size_t es = es_of(c.cache_dt);
    std::vector<char> written((size_t)cache_n, 0);
    std::vector<float> k_got;
    std::vector<double> k_ref;
    res.v_exact = true;
    int64_t t = 0;
    for (int64_t s = 0; s < S; s++)
        for (int32_t i = 0; i < c.q_lens[(size_t)s]; i++, t++)
            for (int g = 0; g < c.Hkv; g++) {
                int64_t e0 = L.row(c, s, pos[(size_t)t], g);
                std::vector<double> kr = ref::rope_row(&kn[(size_t)((t * c.Hkv + g) * c.D)], c.D,
                                                       pos[(size_t)t], neox, c.base, rot);
                for (int x = 0; x < c.D; x++) {
                    size_t e = (size_t)(e0 + x);
                    written[e] = 1;
                    k_got.push_back(read_elem(k_after, c.cache_dt, e));
                    k_ref.push_back(kr[(size_t)x]);
                    float want_v =
                        tt::round_to(c.cache_dt, vn[(size_t)((t * c.Hkv + g) * c.D + x)]);
                    if (std::memcmp(&v_after[e * es], tt::to_bytes(c.cache_dt, {want_v}).data(),
                                    es) != 0)
                        res.v_exact = false;
                }
            }
    res.k_error = tt::rel_error(k_got, k_ref);
    res.others_untouched = true;
    for (size_t e = 0; e < (size_t)cache_n; e++)
        if (!written[e] && (std::memcmp(&k_after[e * es], &k_before[e * es], es) != 0 ||
                            std::memcmp(&v_after[e * es], &v_before[e * es], es) != 0))
            res.others_untouched = false;
    return res;
}

class RopeKvAppend : public ::testing::TestWithParam<uint32_t> {
  protected:
    trit_device *dev() { return tt::device(GetParam()); }
    RopeOutcome check(const RopeCase &c)
    {
        SCOPED_TRACE(c.describe());
        RopeOutcome r = run_rope(dev(), c);
        EXPECT_LT(r.q_error, r.q_tol) << "q";
        EXPECT_LT(r.k_error, r.k_tol) << "cache k";
        EXPECT_TRUE(r.v_exact) << "cache v is not v_new converted to the cache dtype";
        EXPECT_TRUE(r.others_untouched) << "cache bytes outside the appended slots changed";
        EXPECT_TRUE(r.q_tail_exact) << "q dims past rot_dims changed";
        return r;
    }
};

TEST_P(RopeKvAppend, NormalModeMatchesReference)
{
    RopeCase c;
    check(c);
}

TEST_P(RopeKvAppend, NeoxModeMatchesReference)
{
    RopeCase c;
    c.mode = TRIT_ROPE_NEOX;
    c.base = 500000.0f;
    check(c);
}

TEST_P(RopeKvAppend, PartialRotaryDimsLeaveTheRestUnchanged)
{
    for (trit_rope_mode mode : {TRIT_ROPE_NORMAL, TRIT_ROPE_NEOX}) {
        RopeCase c;
        c.mode = mode;
        c.D = 96;
        c.rot_dims = 32;
        check(c);
        c.rot_dims = 2;
        check(c);
    }
}

TEST_P(RopeKvAppend, LongPositionsStayAccurate)
{
    for (trit_rope_mode mode : {TRIT_ROPE_NORMAL, TRIT_ROPE_NEOX}) {
        for (float base : {10000.0f, 500000.0f}) {
            RopeCase c;
            c.mode = mode;
            c.base = base;
            c.H = 4;
            c.Hkv = 1;
            c.D = 64;
            c.q_lens = {3, 2};
            c.start_pos = {99990, 65530};
            c.block = 256; // a paged cache maps only the blocks near these positions
            check(c);
        }
    }
}

TEST_P(RopeKvAppend, PagedAppendWritesOnlyItsSlots)
{
    for (int block : {16, 64, 256}) {
        RopeCase c;
        c.block = block;
        c.q_lens = {40, 1, 300};
        c.start_pos = {5, 700, 0};
        c.H = 4;
        c.D = 64;
        c.seed = (uint64_t)block;
        check(c);
    }
}

TEST_P(RopeKvAppend, EveryDtypeCombination)
{
    const trit_dtype dts[] = {TRIT_DTYPE_F32, TRIT_DTYPE_F16};
    for (trit_dtype qd : dts)
        for (trit_dtype kd : dts)
            for (trit_dtype vd : dts)
                for (trit_dtype cd : dts) {
                    RopeCase c;
                    c.q_dt = qd;
                    c.kn_dt = kd;
                    c.vn_dt = vd;
                    c.cache_dt = cd;
                    c.D = 64;
                    c.mode = cd == TRIT_DTYPE_F16 ? TRIT_ROPE_NEOX : TRIT_ROPE_NORMAL;
                    check(c);
                }
}

TEST_P(RopeKvAppend, EveryHeadDim)
{
    for (int d : {64, 80, 96, 128, 256}) {
        RopeCase c;
        c.D = d;
        c.seed = (uint64_t)d;
        check(c);
    }
}

TEST_P(RopeKvAppend, WithoutQOnlyAppends)
{
    RopeCase c;
    c.with_q = false; // check() then also asserts q is unchanged
    check(c);
    c.block = 16;
    check(c);
}

TEST_P(RopeKvAppend, BatchWithDifferentStartsAndAnEmptySequence)
{
    RopeCase c;
    c.q_lens = {2, 0, 5, 1};
    c.start_pos = {10, 3, 0, 99};
    c.H = 6;
    c.Hkv = 3;
    c.D = 80;
    check(c);
    c.block = 16;
    check(c);
}

TEST_P(RopeKvAppend, ManyTokensUseEveryThread)
{
    RopeCase c;
    c.q_lens = {700, 300};
    c.start_pos = {0, 11};
    c.H = 4;
    c.D = 64;
    c.q_dt = c.cache_dt = TRIT_DTYPE_F16;
    check(c);
}

// The op in its place in a model: prefill 20 tokens, append two decode tokens, then attend with
// the last rotated query; the result must equal attention over reference-rotated q and keys.
TEST_P(RopeKvAppend, AppendThenAttentionMatchesReference)
{
    const int H = 4, Hkv = 2, D = 64, C = 32;
    tt::Stream stream(dev());
    std::vector<float> zeros((size_t)C * Hkv * D, 0.f);
    tt::DeviceTensor kc = tt::upload(dev(), stream, TRIT_DTYPE_F32, {1, C, Hkv, D}, zeros);
    tt::DeviceTensor vc = tt::upload(dev(), stream, TRIT_DTYPE_F32, {1, C, Hkv, D}, zeros);
    trit_kv_cache cache{};
    cache.size = sizeof(cache);
    cache.k = kc.t;
    cache.v = vc.t;
    trit_rope_params prm;
    trit_rope_params_init(&prm);
    prm.mode = TRIT_ROPE_NEOX;
    ref::AttentionProblem p;
    p.n_heads = H;
    p.n_kv_heads = Hkv;
    p.head_dim = D;
    p.capacity = C;
    p.k.assign((size_t)C * Hkv * D, 0.f);
    p.v = p.k;
    p.causal = true;
    std::vector<float> last_q;
    int32_t pos = 0;
    for (int32_t n : {20, 1, 1}) {
        std::vector<float> q = tt::random_floats((size_t)n * H * D, 40 + (uint64_t)pos, -2.f, 2.f);
        std::vector<float> k = tt::random_floats((size_t)n * Hkv * D, 50 + (uint64_t)pos);
        std::vector<float> v = tt::random_floats((size_t)n * Hkv * D, 60 + (uint64_t)pos);
        tt::DeviceTensor qd = tt::upload(dev(), stream, TRIT_DTYPE_F32, {n, H, D}, q);
        tt::DeviceTensor kd = tt::upload(dev(), stream, TRIT_DTYPE_F32, {n, Hkv, D}, k);
        tt::DeviceTensor vd = tt::upload(dev(), stream, TRIT_DTYPE_F32, {n, Hkv, D}, v);
        TRIT_ASSERT_OK(trit_rope_kv_append(stream, &qd.t, &kd.t, &vd.t, &cache, 1, &n, &pos, &prm));
        std::vector<int64_t> positions;
        for (int32_t i = 0; i < n; i++)
            positions.push_back(pos + i);
        std::vector<double> kr = ref::rope(k, n, Hkv, D, positions, true, prm.base, D);
        for (size_t i = 0; i < kr.size(); i++) {
            p.k[(size_t)pos * Hkv * D + i] = (float)kr[i];
            p.v[(size_t)pos * Hkv * D + i] = v[i];
        }
        std::vector<double> qr = ref::rope(q, n, H, D, positions, true, prm.base, D);
        last_q.assign(qr.end() - (ptrdiff_t)(H * D), qr.end());
        if (n == 1) {
            // Attend with the device's rotated query to the device's cache.
            int32_t one = 1, kv_len = pos + 1;
            tt::DeviceTensor out = tt::poisoned(dev(), stream, TRIT_DTYPE_F32, {1, H, D});
            trit_attention_params ap;
            trit_attention_params_init(&ap);
            ap.causal = 1;
            TRIT_ASSERT_OK(trit_attention(stream, &qd.t, &cache, 1, &one, &kv_len, &out.t, &ap));
            p.q = last_q;
            p.q_lens = {1};
            p.kv_lens = {kv_len};
            EXPECT_LT(tt::rel_error(tt::download(stream, out.t), ref::attention(p)), 1e-5)
                << "after appending position " << pos;
        }
        pos += n;
    }
}

// ---- bad input ----------------------------------------------------------------------------

struct RopeValid {
    trit_device *dev;
    tt::Stream stream;
    tt::DeviceTensor q, kn, vn, kc, vc;
    trit_kv_cache cache{};
    std::vector<int32_t> q_lens{2, 1}, start{0, 10};
    std::vector<int32_t> table;
    std::vector<uint8_t> q0, k0, v0;
    trit_rope_params prm;

    explicit RopeValid(trit_device *d, bool paged = false) : dev(d), stream(d)
    {
        q = tt::upload(dev, stream, TRIT_DTYPE_F32, {3, 4, 64}, tt::random_floats(3 * 4 * 64, 1));
        kn = tt::upload(dev, stream, TRIT_DTYPE_F32, {3, 2, 64}, tt::random_floats(3 * 2 * 64, 2));
        vn = tt::upload(dev, stream, TRIT_DTYPE_F32, {3, 2, 64}, tt::random_floats(3 * 2 * 64, 3));
        std::vector<int64_t> shape =
            paged ? std::vector<int64_t>{3, 16, 2, 64} : std::vector<int64_t>{2, 12, 2, 64};
        size_t n = (size_t)(shape[0] * shape[1] * 2 * 64);
        kc = tt::upload(dev, stream, TRIT_DTYPE_F32, shape, tt::random_floats(n, 4));
        vc = tt::upload(dev, stream, TRIT_DTYPE_F32, shape, tt::random_floats(n, 5));
        cache.size = sizeof(cache);
        cache.k = kc.t;
        cache.v = vc.t;
        if (paged) {
            table = {2, 0}; // one block per sequence
            cache.block_table = table.data();
            cache.max_blocks_per_seq = 1;
        }
        trit_rope_params_init(&prm);
        q0 = tt::download_bytes(stream, q.buf);
        k0 = tt::download_bytes(stream, kc.buf);
        v0 = tt::download_bytes(stream, vc.buf);
    }
    trit_status run(trit_tensor *qt = nullptr, const trit_tensor *k_new = nullptr)
    {
        return trit_rope_kv_append(stream, qt ? qt : &q.t, k_new ? k_new : &kn.t, &vn.t, &cache,
                                   (uint32_t)q_lens.size(), q_lens.data(), start.data(), &prm);
    }
    void expect_rejected(trit_status want, trit_status got)
    {
        EXPECT_EQ(want, got) << "got " << trit_status_string(got) << ": " << trit_last_error();
        EXPECT_STRNE("", trit_last_error());
        EXPECT_EQ(q0, tt::download_bytes(stream, q.buf)) << "q was written";
        EXPECT_EQ(k0, tt::download_bytes(stream, kc.buf)) << "cache k was written";
        EXPECT_EQ(v0, tt::download_bytes(stream, vc.buf)) << "cache v was written";
    }
};

TEST_P(RopeKvAppend, ValidBadInputBaselineRuns)
{
    RopeValid a(dev());
    EXPECT_EQ(TRIT_OK, a.run()) << trit_last_error();
    RopeValid b(dev(), true);
    EXPECT_EQ(TRIT_OK, b.run()) << trit_last_error();
}

TEST_P(RopeKvAppend, RejectsNullPointers)
{
    RopeValid a(dev());
    const uint32_t n = 2;
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT,
                      trit_rope_kv_append(nullptr, &a.q.t, &a.kn.t, &a.vn.t, &a.cache, n,
                                          a.q_lens.data(), a.start.data(), &a.prm));
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT,
                      trit_rope_kv_append(a.stream, &a.q.t, nullptr, &a.vn.t, &a.cache, n,
                                          a.q_lens.data(), a.start.data(), &a.prm));
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT,
                      trit_rope_kv_append(a.stream, &a.q.t, &a.kn.t, nullptr, &a.cache, n,
                                          a.q_lens.data(), a.start.data(), &a.prm));
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT,
                      trit_rope_kv_append(a.stream, &a.q.t, &a.kn.t, &a.vn.t, nullptr, n,
                                          a.q_lens.data(), a.start.data(), &a.prm));
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT,
                      trit_rope_kv_append(a.stream, &a.q.t, &a.kn.t, &a.vn.t, &a.cache, n, nullptr,
                                          a.start.data(), &a.prm));
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT,
                      trit_rope_kv_append(a.stream, &a.q.t, &a.kn.t, &a.vn.t, &a.cache, n,
                                          a.q_lens.data(), nullptr, &a.prm));
}

TEST_P(RopeKvAppend, RejectsBadRotaryDims)
{
    RopeValid a(dev());
    a.prm.rot_dims = 63; // odd
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT, a.run());
    a.prm.rot_dims = 66; // more than D
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT, a.run());
    a.prm.rot_dims = 0;
    a.prm.base = 0.0f;
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT, a.run());
}

TEST_P(RopeKvAppend, RejectsPositionPastCapacity)
{
    RopeValid a(dev());
    a.start[1] = 12; // capacity 12: position 12 does not exist
    a.expect_rejected(TRIT_ERROR_OUT_OF_BOUNDS, a.run());
}

TEST_P(RopeKvAppend, RejectsBlockIndexOutOfRangeAndShortTables)
{
    RopeValid a(dev(), true);
    a.table[1] = 3; // the pool has blocks 0..2
    a.expect_rejected(TRIT_ERROR_OUT_OF_BOUNDS, a.run());
    a.table[1] = 0;
    a.start[1] = 16; // needs a second block; the table has one per sequence
    a.expect_rejected(TRIT_ERROR_OUT_OF_BOUNDS, a.run());
}

TEST_P(RopeKvAppend, RejectsMismatchedShapes)
{
    RopeValid a(dev());
    tt::DeviceTensor q =
        tt::upload(a.dev, a.stream, TRIT_DTYPE_F32, {2, 4, 64}, tt::random_floats(2 * 4 * 64, 6));
    a.expect_rejected(TRIT_ERROR_SHAPE_MISMATCH, a.run(&q.t));
    tt::DeviceTensor q3 =
        tt::upload(a.dev, a.stream, TRIT_DTYPE_F32, {3, 3, 64}, tt::random_floats(3 * 3 * 64, 7));
    a.expect_rejected(TRIT_ERROR_SHAPE_MISMATCH, a.run(&q3.t)); // 3 heads over 2 KV heads
    a.q_lens = {1, 1};
    a.expect_rejected(TRIT_ERROR_SHAPE_MISMATCH, a.run()); // q_lens add up to 2, not 3
}

TEST_P(RopeKvAppend, RejectsBf16Q)
{
    RopeValid a(dev());
    tt::DeviceTensor q =
        tt::upload(a.dev, a.stream, TRIT_DTYPE_BF16, {3, 4, 64}, tt::random_floats(3 * 4 * 64, 8));
    a.expect_rejected(TRIT_ERROR_UNSUPPORTED, a.run(&q.t));
}

TEST_P(RopeKvAppend, RejectsTensorsFromAnotherDevice)
{
    RopeValid a(dev());
    trit_context *ctx2 = nullptr;
    trit_context_options o{};
    o.size = sizeof(o);
    ASSERT_EQ(TRIT_OK, trit_context_create(&o, &ctx2)) << trit_last_error();
    trit_device *d2 = nullptr;
    ASSERT_EQ(TRIT_OK, trit_device_get(ctx2, 0, &d2));
    {
        tt::Stream s2(d2);
        tt::DeviceTensor kn =
            tt::upload(d2, s2, TRIT_DTYPE_F32, {3, 2, 64}, tt::random_floats(3 * 2 * 64, 9));
        a.expect_rejected(TRIT_ERROR_WRONG_DEVICE, a.run(nullptr, &kn.t));
    }
    trit_context_destroy(ctx2);
}

INSTANTIATE_TEST_SUITE_P(AllDevices, RopeKvAppend, ::testing::ValuesIn(tt::device_indices()),
                         tt::device_param_name);

} // namespace

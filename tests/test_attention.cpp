// test_attention.cpp — conformance of trit_attention on every device found, against the fp64
// reference in reference/ref_attention.cpp: every head dim, MHA/GQA/MQA, prefill with a position
// offset and decode, batches of sequences of different lengths, long contexts with split-KV,
// contiguous and paged caches (shuffled block tables), strided views, every option and dtype
// combination, the CPU plugin's ISA levels, and bad input through the public API.
//
// Every cache slot that no query may read (past kv_len, unused blocks, gaps between strided rows)
// holds NaN, and every output starts as NaN poison: a kernel that reads or skips the wrong bytes
// fails the error check instead of passing by luck.
#include "common.h"

#include <algorithm>
#include <numeric>
#include <sstream>

#include "reference/ref_attention.h"

namespace {

struct Case {
    int H = 4, Hkv = 2, D = 64;
    std::vector<int32_t> q_lens{1}, kv_lens{16};
    trit_dtype q_dt = TRIT_DTYPE_F32, kv_dt = TRIT_DTYPE_F32, o_dt = TRIT_DTYPE_F32;
    int block = 0; // paged block size; 0: contiguous cache
    float scale = 0;
    bool causal = true;
    int32_t window = 0;
    float softcap = 0;
    bool alibi = false, sinks = false;
    int32_t kv_splits = 0;
    bool strided = false; // q, out and the cache as padded views at an offset
    uint64_t seed = 1;

    std::string describe() const
    {
        std::ostringstream os;
        os << "H=" << H << " Hkv=" << Hkv << " D=" << D << " q_lens=[";
        for (size_t i = 0; i < q_lens.size(); i++)
            os << (i ? "," : "") << q_lens[i];
        os << "] kv_lens=[";
        for (size_t i = 0; i < kv_lens.size(); i++)
            os << (i ? "," : "") << kv_lens[i];
        os << "] q=" << trit_dtype_name(q_dt) << " kv=" << trit_dtype_name(kv_dt)
           << " out=" << trit_dtype_name(o_dt) << " block=" << block << " scale=" << scale
           << (causal ? " causal" : "") << " window=" << window << " softcap=" << softcap
           << (alibi ? " alibi" : "") << (sinks ? " sinks" : "") << " splits=" << kv_splits
           << (strided ? " strided" : "") << " seed=" << seed;
        return os.str();
    }
    double tolerance() const
    {
        bool all_f32 = q_dt == TRIT_DTYPE_F32 && kv_dt == TRIT_DTYPE_F32 && o_dt == TRIT_DTYPE_F32;
        return all_f32 ? 1e-5 : 2e-3;
    }
};

struct Outcome {
    std::vector<float> out;
    std::vector<double> ref;
    double error = INFINITY;
    bool gaps_untouched = true; // bytes of out's buffer outside the view kept their poison
};

// A tensor placed at an element offset with padded strides, inside a buffer prefilled with
// `fill`; set() writes logical elements.
struct Placed {
    tt::Buffer buf;
    trit_tensor t{};
    std::vector<uint8_t> bytes; // host image of the whole buffer
    size_t es = 4;

    Placed(trit_device *dev, trit_dtype dt, std::vector<int64_t> shape,
           std::vector<int64_t> strides, int64_t offset_elems, float fill)
    {
        es = trit_dtype_size(dt);
        int64_t last = offset_elems;
        for (size_t d = 0; d < shape.size(); d++)
            last += (shape[d] - 1) * strides[d];
        size_t n = (size_t)(last + 1 + 7); // a little slack past the end
        bytes = tt::to_bytes(dt, std::vector<float>(n, fill));
        buf = tt::Buffer(dev, bytes.size());
        EXPECT_EQ(TRIT_OK,
                  trit_tensor_make(buf, (uint64_t)offset_elems * es, dt, (uint32_t)shape.size(),
                                   shape.data(), strides.data(), &t))
            << trit_last_error();
    }
    size_t index(std::initializer_list<int64_t> idx) const
    {
        int64_t e = (int64_t)(t.offset / es), d = 0;
        for (int64_t i : idx)
            e += i * t.strides[d++];
        return (size_t)e;
    }
    void set(size_t elem, float v)
    {
        if (t.dtype == TRIT_DTYPE_F16) {
            uint16_t h = trit_float_to_half(v);
            std::memcpy(&bytes[elem * 2], &h, 2);
        } else {
            std::memcpy(&bytes[elem * 4], &v, 4);
        }
    }
    float get(const std::vector<uint8_t> &img, size_t elem) const
    {
        if (t.dtype == TRIT_DTYPE_F16) {
            uint16_t h;
            std::memcpy(&h, &img[elem * 2], 2);
            return trit_half_to_float(h);
        }
        float f;
        std::memcpy(&f, &img[elem * 4], 4);
        return f;
    }
    void upload(trit_stream *s)
    {
        EXPECT_EQ(TRIT_OK, trit_buffer_upload(s, buf, 0, bytes.data(), bytes.size()))
            << trit_last_error();
        EXPECT_EQ(TRIT_OK, trit_stream_sync(s)) << trit_last_error();
    }
};

std::vector<int64_t> contiguous_strides(const std::vector<int64_t> &shape)
{
    std::vector<int64_t> st(shape.size());
    int64_t s = 1;
    for (size_t d = shape.size(); d-- > 0;) {
        st[d] = s;
        s *= shape[d];
    }
    return st;
}

// Strides with padding in every dim but the last, so rows are not adjacent.
std::vector<int64_t> padded_strides(const std::vector<int64_t> &shape)
{
    std::vector<int64_t> st(shape.size());
    int64_t s = 1;
    for (size_t d = shape.size(); d-- > 0;) {
        st[d] = s;
        s = s * shape[d] + (d + 1 == shape.size() ? 8 : 3);
    }
    return st;
}

struct Problem {
    ref::AttentionProblem p;
    std::vector<int32_t> block_table; // paged: S x max_blocks
    int32_t max_blocks = 0;
    int64_t n_blocks = 0;
};

Problem make_problem(const Case &c)
{
    Problem pr;
    ref::AttentionProblem &p = pr.p;
    const size_t S = c.q_lens.size();
    p.n_heads = c.H;
    p.n_kv_heads = c.Hkv;
    p.head_dim = c.D;
    p.q_lens = c.q_lens;
    p.kv_lens = c.kv_lens;
    int32_t max_kv = *std::max_element(c.kv_lens.begin(), c.kv_lens.end());
    p.capacity = max_kv + 5; // slots past every kv_len exist and hold NaN
    int64_t T = std::accumulate(c.q_lens.begin(), c.q_lens.end(), (int64_t)0);
    p.q = tt::random_floats((size_t)(T * c.H * c.D), c.seed * 97 + 1, -2.f, 2.f);
    tt::round_all(c.q_dt, p.q);
    size_t kv_n = (size_t)((int64_t)S * p.capacity * c.Hkv * c.D);
    p.k = tt::random_floats(kv_n, c.seed * 97 + 2);
    p.v = tt::random_floats(kv_n, c.seed * 97 + 3);
    tt::round_all(c.kv_dt, p.k);
    tt::round_all(c.kv_dt, p.v);
    for (size_t s = 0; s < S; s++)
        for (int64_t j = c.kv_lens[s]; j < p.capacity; j++)
            for (int64_t e = 0; e < (int64_t)c.Hkv * c.D; e++) {
                size_t i = (size_t)(((int64_t)s * p.capacity + j) * c.Hkv * c.D + e);
                p.k[i] = p.v[i] = NAN;
            }
    p.scale = c.scale;
    p.causal = c.causal;
    p.window = c.window;
    p.softcap = c.softcap;
    if (c.alibi)
        p.alibi_slopes = tt::random_floats((size_t)c.H, c.seed * 97 + 4, 0.01f, 0.3f);
    if (c.sinks)
        p.sinks = tt::random_floats((size_t)c.H, c.seed * 97 + 5, -1.f, 3.f);
    if (c.block > 0) {
        std::vector<int32_t> nb(S);
        int64_t used = 0;
        for (size_t s = 0; s < S; s++) {
            nb[s] = (c.kv_lens[s] + c.block - 1) / c.block;
            pr.max_blocks = std::max(pr.max_blocks, nb[s]);
            used += nb[s];
        }
        pr.max_blocks += 1;     // an unused trailing entry in every row
        pr.n_blocks = used + 2; // and two blocks no sequence uses
        std::vector<int32_t> perm((size_t)pr.n_blocks);
        std::iota(perm.begin(), perm.end(), 0);
        std::mt19937_64 rng(c.seed * 97 + 6);
        std::shuffle(perm.begin(), perm.end(), rng);
        // Entries past a sequence's last block are ignored: make them invalid on purpose.
        pr.block_table.assign(S * (size_t)pr.max_blocks, 1 << 30);
        size_t next = 0;
        for (size_t s = 0; s < S; s++)
            for (int32_t b = 0; b < nb[s]; b++)
                pr.block_table[s * (size_t)pr.max_blocks + (size_t)b] = perm[next++];
    }
    return pr;
}

trit_attention_params params_of(const Case &c, const ref::AttentionProblem &p)
{
    trit_attention_params prm;
    trit_attention_params_init(&prm);
    prm.scale = c.scale;
    prm.causal = c.causal;
    prm.window = c.window;
    prm.softcap = c.softcap;
    prm.alibi_slopes = p.alibi_slopes.empty() ? nullptr : p.alibi_slopes.data();
    prm.sinks = p.sinks.empty() ? nullptr : p.sinks.data();
    prm.kv_splits = c.kv_splits;
    return prm;
}

Outcome run_case(trit_device *dev, const Case &c)
{
    Outcome res;
    Problem pr = make_problem(c);
    const ref::AttentionProblem &p = pr.p;
    const int64_t S = (int64_t)c.q_lens.size();
    const int64_t T = (int64_t)(p.q.size() / ((size_t)c.H * c.D));
    tt::Stream stream(dev);

    auto strides = [&](const std::vector<int64_t> &shape) {
        return c.strided ? padded_strides(shape) : contiguous_strides(shape);
    };
    const int64_t off = c.strided ? 13 : 0;
    std::vector<int64_t> qshape{T, c.H, c.D};
    Placed q(dev, c.q_dt, qshape, strides(qshape), off, 0.5f);
    for (int64_t t = 0; t < T; t++)
        for (int h = 0; h < c.H; h++)
            for (int x = 0; x < c.D; x++)
                q.set(q.index({t, h, x}), p.q[(size_t)((t * c.H + h) * c.D + x)]);
    q.upload(stream);
    Placed out(dev, c.o_dt, qshape, strides(qshape), off, NAN);
    out.bytes.assign(out.bytes.size(), 0xFF);
    out.upload(stream);
    const std::vector<uint8_t> poison = out.bytes;

    std::vector<int64_t> cshape = c.block > 0
                                      ? std::vector<int64_t>{pr.n_blocks, c.block, c.Hkv, c.D}
                                      : std::vector<int64_t>{S, p.capacity, c.Hkv, c.D};
    Placed kc(dev, c.kv_dt, cshape, strides(cshape), off * 3, NAN);
    Placed vc(dev, c.kv_dt, cshape, strides(cshape), off * 5, NAN);
    for (int64_t s = 0; s < S; s++)
        for (int64_t j = 0; j < c.kv_lens[(size_t)s]; j++) {
            int64_t blk = s, row = j;
            if (c.block > 0) {
                blk = pr.block_table[(size_t)(s * pr.max_blocks + j / c.block)];
                row = j % c.block;
            }
            for (int g = 0; g < c.Hkv; g++)
                for (int x = 0; x < c.D; x++) {
                    size_t li = (size_t)(((s * p.capacity + j) * c.Hkv + g) * c.D + x);
                    kc.set(kc.index({blk, row, g, x}), p.k[li]);
                    vc.set(vc.index({blk, row, g, x}), p.v[li]);
                }
        }
    kc.upload(stream);
    vc.upload(stream);

    trit_kv_cache cache{};
    cache.size = sizeof(cache);
    cache.k = kc.t;
    cache.v = vc.t;
    if (c.block > 0) {
        cache.block_table = pr.block_table.data();
        cache.max_blocks_per_seq = pr.max_blocks;
    }
    trit_attention_params prm = params_of(c, p);
    trit_status st = trit_attention(stream, &q.t, &cache, (uint32_t)S, c.q_lens.data(),
                                    c.kv_lens.data(), &out.t, &prm);
    EXPECT_EQ(TRIT_OK, st) << trit_status_string(st) << ": " << trit_last_error();
    if (st != TRIT_OK)
        return res;

    std::vector<uint8_t> img = tt::download_bytes(stream, out.buf);
    res.out.resize((size_t)(T * c.H * c.D));
    std::vector<char> in_view(img.size() / out.es, 0);
    for (int64_t t = 0; t < T; t++)
        for (int h = 0; h < c.H; h++)
            for (int x = 0; x < c.D; x++) {
                size_t e = out.index({t, h, x});
                res.out[(size_t)((t * c.H + h) * c.D + x)] = out.get(img, e);
                in_view[e] = 1;
            }
    for (size_t e = 0; e < in_view.size(); e++)
        if (!in_view[e] && std::memcmp(&img[e * out.es], &poison[e * out.es], out.es) != 0)
            res.gaps_untouched = false;
    res.ref = ref::attention(p);
    res.error = tt::rel_error(res.out, res.ref);
    return res;
}

// Relative difference of two device outputs (the first taken as the reference).
double rel_diff(const std::vector<float> &a, const std::vector<float> &b)
{
    return tt::rel_error(b, std::vector<double>(a.begin(), a.end()));
}

#define EXPECT_MATCHES_REFERENCE(c, r)                                                             \
    do {                                                                                           \
        EXPECT_LT((r).error, (c).tolerance()) << (c).describe();                                   \
        EXPECT_TRUE((r).gaps_untouched) << "wrote outside the output view: " << (c).describe();    \
    } while (0)

class Attention : public ::testing::TestWithParam<uint32_t> {
  protected:
    trit_device *dev() { return tt::device(GetParam()); }
    Outcome check(const Case &c)
    {
        SCOPED_TRACE(c.describe());
        Outcome r = run_case(dev(), c);
        EXPECT_MATCHES_REFERENCE(c, r);
        return r;
    }
};

TEST_P(Attention, MatchesReferenceForEveryHeadDim)
{
    for (int d : {64, 80, 96, 128, 256}) {
        Case c;
        c.D = d;
        c.H = 6;
        c.Hkv = 2;
        c.q_lens = {1, 5, 40};
        c.kv_lens = {1, 37, 100};
        c.seed = (uint64_t)d;
        check(c);
        c.causal = false;
        c.kv_dt = TRIT_DTYPE_F16;
        check(c);
    }
}

TEST_P(Attention, CausalPrefillMatchesReferenceWithOffset)
{
    Case c;
    c.H = 4;
    c.Hkv = 4;
    c.D = 128;
    c.q_lens = {50};
    c.kv_lens = {130}; // queries sit at positions 80..129
    check(c);
    c.q_lens = {130}; // no offset: a plain causal prefill
    c.seed = 2;
    check(c);
    c.q_lens = {97};
    c.kv_lens = {300};
    c.H = 8;
    c.Hkv = 2;
    c.kv_dt = TRIT_DTYPE_F16; // enough query rows per item to widen the tile once
    c.seed = 3;
    check(c);
}

TEST_P(Attention, NonCausalQueriesSeeEveryKey)
{
    Case c;
    c.causal = false;
    c.q_lens = {20, 3};
    c.kv_lens = {70, 3};
    c.H = 8;
    c.Hkv = 4;
    check(c);
}

TEST_P(Attention, DecodeSplitKvEqualsSinglePass)
{
    Case c;
    c.H = 8;
    c.Hkv = 2;
    c.D = 128;
    c.q_lens = {1};
    c.kv_lens = {4096};
    c.kv_dt = TRIT_DTYPE_F16;
    c.kv_splits = 1;
    Outcome single = check(c);
    for (int32_t splits : {0, 2, 5, 64, 100000}) {
        c.kv_splits = splits;
        SCOPED_TRACE("kv_splits=" + std::to_string(splits));
        Outcome split = check(c);
        EXPECT_LT(rel_diff(single.out, split.out), 1e-5);
    }
    // f32 throughout: the splits must also agree at the f32 tolerance.
    c.kv_dt = TRIT_DTYPE_F32;
    c.kv_lens = {1500};
    c.kv_splits = 1;
    single = check(c);
    c.kv_splits = 7;
    Outcome split = check(c);
    EXPECT_LT(rel_diff(single.out, split.out), 1e-5);
}

TEST_P(Attention, SplitKvWorksForPrefillAndBatches)
{
    Case c;
    c.q_lens = {33, 1, 2};
    c.kv_lens = {500, 900, 2};
    c.window = 300;
    c.sinks = true;
    for (int32_t splits : {1, 3, 16}) {
        c.kv_splits = splits;
        SCOPED_TRACE("kv_splits=" + std::to_string(splits));
        check(c);
    }
}

TEST_P(Attention, PagedMatchesContiguous)
{
    Case c;
    c.H = 8;
    c.Hkv = 2;
    c.D = 96;
    c.q_lens = {1, 9, 1};
    c.kv_lens = {300, 9, 700};
    c.kv_dt = TRIT_DTYPE_F16;
    Outcome contiguous = check(c);
    for (int block : {16, 64, 256}) {
        c.block = block;
        SCOPED_TRACE("block=" + std::to_string(block));
        Outcome paged = check(c);
        EXPECT_LT(rel_diff(contiguous.out, paged.out), 1e-6);
    }
}

TEST_P(Attention, BatchOfSequencesWithDifferentLengths)
{
    Case c;
    c.H = 4;
    c.Hkv = 1;
    c.D = 80;
    c.q_lens = {1, 3, 17, 1, 64};
    c.kv_lens = {1, 200, 17, 1000, 64};
    check(c);
    c.block = 16;
    check(c);
}

TEST_P(Attention, SingleHeadMhaGqaAndMqa)
{
    const int heads[][2] = {{1, 1}, {4, 4}, {8, 2}, {12, 3}, {8, 1}, {80, 1}, {40, 1}};
    for (auto &hh : heads) {
        for (int d : {64, 256}) {
            Case c;
            c.H = hh[0];
            c.Hkv = hh[1];
            c.D = d;
            c.q_lens = {1, 6};
            c.kv_lens = {150, 70};
            c.seed = (uint64_t)(hh[0] * 7 + hh[1] + d);
            check(c);
        }
    }
}

TEST_P(Attention, LengthOneSequence)
{
    Case c;
    c.q_lens = {1};
    c.kv_lens = {1};
    check(c);
    c.q_dt = c.kv_dt = c.o_dt = TRIT_DTYPE_F16;
    check(c);
    c.sinks = true; // one key and a sink: the weights are no longer 1
    check(c);
}

TEST_P(Attention, SlidingWindowLimitsKeys)
{
    Case c;
    c.q_lens = {40, 1};
    c.kv_lens = {200, 333};
    c.window = 16;
    check(c);
    c.window = 1; // each query sees only itself
    check(c);
    c.causal = false; // window without causal: every key after p - window is visible
    c.window = 50;
    check(c);
}

TEST_P(Attention, SoftcapMatchesReference)
{
    Case c;
    c.q_lens = {10, 1};
    c.kv_lens = {100, 90};
    c.scale = 1.0f; // large scores, so the cap bends them
    c.softcap = 5.0f;
    check(c);
    c.kv_dt = TRIT_DTYPE_F16;
    c.softcap = 30.0f;
    check(c);
}

TEST_P(Attention, AlibiMatchesReference)
{
    Case c;
    c.q_lens = {12, 1};
    c.kv_lens = {120, 200};
    c.alibi = true;
    check(c);
    c.causal = false; // keys after the query get a positive bias
    check(c);
}

TEST_P(Attention, SinksAddToTheDenominator)
{
    Case c;
    c.q_lens = {5, 1};
    c.kv_lens = {60, 500};
    c.sinks = true;
    check(c);
    c.kv_splits = 4;
    check(c);
}

TEST_P(Attention, AllOptionsCombined)
{
    Case c;
    c.H = 12;
    c.Hkv = 3;
    c.D = 128;
    c.q_lens = {1, 30, 2};
    c.kv_lens = {800, 30, 400};
    c.window = 256;
    c.softcap = 20.0f;
    c.alibi = true;
    c.sinks = true;
    c.scale = 0.2f;
    check(c);
    c.block = 64;
    c.q_dt = c.kv_dt = c.o_dt = TRIT_DTYPE_F16;
    check(c);
    c.kv_splits = 3;
    check(c);
}

TEST_P(Attention, EveryDtypeCombination)
{
    const trit_dtype dts[] = {TRIT_DTYPE_F32, TRIT_DTYPE_F16};
    for (trit_dtype qd : dts)
        for (trit_dtype kd : dts)
            for (trit_dtype od : dts) {
                Case c;
                c.q_dt = qd;
                c.kv_dt = kd;
                c.o_dt = od;
                c.q_lens = {1, 20};
                c.kv_lens = {90, 40};
                check(c);
            }
}

TEST_P(Attention, StridedViewsAreRespected)
{
    Case c;
    c.strided = true;
    c.q_lens = {1, 25};
    c.kv_lens = {130, 25};
    c.H = 6;
    c.Hkv = 3;
    check(c);
    c.q_dt = c.o_dt = TRIT_DTYPE_F16;
    c.block = 16;
    check(c);
}

TEST_P(Attention, ScaleParameterIsUsed)
{
    Case c;
    c.q_lens = {3};
    c.kv_lens = {50};
    c.scale = 0.5f;
    Outcome a = check(c);
    c.scale = 0.05f;
    Outcome b = check(c);
    EXPECT_GT(rel_diff(a.out, b.out), 1e-2); // and it changes the result
}

TEST_P(Attention, LongPrefillWithManyTiles)
{
    Case c;
    c.H = 4;
    c.Hkv = 2;
    c.D = 64;
    c.q_lens = {300};
    c.kv_lens = {700};
    c.kv_dt = TRIT_DTYPE_F16;
    check(c);
}

// ---- bad input ----------------------------------------------------------------------------

// A small valid problem whose pieces the tests break one at a time.
struct Valid {
    trit_device *dev;
    tt::Stream stream;
    tt::DeviceTensor q, out, k, v;
    trit_kv_cache cache{};
    std::vector<int32_t> q_lens{2, 1}, kv_lens{5, 40};
    std::vector<uint8_t> poison;
    std::vector<int32_t> table;
    int H = 4, Hkv = 2, D = 64;

    explicit Valid(trit_device *d, bool paged = false) : dev(d), stream(d)
    {
        q = tt::upload(dev, stream, TRIT_DTYPE_F32, {3, H, D}, tt::random_floats(3 * 4 * 64, 5));
        out = tt::poisoned(dev, stream, TRIT_DTYPE_F32, {3, H, D});
        std::vector<int64_t> shape =
            paged ? std::vector<int64_t>{5, 16, Hkv, D} : std::vector<int64_t>{2, 48, Hkv, D};
        size_t n = (size_t)(shape[0] * shape[1] * Hkv * D);
        k = tt::upload(dev, stream, TRIT_DTYPE_F32, shape, tt::random_floats(n, 6));
        v = tt::upload(dev, stream, TRIT_DTYPE_F32, shape, tt::random_floats(n, 7));
        cache.size = sizeof(cache);
        cache.k = k.t;
        cache.v = v.t;
        if (paged) {
            table = {4, -1, -1, 0, 2, 1}; // seq 0: block 4; seq 1: blocks 0, 2, 1
            cache.block_table = table.data();
            cache.max_blocks_per_seq = 3;
        }
        poison = tt::download_bytes(stream, out.buf);
    }
    trit_status run(const trit_tensor *qt = nullptr, trit_tensor *ot = nullptr,
                    const trit_kv_cache *c = nullptr)
    {
        trit_attention_params p;
        trit_attention_params_init(&p);
        p.causal = 1;
        return trit_attention(stream, qt ? qt : &q.t, c ? c : &cache, (uint32_t)q_lens.size(),
                              q_lens.data(), kv_lens.data(), ot ? ot : &out.t, &p);
    }
    void expect_rejected(trit_status want, trit_status got)
    {
        EXPECT_EQ(want, got) << "got " << trit_status_string(got) << ": " << trit_last_error();
        EXPECT_STRNE("", trit_last_error());
        EXPECT_EQ(poison, tt::download_bytes(stream, out.buf)) << "output was written";
    }
};

TEST_P(Attention, ValidBadInputBaselineRuns)
{
    // The fixtures below are valid until broken: make sure of it.
    Valid a(dev());
    EXPECT_EQ(TRIT_OK, a.run()) << trit_last_error();
    Valid b(dev(), true);
    EXPECT_EQ(TRIT_OK, b.run()) << trit_last_error();
}

TEST_P(Attention, RejectsNullPointers)
{
    Valid a(dev());
    trit_attention_params p;
    trit_attention_params_init(&p);
    const uint32_t n = 2;
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT,
                      trit_attention(nullptr, &a.q.t, &a.cache, n, a.q_lens.data(),
                                     a.kv_lens.data(), &a.out.t, &p));
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT,
                      trit_attention(a.stream, nullptr, &a.cache, n, a.q_lens.data(),
                                     a.kv_lens.data(), &a.out.t, &p));
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT,
                      trit_attention(a.stream, &a.q.t, nullptr, n, a.q_lens.data(),
                                     a.kv_lens.data(), &a.out.t, &p));
    a.expect_rejected(
        TRIT_ERROR_INVALID_ARGUMENT,
        trit_attention(a.stream, &a.q.t, &a.cache, n, nullptr, a.kv_lens.data(), &a.out.t, &p));
    a.expect_rejected(
        TRIT_ERROR_INVALID_ARGUMENT,
        trit_attention(a.stream, &a.q.t, &a.cache, n, a.q_lens.data(), nullptr, &a.out.t, &p));
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT,
                      trit_attention(a.stream, &a.q.t, &a.cache, n, a.q_lens.data(),
                                     a.kv_lens.data(), nullptr, &p));
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT,
                      trit_attention(a.stream, &a.q.t, &a.cache, 0, a.q_lens.data(),
                                     a.kv_lens.data(), &a.out.t, &p));
}

TEST_P(Attention, RejectsUnsupportedHeadDim)
{
    Valid a(dev());
    tt::DeviceTensor q =
        tt::upload(a.dev, a.stream, TRIT_DTYPE_F32, {3, 4, 72}, tt::random_floats(3 * 4 * 72, 8));
    tt::DeviceTensor k = tt::upload(a.dev, a.stream, TRIT_DTYPE_F32, {2, 48, 2, 72},
                                    tt::random_floats(2 * 48 * 2 * 72, 9));
    tt::DeviceTensor v = tt::upload(a.dev, a.stream, TRIT_DTYPE_F32, {2, 48, 2, 72},
                                    tt::random_floats(2 * 48 * 2 * 72, 10));
    tt::DeviceTensor out = tt::poisoned(a.dev, a.stream, TRIT_DTYPE_F32, {3, 4, 72});
    std::vector<uint8_t> poison = tt::download_bytes(a.stream, out.buf);
    trit_kv_cache cache = a.cache;
    cache.k = k.t;
    cache.v = v.t;
    trit_status st = a.run(&q.t, &out.t, &cache);
    EXPECT_EQ(TRIT_ERROR_UNSUPPORTED, st) << trit_last_error();
    EXPECT_STRNE("", trit_last_error());
    EXPECT_EQ(poison, tt::download_bytes(a.stream, out.buf));
}

TEST_P(Attention, RejectsHeadsNotAMultipleOfKvHeads)
{
    Valid a(dev());
    tt::DeviceTensor k = tt::upload(a.dev, a.stream, TRIT_DTYPE_F32, {2, 48, 3, 64},
                                    tt::random_floats(2 * 48 * 3 * 64, 11));
    tt::DeviceTensor v = tt::upload(a.dev, a.stream, TRIT_DTYPE_F32, {2, 48, 3, 64},
                                    tt::random_floats(2 * 48 * 3 * 64, 12));
    trit_kv_cache cache = a.cache;
    cache.k = k.t;
    cache.v = v.t;
    a.expect_rejected(TRIT_ERROR_SHAPE_MISMATCH, a.run(nullptr, nullptr, &cache));
}

TEST_P(Attention, RejectsKvLenBelowQLen)
{
    Valid a(dev());
    a.kv_lens[0] = 1; // q_len 2
    a.expect_rejected(TRIT_ERROR_INVALID_ARGUMENT, a.run());
}

TEST_P(Attention, RejectsKvLenPastCapacity)
{
    Valid a(dev());
    a.kv_lens[1] = 49; // capacity 48
    a.expect_rejected(TRIT_ERROR_OUT_OF_BOUNDS, a.run());
}

TEST_P(Attention, RejectsBlockIndexOutOfRange)
{
    Valid a(dev(), true);
    a.table[4] = 5; // the pool has blocks 0..4
    a.expect_rejected(TRIT_ERROR_OUT_OF_BOUNDS, a.run());
    a.table[4] = -2;
    a.expect_rejected(TRIT_ERROR_OUT_OF_BOUNDS, a.run());
}

TEST_P(Attention, RejectsTooFewBlocksInTheTable)
{
    Valid a(dev(), true);
    a.kv_lens[1] = 49; // needs 4 blocks of 16, the table has 3 per sequence
    a.expect_rejected(TRIT_ERROR_OUT_OF_BOUNDS, a.run());
}

TEST_P(Attention, RejectsMismatchedQAndOutShapes)
{
    Valid a(dev());
    tt::DeviceTensor out = tt::poisoned(a.dev, a.stream, TRIT_DTYPE_F32, {3, 2, 64});
    std::vector<uint8_t> poison = tt::download_bytes(a.stream, out.buf);
    trit_status st = a.run(nullptr, &out.t);
    EXPECT_EQ(TRIT_ERROR_SHAPE_MISMATCH, st) << trit_last_error();
    EXPECT_STRNE("", trit_last_error());
    EXPECT_EQ(poison, tt::download_bytes(a.stream, out.buf));
}

TEST_P(Attention, RejectsQLensThatDoNotAddUpToTokens)
{
    Valid a(dev());
    a.q_lens = {1, 1}; // q has 3 tokens
    a.expect_rejected(TRIT_ERROR_SHAPE_MISMATCH, a.run());
}

TEST_P(Attention, RejectsBf16Q)
{
    Valid a(dev());
    tt::DeviceTensor q =
        tt::upload(a.dev, a.stream, TRIT_DTYPE_BF16, {3, 4, 64}, tt::random_floats(3 * 4 * 64, 13));
    a.expect_rejected(TRIT_ERROR_UNSUPPORTED, a.run(&q.t));
}

struct OtherContext {
    trit_context *ctx = nullptr;
    trit_device *dev = nullptr;
    OtherContext()
    {
        trit_context_options o{};
        o.size = sizeof(o);
        EXPECT_EQ(TRIT_OK, trit_context_create(&o, &ctx)) << trit_last_error();
        if (ctx && trit_device_count(ctx) > 0)
            trit_device_get(ctx, 0, &dev);
    }
    ~OtherContext() { trit_context_destroy(ctx); }
};

TEST_P(Attention, RejectsTensorsFromAnotherDevice)
{
    Valid a(dev());
    OtherContext other; // the same hardware, but another context's device object
    ASSERT_NE(nullptr, other.dev);
    tt::Stream s2(other.dev);
    tt::DeviceTensor q =
        tt::upload(other.dev, s2, TRIT_DTYPE_F32, {3, 4, 64}, tt::random_floats(3 * 4 * 64, 14));
    a.expect_rejected(TRIT_ERROR_WRONG_DEVICE, a.run(&q.t));
}

INSTANTIATE_TEST_SUITE_P(AllDevices, Attention, ::testing::ValuesIn(tt::device_indices()),
                         tt::device_param_name);

// ---- the CPU plugin's ISA levels ------------------------------------------------------------

struct IsaContext {
    trit_context *ctx = nullptr;
    trit_device *dev = nullptr;
    trit_device_info info{};
    IsaContext(const char *isa, const char *threads)
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
        info.size = sizeof(info);
        if (dev)
            trit_device_get_info(dev, &info);
    }
    ~IsaContext() { trit_context_destroy(ctx); }
    // Whether the kernels asked for are the ones in use (a CPU without them falls back).
    bool runs(const std::string &isa) const
    {
        if (isa == "avx512")
            return (info.caps & TRIT_CAP_AVX512) != 0;
        if (isa == "avx2")
            return (info.caps & TRIT_CAP_AVX2) && !(info.caps & TRIT_CAP_AVX512);
        return !(info.caps & (TRIT_CAP_AVX2 | TRIT_CAP_AVX512));
    }
};

std::vector<Case> isa_cases()
{
    std::vector<Case> cases;
    for (int d : {64, 80, 96, 128, 256}) {
        Case c;
        c.D = d;
        c.H = 8;
        c.Hkv = 2;
        c.q_lens = {1, 19, 3};
        c.kv_lens = {333, 19, 70};
        c.seed = 300 + (uint64_t)d;
        cases.push_back(c); // f32 cache read in place
        c.kv_dt = TRIT_DTYPE_F16;
        c.o_dt = TRIT_DTYPE_F16;
        cases.push_back(c); // f16 widened in registers (decode) and into a tile (prefill)
    }
    Case dec;
    dec.H = 20;
    dec.Hkv = 5;
    dec.D = 128;
    dec.q_lens = {1};
    dec.kv_lens = {4096};
    dec.kv_dt = TRIT_DTYPE_F16;
    cases.push_back(dec);
    Case mha = dec;
    mha.H = mha.Hkv = 3;
    mha.q_lens = {1, 2};
    mha.kv_lens = {1000, 50};
    cases.push_back(mha); // one and two rows per item: the 1 x 16 and 2 x 8 score blocks
    Case opt;
    opt.H = 6;
    opt.Hkv = 2;
    opt.q_lens = {17, 1};
    opt.kv_lens = {170, 600};
    opt.window = 100;
    opt.softcap = 3.0f;
    opt.scale = 1.0f;
    opt.alibi = true;
    opt.sinks = true;
    opt.block = 16;
    cases.push_back(opt);
    opt.q_dt = opt.kv_dt = TRIT_DTYPE_F16;
    opt.causal = false;
    opt.kv_splits = 5;
    cases.push_back(opt);
    return cases;
}

class AttentionIsa : public ::testing::TestWithParam<const char *> {};

TEST_P(AttentionIsa, MatchesReferenceOnEveryKernelPath)
{
    const std::string isa = GetParam();
    for (const char *threads : {"2", "3"}) {
        SCOPED_TRACE("cpu.isa=" + isa + " cpu.threads=" + threads);
        IsaContext ic(isa.c_str(), threads);
        ASSERT_NE(nullptr, ic.dev) << "no CPU device";
        if (!ic.runs(isa))
            GTEST_SKIP() << "this CPU cannot run the " << isa << " kernels";
        for (const Case &c : isa_cases()) {
            SCOPED_TRACE(c.describe());
            Outcome r = run_case(ic.dev, c);
            EXPECT_MATCHES_REFERENCE(c, r);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Cpu, AttentionIsa, ::testing::Values("portable", "avx2", "avx512"),
                         [](const ::testing::TestParamInfo<const char *> &info) {
                             return std::string(info.param);
                         });

} // namespace

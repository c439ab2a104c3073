// test_gguf.cpp — the GGUF reader on files built here byte by byte: what it reads, and that
// every kind of hostile byte is rejected with a sentence instead of a crash.
#include <random>
#include <string>

#include "common.h"

namespace {

// Writes GGUF files little-endian, the way the format lays them out.
struct GgufWriter {
    std::vector<uint8_t> b;
    void u8(uint8_t v) { b.push_back(v); }
    void u32(uint32_t v)
    {
        for (int i = 0; i < 4; i++)
            b.push_back((uint8_t)(v >> (8 * i)));
    }
    void u64(uint64_t v)
    {
        for (int i = 0; i < 8; i++)
            b.push_back((uint8_t)(v >> (8 * i)));
    }
    void f32(float f)
    {
        uint32_t u;
        memcpy(&u, &f, 4);
        u32(u);
    }
    void str(const std::string &s)
    {
        u64(s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
    void header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3)
    {
        b.insert(b.end(), {'G', 'G', 'U', 'F'});
        u32(version);
        u64(n_tensors);
        u64(n_kv);
    }
    void pad(size_t align)
    {
        while (b.size() % align)
            b.push_back(0);
    }
};

struct Reader {
    trit_gguf *g = nullptr;
    ~Reader() { trit_gguf_close(g); }
};

// A small but complete file: 6 KVs and two tensors (a TQ2_0 2x512 matrix and an F32 vector).
struct SampleFile {
    std::vector<uint8_t> bytes;
    std::vector<int8_t> w;
    std::vector<float> d;
    size_t tensor_info_start = 0;
};

SampleFile make_sample()
{
    SampleFile f;
    const int64_t rows = 2, cols = 512;
    f.w = tt::random_ternary(rows * cols, 42);
    f.d = {0.5f, 0.25f, 2.0f, 1.5f};
    uint64_t tq_bytes = 0;
    EXPECT_EQ(TRIT_OK, trit_format_bytes(TRIT_WEIGHTS_TQ2_0, rows, cols, &tq_bytes));
    std::vector<uint8_t> tq(tq_bytes);
    EXPECT_EQ(TRIT_OK, trit_pack_tq2_0(f.w.data(), f.d.data(), rows, cols, tq.data(), tq.size()));

    GgufWriter w;
    w.header(2, 6);
    w.str("general.architecture");
    w.u32(TRIT_GGUF_STRING);
    w.str("bitnet");
    w.str("bitnet.block_count");
    w.u32(TRIT_GGUF_U32);
    w.u32(30);
    w.str("bitnet.rope.freq_base");
    w.u32(TRIT_GGUF_F32);
    w.f32(500000.0f);
    w.str("general.quantized");
    w.u32(TRIT_GGUF_BOOL);
    w.u8(1);
    w.str("tokenizer.ggml.tokens");
    w.u32(TRIT_GGUF_ARRAY);
    w.u32(TRIT_GGUF_STRING);
    w.u64(3);
    w.str("<s>");
    w.str("hello");
    w.str("");
    w.str("tokenizer.ggml.token_type");
    w.u32(TRIT_GGUF_ARRAY);
    w.u32(TRIT_GGUF_I32);
    w.u64(3);
    w.u32(1);
    w.u32(2);
    w.u32((uint32_t)-3);
    f.tensor_info_start = w.b.size();
    w.str("blk.0.ffn_up.weight");
    w.u32(2);
    w.u64(cols);
    w.u64(rows);
    w.u32(TRIT_GGML_TYPE_TQ2_0);
    w.u64(0);
    w.str("blk.0.attn_norm.weight");
    w.u32(1);
    w.u64(8);
    w.u32(0); // F32
    uint64_t second = (tq.size() + 31) / 32 * 32;
    w.u64(second);
    w.pad(32);
    w.b.insert(w.b.end(), tq.begin(), tq.end());
    w.pad(32);
    for (int i = 0; i < 8; i++)
        w.f32((float)i);
    f.bytes = w.b;
    return f;
}

} // namespace

TEST(Gguf, ReadsHeaderMetadataAndTensorInfos)
{
    SampleFile f = make_sample();
    Reader r;
    TRIT_ASSERT_OK(trit_gguf_open(f.bytes.data(), f.bytes.size(), nullptr, &r.g));
    EXPECT_EQ(3u, trit_gguf_version(r.g));
    EXPECT_EQ(6u, trit_gguf_kv_count(r.g));
    EXPECT_EQ(2u, trit_gguf_tensor_count(r.g));

    uint64_t i;
    const char *s;
    TRIT_ASSERT_OK(trit_gguf_kv_find(r.g, "general.architecture", &i));
    TRIT_ASSERT_OK(trit_gguf_kv_string(r.g, i, &s));
    EXPECT_STREQ("bitnet", s);
    uint64_t u;
    TRIT_ASSERT_OK(trit_gguf_kv_find(r.g, "bitnet.block_count", &i));
    TRIT_ASSERT_OK(trit_gguf_kv_u64(r.g, i, &u));
    EXPECT_EQ(30u, u);
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_gguf_kv_string(r.g, i, &s));
    double fb;
    TRIT_ASSERT_OK(trit_gguf_kv_find(r.g, "bitnet.rope.freq_base", &i));
    TRIT_ASSERT_OK(trit_gguf_kv_f64(r.g, i, &fb));
    EXPECT_EQ(500000.0, fb);
    TRIT_ASSERT_OK(trit_gguf_kv_find(r.g, "tokenizer.ggml.tokens", &i));
    trit_gguf_type et;
    uint64_t count;
    const void *data;
    TRIT_ASSERT_OK(trit_gguf_kv_array(r.g, i, &et, &count, &data));
    EXPECT_EQ(TRIT_GGUF_STRING, et);
    EXPECT_EQ(3u, count);
    EXPECT_EQ(nullptr, data);
    uint64_t len;
    TRIT_ASSERT_OK(trit_gguf_kv_array_string(r.g, i, 1, &s, &len));
    EXPECT_EQ("hello", std::string(s, len));
    TRIT_ASSERT_OK(trit_gguf_kv_array_string(r.g, i, 2, &s, &len));
    EXPECT_EQ(0u, len);
    EXPECT_EQ(TRIT_ERROR_NOT_FOUND, trit_gguf_kv_array_string(r.g, i, 3, &s, &len));
    TRIT_ASSERT_OK(trit_gguf_kv_find(r.g, "tokenizer.ggml.token_type", &i));
    TRIT_ASSERT_OK(trit_gguf_kv_array(r.g, i, &et, &count, &data));
    EXPECT_EQ(TRIT_GGUF_I32, et);
    int32_t third;
    memcpy(&third, (const uint8_t *)data + 8, 4);
    EXPECT_EQ(-3, third);
    EXPECT_EQ(TRIT_ERROR_NOT_FOUND, trit_gguf_kv_find(r.g, "no.such.key", &i));

    trit_gguf_tensor_info info{};
    info.size = sizeof(info);
    TRIT_ASSERT_OK(trit_gguf_tensor_find(r.g, "blk.0.attn_norm.weight", &i));
    TRIT_ASSERT_OK(trit_gguf_tensor_get(r.g, i, &info));
    EXPECT_EQ(1u, info.n_dims);
    EXPECT_EQ(8u, info.dims[0]);
    EXPECT_EQ(32u, info.bytes);
    float x5;
    memcpy(&x5, (const uint8_t *)info.data + 20, 4);
    EXPECT_EQ(5.0f, x5);
    trit_ternary_desc desc;
    EXPECT_EQ(TRIT_ERROR_UNSUPPORTED, trit_gguf_ternary_desc(r.g, i, &desc));
}

TEST(Gguf, TernaryTensorBecomesAnUploadableDescriptor)
{
    SampleFile f = make_sample();
    Reader r;
    TRIT_ASSERT_OK(trit_gguf_open(f.bytes.data(), f.bytes.size(), nullptr, &r.g));
    uint64_t i;
    TRIT_ASSERT_OK(trit_gguf_tensor_find(r.g, "blk.0.ffn_up.weight", &i));
    trit_ternary_desc desc{};
    TRIT_ASSERT_OK(trit_gguf_ternary_desc(r.g, i, &desc));
    EXPECT_EQ(2, desc.rows);
    EXPECT_EQ(512, desc.cols);
    EXPECT_EQ(TRIT_WEIGHTS_TQ2_0, desc.format);
    trit_ternary_host host{};
    TRIT_ASSERT_OK(trit_ternary_host_from_desc(&desc, nullptr, &host));
    std::vector<int8_t> back(2 * 512);
    TRIT_ASSERT_OK(
        trit_unpack_packed2(host.codes, host.rows * host.row_bytes, 2, 512, back.data()));
    EXPECT_EQ(f.w, back);
    ASSERT_EQ(TRIT_SCALE_BLOCK, host.scale_kind);
    ASSERT_EQ(4u, host.scale_count);
    for (int b = 0; b < 4; b++)
        EXPECT_EQ(f.d[b], host.scales[b]);
    trit_ternary_host_release(&host);
    trit_ternary *t = nullptr;
    TRIT_ASSERT_OK(trit_ternary_upload(tt::device(0), &desc, &t));
    trit_ternary_free(t);
}

TEST(Gguf, RejectsEveryTruncation)
{
    SampleFile f = make_sample();
    for (size_t n = 0; n < f.bytes.size(); n++) {
        Reader r;
        trit_status st = trit_gguf_open(f.bytes.data(), n, nullptr, &r.g);
        ASSERT_NE(TRIT_OK, st) << "truncated to " << n << " bytes";
        ASSERT_EQ(nullptr, r.g);
        ASSERT_STRNE("", trit_last_error());
    }
}

TEST(Gguf, RejectsTensorPastEndOfFile)
{
    SampleFile f = make_sample();
    f.bytes.resize(f.bytes.size() - 1);
    Reader r;
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(f.bytes.data(), f.bytes.size(), nullptr, &r.g));
    EXPECT_NE(std::string(trit_last_error()).find("past the end"), std::string::npos)
        << trit_last_error();
}

TEST(Gguf, RejectsBadMagicAndVersion)
{
    SampleFile f = make_sample();
    auto bytes = f.bytes;
    bytes[0] = 'X';
    Reader r;
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(bytes.data(), bytes.size(), nullptr, &r.g));
    bytes = f.bytes;
    bytes[4] = 1; // version 1
    EXPECT_EQ(TRIT_ERROR_UNSUPPORTED, trit_gguf_open(bytes.data(), bytes.size(), nullptr, &r.g));
    EXPECT_NE(std::string(trit_last_error()).find("version"), std::string::npos);
}

TEST(Gguf, RejectsCountsTheFileCannotHold)
{
    GgufWriter w;
    w.header(UINT64_MAX, 0);
    Reader r;
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(w.b.data(), w.b.size(), nullptr, &r.g));
    GgufWriter w2;
    w2.header(0, 1ull << 40);
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(w2.b.data(), w2.b.size(), nullptr, &r.g));
    GgufWriter w3; // a string array claiming 2^62 entries
    w3.header(0, 1);
    w3.str("k");
    w3.u32(TRIT_GGUF_ARRAY);
    w3.u32(TRIT_GGUF_STRING);
    w3.u64(1ull << 62);
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(w3.b.data(), w3.b.size(), nullptr, &r.g));
    GgufWriter w4; // a u64 array whose byte size overflows
    w4.header(0, 1);
    w4.str("k");
    w4.u32(TRIT_GGUF_ARRAY);
    w4.u32(TRIT_GGUF_U64);
    w4.u64(UINT64_MAX / 4);
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(w4.b.data(), w4.b.size(), nullptr, &r.g));
    GgufWriter w5; // a key whose length runs past the end
    w5.header(0, 1);
    w5.u64(UINT64_MAX);
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(w5.b.data(), w5.b.size(), nullptr, &r.g));
}

TEST(Gguf, RejectsOverflowingDimsAndBadTensorInfos)
{
    auto one_tensor = [](uint32_t n_dims, std::vector<uint64_t> dims, uint32_t type,
                         uint64_t offset) {
        GgufWriter w;
        w.header(1, 0);
        w.str("t");
        w.u32(n_dims);
        for (auto d : dims)
            w.u64(d);
        w.u32(type);
        w.u64(offset);
        w.pad(32);
        w.b.resize(w.b.size() + 4096, 0);
        return w.b;
    };
    Reader r;
    auto b = one_tensor(2, {1ull << 32, 1ull << 32}, 0, 0);
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(b.data(), b.size(), nullptr, &r.g));
    b = one_tensor(5, {1, 1, 1, 1, 1}, 0, 0);
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(b.data(), b.size(), nullptr, &r.g));
    b = one_tensor(1, {0}, 0, 0);
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(b.data(), b.size(), nullptr, &r.g));
    b = one_tensor(1, {16}, 0, 8); // offset not aligned
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(b.data(), b.size(), nullptr, &r.g));
    b = one_tensor(1, {16}, 0, UINT64_MAX - 31); // offset overflows
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(b.data(), b.size(), nullptr, &r.g));
    b = one_tensor(1, {100}, TRIT_GGML_TYPE_TQ2_0, 0); // not whole blocks
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(b.data(), b.size(), nullptr, &r.g));
    b = one_tensor(1, {16}, 0, 0);
    TRIT_EXPECT_OK(trit_gguf_open(b.data(), b.size(), nullptr, &r.g));
}

TEST(Gguf, RejectsDuplicateTensorNamesAndBadAlignment)
{
    GgufWriter w;
    w.header(2, 0);
    for (int i = 0; i < 2; i++) {
        w.str("same");
        w.u32(1);
        w.u64(4);
        w.u32(0);
        w.u64(0);
    }
    w.pad(32);
    w.b.resize(w.b.size() + 64, 0);
    Reader r;
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(w.b.data(), w.b.size(), nullptr, &r.g));
    EXPECT_NE(std::string(trit_last_error()).find("twice"), std::string::npos);
    GgufWriter a;
    a.header(0, 1);
    a.str("general.alignment");
    a.u32(TRIT_GGUF_U32);
    a.u32(24); // not a power of two
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(a.b.data(), a.b.size(), nullptr, &r.g));
}

TEST(Gguf, RejectsUnknownTypesAndDeepNesting)
{
    GgufWriter w;
    w.header(0, 1);
    w.str("k");
    w.u32(99);
    Reader r;
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(w.b.data(), w.b.size(), nullptr, &r.g));
    GgufWriter n;
    n.header(0, 1);
    n.str("k");
    n.u32(TRIT_GGUF_ARRAY);
    for (int depth = 0; depth < 10; depth++) {
        n.u32(TRIT_GGUF_ARRAY);
        n.u64(1);
    }
    n.u32(TRIT_GGUF_U8);
    n.u64(0);
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_gguf_open(n.b.data(), n.b.size(), nullptr, &r.g));
}

// Random byte mutations of a valid file: the reader either rejects the file or reads it, and
// every accessor stays inside the buffer (the sanitizer run checks the "inside").
TEST(Gguf, SurvivesRandomMutations)
{
    SampleFile f = make_sample();
    std::mt19937_64 rng(7);
    for (int iter = 0; iter < 3000; iter++) {
        auto bytes = f.bytes;
        int flips = 1 + (int)(rng() % 4);
        for (int k = 0; k < flips; k++) {
            // Most mutations hit the header and metadata, where the parsing is.
            size_t limit = rng() % 4 ? f.tensor_info_start + 80 : bytes.size();
            bytes[rng() % limit] = (uint8_t)rng();
        }
        Reader r;
        if (trit_gguf_open(bytes.data(), bytes.size(), nullptr, &r.g) != TRIT_OK) {
            ASSERT_STRNE("", trit_last_error());
            continue;
        }
        for (uint64_t i = 0; i < trit_gguf_kv_count(r.g); i++) {
            const char *key;
            trit_gguf_type type;
            ASSERT_EQ(TRIT_OK, trit_gguf_kv_key(r.g, i, &key, &type));
            trit_gguf_type et;
            uint64_t count;
            const void *data;
            if (trit_gguf_kv_array(r.g, i, &et, &count, &data) == TRIT_OK && et == TRIT_GGUF_STRING)
                for (uint64_t e = 0; e < count && e < 16; e++) {
                    const char *s;
                    uint64_t len;
                    ASSERT_EQ(TRIT_OK, trit_gguf_kv_array_string(r.g, i, e, &s, &len));
                    ASSERT_LE((const uint8_t *)s + len, bytes.data() + bytes.size());
                }
        }
        for (uint64_t i = 0; i < trit_gguf_tensor_count(r.g); i++) {
            trit_gguf_tensor_info info{};
            info.size = sizeof(info);
            ASSERT_EQ(TRIT_OK, trit_gguf_tensor_get(r.g, i, &info));
            ASSERT_LE(info.offset + info.bytes, bytes.size());
            trit_ternary_desc desc;
            if (trit_gguf_ternary_desc(r.g, i, &desc) == TRIT_OK) {
                trit_ternary_host host{};
                if (trit_ternary_host_from_desc(&desc, nullptr, &host) == TRIT_OK)
                    trit_ternary_host_release(&host);
            }
        }
    }
}

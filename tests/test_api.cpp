// test_api.cpp — the host API outside the ops: status strings, context options, devices,
// streams, events, buffers (also across backends), tensor views, and their error paths.
#include <atomic>
#include <cstdint>
#include <limits>
#include <string>

#include "common.h"

namespace {

struct Ctx {
    trit_context *c = nullptr;
    ~Ctx() { trit_context_destroy(c); }
};

// A context with the CPU plugin and the two-device fake plugin (buffers not host-visible).
void make_mixed_context(Ctx &ctx)
{
    std::string dirs =
        std::string(TRIT_TEST_PLUGIN_DIR) + ":" + TRIT_TEST_FAKE_PLUGIN_DIR + "/current";
    trit_context_options o{};
    o.size = sizeof(o);
    o.plugin_path = dirs.c_str();
    o.plugins = "cpu,fake-current";
    ASSERT_EQ(TRIT_OK, trit_context_create(&o, &ctx.c)) << trit_last_error();
    ASSERT_EQ(3u, trit_device_count(ctx.c));
}

trit_device *dev(trit_context *c, uint32_t i)
{
    trit_device *d = nullptr;
    EXPECT_EQ(TRIT_OK, trit_device_get(c, i, &d));
    return d;
}

} // namespace

TEST(Status, EveryStatusHasAName)
{
    for (int s = TRIT_OK; s <= TRIT_ERROR_INTERNAL; s++) {
        std::string name = trit_status_string((trit_status)s);
        EXPECT_EQ(0u, name.find("TRIT_")) << s;
    }
    EXPECT_STREQ("unknown trit_status", trit_status_string((trit_status)999));
}

TEST(Status, SuccessClearsTheLastError)
{
    trit_device *d = nullptr;
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_device_get(nullptr, 0, &d));
    EXPECT_STRNE("", trit_last_error());
    TRIT_ASSERT_OK(trit_device_get(tt::context(), 0, &d));
    EXPECT_STREQ("", trit_last_error());
}

TEST(Context, RejectsNullOutputAndBadOptionsSize)
{
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_context_create(nullptr, nullptr));
    trit_context_options o{};
    trit_context *c = reinterpret_cast<trit_context *>(0x1);
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_context_create(&o, &c)); // size 0
    EXPECT_EQ(nullptr, c);
    EXPECT_NE(std::string(trit_last_error()).find("size"), std::string::npos);
}

TEST(Context, DestroyNullIsANoOp)
{
    trit_context_destroy(nullptr);
}

TEST(Context, UsesTheCallersAllocatorAndLogCallback)
{
    struct Counts {
        std::atomic<int> allocs{0}, frees{0}, logs{0};
    } counts;
    trit_context_options o{};
    o.size = sizeof(o);
    o.plugins = "cpu";
    o.log_level = TRIT_LOG_DEBUG;
    o.allocator.user = &counts;
    o.allocator.alloc = [](void *u, size_t n) -> void * {
        static_cast<Counts *>(u)->allocs++;
        return malloc(n);
    };
    o.allocator.free = [](void *u, void *p) {
        static_cast<Counts *>(u)->frees++;
        free(p);
    };
    o.log_user = &counts;
    o.log = [](void *u, trit_log_level, const char *msg) {
        static_cast<Counts *>(u)->logs++;
        EXPECT_NE(nullptr, msg);
    };
    trit_context *c = nullptr;
    TRIT_ASSERT_OK(trit_context_create(&o, &c));
    trit_device *d = dev(c, 0);
    trit_stream *s = nullptr;
    TRIT_ASSERT_OK(trit_stream_create(d, &s));
    trit_buffer *b = nullptr;
    TRIT_ASSERT_OK(trit_buffer_alloc(d, 128, &b));
    trit_context_destroy(c); // also releases s and b
    EXPECT_GT(counts.allocs.load(), 0);
    EXPECT_EQ(counts.allocs.load(), counts.frees.load());
    EXPECT_GT(counts.logs.load(), 0);
}

TEST(Context, AllocatorWithOnlyOneFunctionIsRejected)
{
    trit_context_options o{};
    o.size = sizeof(o);
    o.allocator.alloc = [](void *, size_t n) -> void * { return malloc(n); };
    trit_context *c = nullptr;
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_context_create(&o, &c));
}

TEST(Context, DestroyReleasesObjectsTheCallerForgot)
{
    Ctx ctx;
    make_mixed_context(ctx);
    for (uint32_t i = 0; i < 3; i++) {
        trit_stream *s = nullptr;
        trit_buffer *b = nullptr;
        TRIT_ASSERT_OK(trit_stream_create(dev(ctx.c, i), &s));
        TRIT_ASSERT_OK(trit_buffer_alloc(dev(ctx.c, i), 1000, &b));
    }
    std::vector<int8_t> w(16 * 16, -1);
    tt::Ternary t = tt::upload_ternary(dev(ctx.c, 0), w, 16, 16);
    t.t = nullptr; // leak on purpose; the sanitizer run checks the context frees it
}

TEST(Device, InfoDescribesTheCpu)
{
    trit_device *d = nullptr;
    bool found = false;
    for (uint32_t i = 0; i < trit_device_count(tt::context()); i++) {
        TRIT_ASSERT_OK(trit_device_get(tt::context(), i, &d));
        trit_device_info info{};
        info.size = sizeof(info);
        TRIT_ASSERT_OK(trit_device_get_info(d, &info));
        if (info.backend != TRIT_BACKEND_CPU)
            continue;
        found = true;
        EXPECT_STRNE("", info.name);
        EXPECT_GT(info.memory_bytes, 0u);
        EXPECT_GE(info.compute_units, 1u);
        EXPECT_TRUE(info.caps & TRIT_CAP_UNIFIED_MEMORY);
        EXPECT_EQ(0u, std::string(trit_device_label(d)).find("cpu:"));
    }
    EXPECT_TRUE(found);
}

TEST(Device, OutOfRangeIndexIsNotFound)
{
    trit_device *d = nullptr;
    EXPECT_EQ(TRIT_ERROR_NOT_FOUND, trit_device_get(tt::context(), 1000, &d));
    EXPECT_NE(std::string(trit_last_error()).find("1000"), std::string::npos);
}

TEST(Device, InfoWithShortSizeWritesOnlyThatPrefix)
{
    trit_device *d = tt::device(0);
    unsigned char raw[sizeof(trit_device_info) + 16];
    memset(raw, 0xAB, sizeof(raw));
    auto *info = reinterpret_cast<trit_device_info *>(raw);
    info->size = offsetof(trit_device_info, name); // an old caller that knew fewer fields
    TRIT_ASSERT_OK(trit_device_get_info(d, info));
    for (size_t i = offsetof(trit_device_info, name); i < sizeof(raw); i++)
        ASSERT_EQ(0xAB, raw[i]) << "byte " << i << " written past the caller's size";
}

TEST(Device, SupportsRejectsUnknownOp)
{
    trit_op_desc desc{};
    desc.size = sizeof(desc);
    desc.op = (trit_op)77;
    int ok = 1;
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
              trit_device_supports(tt::device(0), &desc, &ok, nullptr, 0));
}

TEST(Buffer, UploadDownloadRoundTrip)
{
    trit_device *d = tt::device(0);
    tt::Stream s(d);
    tt::Buffer b(d, 1 << 20);
    auto data = tt::random_floats(1 << 18, 1);
    TRIT_ASSERT_OK(trit_buffer_upload(s, b, 0, data.data(), 1 << 20));
    std::vector<float> back(1 << 18);
    TRIT_ASSERT_OK(trit_buffer_download(s, b, 0, back.data(), 1 << 20));
    TRIT_ASSERT_OK(trit_stream_sync(s));
    EXPECT_EQ(data, back);
}

TEST(Buffer, LargeCopyAndFillUseEveryByte)
{
    trit_device *d = tt::device(0);
    tt::Stream s(d);
    const uint64_t n = 9 << 20; // above the parallel threshold, not a multiple of the grain
    tt::Buffer a(d, n + 3), b(d, n + 3);
    TRIT_ASSERT_OK(trit_buffer_fill(s, a, 0, 0x5A, n + 3));
    TRIT_ASSERT_OK(trit_buffer_fill(s, b, 0, 0x00, n + 3));
    TRIT_ASSERT_OK(trit_buffer_copy(s, a, 1, b, 2, n));
    auto bytes = tt::download_bytes(s, b);
    EXPECT_EQ(0, bytes[0]);
    EXPECT_EQ(0, bytes[1]);
    for (uint64_t i = 2; i < n + 2; i += 4093)
        ASSERT_EQ(0x5A, bytes[i]) << i;
    EXPECT_EQ(0x5A, bytes[n + 1]);
    EXPECT_EQ(0, bytes[n + 2]);
}

TEST(Buffer, RangesPastTheEndAreRejectedAndNothingIsWritten)
{
    trit_device *d = tt::device(0);
    tt::Stream s(d);
    tt::Buffer b(d, 64);
    TRIT_ASSERT_OK(trit_buffer_fill(s, b, 0, 0x11, 64));
    std::vector<uint8_t> src(128, 0x22);
    EXPECT_EQ(TRIT_ERROR_OUT_OF_BOUNDS, trit_buffer_upload(s, b, 1, src.data(), 64));
    EXPECT_NE(std::string(trit_last_error()).find("past the end"), std::string::npos);
    EXPECT_EQ(TRIT_ERROR_OVERFLOW, trit_buffer_upload(s, b, UINT64_MAX - 2, src.data(), 16));
    EXPECT_EQ(TRIT_ERROR_OUT_OF_BOUNDS, trit_buffer_download(s, b, 60, src.data(), 5));
    EXPECT_EQ(TRIT_ERROR_OUT_OF_BOUNDS, trit_buffer_fill(s, b, 0, 0, 65));
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_buffer_upload(s, b, 0, nullptr, 4));
    auto bytes = tt::download_bytes(s, b);
    for (auto x : bytes)
        ASSERT_EQ(0x11, x);
}

TEST(Buffer, ZeroAndAbsurdSizesAreRejected)
{
    trit_device *d = tt::device(0);
    trit_buffer *b = nullptr;
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_buffer_alloc(d, 0, &b));
    EXPECT_EQ(TRIT_ERROR_OUT_OF_MEMORY, trit_buffer_alloc(d, UINT64_MAX / 2, &b));
    EXPECT_EQ(nullptr, b);
    EXPECT_NE(std::string(trit_last_error()).find("bytes"), std::string::npos);
}

TEST(Buffer, OverlappingCopyWithinOneBufferIsRejected)
{
    trit_device *d = tt::device(0);
    tt::Stream s(d);
    tt::Buffer b(d, 64);
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_buffer_copy(s, b, 0, b, 8, 16));
    TRIT_EXPECT_OK(trit_buffer_copy(s, b, 0, b, 16, 16));
}

TEST(Buffer, StreamOnAnotherDeviceIsRejected)
{
    Ctx ctx;
    make_mixed_context(ctx);
    tt::Stream s(dev(ctx.c, 0));
    tt::Buffer b(dev(ctx.c, 1), 64);
    std::vector<uint8_t> src(64);
    EXPECT_EQ(TRIT_ERROR_WRONG_DEVICE, trit_buffer_upload(s, b, 0, src.data(), 64));
    EXPECT_NE(std::string(trit_last_error()).find("fake-current:0"), std::string::npos)
        << trit_last_error();
    tt::Buffer c(dev(ctx.c, 2), 64);
    EXPECT_EQ(TRIT_ERROR_WRONG_DEVICE, trit_buffer_copy(s, b, 0, c, 0, 64));
}

// cpu -> fake:0 -> fake:1 -> cpu: across plugins (host staging, one side host-visible) and
// across devices of one plugin (neither side host-visible: chunked staging).
TEST(Buffer, CopiesAcrossBackendsThroughHostStaging)
{
    Ctx ctx;
    make_mixed_context(ctx);
    trit_device *cpu = nullptr, *f0 = nullptr, *f1 = nullptr;
    for (uint32_t i = 0; i < 3; i++) {
        trit_device *d = dev(ctx.c, i);
        std::string label = trit_device_label(d);
        if (label == "cpu:0")
            cpu = d;
        if (label == "fake-current:0")
            f0 = d;
        if (label == "fake-current:1")
            f1 = d;
    }
    ASSERT_TRUE(cpu && f0 && f1);
    const uint64_t n = 3 << 20;
    tt::Stream sc(cpu), s0(f0), s1(f1);
    tt::Buffer bc(cpu, n), b0(f0, n), b1(f1, n), back(cpu, n);
    std::vector<uint8_t> data(n);
    for (uint64_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 131 + 7);
    TRIT_ASSERT_OK(trit_buffer_upload(sc, bc, 0, data.data(), n));
    TRIT_ASSERT_OK(trit_buffer_copy(sc, bc, 0, b0, 0, n)); // stream on the source side
    TRIT_ASSERT_OK(trit_buffer_copy(s1, b0, 0, b1, 0, n)); // stream on the destination
    TRIT_ASSERT_OK(trit_buffer_copy(s1, b1, 100, back, 100, n - 100));
    TRIT_ASSERT_OK(trit_buffer_copy(sc, b1, 0, back, 0, 100));
    auto got = tt::download_bytes(sc, back);
    EXPECT_EQ(data, got);
}

TEST(Stream, EventsOrderStreamsOnOneAndAcrossBackends)
{
    Ctx ctx;
    make_mixed_context(ctx);
    trit_device *cpu = dev(ctx.c, 0);
    tt::Stream a(cpu), b(cpu);
    trit_event *e = nullptr;
    TRIT_ASSERT_OK(trit_event_create(cpu, &e));
    TRIT_EXPECT_OK(trit_event_sync(e)); // never recorded: complete
    TRIT_EXPECT_OK(trit_event_record(e, a));
    TRIT_EXPECT_OK(trit_stream_wait_event(b, e));
    TRIT_EXPECT_OK(trit_event_sync(e));
    tt::Stream other(dev(ctx.c, 1));
    EXPECT_EQ(TRIT_ERROR_WRONG_DEVICE, trit_event_record(e, other));
    TRIT_EXPECT_OK(trit_stream_wait_event(other, e)); // cross-plugin: waited on the host
    trit_event_destroy(e);
    trit_event_destroy(nullptr);
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_stream_sync(nullptr));
    EXPECT_EQ(cpu, trit_stream_device(a));
}

TEST(Tensor, MakeComputesRowMajorStrides)
{
    tt::Buffer b(tt::device(0), 2 * 3 * 4 * 4);
    int64_t shape[3] = {2, 3, 4};
    trit_tensor t;
    TRIT_ASSERT_OK(trit_tensor_make(b, 0, TRIT_DTYPE_F32, 3, shape, nullptr, &t));
    EXPECT_EQ(12, t.strides[0]);
    EXPECT_EQ(4, t.strides[1]);
    EXPECT_EQ(1, t.strides[2]);
}

TEST(Tensor, RejectsViewsOutsideTheBuffer)
{
    tt::Buffer b(tt::device(0), 100);
    int64_t shape[2] = {5, 5};
    trit_tensor t;
    EXPECT_EQ(TRIT_ERROR_OUT_OF_BOUNDS,
              trit_tensor_make(b, 4, TRIT_DTYPE_F32, 2, shape, nullptr, &t));
    EXPECT_NE(std::string(trit_last_error()).find("104"), std::string::npos) << trit_last_error();
    TRIT_EXPECT_OK(trit_tensor_make(b, 0, TRIT_DTYPE_F32, 2, shape, nullptr, &t));
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
              trit_tensor_make(b, 2, TRIT_DTYPE_F32, 2, shape, nullptr, &t))
        << "misaligned offset";
}

TEST(Tensor, RejectsShapesThatOverflow)
{
    tt::Buffer b(tt::device(0), 64);
    int64_t shape[4] = {INT64_MAX / 2, 4, 4, 4};
    trit_tensor t;
    EXPECT_EQ(TRIT_ERROR_OVERFLOW, trit_tensor_make(b, 0, TRIT_DTYPE_F32, 4, shape, nullptr, &t));
    int64_t shape2[2] = {1 << 30, 1 << 30};
    int64_t strides[2] = {INT64_MAX / 4, 1};
    EXPECT_EQ(TRIT_ERROR_OVERFLOW, trit_tensor_make(b, 0, TRIT_DTYPE_F32, 2, shape2, strides, &t));
}

TEST(Tensor, RejectsBadRankExtentAndDtype)
{
    tt::Buffer b(tt::device(0), 64);
    int64_t shape[5] = {1, 1, 1, 1, 1};
    trit_tensor t;
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
              trit_tensor_make(b, 0, TRIT_DTYPE_F32, 5, shape, nullptr, &t));
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
              trit_tensor_make(b, 0, TRIT_DTYPE_F32, 0, shape, nullptr, &t));
    int64_t zero[1] = {0};
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
              trit_tensor_make(b, 0, TRIT_DTYPE_F32, 1, zero, nullptr, &t));
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
              trit_tensor_make(b, 0, (trit_dtype)42, 1, shape, nullptr, &t));
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT,
              trit_tensor_make(nullptr, 0, TRIT_DTYPE_F32, 1, shape, nullptr, &t));
}

TEST(Ternary, UploadReportsShapeAndDeviceBytes)
{
    auto w = tt::random_ternary(300 * 257, 5);
    tt::Ternary t = tt::upload_ternary(tt::device(0), w, 300, 257);
    ASSERT_NE(nullptr, t.t);
    EXPECT_EQ(300, trit_ternary_rows(t));
    EXPECT_EQ(257, trit_ternary_cols(t));
    EXPECT_EQ(tt::device(0), trit_ternary_device(t));
    EXPECT_GE(trit_ternary_device_bytes(t), 300u * 65u); // at least 2 bits a weight
    trit_ternary_free(nullptr);
}

TEST(Ternary, UploadRejectsBadDescriptors)
{
    trit_device *d = tt::device(0);
    std::vector<int8_t> w(64, 1);
    trit_ternary_desc desc{};
    desc.size = sizeof(desc);
    desc.rows = 8;
    desc.cols = 8;
    desc.format = TRIT_WEIGHTS_I8;
    desc.data = w.data();
    desc.data_bytes = 63; // one short
    trit_ternary *t = nullptr;
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_ternary_upload(d, &desc, &t));
    EXPECT_EQ(nullptr, t);
    EXPECT_STRNE("", trit_last_error());
    desc.data_bytes = 64;
    w[9] = 2; // not ternary
    EXPECT_EQ(TRIT_ERROR_BAD_FORMAT, trit_ternary_upload(d, &desc, &t));
    w[9] = 0;
    desc.rows = 0;
    EXPECT_NE(TRIT_OK, trit_ternary_upload(d, &desc, &t));
    desc.rows = INT64_MAX;
    desc.cols = INT64_MAX;
    EXPECT_NE(TRIT_OK, trit_ternary_upload(d, &desc, &t));
    desc.size = 0;
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_ternary_upload(d, &desc, &t));
    EXPECT_EQ(TRIT_ERROR_INVALID_ARGUMENT, trit_ternary_upload(d, nullptr, &t));
}
